import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from gatehold.audit.chain import canonical, record_hash
from gatehold.audit.log import AuditLog
from gatehold.audit.record import AuditEvent
from gatehold.audit.sinks import AuditSink, JsonlSink, SqliteSink
from gatehold.audit.verify import VerifyResult, tail, verify_jsonl, verify_sqlite

N = 10


def _event(i: int) -> AuditEvent:
    return AuditEvent(
        kind="decision", correlation_id=f"c-{i}", principal="alice", credential_id="key-1",
        method="tools/call", server="files", tool="read", arguments={"i": i}, decision="allow",
        reason="granted", rule_id="role:reader", outcome="ok", latency_ms=0.5, code=None,
    )


class Store:
    """One audit store of a given format, with the edits an attacker (or a crash) could make."""

    def __init__(self, fmt: str, tmp_path: Path):
        self.fmt = fmt
        self.path = tmp_path / ("audit.db" if fmt == "sqlite" else "audit.jsonl")

    def sink(self) -> AuditSink:
        return SqliteSink(self.path) if self.fmt == "sqlite" else JsonlSink(self.path)

    def verify(self) -> VerifyResult:
        return verify_sqlite(self.path) if self.fmt == "sqlite" else verify_jsonl(self.path)

    def fill(self, n: int = N) -> None:
        log = AuditLog([self.sink()])
        for i in range(n):
            log.record(_event(i))
        log.close()

    # Records are addressed by seq (row key or 1-based line) ------------------------------

    def texts(self) -> list[bytes]:
        if self.fmt == "jsonl":
            return self.path.read_bytes().splitlines()
        conn = sqlite3.connect(self.path)
        rows = conn.execute("SELECT record FROM audit ORDER BY seq").fetchall()
        conn.close()
        return [row[0].encode() for row in rows]

    def set_text(self, seq: int, text: bytes) -> None:
        if self.fmt == "jsonl":
            lines = self.path.read_bytes().splitlines()
            lines[seq - 1] = text
            self.path.write_bytes(b"".join(line + b"\n" for line in lines))
        else:
            self._sql("UPDATE audit SET record = ? WHERE seq = ?", (text.decode(), seq))

    def edit(self, seq: int, change: Callable[[dict[str, Any]], None]) -> None:
        record = orjson.loads(self.texts()[seq - 1])
        change(record)
        self.set_text(seq, canonical(record))

    def delete(self, *seqs: int) -> None:
        if self.fmt == "jsonl":
            lines = self.path.read_bytes().splitlines(keepends=True)
            self.path.write_bytes(b"".join(line for i, line in enumerate(lines, 1) if i not in seqs))
        else:
            for seq in seqs:
                self._sql("DELETE FROM audit WHERE seq = ?", (seq,))

    def swap(self, a: int, b: int) -> None:
        texts = self.texts()
        self.set_text(a, texts[b - 1])
        self.set_text(b, texts[a - 1])

    def _sql(self, sql: str, args: tuple[Any, ...]) -> None:
        conn = sqlite3.connect(self.path)
        conn.execute(sql, args)
        conn.commit()
        conn.close()


@pytest.fixture(params=["sqlite", "jsonl"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    s = Store(str(request.param), tmp_path)
    s.fill()
    return s


def _bad(result: VerifyResult, first_bad: int, *words: str) -> None:
    assert not result.ok
    assert result.first_bad == first_bad, result.problem
    for word in words:
        assert word in result.problem, result.problem


def test_intact_log_verifies(store: Store) -> None:
    assert store.verify() == VerifyResult(True, N, None, "")


def test_empty_store_verifies(tmp_path: Path) -> None:
    for fmt in ("sqlite", "jsonl"):
        s = Store(fmt, tmp_path)
        s.sink().close()
        assert s.verify() == VerifyResult(True, 0, None, "")


def test_edited_record(store: Store) -> None:
    store.edit(4, lambda r: r.update(decision="deny"))
    result = store.verify()
    _bad(result, 4, "record 4", "edited")
    assert result.count == 3


def test_rewritten_record_with_a_fresh_hash_breaks_the_next_link(store: Store) -> None:
    def forge(record: dict[str, Any]) -> None:
        record["principal"] = "mallory"
        record["hash"] = record_hash(record)

    store.edit(4, forge)
    _bad(store.verify(), 5, "record 5", "prev")


def test_deleted_middle_record(store: Store) -> None:
    store.delete(6)
    _bad(store.verify(), 6, "record 6 is missing")


def test_swapped_records(store: Store) -> None:
    store.swap(3, 4)
    result = store.verify()
    _bad(result, 3, "record 3")
    assert "out of order" in result.problem or "swapped" in result.problem


def test_deleted_trailing_records(store: Store) -> None:
    store.delete(8, 9, 10)
    result = store.verify()
    _bad(result, 8, "truncated", "says 10")
    assert result.count == 7


def test_replaced_last_record_does_not_match_the_head(store: Store) -> None:
    def forge(record: dict[str, Any]) -> None:
        record["reason"] = "nothing to see"
        record["hash"] = record_hash(record)

    store.edit(N, forge)
    _bad(store.verify(), N, f"record {N}", "head")


def test_corrupt_record(store: Store) -> None:
    store.set_text(5, b'{"seq": 5, "kind": "deci')
    result = store.verify()
    word = "line 5" if store.fmt == "jsonl" else "record 5"
    _bad(result, 5, word, "not valid JSON")


def test_record_without_chain_fields(store: Store) -> None:
    store.set_text(2, b'{"kind": "decision"}')
    _bad(store.verify(), 2, "malformed")


def test_jsonl_half_written_last_line(tmp_path: Path) -> None:
    s = Store("jsonl", tmp_path)
    s.fill()
    with s.path.open("ab") as f:
        f.write(b'{"arguments":{"i":')
    _bad(s.verify(), N + 1, f"line {N + 1}", "half-written")


def test_jsonl_missing_or_corrupt_head(tmp_path: Path) -> None:
    s = Store("jsonl", tmp_path)
    s.fill()
    head = tmp_path / "audit.jsonl.head"
    good = head.read_bytes()
    head.unlink()
    result = s.verify()
    assert not result.ok
    assert result.first_bad is None
    assert "missing" in result.problem
    head.write_bytes(b"{")
    result = s.verify()
    assert not result.ok
    assert "corrupt head" in result.problem
    head.write_bytes(good)
    assert s.verify().ok


def test_jsonl_head_behind_the_records(tmp_path: Path) -> None:
    s = Store("jsonl", tmp_path)
    s.fill()
    head = tmp_path / "audit.jsonl.head"
    fourth = orjson.loads(s.texts()[3])
    head.write_bytes(canonical({"seq": 4, "hash": fourth["hash"]}))
    _bad(s.verify(), 5, "records 5..10", "not covered")


def test_sqlite_missing_head_row(tmp_path: Path) -> None:
    s = Store("sqlite", tmp_path)
    s.fill()
    s._sql("DELETE FROM audit_head", ())
    result = s.verify()
    assert not result.ok
    assert "head row is missing" in result.problem


def test_resumed_log_still_verifies(store: Store) -> None:
    store.fill(5)
    assert store.verify() == VerifyResult(True, N + 5, None, "")
    store.delete(12)
    _bad(store.verify(), 12, "record 12")


def test_unreadable_stores_do_not_verify(tmp_path: Path) -> None:
    missing_db = tmp_path / "missing.db"
    result = verify_sqlite(missing_db)
    assert not result.ok
    assert not missing_db.exists()  # verification never creates a store
    assert not verify_jsonl(tmp_path / "missing.jsonl").ok
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    assert "not a Gatehold audit store" in verify_sqlite(other).problem


def test_tail_returns_the_last_records_in_order(store: Store) -> None:
    assert [r["seq"] for r in tail(store.path, 3)] == [8, 9, 10]
    assert [r["seq"] for r in tail(str(store.path), 50)] == list(range(1, N + 1))
    assert tail(store.path, 0) == []
    assert tail(store.path, 1)[0]["correlation_id"] == f"c-{N - 1}"


def test_tail_skips_a_line_still_being_written(tmp_path: Path) -> None:
    s = Store("jsonl", tmp_path)
    s.fill()
    with s.path.open("ab") as f:
        f.write(b'{"seq":11,')
    assert [r["seq"] for r in tail(s.path, 2)] == [9, 10]


def test_tail_does_not_write_to_sqlite(tmp_path: Path) -> None:
    s = Store("sqlite", tmp_path)
    s.fill()
    before = s.path.read_bytes()
    tail(s.path, 5)
    assert s.path.read_bytes() == before
    with pytest.raises(sqlite3.OperationalError):
        tail(tmp_path / "missing.db", 1)
    assert not (tmp_path / "missing.db").exists()
