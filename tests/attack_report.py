"""Counts for attack suites: each case records whether it was refused; the run's summary prints the totals."""

from __future__ import annotations

from collections import defaultdict

RESULTS: dict[str, dict[str, bool]] = defaultdict(dict)


def record(suite: str, case: str, refused: bool) -> None:
    RESULTS[suite][case] = refused


def summary_lines() -> list[str]:
    lines = []
    for suite, cases in sorted(RESULTS.items()):
        refused = sum(cases.values())
        missed = sorted(case for case, ok in cases.items() if not ok)
        line = f"{suite}: {refused}/{len(cases)} refused"
        lines.append(line + (f" (NOT refused: {', '.join(missed)})" if missed else ""))
    return lines
