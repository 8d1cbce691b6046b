from __future__ import annotations

import json
from importlib.metadata import version

from gatehold.scan.model import CheckInfo, Finding, Location, ScanReport, Suppressed
from gatehold.scan.report.json_report import render_json
from gatehold.scan.report.render import render

POISON = CheckInfo("tool-poisoning", "Instructions hidden in a description", "critical", "Why it matters.", "Fix.")
SCHEMA = CheckInfo("unbounded-schema", "An argument accepts anything", "medium", "Unchecked.", "Bound it.")

POISONED = Finding("tool-poisoning", "critical", "reads ~/.ssh", Location("tool", "files", "read_file", "description",
                                                                          "mcp.json", 12), "open ~/.ssh")
UNBOUNDED = Finding("unbounded-schema", "medium", "no bound", Location("tool", None, "fetch"))
CONFIG = Finding("unbounded-schema", "low", "in config", Location("config", file="gatehold.yaml"))
ACCEPTED = Finding("unbounded-schema", "medium", "accepted", Location("tool", "web", "get"))

REPORT = ScanReport(findings=(POISONED, UNBOUNDED, CONFIG), suppressed=(Suppressed(ACCEPTED, "reviewed"),),
                    checks=(POISON, SCHEMA), targets=("mcp.json", "--", "npx server"),
                    errors=("target npx server: exited with status 1",))


def test_document_shape() -> None:
    document = json.loads(render_json(REPORT))
    assert list(document) == ["version", "tool", "targets", "summary", "errors", "findings", "suppressed", "checks"]
    assert document["version"] == 1
    assert document["tool"] == {"name": "gatehold", "version": version("gatehold")}
    assert document["targets"] == ["mcp.json", "--", "npx server"]
    assert document["summary"] == {"critical": 1, "high": 0, "medium": 1, "low": 1, "info": 0, "suppressed": 1,
                                   "errors": 1}
    assert document["errors"] == ["target npx server: exited with status 1"]
    assert document["findings"][0] == {
        "check": "tool-poisoning", "severity": "critical", "message": "reads ~/.ssh", "evidence": "open ~/.ssh",
        "fingerprint": POISONED.fingerprint,
        "location": {"kind": "tool", "server": "files", "name": "read_file", "field": "description",
                     "file": "mcp.json", "line": 12, "qualified_name": "files.read_file"},
    }
    assert document["findings"][1]["location"] == {"kind": "tool", "server": None, "name": "fetch", "field": None,
                                                   "file": None, "line": None, "qualified_name": "fetch"}
    assert document["findings"][2]["location"]["qualified_name"] == "gatehold.yaml"
    assert [f["fingerprint"] for f in document["findings"]] == [f.fingerprint for f in REPORT.findings]
    (suppressed,) = document["suppressed"]
    assert suppressed["reason"] == "reviewed"
    assert suppressed["fingerprint"] == ACCEPTED.fingerprint
    assert suppressed["location"]["qualified_name"] == "web.get"
    assert document["checks"] == [
        {"id": "tool-poisoning", "title": "Instructions hidden in a description", "severity": "critical",
         "rationale": "Why it matters.", "remediation": "Fix."},
        {"id": "unbounded-schema", "title": "An argument accepts anything", "severity": "medium",
         "rationale": "Unchecked.", "remediation": "Bound it."},
    ]


def test_output_is_stable_indented_and_ends_with_a_newline() -> None:
    out = render_json(REPORT)
    assert out == render_json(REPORT)
    assert out.endswith("}\n")
    assert out.startswith('{\n  "version": 1,\n')
    assert render(REPORT, "json") == out


def test_hostile_and_broken_text_is_still_valid_json() -> None:
    hostile = Finding("tool-poisoning", "high", 'quote " and \x1b[31m', Location("tool", "s", "bad\ud800"),
                      "line\nbreak \u202e")
    out = render_json(ScanReport(findings=(), suppressed=(Suppressed(hostile, "r\udfff"),), checks=(), targets=()))
    assert "\x1b" not in out  # control characters are JSON-escaped
    document = json.loads(out)
    (item,) = document["suppressed"]
    assert item["message"] == 'quote " and \x1b[31m'
    assert item["evidence"] == "line\nbreak \u202e"
    assert item["location"]["name"] == "bad\\ud800"
    assert item["reason"] == "r\\udfff"
