"""The JSON report: one stable, versioned document for scripts (``--format json``).

Keys are fixed and always present (``null`` where a location has no value); findings keep the
report's order (most severe first). ``version`` changes only when the shape does.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson

from gatehold.scan.model import SEVERITIES, CheckInfo, Finding, ScanReport
from gatehold.scan.runner import encodable

VERSION = 1
TOOL_NAME = "gatehold"


def tool_version() -> str:
    """The installed package's version (the source tree's own when it is not installed)."""
    try:
        return version(TOOL_NAME)
    except PackageNotFoundError:
        from gatehold import __version__

        return __version__


def utf8(text: str) -> str:
    """``text`` encodable as UTF-8: a lone surrogate (possible in text decoded from JSON) becomes ``\\udXXX``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _opt(text: str | None) -> str | None:
    return None if text is None else utf8(text)


def finding_document(finding: Finding) -> dict[str, Any]:
    finding = encodable(finding)
    loc = finding.location
    return {
        "check": utf8(finding.check),
        "severity": finding.severity,
        "message": utf8(finding.message),
        "evidence": utf8(finding.evidence),
        "fingerprint": finding.fingerprint,
        "location": {"kind": loc.kind, "server": _opt(loc.server), "name": _opt(loc.name), "field": _opt(loc.field),
                     "file": _opt(loc.file), "line": loc.line, "qualified_name": utf8(loc.qualified_name)},
    }


def check_document(info: CheckInfo) -> dict[str, Any]:
    return {"id": info.id, "title": info.title, "severity": info.severity, "rationale": info.rationale,
            "remediation": info.remediation}


def summary(report: ScanReport) -> dict[str, int]:
    counts: dict[str, int] = {severity: 0 for severity in reversed(SEVERITIES)}
    for finding in report.findings:
        counts[finding.severity] += 1
    return {**counts, "suppressed": len(report.suppressed), "errors": len(report.errors)}


def json_document(report: ScanReport) -> dict[str, Any]:
    return {
        "version": VERSION,
        "tool": {"name": TOOL_NAME, "version": tool_version()},
        "targets": [utf8(t) for t in report.targets],
        "summary": summary(report),
        "errors": [utf8(e) for e in report.errors],
        "findings": [finding_document(f) for f in report.findings],
        "suppressed": [{**finding_document(s.finding), "reason": utf8(s.reason)} for s in report.suppressed],
        "checks": [check_document(info) for info in report.checks],
    }


def render_json(report: ScanReport) -> str:
    return orjson.dumps(json_document(report), option=orjson.OPT_INDENT_2).decode("utf-8") + "\n"
