"""Runs the check modules over one scan input and turns what they report into a :class:`ScanReport`.

The runner fails closed: a check module that raises, yields something that is not a
:class:`Finding`, reports under a check id it did not declare, or uses an unknown severity is
never skipped silently. Each such fault becomes an entry of ``ScanReport.errors``, and any error
makes :func:`exit_code` return 2 (the scan did not complete), whatever the findings say.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Protocol

from gatehold.output.secrets import SecretRedactor
from gatehold.scan.baseline import Baseline
from gatehold.scan.model import (
    SEVERITIES,
    CheckInfo,
    Finding,
    ScanInput,
    ScanReport,
    Severity,
    Suppressed,
    severity_rank,
)

_MAX_ERROR_TEXT = 200
_MAX_ERRORS_PER_MODULE = 10


class CheckModule(Protocol):
    """What the runner drives: a module (or any object) declaring its checks and a ``run``."""

    CHECKS: tuple[CheckInfo, ...]

    def run(self, scan: ScanInput) -> Iterable[Finding]: ...


def run(
    scan: ScanInput,
    modules: Sequence[CheckModule],
    *,
    targets: Sequence[str],
    errors: Sequence[str] = (),
    baseline: Baseline | None = None,
) -> ScanReport:
    """Run every module over ``scan``; ``errors`` are the targets' own errors, kept first."""
    problems: list[str] = list(errors)
    checks: list[CheckInfo] = []
    findings: list[Finding] = []
    for module in modules:
        declared, label = _declared(module, checks, problems)
        if not declared:
            continue
        for info in declared:
            if info.severity in SEVERITIES and all(info.id != seen.id for seen in checks):
                checks.append(info)
        findings.extend(_collect(module, scan, label, frozenset(info.id for info in declared), problems))
    active = _sorted(_deduplicated(findings))
    suppressed: list[Suppressed] = []
    if baseline is not None:
        active, suppressed = baseline.split(active)
    return ScanReport(
        findings=tuple(active),
        suppressed=tuple(sorted(suppressed, key=lambda s: _order(s.finding))),
        checks=tuple(checks),
        targets=tuple(targets),
        errors=tuple(problems),
    )


def exit_code(report: ScanReport, fail_on: Severity | None) -> int:
    """2 when the scan did not complete, 1 when an active finding reaches ``fail_on``, else 0."""
    if report.errors:
        return 2
    if fail_on is None:
        return 0
    if fail_on not in SEVERITIES:
        raise ValueError(f"unknown severity {fail_on!r}; expected one of {', '.join(SEVERITIES)}")
    threshold = severity_rank(fail_on)
    return 1 if any(severity_rank(f.severity) >= threshold for f in report.findings) else 0


def _declared(module: CheckModule, known: list[CheckInfo], problems: list[str]) -> tuple[tuple[CheckInfo, ...], str]:
    """The module's CheckInfo entries and the label its errors go under; faults in them are errors.

    An entry with an unknown severity stays declared (its findings are not also called undeclared)
    but is left out of the report's checks, which the report formats rely on.
    """
    fallback = f"module {getattr(module, '__name__', type(module).__name__)}"
    try:
        entries = tuple(module.CHECKS)
    except Exception as exc:  # noqa: BLE001 - a broken module is reported as a scan error, never skipped
        problems.append(f"check {fallback}: {_describe(exc)}")
        return (), fallback
    valid = tuple(e for e in entries if isinstance(e, CheckInfo))
    label = valid[0].id if valid else fallback
    if not valid or len(valid) != len(entries):
        problems.append(f"check {label}: CHECKS must be a non-empty sequence of CheckInfo")
        if not valid:
            return (), label
    for info in valid:
        if info.severity not in SEVERITIES:
            problems.append(f"check {label}: check {info.id!r} declares unknown severity {info.severity!r}")
        if any(info.id == seen.id and info != seen for seen in known):
            problems.append(f"check {label}: check id {info.id!r} is declared by another module too")
    return valid, label


def _collect(
    module: CheckModule, scan: ScanInput, label: str, declared: frozenset[str], problems: list[str]
) -> list[Finding]:
    """The module's findings; whatever it yielded before raising is kept, and the raise is an error.

    At most ``_MAX_ERRORS_PER_MODULE`` faults are listed one by one; the rest are counted.
    """
    out: list[Finding] = []
    faults: list[str] = []
    try:
        for item in module.run(scan):
            if not isinstance(item, Finding):
                faults.append(f"check {label}: yielded a {type(item).__name__}, not a Finding")
            elif item.check not in declared:
                faults.append(f"check {label}: reported a finding under undeclared check id {_short(item.check)!r}"
                                f" at {_short(item.location.qualified_name)}")
            elif item.severity not in SEVERITIES:
                faults.append(f"check {label}: reported unknown severity {_short(str(item.severity))!r}")
            else:
                out.append(encodable(item))
    except Exception as exc:  # noqa: BLE001 - fail closed: the error is reported and makes the exit code 2
        faults.append(f"check {label}: {_describe(exc)}")
    if len(faults) > _MAX_ERRORS_PER_MODULE:
        hidden = len(faults) - _MAX_ERRORS_PER_MODULE + 1
        faults = [*faults[: _MAX_ERRORS_PER_MODULE - 2], f"check {label}: {hidden} more errors like these",
                  faults[-1]]
    problems.extend(faults)
    return out


def encodable(finding: Finding) -> Finding:
    """``finding`` with lone surrogates (text decoded from hostile JSON) escaped so it can be hashed and printed."""
    loc = finding.location
    texts = (finding.check, finding.message, finding.evidence, loc.server, loc.name, loc.field, loc.file)
    try:
        "".join(t for t in texts if t is not None).encode("utf-8")
    except UnicodeEncodeError:
        loc = finding.location
        location = replace(loc, server=_opt_utf8(loc.server), name=_opt_utf8(loc.name), field=_opt_utf8(loc.field),
                           file=_opt_utf8(loc.file))
        return replace(finding, check=_utf8(finding.check), message=_utf8(finding.message),
                       evidence=_utf8(finding.evidence), location=location)
    return finding


def _utf8(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _opt_utf8(text: str | None) -> str | None:
    return None if text is None else _utf8(text)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_short(str(exc)) or '(no message)'}"


def _short(text: str) -> str:
    """One line, bounded, with anything that looks like a secret redacted."""
    line = " ".join(text.split())
    if len(line) > _MAX_ERROR_TEXT:
        line = line[: _MAX_ERROR_TEXT - 3] + "..."
    return SecretRedactor().text(line).text


def _order(finding: Finding) -> tuple[int, str, str, str, str, int, str, str]:
    loc = finding.location
    return (-severity_rank(finding.severity), loc.qualified_name, finding.check, loc.field or "",
            loc.file or "", loc.line or 0, finding.message, finding.evidence)


def _sorted(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=_order)


def _deduplicated(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per fingerprint: the most severe (then first in sort order) stands for the rest."""
    seen: set[str] = set()
    out: list[Finding] = []
    for finding in _sorted(findings):
        fingerprint = finding.fingerprint
        if fingerprint not in seen:
            seen.add(fingerprint)
            out.append(finding)
    return out
