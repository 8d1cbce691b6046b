"""unbounded-schema: input schemas that accept anything, and bounded ones that produce nothing."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gatehold.scan.checks import unbounded_schema
from gatehold.scan.checks.unbounded_schema import sensitive
from gatehold.scan.model import Finding, ScanInput, ServerSnapshot
from tests.scan.checks.test_fields import DEFINITIONS


def scan(*tools: dict[str, Any]) -> list[Finding]:
    server = ServerSnapshot(name="srv", source="tools-json", tools=tools, listed=True)
    return list(unbounded_schema.run(ScanInput(servers=(server,))))


def closed(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": False}


def by_field(findings: list[Finding]) -> dict[str | None, Finding]:
    out = {f.location.field: f for f in findings}
    assert len(out) == len(findings)  # one finding per (tool, parameter, reason) here
    return out


def test_check_info() -> None:
    (info,) = unbounded_schema.CHECKS
    assert info.id == "unbounded-schema"
    assert info.severity == "low"
    assert all((info.title, info.rationale, info.remediation))


def test_a_bounded_schema_produces_nothing() -> None:
    schema = closed(
        path={"type": "string", "pattern": "^docs/[a-z]+\\.md$", "description": "File path under docs"},
        url={"type": "string", "format": "uri", "maxLength": 2048},
        mode={"type": "string", "enum": ["r", "w"]},
        count={"type": "integer", "minimum": 1},
        options={"type": "object", "properties": {"deep": {"type": "boolean"}}, "additionalProperties": False},
        tags={"type": "array", "items": {"type": "string", "maxLength": 20}},
        note={"type": "string"},  # free text, but nothing sensitive
        maybe_dir={"anyOf": [{"type": "string", "pattern": "^[a-z]+$"}, {"type": "null"}]},
    )
    assert scan({"name": "ok", "inputSchema": schema}) == []
    assert scan({"name": "no_args", "inputSchema": {"type": "object", "additionalProperties": False}}) == []


def test_missing_or_non_object_schema() -> None:
    (missing,) = scan({"name": "t"})
    assert missing.location.field == "inputSchema"
    assert missing.severity == "low"
    assert "no input schema" in missing.message
    (wrong,) = scan({"name": "t", "inputSchema": {"type": "string"}})
    assert "not an object schema" in wrong.message


def test_open_top_level_is_reported_once() -> None:
    findings = scan({"name": "t", "inputSchema": {"type": "object", "properties": {"a": {"type": "integer"}}}})
    (finding,) = findings
    assert finding.location.field == "inputSchema.additionalProperties"
    assert finding.severity == "low"


def test_untyped_and_free_form_parameters() -> None:
    schema = closed(
        tools_list={"title": "Tools List"},
        target={"description": "The file path to write"},
        options={"type": "object"},
        headers={"type": "object", "additionalProperties": True},
        env={"type": "object", "additionalProperties": {"type": "string"}},  # a typed map: bounded values
    )
    found = by_field(scan({"name": "t", "inputSchema": schema}))
    assert set(found) == {"inputSchema.properties.tools_list", "inputSchema.properties.target",
                          "inputSchema.properties.options", "inputSchema.properties.headers"}
    assert found["inputSchema.properties.tools_list"].severity == "low"
    assert "no type" in found["inputSchema.properties.tools_list"].message
    assert found["inputSchema.properties.target"].severity == "medium"  # carries a path
    assert "free-form object" in found["inputSchema.properties.options"].message


def test_unbounded_sensitive_strings() -> None:
    schema = closed(
        path={"type": "string"},
        url={"anyOf": [{"type": "string"}, {"type": "null"}]},
        command={"type": "string", "description": "Command to run"},
        query={"type": "string", "description": "Search query"},
        files={"type": "array", "items": {"type": "string"}},
        file_id={"type": "string"},  # an identifier, not a path
        content={"type": "string", "description": "Content of the file"},
    )
    found = by_field(scan({"name": "t", "inputSchema": schema}))
    assert set(found) == {f"inputSchema.properties.{n}" for n in ("path", "url", "command", "query", "files")}
    assert found["inputSchema.properties.path"].severity == "medium"
    assert found["inputSchema.properties.url"].severity == "medium"
    assert found["inputSchema.properties.command"].severity == "medium"
    assert found["inputSchema.properties.query"].severity == "low"
    assert "string list" in found["inputSchema.properties.files"].message
    assert "no maxLength, pattern, enum, const or format" in found["inputSchema.properties.path"].message


def test_nested_properties_and_array_items() -> None:
    schema = closed(
        request={"type": "object", "additionalProperties": False, "properties": {
            "target_url": {"type": "string"},
            "items": {"type": "array", "items": {"type": "object", "additionalProperties": False,
                                                 "properties": {"dir": {"type": "string"}}}}}})
    found = by_field(scan({"name": "t", "inputSchema": schema}))
    assert set(found) == {"inputSchema.properties.request.properties.target_url",
                          "inputSchema.properties.request.properties.items.items.properties.dir"}


def test_deep_schemas_are_reported_not_walked_forever() -> None:
    schema: dict[str, Any] = closed()
    node = schema
    for i in range(20):
        child = closed()
        node["properties"][f"level{i}"] = child
        node = child
    findings = scan({"name": "deep", "inputSchema": schema})
    assert any("nested deeper" in f.message for f in findings)


def test_sensitive_names_and_descriptions() -> None:
    assert sensitive("file_path", "") == (True, True)
    assert sensitive("sql", "") == (True, False)
    assert sensitive("target", "the URL to call") == (True, True)
    assert sensitive("file_id", "") == (False, False)
    assert sensitive("city", "The city") == (False, False)


@settings(max_examples=80, deadline=None)
@given(st.lists(DEFINITIONS, max_size=3))
def test_definitions_of_any_shape_never_break_the_check(definitions: list[dict[str, Any]]) -> None:
    snapshot = ServerSnapshot(name="odd", source="tools-json", tools=tuple(definitions), prompts=tuple(definitions),
                              listed=True)
    for finding in unbounded_schema.run(ScanInput(servers=(snapshot,))):
        assert finding.check in {info.id for info in unbounded_schema.CHECKS}
        assert finding.message.isprintable()
