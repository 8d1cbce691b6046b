import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from gatehold.audit.chain import GENESIS, canonical, link
from gatehold.audit.record import AuditEvent
from gatehold.audit.sinks import AuditSink, JsonlSink, SqliteSink, tail_lines
from gatehold.errors import AuditUnavailable


def _records(n: int, *, seq: int = 1, prev: str = GENESIS, arguments: Any = None) -> list[dict[str, Any]]:
    out = []
    for i in range(seq, seq + n):
        event = AuditEvent(
            kind="request", correlation_id=f"c-{i}", principal="alice", credential_id=None,
            method="tools/list", server=None, tool=None, arguments=arguments, decision="info",
            reason="listed", rule_id=None, outcome="ok", latency_ms=None, code=None,
        )
        record = link(event.to_dict(), seq=i, prev=prev)
        prev = record["hash"]
        out.append(record)
    return out


SinkFactory = Callable[[Path], AuditSink]
FORMATS: dict[str, tuple[str, SinkFactory]] = {
    "sqlite": ("audit.db", SqliteSink),
    "jsonl": ("audit.jsonl", JsonlSink),
}


@pytest.fixture(params=sorted(FORMATS))
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _open(fmt: str, tmp_path: Path) -> tuple[Path, AuditSink]:
    name, factory = FORMATS[fmt]
    path = tmp_path / name
    return path, factory(path)


def test_sinks_implement_the_protocol(tmp_path: Path, fmt: str) -> None:
    _, sink = _open(fmt, tmp_path)
    assert isinstance(sink, AuditSink)
    sink.close()


def test_empty_store_starts_the_chain(tmp_path: Path, fmt: str) -> None:
    _, sink = _open(fmt, tmp_path)
    assert sink.last() == (0, GENESIS)
    sink.close()


def test_last_follows_batches_and_survives_reopening(tmp_path: Path, fmt: str) -> None:
    _, sink = _open(fmt, tmp_path)
    first = _records(3)
    sink.write_batch(first)
    assert sink.last() == (3, first[-1]["hash"])
    second = _records(2, seq=4, prev=first[-1]["hash"])
    sink.write_batch(second)
    sink.write_batch([])
    sink.close()
    _, again = _open(fmt, tmp_path)
    assert again.last() == (5, second[-1]["hash"])
    again.close()


def test_sqlite_layout(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    sink = SqliteSink(path)
    records = _records(4)
    sink.write_batch(records)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = conn.execute("SELECT seq, record FROM audit ORDER BY seq").fetchall()
    assert rows == [(r["seq"], canonical(r).decode()) for r in records]
    assert conn.execute("SELECT id, seq, hash FROM audit_head").fetchall() == [(1, 4, records[-1]["hash"])]
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO audit_head (id, seq, hash) VALUES (2, 1, 'x')")
    conn.close()
    sink.close()


def test_sqlite_batch_is_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    sink = SqliteSink(path)
    records = _records(3)
    sink.write_batch(records[:1])
    with pytest.raises(sqlite3.IntegrityError):
        sink.write_batch([records[1], records[0]])  # the duplicate fails the whole batch
    assert sink.last() == (1, records[0]["hash"])
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM audit").fetchone()[0] == 1
    conn.close()
    sink.close()


def test_jsonl_layout(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path)
    records = _records(3)
    sink.write_batch(records[:2])
    sink.write_batch(records[2:])
    assert path.read_bytes() == b"".join(canonical(r) + b"\n" for r in records)
    head = orjson.loads((tmp_path / "audit.jsonl.head").read_bytes())
    assert head == {"seq": 3, "hash": records[-1]["hash"]}
    assert not (tmp_path / "audit.jsonl.head.tmp").exists()
    sink.close()


def test_refuses_to_resume_after_trailing_records_are_removed(tmp_path: Path, fmt: str) -> None:
    path, sink = _open(fmt, tmp_path)
    sink.write_batch(_records(5))
    sink.close()
    if fmt == "sqlite":
        conn = sqlite3.connect(path)
        conn.execute("DELETE FROM audit WHERE seq > 3")
        conn.commit()
        conn.close()
    else:
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join(lines[:3]))
    _, again = _open(fmt, tmp_path)
    with pytest.raises(AuditUnavailable, match="head says seq 5"):
        again.last()
    again.close()


def test_refuses_to_resume_when_everything_is_removed(tmp_path: Path, fmt: str) -> None:
    path, sink = _open(fmt, tmp_path)
    sink.write_batch(_records(2))
    sink.close()
    if fmt == "sqlite":
        conn = sqlite3.connect(path)
        conn.execute("DELETE FROM audit")
        conn.commit()
        conn.close()
    else:
        path.write_bytes(b"")
    _, again = _open(fmt, tmp_path)
    with pytest.raises(AuditUnavailable, match="empty"):
        again.last()
    again.close()


def test_refuses_to_resume_without_a_head(tmp_path: Path, fmt: str) -> None:
    path, sink = _open(fmt, tmp_path)
    sink.write_batch(_records(2))
    sink.close()
    if fmt == "sqlite":
        conn = sqlite3.connect(path)
        conn.execute("DELETE FROM audit_head")
        conn.commit()
        conn.close()
    else:
        (tmp_path / "audit.jsonl.head").unlink()
    _, again = _open(fmt, tmp_path)
    with pytest.raises(AuditUnavailable, match="head is missing"):
        again.last()
    again.close()


def test_refuses_to_resume_on_an_edited_last_record(tmp_path: Path, fmt: str) -> None:
    path, sink = _open(fmt, tmp_path)
    sink.write_batch(_records(2))
    sink.close()
    if fmt == "sqlite":
        conn = sqlite3.connect(path)
        conn.execute("UPDATE audit SET record = replace(record, 'listed', 'LISTED') WHERE seq = 2")
        conn.commit()
        conn.close()
    else:
        path.write_bytes(path.read_bytes().replace(b"listed", b"LISTED"))
    _, again = _open(fmt, tmp_path)
    with pytest.raises(AuditUnavailable, match="damaged"):
        again.last()
    again.close()


def _last_of(path: Path) -> tuple[int, str]:
    sink = JsonlSink(path)
    try:
        return sink.last()
    finally:
        sink.close()


def test_jsonl_refuses_a_corrupt_head_or_a_half_written_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path)
    sink.write_batch(_records(2))
    sink.close()
    head = tmp_path / "audit.jsonl.head"
    good_head = head.read_bytes()
    head.write_bytes(b'{"seq": 2')
    with pytest.raises(AuditUnavailable, match="not valid JSON"):
        _last_of(path)
    head.write_bytes(b'{"seq": 2, "hash": "nope"}')
    with pytest.raises(AuditUnavailable, match="does not hold"):
        _last_of(path)
    head.write_bytes(good_head)
    assert _last_of(path)[0] == 2
    with path.open("ab") as f:
        f.write(b'{"seq":3,"pr')
    with pytest.raises(AuditUnavailable, match="half-written"):
        _last_of(path)


def test_jsonl_resumes_when_a_crash_left_the_head_behind(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    records = _records(3)
    sink = JsonlSink(path)
    sink.write_batch(records[:2])
    sink.close()
    with path.open("ab") as f:  # the records made it to disk; the head update did not
        f.write(canonical(records[2]) + b"\n")
    again = JsonlSink(path)
    assert again.last() == (3, records[2]["hash"])
    again.close()


def test_unwritable_store_is_audit_unavailable(tmp_path: Path, fmt: str) -> None:
    name, factory = FORMATS[fmt]
    with pytest.raises(AuditUnavailable):
        factory(tmp_path / "missing-dir" / name)


def test_tail_lines_reads_backwards_across_chunks(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    lines = [(f"{i}:" + "x" * (i * 9000)).encode() for i in range(20)]
    path.write_bytes(b"\n".join(lines) + b"\n" + b"partial")
    got, partial = tail_lines(os.fspath(path), 5)
    assert got == lines[-5:]
    assert partial == b"partial"
    got, partial = tail_lines(os.fspath(path), 100)
    assert got == lines
    assert tail_lines(os.fspath(path), 0) == ([], b"partial")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert tail_lines(os.fspath(empty), 3) == ([], b"")


def test_large_records_round_trip(tmp_path: Path, fmt: str) -> None:
    _, sink = _open(fmt, tmp_path)
    records = _records(2, arguments={"blob": "y" * 200_000})
    sink.write_batch(records)
    sink.close()
    _, again = _open(fmt, tmp_path)
    assert again.last() == (2, records[-1]["hash"])
    again.close()
