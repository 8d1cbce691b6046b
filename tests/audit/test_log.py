import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from gatehold.audit.chain import GENESIS, check_link
from gatehold.audit.log import AuditLog
from gatehold.audit.record import AuditEvent
from gatehold.audit.sinks import AuditSink, JsonlSink, SqliteSink
from gatehold.audit.verify import tail, verify_jsonl, verify_sqlite
from gatehold.errors import AuditUnavailable

WAIT = 10.0  # an upper bound for waits on the writer thread, never a timing assertion


def _event(i: int = 0, **over: Any) -> AuditEvent:
    fields: dict[str, Any] = dict(
        kind="decision", correlation_id=f"c-{i}", principal="alice", credential_id="key-1",
        method="tools/call", server="files", tool="read", arguments={"i": i}, decision="allow",
        reason="granted", rule_id="role:reader", outcome="ok", latency_ms=0.25, code=None,
    )
    fields.update(over)
    return AuditEvent(**fields)


class CountingSink:
    """Wraps a sink and remembers every batch; can hold the first write until released."""

    def __init__(self, inner: AuditSink, *, hold_first: bool = False, fail_after: int | None = None):
        self.inner = inner
        self.batches: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.fail_after = fail_after
        self.closed = False

    def write_batch(self, records: list[dict[str, Any]]) -> None:
        self.entered.set()
        assert self.release.wait(WAIT)
        if self.fail_after is not None and len(self.batches) >= self.fail_after:
            raise OSError(28, "No space left on device")
        self.inner.write_batch(records)
        self.batches.append(len(records))

    def last(self) -> tuple[int, str]:
        return self.inner.last()

    def close(self) -> None:
        self.closed = True
        self.inner.close()


def _sinks(tmp_path: Path) -> list[AuditSink]:
    return [SqliteSink(tmp_path / "audit.db"), JsonlSink(tmp_path / "audit.jsonl")]


def _assert_intact(tmp_path: Path, count: int) -> None:
    for result in (verify_sqlite(tmp_path / "audit.db"), verify_jsonl(tmp_path / "audit.jsonl")):
        assert result.ok, result.problem
        assert result.count == count


def test_records_reach_every_sink_in_order(tmp_path: Path) -> None:
    log = AuditLog(_sinks(tmp_path))
    for i in range(50):
        log.record(_event(i))
    log.flush()
    for path in (tmp_path / "audit.db", tmp_path / "audit.jsonl"):
        records = tail(path, 100)
        assert [r["seq"] for r in records] == list(range(1, 51))
        assert [r["correlation_id"] for r in records] == [f"c-{i}" for i in range(50)]
        assert records[0]["prev"] == GENESIS
    log.close()
    _assert_intact(tmp_path, 50)


def test_resume_after_reopen_continues_the_chain(tmp_path: Path) -> None:
    log = AuditLog(_sinks(tmp_path))
    for i in range(5):
        log.record(_event(i))
    log.close()
    last = tail(tmp_path / "audit.db", 1)[0]
    log = AuditLog(_sinks(tmp_path))
    for i in range(5, 8):
        log.record(_event(i))
    log.close()
    for path in (tmp_path / "audit.db", tmp_path / "audit.jsonl"):
        records = tail(path, 4)
        assert [r["seq"] for r in records] == [5, 6, 7, 8]
        assert records[1]["prev"] == last["hash"]
        assert check_link(records[1], seq=6, prev=last["hash"]) is None
    _assert_intact(tmp_path, 8)


def test_refuses_to_start_when_sinks_disagree(tmp_path: Path) -> None:
    log = AuditLog([SqliteSink(tmp_path / "audit.db")])
    log.record(_event())
    log.close()
    jsonl = CountingSink(JsonlSink(tmp_path / "audit.jsonl"))
    with pytest.raises(AuditUnavailable, match="disagree") as caught:
        AuditLog([SqliteSink(tmp_path / "audit.db"), jsonl])
    assert "seq 1" in caught.value.detail
    assert "seq 0" in caught.value.detail
    assert jsonl.closed


def test_refuses_to_start_on_a_damaged_store(tmp_path: Path) -> None:
    log = AuditLog([JsonlSink(tmp_path / "audit.jsonl")])
    log.record(_event())
    log.close()
    (tmp_path / "audit.jsonl.head").unlink()
    with pytest.raises(AuditUnavailable, match="head is missing"):
        AuditLog([JsonlSink(tmp_path / "audit.jsonl")])


def test_refuses_to_start_without_sinks() -> None:
    with pytest.raises(AuditUnavailable):
        AuditLog([])


def test_group_commit_batches_records(tmp_path: Path) -> None:
    sink = CountingSink(SqliteSink(tmp_path / "audit.db"), hold_first=True)
    log = AuditLog([sink])
    log.record(_event(0))
    assert sink.entered.wait(WAIT)  # the writer is now inside the first batch, holding it
    for i in range(1, 1000):
        log.record(_event(i))
    sink.release.set()
    log.flush()
    assert sum(sink.batches) == 1000
    assert sink.batches[0] == 1
    assert len(sink.batches) <= 3  # 999 queued records, at most 512 per batch
    assert max(sink.batches) <= 512
    log.close()
    assert verify_sqlite(tmp_path / "audit.db").count == 1000


def test_batch_size_is_bounded(tmp_path: Path) -> None:
    sink = CountingSink(JsonlSink(tmp_path / "audit.jsonl"), hold_first=True)
    log = AuditLog([sink], max_batch=100)
    log.record(_event(0))
    assert sink.entered.wait(WAIT)
    for i in range(1, 1000):
        log.record(_event(i))
    sink.release.set()
    log.close()
    assert sum(sink.batches) == 1000
    assert max(sink.batches) == 100
    assert len(sink.batches) == 11
    assert verify_jsonl(tmp_path / "audit.jsonl").ok


def test_failed_sink_write_fails_closed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sink = CountingSink(SqliteSink(tmp_path / "audit.db"), fail_after=1)
    log = AuditLog([sink])
    log.record(_event(0))
    log.flush()
    assert log.healthy
    with caplog.at_level(logging.ERROR, logger="gatehold.audit.log"):
        log.record(_event(1))
        with pytest.raises(AuditUnavailable):
            log.flush()
    assert not log.healthy
    assert isinstance(log.failure, OSError)
    assert any("unhealthy" in r.getMessage() for r in caplog.records)
    with pytest.raises(AuditUnavailable) as caught:
        log.record(_event(2))
    assert caught.value.code == "audit.unavailable"
    with pytest.raises(AuditUnavailable):
        log.close()
    assert sink.closed
    assert verify_sqlite(tmp_path / "audit.db").count == 1


def test_full_queue_refuses_after_waiting(tmp_path: Path) -> None:
    sink = CountingSink(SqliteSink(tmp_path / "audit.db"), hold_first=True)
    log = AuditLog([sink], max_queue=5, full_wait=0.05)
    log.record(_event(0))
    assert sink.entered.wait(WAIT)
    for i in range(1, 6):
        log.record(_event(i))
    with pytest.raises(AuditUnavailable, match="full"):
        log.record(_event(6))
    assert log.healthy  # a full queue refuses one event; it does not break the log
    sink.release.set()
    log.flush()
    log.record(_event(7))
    log.close()
    assert sum(sink.batches) == 7


def test_listeners_see_written_records_and_cannot_break_the_log(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def broken(record: dict[str, Any]) -> None:
        raise RuntimeError("display failed")

    log = AuditLog([SqliteSink(tmp_path / "audit.db")])
    log.subscribe(broken)
    log.subscribe(seen.append)
    for i in range(3):
        log.record(_event(i, decision="deny", code="policy.not_granted"))
    log.flush()
    assert [r["seq"] for r in seen] == [1, 2, 3]
    assert all(r["decision"] == "deny" and "hash" in r for r in seen)
    assert log.healthy
    log.close()


def test_record_copies_the_event(tmp_path: Path) -> None:
    arguments = {"path": "/a"}
    log = AuditLog([SqliteSink(tmp_path / "audit.db")])
    log.record(_event(arguments=arguments))
    arguments["path"] = "/changed"
    log.close()
    assert tail(tmp_path / "audit.db", 1)[0]["arguments"] == {"path": "/a"}


def test_unserialisable_event_is_refused_without_harm(tmp_path: Path) -> None:
    log = AuditLog([SqliteSink(tmp_path / "audit.db")])
    with pytest.raises(TypeError):
        log.record(_event(arguments={"n": 2**70}))
    log.record(_event())
    log.close()
    assert verify_sqlite(tmp_path / "audit.db").count == 1


def test_close_is_idempotent_and_refuses_later_records(tmp_path: Path) -> None:
    sink = CountingSink(SqliteSink(tmp_path / "audit.db"))
    log = AuditLog([sink])
    log.record(_event())
    log.close()
    log.close()
    assert sink.closed
    with pytest.raises(AuditUnavailable, match="closed"):
        log.record(_event())


def test_concurrent_callers_keep_one_chain(tmp_path: Path) -> None:
    log = AuditLog(_sinks(tmp_path))

    def work(worker: int) -> None:
        for i in range(200):
            log.record(_event(worker * 1000 + i))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    _assert_intact(tmp_path, 1600)
