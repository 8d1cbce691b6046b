from pathlib import Path

import pytest

from gatehold.scan.files import replace_atomically


def test_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "gatehold.lock"
    target.write_bytes(b"old")
    replace_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["gatehold.lock"]


def test_a_failed_replace_removes_the_temporary_and_raises(tmp_path: Path) -> None:
    target = tmp_path / "accepted.yaml"
    target.mkdir()  # a directory cannot be replaced by a file
    with pytest.raises(OSError):
        replace_atomically(target, b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["accepted.yaml"]
