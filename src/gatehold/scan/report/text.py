"""The terminal report: findings grouped by severity, the fixes per check, a summary, and the errors.

Everything a scanned server controls (names, messages, evidence) is hostile text. It is shown
through :func:`clean`, which turns control and format characters (terminal escapes, bidi
overrides, zero-width and tag characters, line breaks) into visible ``\\xNN``/``\\uNNNN`` escapes,
and rich markup in it is escaped, so a finding cannot restyle, hide or forge lines of the report.
"""

from __future__ import annotations

import io
import unicodedata

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.text import Text

from gatehold.scan.model import SEVERITIES, CheckInfo, Finding, ScanReport, Severity
from gatehold.scan.runner import encodable

_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_MAX_EVIDENCE = 300
_STYLE: dict[Severity, str] = {"critical": "bold white on red", "high": "bold red", "medium": "yellow",
                               "low": "cyan", "info": "dim"}


def clean(text: str, limit: int | None = None) -> str:
    """``text`` with every invisible or control character written as a visible escape."""
    out: list[str] = []
    for char in text:
        if unicodedata.category(char) in _HIDDEN_CATEGORIES:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    shown = "".join(out)
    if limit is not None and len(shown) > limit:
        shown = shown[: limit - 3] + "..."
    return shown


def _safe(text: str, limit: int | None = None) -> str:
    return escape(clean(text, limit))


def _line(console: Console, markup: str, indent: int = 0) -> None:
    """Print one markup line; when it wraps, the continuation keeps the indent."""
    console.print(Padding(Text.from_markup(markup, emoji=False), (0, 0, 0, indent), expand=False))


def render_text(report: ScanReport, *, width: int = 100, color: bool = False) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, color_system="standard" if color else None,
                      emoji=False, highlight=False, soft_wrap=False)
    checks = {info.id: info for info in report.checks}
    targets = ", ".join(_safe(t) for t in report.targets) or "(none)"
    console.print(f"[bold]gatehold scan[/bold] of {targets}")
    _errors(console, report)
    if not report.findings:
        console.print("\nNo active findings.")
    for severity in reversed(SEVERITIES):
        group = [f for f in report.findings if f.severity == severity]
        if group:
            console.print(f"\n[{_STYLE[severity]}]{severity.upper()}[/] ({len(group)})")
            for finding in group:
                _finding(console, finding, checks.get(finding.check))
    _remediation(console, report, checks)
    if report.suppressed:
        console.print(f"\n{len(report.suppressed)} finding(s) suppressed by the baseline:")
        for item in report.suppressed:
            loc = item.finding.location
            _line(console, f"{_safe(item.finding.check)}  {_safe(loc.qualified_name)}: {_safe(item.reason, 200)}", 2)
    console.print()
    console.print(_summary(report))
    if report.errors:
        console.print(f"[bold red]SCAN INCOMPLETE:[/] {len(report.errors)} error(s); the findings above are partial.")
    return "\n".join(line.rstrip() for line in buffer.getvalue().split("\n"))


def _errors(console: Console, report: ScanReport) -> None:
    if not report.errors:
        return
    console.print(f"\n[bold red]SCAN INCOMPLETE: {len(report.errors)} error(s)[/]; "
                  "what could not be scanned is not covered by this report:")
    for error in report.errors:
        _line(console, f"[bold red]![/] {_safe(error, 500)}", 2)


def _finding(console: Console, finding: Finding, info: CheckInfo | None) -> None:
    finding = encodable(finding)
    loc = finding.location
    title = f" ({_safe(info.title)})" if info is not None else ""
    _line(console, f"[{_STYLE[finding.severity]}]{finding.severity}[/]  [bold]{_safe(finding.check)}[/]{title}"
                   f"  {_safe(loc.qualified_name)}", 2)
    if loc.field:
        _line(console, f"field: {_safe(loc.field)}", 6)
    if loc.file:
        _line(console, f"file: {_safe(loc.file)}" + (f":{loc.line}" if loc.line else ""), 6)
    _line(console, _safe(finding.message, 1000), 6)
    if finding.evidence:
        _line(console, f"evidence: {_safe(finding.evidence, _MAX_EVIDENCE)}", 6)
    _line(console, f"fingerprint: {finding.fingerprint}", 6)


def _remediation(console: Console, report: ScanReport, checks: dict[str, CheckInfo]) -> None:
    ids = list(dict.fromkeys(f.check for f in report.findings))
    if not ids:
        return
    console.print("\n[bold]How to fix[/bold]")
    for check_id in ids:
        info = checks.get(check_id)
        remedy = info.remediation if info is not None else "(this check is not described in the report)"
        _line(console, f"{_safe(check_id)}: {_safe(remedy)}", 2)


def _summary(report: ScanReport) -> str:
    counts = ", ".join(f"{sum(1 for f in report.findings if f.severity == s)} {s}" for s in reversed(SEVERITIES))
    errors = f"[bold red]{len(report.errors)} error(s)[/]" if report.errors else "0 errors"
    return f"Summary: {counts}; {len(report.suppressed)} suppressed; {errors}"
