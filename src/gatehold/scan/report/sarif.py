"""The SARIF 2.1.0 report, shaped for GitHub code scanning (``--format sarif``).

One run. Each check that ran is a rule (``ruleId`` = the check id, a stable contract) carrying
GitHub's numeric ``security-severity``. Each finding is a result whose first logical location's
``fullyQualifiedName`` is :attr:`Location.qualified_name` (``server.tool``, or ``tool`` without a
server name): scripts rely on it. GitHub needs a physical location to show a result, so a
finding without a file of its own points at the file the scan read, when it read exactly one; a
scan of live servers only has none. Baseline-accepted findings are results with an external
suppression and its reason; errors are tool execution notifications of an unsuccessful invocation.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from gatehold.scan.model import CheckInfo, Finding, ScanReport, Severity
from gatehold.scan.report.json_report import TOOL_NAME, tool_version, utf8
from gatehold.scan.runner import encodable

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT_KEY = "gateholdFingerprint/v1"
SECURITY_SEVERITY: dict[Severity, str] = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0",
                                          "info": "1.0"}
LEVEL: dict[Severity, str] = {"critical": "error", "high": "error", "medium": "warning", "low": "note",
                              "info": "note"}


def rule_name(check_id: str) -> str:
    """``unbounded-schema`` -> ``UnboundedSchema``."""
    return "".join(part[:1].upper() + part[1:] for part in check_id.replace("_", "-").split("-") if part)


def artifact_uri(file: str, cwd: Path | None = None) -> str:
    """``file`` as a URI reference: relative to ``cwd`` with forward slashes when under it, else a file URI."""
    base = (cwd or Path.cwd()).resolve()
    path = Path(file)
    absolute = (path if path.is_absolute() else base / path).resolve()
    try:
        relative = absolute.relative_to(base)
    except ValueError:
        return absolute.as_uri()
    return quote(relative.as_posix(), safe="/")


def render_sarif(report: ScanReport, *, cwd: Path | None = None) -> str:
    return orjson.dumps(sarif_document(report, cwd=cwd), option=orjson.OPT_INDENT_2).decode("utf-8") + "\n"


def sarif_document(report: ScanReport, *, cwd: Path | None = None) -> dict[str, Any]:
    rules: list[CheckInfo] = []
    for info in report.checks:
        if all(info.id != seen.id for seen in rules):
            rules.append(info)
    index = {info.id: i for i, info in enumerate(rules)}
    fallback = _fallback_file(report, cwd)
    results = [_result(f, index, fallback, cwd) for f in report.findings]
    for item in report.suppressed:
        result = _result(item.finding, index, fallback, cwd)
        result["suppressions"] = [{"kind": "external", "status": "accepted", "justification": utf8(item.reason)}]
        results.append(result)
    invocation: dict[str, Any] = {"executionSuccessful": not report.errors}
    if report.errors:
        invocation["toolExecutionNotifications"] = [
            {"level": "error", "message": {"text": utf8(error)}} for error in report.errors
        ]
    run: dict[str, Any] = {
        "tool": {"driver": _driver(rules)},
        "invocations": [invocation],
        "results": results,
        "columnKind": "unicodeCodePoints",
    }
    if report.targets:
        run["properties"] = {"targets": [utf8(t) for t in report.targets]}
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def _driver(rules: list[CheckInfo]) -> dict[str, Any]:
    driver: dict[str, Any] = {"name": TOOL_NAME, "version": tool_version(), "semanticVersion": tool_version()}
    homepage = information_uri()
    if homepage is not None:
        driver["informationUri"] = homepage
    driver["rules"] = [_rule(info) for info in rules]
    return driver


def information_uri() -> str | None:
    """The project's home page from the installed package's metadata (``[project.urls]``), if it names one."""
    try:
        meta = metadata(TOOL_NAME)
    except PackageNotFoundError:
        return None
    entries: list[str] = [str(e) for e in meta.get_all("Project-URL") or ()]
    for entry in entries:
        label, _, url = entry.partition(",")
        if label.strip().lower() in {"homepage", "home", "source", "repository"} and url.strip():
            return url.strip()
    home = str(meta["Home-page"] or "") if "Home-page" in meta else ""
    return home.strip() or None


def _rule(info: CheckInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": rule_name(info.id),
        "shortDescription": {"text": info.title},
        "fullDescription": {"text": info.rationale},
        "help": {"text": info.remediation},
        "defaultConfiguration": {"level": LEVEL[info.severity]},
        "properties": {"security-severity": SECURITY_SEVERITY[info.severity], "tags": ["security"],
                       "precision": "high", "problem.severity": _problem_severity(info.severity)},
    }


def _problem_severity(severity: Severity) -> str:
    return {"error": "error", "warning": "warning", "note": "recommendation"}[LEVEL[severity]]


def _result(finding: Finding, index: dict[str, int], fallback: str | None, cwd: Path | None) -> dict[str, Any]:
    finding = encodable(finding)
    loc = finding.location
    logical: dict[str, Any] = {"fullyQualifiedName": utf8(loc.qualified_name),
                               "kind": "function" if loc.kind == "tool" else "member"}
    if loc.name is not None:
        logical["name"] = utf8(loc.name)
    location: dict[str, Any] = {"logicalLocations": [logical]}
    uri = artifact_uri(loc.file, cwd) if loc.file else fallback
    if uri is not None:
        line = loc.line if loc.file and loc.line and loc.line > 0 else 1
        location["physicalLocation"] = {"artifactLocation": {"uri": uri}, "region": {"startLine": line}}
    result: dict[str, Any] = {
        "ruleId": finding.check,
        "level": LEVEL[finding.severity],
        "message": {"text": utf8(finding.message) or finding.check},
        "locations": [location],
        "partialFingerprints": {FINGERPRINT_KEY: finding.fingerprint},
        "properties": {"severity": finding.severity, "kind": loc.kind},
    }
    if finding.check in index:
        result["ruleIndex"] = index[finding.check]
    if loc.field:
        result["properties"]["field"] = utf8(loc.field)
    if finding.evidence:
        result["properties"]["evidence"] = utf8(finding.evidence)
    return result


def _fallback_file(report: ScanReport, cwd: Path | None) -> str | None:
    """The one file the scan read (a tools dump or a configuration), if exactly one target is a file."""
    base = cwd or Path.cwd()
    files = []
    for target in report.targets:
        path = Path(target) if Path(target).is_absolute() else base / target
        try:
            if path.is_file():
                files.append(target)
        except (OSError, ValueError):  # a target that is a command or URL may not be a valid path: not a file
            continue
    return artifact_uri(files[0], cwd) if len(files) == 1 else None
