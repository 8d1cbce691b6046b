from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from types import SimpleNamespace

import pytest

from gatehold.scan import runner
from gatehold.scan.baseline import Accepted, Baseline
from gatehold.scan.model import CheckInfo, Finding, Location, ScanInput, ScanReport, ServerSnapshot

POISON = CheckInfo("tool-poisoning", "Instructions in a description", "critical", "why", "fix it")
BROAD = CheckInfo("over-broad", "A tool does too much", "medium", "why", "split it")
NOTE = CheckInfo("note-check", "Something to know", "info", "why", "nothing")

SCAN = ScanInput(servers=(ServerSnapshot(name="files", source="tools-json", listed=True,
                                         tools=({"name": "read_file", "description": "reads"},)),))


def finding(check: str, severity: str, server: str | None, name: str, evidence: str = "") -> Finding:
    return Finding(check=check, severity=severity, message=f"{check} on {name}",  # type: ignore[arg-type]
                   location=Location(kind="tool", server=server, name=name, field="description"), evidence=evidence)


def module(checks: tuple[CheckInfo, ...], *findings: Finding) -> SimpleNamespace:
    return SimpleNamespace(CHECKS=checks, run=lambda scan: list(findings))


def test_runs_every_module_and_sorts_most_severe_first_then_name_then_check() -> None:
    first = module((BROAD, NOTE),
                   finding("over-broad", "medium", "zeta", "run"),
                   finding("note-check", "info", "alpha", "a"),
                   finding("over-broad", "medium", "alpha", "b"))
    second = module((POISON,), finding("tool-poisoning", "critical", "zeta", "z"),
                    finding("tool-poisoning", "medium", "alpha", "b"))
    report = runner.run(SCAN, [first, second], targets=["tools.json"])
    order = [(f.severity, f.location.qualified_name, f.check) for f in report.findings]
    assert order == [
        ("critical", "zeta.z", "tool-poisoning"),
        ("medium", "alpha.b", "over-broad"),
        ("medium", "alpha.b", "tool-poisoning"),
        ("medium", "zeta.run", "over-broad"),
        ("info", "alpha.a", "note-check"),
    ]
    assert [c.id for c in report.checks] == ["over-broad", "note-check", "tool-poisoning"]
    assert report.targets == ("tools.json",)
    assert report.errors == ()
    assert runner.exit_code(report, "high") == 1
    assert runner.exit_code(report, "critical") == 1
    assert runner.exit_code(report, None) == 0


def test_module_receives_the_scan_input() -> None:
    seen: list[ScanInput] = []

    def run(scan: ScanInput) -> list[Finding]:
        seen.append(scan)
        return []

    runner.run(SCAN, [SimpleNamespace(CHECKS=(NOTE,), run=run)], targets=[])
    assert seen == [SCAN]


def test_a_module_that_raises_is_an_error_and_exit_code_two() -> None:
    def explode(scan: ScanInput) -> Iterator[Finding]:
        yield finding("tool-poisoning", "high", "files", "before")
        raise KeyError("inputSchema")

    good = module((BROAD,), finding("over-broad", "low", "files", "x"))
    report = runner.run(SCAN, [SimpleNamespace(CHECKS=(POISON, NOTE), run=explode), good], targets=["t"])
    assert report.errors == ("check tool-poisoning: KeyError: 'inputSchema'",)
    # what the broken module yielded before failing, and the other modules' findings, are kept
    assert {f.location.name for f in report.findings} == {"before", "x"}
    assert runner.exit_code(report, "critical") == 2
    assert runner.exit_code(report, None) == 2


def test_raising_before_iterating_and_long_multiline_messages_are_shortened() -> None:
    def run(scan: ScanInput) -> list[Finding]:
        raise RuntimeError("line one\nline two " + "x" * 500)

    report = runner.run(SCAN, [SimpleNamespace(CHECKS=(BROAD,), run=run)], targets=[])
    (error,) = report.errors
    assert error.startswith("check over-broad: RuntimeError: line one line two xxx")
    assert "\n" not in error
    assert len(error) < 260


def test_exception_message_secrets_are_redacted() -> None:
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"

    def run(scan: ScanInput) -> list[Finding]:
        raise ValueError(f"could not parse header {token}")

    report = runner.run(SCAN, [SimpleNamespace(CHECKS=(BROAD,), run=run)], targets=[])
    (error,) = report.errors
    assert token not in error
    assert error.startswith("check over-broad: ValueError: could not parse header [REDACTED")


def test_undeclared_check_id_is_an_error_and_the_finding_is_not_reported() -> None:
    rogue = module((BROAD,), finding("over-broad", "low", "files", "ok"), finding("made-up", "critical", "s", "t"))
    report = runner.run(SCAN, [rogue], targets=[])
    assert report.errors == ("check over-broad: reported a finding under undeclared check id 'made-up' at s.t",)
    assert [f.check for f in report.findings] == ["over-broad"]
    assert runner.exit_code(report, "info") == 2


def test_non_findings_unknown_severity_and_missing_checks_are_errors() -> None:
    bad_severity = finding("over-broad", "severe", "s", "t")
    weird = SimpleNamespace(CHECKS=(BROAD,), run=lambda scan: ["not a finding", bad_severity])
    no_checks = SimpleNamespace(CHECKS=(), run=lambda scan: [])
    broken = SimpleNamespace(run=lambda scan: [])
    report = runner.run(SCAN, [weird, no_checks, broken], targets=[])
    assert report.errors[0] == "check over-broad: yielded a str, not a Finding"
    assert report.errors[1] == "check over-broad: reported unknown severity 'severe'"
    assert report.errors[2] == "check module SimpleNamespace: CHECKS must be a non-empty sequence of CheckInfo"
    assert report.errors[3].startswith("check module SimpleNamespace: AttributeError:")
    assert report.findings == ()


def test_conflicting_check_ids_across_modules_are_an_error() -> None:
    other = CheckInfo("over-broad", "Another meaning", "high", "r", "m")
    report = runner.run(SCAN, [module((BROAD,)), module((other,))], targets=[])
    assert report.errors == ("check over-broad: check id 'over-broad' is declared by another module too",)
    assert report.checks == (BROAD,)


def test_target_errors_come_first_and_fail_the_scan() -> None:
    report = runner.run(SCAN, [module((BROAD,), finding("over-broad", "low", "files", "x"))], targets=["a", "b"],
                        errors=["target b: connection refused"])
    assert report.errors == ("target b: connection refused",)
    assert runner.exit_code(report, None) == 2


def test_identical_findings_are_reported_once_keeping_the_most_severe() -> None:
    same_low = finding("over-broad", "low", "files", "x", evidence="e")
    same_high = finding("over-broad", "high", "files", "x", evidence="e")
    other = finding("over-broad", "low", "files", "x", evidence="different")
    report = runner.run(SCAN, [module((BROAD,), same_low, same_high, other, same_low), module((NOTE,))], targets=[])
    assert [(f.severity, f.evidence) for f in report.findings] == [("high", "e"), ("low", "different")]


def test_baseline_moves_accepted_findings_to_suppressed() -> None:
    accepted = finding("over-broad", "high", "files", "x")
    kept = finding("over-broad", "medium", "files", "y")
    expired = finding("over-broad", "critical", "files", "z")
    baseline = Baseline(path="b.yaml", today=date(2027, 1, 1), entries=(
        Accepted(fingerprint=accepted.fingerprint, reason="reviewed", check="over-broad"),
        Accepted(fingerprint=expired.fingerprint, reason="old", expires=date(2026, 12, 31)),
    ))
    report = runner.run(SCAN, [module((BROAD,), accepted, kept, expired)], targets=[], baseline=baseline)
    assert [f.location.name for f in report.findings] == ["z", "y"]
    assert [(s.finding, s.reason) for s in report.suppressed] == [(accepted, "reviewed")]
    assert runner.exit_code(report, "critical") == 1


def test_exit_code_thresholds() -> None:
    def report_with(*severities: str) -> ScanReport:
        return ScanReport(findings=tuple(finding("over-broad", s, None, f"t{i}") for i, s in enumerate(severities)),
                          suppressed=(), checks=(BROAD,), targets=())

    assert runner.exit_code(report_with(), "info") == 0
    assert runner.exit_code(report_with("medium"), "high") == 0
    assert runner.exit_code(report_with("medium"), "medium") == 1
    assert runner.exit_code(report_with("info"), "info") == 1
    assert runner.exit_code(report_with("critical"), None) == 0
    with pytest.raises(ValueError, match="unknown severity 'severe'"):
        runner.exit_code(report_with(), "severe")  # type: ignore[arg-type]


def test_lone_surrogates_in_a_finding_do_not_break_the_scan() -> None:
    hostile = finding("over-broad", "low", "files", "bad\ud800name", evidence="x\udfffy")
    report = runner.run(SCAN, [module((BROAD,), hostile)], targets=[])
    assert report.errors == ()
    (out,) = report.findings
    assert out.location.name == "bad\\ud800name"
    assert out.evidence == "x\\udfffy"
    assert len(out.fingerprint) == 32


def test_a_real_module_object_satisfies_the_protocol() -> None:
    import types

    mod = types.ModuleType("gatehold_test_check_module")
    mod.CHECKS = (NOTE,)  # type: ignore[attr-defined]
    mod.run = lambda scan: [finding("note-check", "info", s.name, "all") for s in scan.servers]  # type: ignore[attr-defined]
    report = runner.run(SCAN, [mod], targets=[])  # type: ignore[list-item]
    assert [f.location.qualified_name for f in report.findings] == ["files.all"]


def test_a_check_declaring_an_unknown_severity_is_an_error_and_left_out_of_the_checks() -> None:
    odd = CheckInfo("odd-check", "t", "severe", "r", "m")  # type: ignore[arg-type]
    report = runner.run(SCAN, [module((BROAD, odd), finding("over-broad", "low", "s", "t"))], targets=[])
    assert report.errors == ("check over-broad: check 'odd-check' declares unknown severity 'severe'",)
    assert report.checks == (BROAD,)
    assert len(report.findings) == 1


def test_many_faults_of_one_module_are_counted_not_listed_and_the_last_is_kept() -> None:
    def run(scan: ScanInput) -> Iterator[object]:
        yield from range(50)
        raise OSError("gave up")

    report = runner.run(SCAN, [SimpleNamespace(CHECKS=(BROAD,), run=run)], targets=[])
    assert len(report.errors) == 10
    assert report.errors[:8] == ("check over-broad: yielded a int, not a Finding",) * 8
    assert report.errors[8] == "check over-broad: 42 more errors like these"
    assert report.errors[9] == "check over-broad: OSError: gave up"
