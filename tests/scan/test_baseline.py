from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from gatehold.scan import baseline
from gatehold.scan.baseline import Accepted, Baseline, BaselineError
from gatehold.scan.model import Finding, Location

READ = Finding(check="unbounded-schema", severity="medium", message="path is unbounded",
               location=Location(kind="tool", server="files", name="read_file", field="inputSchema.properties.path"))
SEND = Finding(check="tool-poisoning", severity="critical", message="hidden instruction",
               location=Location(kind="tool", server="mail", name="send", field="description"), evidence="ignore all")
BARE = Finding(check="tool-poisoning", severity="high", message="x", location=Location(kind="tool", name="fetch"))


def write_text(tmp_path: Path, text: str, name: str = "baseline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_and_split(tmp_path: Path) -> None:
    path = write_text(tmp_path, f"""\
version: 1
accepted:
  - fingerprint: "{READ.fingerprint}"
    check: unbounded-schema
    location: files.read_file
    reason: "paths are confined by the gateway's path_within constraint"
    expires: 2027-06-30
  - fingerprint: {SEND.fingerprint}
    reason: reviewed by security
""")
    loaded = baseline.load(path, today=date(2027, 6, 29))
    assert loaded.path == str(path)
    assert loaded.entries[0] == Accepted(fingerprint=READ.fingerprint, check="unbounded-schema",
                                         location="files.read_file", expires=date(2027, 6, 30),
                                         reason="paths are confined by the gateway's path_within constraint")
    active, suppressed = loaded.split([READ, SEND, BARE])
    assert active == [BARE]
    assert [(s.finding, s.reason) for s in suppressed] == [
        (READ, "paths are confined by the gateway's path_within constraint"), (SEND, "reviewed by security")]
    assert loaded.stale([READ]) == [SEND.fingerprint]
    assert loaded.stale([READ, SEND]) == []
    assert loaded.expired == ()


def test_an_expired_entry_no_longer_suppresses(tmp_path: Path) -> None:
    path = write_text(tmp_path, f"""\
version: 1
accepted:
  - {{fingerprint: "{READ.fingerprint}", reason: temporary, expires: "2027-06-30"}}
""")
    on_the_day = baseline.load(path, today=date(2027, 6, 30))
    assert on_the_day.split([READ]) == ([READ], [])
    assert [e.fingerprint for e in on_the_day.expired] == [READ.fingerprint]
    before = baseline.load(path, today=date(2027, 6, 29))
    assert before.split([READ])[0] == []


def test_an_entry_naming_another_check_does_not_suppress() -> None:
    entry = Accepted(fingerprint=READ.fingerprint, reason="r", check="tool-poisoning")
    assert Baseline(path="b", entries=(entry,)).split([READ]) == ([READ], [])


def test_empty_accepted_list_is_a_valid_baseline(tmp_path: Path) -> None:
    loaded = baseline.load(write_text(tmp_path, "version: 1\naccepted: []\n"))
    assert loaded.entries == ()
    assert loaded.split([READ]) == ([READ], [])


@pytest.mark.parametrize(("text", "expected"), [
    ("", "got an empty file"),
    ("- a\n- b\n", "expected a mapping with 'version' and 'accepted', got a list"),
    ("version: 2\naccepted: []\n", "unsupported version 2; expected version: 1"),
    ("version: '1'\naccepted: []\n", "unsupported version '1'"),
    ("accepted: []\n", "unsupported version None"),
    ("version: 1\n", "missing 'accepted'"),
    ("version: 1\naccepted: {a: 1}\n", "'accepted' must be a list, got a mapping"),
    ("version: 1\naccepted: []\nignored: true\n", "unknown key(s) ignored"),
    ("version: 1\naccepted:\n  - just a string\n",
     "accepted[0]: expected a mapping with fingerprint and reason, got a string"),
    ("version: 1\naccepted:\n  - {fingerprint: FP, reason: ok, note: x}\n", "accepted[0]: unknown key(s) note"),
    ("version: 1\naccepted:\n  - {fingerprint: FP, reason: ''}\n", "accepted[0]: 'reason' is required"),
    ("version: 1\naccepted:\n  - {fingerprint: FP, reason: '   '}\n", "accepted[0]: 'reason' is required"),
    ("version: 1\naccepted:\n  - {fingerprint: FP}\n", "accepted[0]: 'reason' is required"),
    ("version: 1\naccepted:\n  - {fingerprint: FP, reason: ok}\n  - {reason: ok}\n",
     "accepted[1]: 'fingerprint' must be a finding's fingerprint"),
    ("version: 1\naccepted:\n  - {fingerprint: not-hex, reason: ok}\n", "got 'not-hex'"),
    ("version: 1\naccepted:\n  - {fingerprint: FP, reason: ok, expires: someday}\n",
     "accepted[0]: 'expires' must be a date written YYYY-MM-DD, got 'someday'"),
    ("version: 1\naccepted:\n  - {fingerprint: FP, reason: ok, check: 7}\n",
     "accepted[0]: 'check' must be non-empty text when given, got 7"),
    ("version: 1\naccepted:\n  - {fingerprint: FP, reason: ok}\n  - {fingerprint: FP, reason: again}\n",
     "accepted[1]: fingerprint FP is already accepted by accepted[0]"),
    ("version: 1\naccepted: [\n", "invalid YAML at line 3"),
    ("version: 1\naccepted: !!python/object:os.system []\n", "invalid YAML"),
])
def test_malformed_baselines_are_clear_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = write_text(tmp_path, text.replace("FP", READ.fingerprint))
    with pytest.raises(BaselineError) as caught:
        baseline.load(path)
    message = str(caught.value)
    assert message.startswith(f"baseline {path}: ")
    assert expected.replace("FP", READ.fingerprint) in message


def test_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match=r"baseline .*missing\.yaml: cannot read: FileNotFoundError"):
        baseline.load(tmp_path / "missing.yaml")
    (tmp_path / "binary.yaml").write_bytes(b"version: 1\n\xff\xfe\n")
    with pytest.raises(BaselineError, match="cannot read: UnicodeDecodeError"):
        baseline.load(tmp_path / "binary.yaml")
    with pytest.raises(BaselineError, match="cannot read: IsADirectoryError"):
        baseline.load(tmp_path)


def test_write_then_load_suppresses_everything_written(tmp_path: Path) -> None:
    path = tmp_path / "accepted.yaml"
    baseline.write(path, [SEND, READ, BARE, READ], reason="  accepted for the 1.0 release ")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# gatehold scan baseline")
    document = yaml.safe_load(text)
    assert document["version"] == 1
    assert [e["check"] for e in document["accepted"]] == ["tool-poisoning", "tool-poisoning", "unbounded-schema"]
    assert [e["location"] for e in document["accepted"]] == ["fetch", "mail.send", "files.read_file"]
    assert {e["reason"] for e in document["accepted"]} == {"accepted for the 1.0 release"}
    loaded = baseline.load(path)
    active, suppressed = loaded.split([READ, SEND, BARE])
    assert active == []
    assert len(suppressed) == 3
    assert not list(tmp_path.glob(".accepted.yaml.*"))  # no temporary file left behind


def test_write_keeps_earlier_reasons_and_dates(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    earlier = Baseline(path=str(path), entries=(
        Accepted(fingerprint=READ.fingerprint, reason="confined by policy", expires=date(2030, 1, 1)),))
    baseline.write(path, [READ, SEND], reason="new", keep=earlier)
    loaded = baseline.load(path, today=date(2029, 1, 1))
    assert {e.fingerprint: (e.reason, e.expires) for e in loaded.entries} == {
        READ.fingerprint: ("confined by policy", date(2030, 1, 1)), SEND.fingerprint: ("new", None)}


def test_write_escapes_hostile_names(tmp_path: Path) -> None:
    hostile = Finding(check="tool-poisoning", severity="high", message="m",
                      location=Location(kind="tool", server="s", name="evil\u202egnp.exe\nversion: 9"))
    path = tmp_path / "b.yaml"
    baseline.write(path, [hostile], reason="r")
    text = path.read_text(encoding="utf-8")
    assert "\u202e" not in text
    assert "\\u202E" in text
    assert baseline.load(path).split([hostile])[0] == []


def test_write_requires_a_reason(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="a non-empty reason is required"):
        baseline.write(tmp_path / "b.yaml", [READ], reason=" ")
    assert not (tmp_path / "b.yaml").exists()
