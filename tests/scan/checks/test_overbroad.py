"""overbroad-tool: shell, code, raw SQL, any path and any URL, with the hard negatives that look alike."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehold.scan.checks import overbroad
from gatehold.scan.checks.overbroad import free_text
from gatehold.scan.model import Finding, ScanInput, ServerSnapshot
from tests.scan.checks.test_fields import DEFINITIONS


def tool(name: str, description: str, required: tuple[str, ...] = (), **properties: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "description": description,
            "inputSchema": {"type": "object", "properties": properties, "required": list(required)}}


def scan(*tools: dict[str, Any]) -> list[Finding]:
    server = ServerSnapshot(name="srv", source="tools-json", tools=tools, listed=True)
    return list(overbroad.run(ScanInput(servers=(server,))))


def one(*tools: dict[str, Any]) -> Finding:
    (finding,) = scan(*tools)
    return finding


STRING = {"type": "string"}


def test_check_info() -> None:
    (info,) = overbroad.CHECKS
    assert info.id == "overbroad-tool"
    assert info.severity == "medium"
    assert all((info.title, info.rationale, info.remediation))


def test_shell_command_execution_is_high() -> None:
    finding = one(tool("execute_command", "Execute terminal command and return results", command=STRING,
                       timeout={"type": "integer"}))
    assert finding.severity == "high"
    assert finding.location.field == "inputSchema.properties.command"
    assert "shell capability through parameter 'command'" in finding.message


def test_shell_judged_by_the_parameter_description() -> None:
    finding = one(tool("do", "Helper.", line={"type": "string", "description": "The bash command to execute"}))
    assert "shell" in finding.message


def test_code_evaluation_is_high() -> None:
    finding = one(tool("run_python", "Run arbitrary Python code in a sandbox and return stdout.", code=STRING))
    assert finding.severity == "high"
    assert "code capability through parameter 'code'" in finding.message
    finding = one(tool("js", "Evaluate.", src={"type": "string", "description": "JavaScript code to evaluate"}))
    assert "code capability" in finding.message


def test_raw_sql() -> None:
    finding = one(tool("run_query", "Execute a SQL query against the Postgres database.", query=STRING))
    assert finding.severity == "medium"
    assert "accepts raw SQL" in finding.message
    read_only = one(tool("select", "Run a read-only SQL query.", sql=STRING))
    assert "read-only" in read_only.message
    by_description = one(tool("db", "Database access.", q={"type": "string", "description": "The SQL statement"}))
    assert "raw SQL" in by_description.message


def test_filesystem_wide_paths() -> None:
    finding = one(tool("read_file", "Read the contents of a file.", path=STRING))
    assert finding.severity == "medium"
    assert "filesystem capability through parameter 'path'" in finding.message
    anywhere = one(tool("delete", "Delete any file on the system, absolute paths accepted.",
                        target={"type": "string", "description": "File path"}))
    assert "any path" in anywhere.message


def test_fetch_any_url() -> None:
    finding = one(tool("fetch", "Fetch a URL and return its content as markdown.", url={"type": "string",
                                                                                         "format": "uri"}))
    assert "fetch capability through parameter 'url'" in finding.message
    assert finding.severity == "medium"


def test_one_finding_per_capability_and_several_capabilities_per_tool() -> None:
    findings = scan(tool("toolbox", "Run shell commands, or fetch a URL.", command=STRING, cmd=STRING, url=STRING))
    assert sorted(f.message.split(": ")[1].split(" ")[0] for f in findings) == ["fetch", "shell"]


@pytest.mark.parametrize("definition", [
    tool("search", "Search the web for pages matching a query.", query=STRING),
    tool("get_weather", "Get the weather forecast for a city.", city=STRING),
    tool("run_tests", "Run the project's test suite.",
         pattern={"type": "string", "enum": ["unit", "integration"]}),
    tool("execute_command", "Execute one of the allowed maintenance commands.",
         command={"type": "string", "enum": ["restart", "status"]}),
    tool("read_file", "Read a file relative to the workspace root.", path=STRING),
    tool("read_file", "Read a file from the docs folder.", path={"type": "string", "pattern": "^docs/[a-z/]+\\.md$"}),
    tool("fetch", "Fetch a page from the documentation site.", url={"type": "string",
                                                                    "pattern": "^https://docs\\.example\\.com/"}),
    tool("fetch_docs", "Fetch a page. Only URLs on docs.example.com are allowed.", url=STRING),
    tool("send_command", "Send a command to the smart light.", command={"type": "string", "maxLength": 20}),
    tool("list_tables", "List the tables of the Postgres database."),
    tool("search_emails", "Search emails for the given query.", query=STRING),
    tool("create_document", "Create a new Word document.", filename=STRING),
    tool("calculate", "Evaluate an arithmetic expression like 2+3*4.", expression=STRING),
])
def test_hard_negatives(definition: dict[str, Any]) -> None:
    assert scan(definition) == []


def test_free_text() -> None:
    assert free_text(STRING)
    assert free_text({})
    assert free_text({"anyOf": [{"type": "string"}, {"type": "null"}]})
    assert free_text({"type": "array", "items": {"type": "string"}})
    assert not free_text({"type": "string", "enum": ["a"]})
    assert not free_text({"type": "string", "pattern": "^a$"})
    assert not free_text({"type": "integer"})
    assert not free_text({"anyOf": [{"type": "integer"}, {"type": "null"}]})


@settings(max_examples=80, deadline=None)
@given(st.lists(DEFINITIONS, max_size=3))
def test_definitions_of_any_shape_never_break_the_check(definitions: list[dict[str, Any]]) -> None:
    snapshot = ServerSnapshot(name="odd", source="tools-json", tools=tuple(definitions), prompts=tuple(definitions),
                              listed=True)
    for finding in overbroad.run(ScanInput(servers=(snapshot,))):
        assert finding.check in {info.id for info in overbroad.CHECKS}
        assert finding.message.isprintable()
