"""One entry point for the three report formats of ``gatehold scan --format``."""

from __future__ import annotations

from typing import Literal

from gatehold.scan.model import ScanReport
from gatehold.scan.report.json_report import render_json
from gatehold.scan.report.sarif import render_sarif
from gatehold.scan.report.text import render_text

Format = Literal["text", "json", "sarif"]
FORMATS: tuple[Format, ...] = ("text", "json", "sarif")


def render(report: ScanReport, fmt: Format, *, color: bool = False, width: int = 100) -> str:
    """``report`` in ``fmt``; ``color`` and ``width`` apply to the text format only."""
    if fmt == "text":
        return render_text(report, width=width, color=color)
    if fmt == "json":
        return render_json(report)
    if fmt == "sarif":
        return render_sarif(report)
    raise ValueError(f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}")
