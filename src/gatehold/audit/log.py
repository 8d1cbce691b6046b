"""The audit log: a cheap ``record()`` for callers and one writer thread doing group commit.

``record()`` copies the event and appends it to an in-memory queue; it does no I/O. The writer
thread takes whatever has queued up (at most ``max_batch`` records, waiting at most ``linger``
seconds for more), chains it, and writes it as one batch to every sink. One fsync or one
transaction therefore covers many records when the gateway is busy.

The log fails closed. Once a sink write fails the log is unhealthy for good: ``record()`` raises
``AuditUnavailable`` and the gateway refuses calls, because a call that cannot be audited must
not happen. Restart the gateway after fixing the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from gatehold.audit.chain import link
from gatehold.audit.record import AuditEvent
from gatehold.audit.sinks import AuditSink
from gatehold.errors import AuditUnavailable

logger = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]


class AuditLog:
    """Chains events and writes them to every sink, in order, from a background thread.

    The log owns its sinks: ``close()`` closes them, and so does a refusal to start.
    Starting reads each sink's ``last()`` and continues the chain from there; sinks that
    disagree, or one whose head and records disagree, make the constructor raise
    ``AuditUnavailable``.
    """

    def __init__(
        self,
        sinks: Sequence[AuditSink],
        *,
        max_queue: int = 100_000,
        max_batch: int = 512,
        linger: float = 0.005,
        full_wait: float = 1.0,
    ):
        if not sinks:
            raise AuditUnavailable("no audit sink is configured")
        self._sinks = list(sinks)
        try:
            self._seq, self._prev = self._resume_point()
        except BaseException:
            self._close_sinks()
            raise
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._linger = linger
        self._full_wait = full_wait
        self._cond = threading.Condition()
        self._pending: deque[dict[str, Any]] = deque()
        self._enqueued = 0  # events accepted by record(), ever
        self._done = 0  # events written, or given up on after a failure
        self._flushing = 0  # callers waiting in flush(): the writer stops lingering for them
        self._stopping = False
        self._closed = False
        self._failure: BaseException | None = None
        self._listeners: list[Listener] = []
        self._thread = threading.Thread(target=self._run, name="gatehold-audit-writer", daemon=True)
        self._thread.start()

    def _resume_point(self) -> tuple[int, str]:
        points = []
        for sink in self._sinks:
            try:
                points.append(sink.last())
            except AuditUnavailable:
                raise
            except Exception as exc:
                raise AuditUnavailable(f"cannot read the end of audit sink {sink!r}: {exc}") from exc
        first = points[0]
        for sink, point in zip(self._sinks[1:], points[1:], strict=True):
            if point != first:
                raise AuditUnavailable(
                    f"audit sinks disagree on where the chain ends: {self._sinks[0]!r} is at "
                    f"seq {first[0]} ({first[1][:12]}...), {sink!r} at seq {point[0]} "
                    f"({point[1][:12]}...); verify both stores and restore the behind one from the other"
                )
        return first

    @property
    def healthy(self) -> bool:
        """False once any sink write has failed; it never becomes true again."""
        return self._failure is None

    @property
    def failure(self) -> BaseException | None:
        """The exception that made the log unhealthy, if any."""
        return self._failure

    def subscribe(self, callback: Listener) -> None:
        """Call ``callback`` from the writer thread with each record once it is written.

        Listeners are for display only: one that raises is logged and ignored, and a slow one
        slows the writer.
        """
        with self._cond:
            self._listeners.append(callback)

    def record(self, event: AuditEvent) -> None:
        """Queue ``event`` for writing. Raises ``AuditUnavailable`` if it cannot be recorded."""
        fields = event.to_dict()  # a deep, JSON-only copy, made on the caller's thread
        with self._cond:
            # FAIL CLOSED: an unhealthy or closed log refuses the event, and the gateway denies
            # the call it describes rather than letting an unaudited call through.
            self._check_usable()
            if len(self._pending) >= self._max_queue:
                deadline = time.monotonic() + self._full_wait
                while len(self._pending) >= self._max_queue:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise AuditUnavailable("the audit queue is full; the writer cannot keep up")
                    self._cond.wait(remaining)
                    self._check_usable()
            self._pending.append(fields)
            self._enqueued += 1
            self._cond.notify_all()

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise AuditUnavailable(f"the audit log failed earlier: {self._failure!r}")
        if self._stopping:
            raise AuditUnavailable("the audit log is closed")

    def flush(self, timeout: float = 5.0) -> None:
        """Block until every event recorded before this call is written to every sink.

        Raises ``AuditUnavailable`` if the log is unhealthy (some events may be lost) and
        ``TimeoutError`` if the writer does not catch up within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._enqueued
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._done < target:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(f"audit log flush timed out after {timeout} s")
                    self._cond.wait(remaining)
            finally:
                self._flushing -= 1
            if self._failure is not None:
                raise AuditUnavailable(f"the audit log failed: {self._failure!r}")

    def close(self, timeout: float = 5.0) -> None:
        """Flush, stop the writer thread and close the sinks. Safe to call twice."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        try:
            self.flush(timeout)
        finally:
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("audit writer thread did not stop within %s s", timeout)
            self._close_sinks()

    def _close_sinks(self) -> None:
        for sink in self._sinks:
            try:
                sink.close()
            except Exception:
                logger.exception("closing audit sink %r failed", sink)

    def _take_batch(self) -> list[dict[str, Any]] | None:
        """Wait for events and take the next batch; ``None`` once stopping with nothing left."""
        with self._cond:
            while not self._pending and not self._stopping:
                self._cond.wait()
            if not self._pending:
                return None
            deadline = time.monotonic() + self._linger
            while len(self._pending) < self._max_batch and not self._stopping and not self._flushing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            count = min(self._max_batch, len(self._pending))
            batch = [self._pending.popleft() for _ in range(count)]
            self._cond.notify_all()  # room in the queue for blocked callers
            return batch

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            try:
                records = self._write(batch)
            except Exception as exc:
                logger.exception("audit sink write failed; the audit log is now unhealthy and refuses events")
                with self._cond:
                    self._failure = exc
                    # Events still queued cannot be written in order after a lost batch: give up
                    # on them so flush() returns (and raises) instead of waiting forever.
                    self._done += len(batch) + len(self._pending)
                    self._pending.clear()
                    self._cond.notify_all()
                return
            with self._cond:
                listeners = list(self._listeners)
            for record in records:
                for listener in listeners:
                    try:
                        listener(record)
                    except Exception:
                        logger.exception("audit listener %r failed; ignored", listener)
            with self._cond:  # after the listeners, so a flushed record has also been shown
                self._done += len(batch)
                self._cond.notify_all()

    def _write(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        records = []
        seq, prev = self._seq, self._prev
        for fields in batch:
            seq += 1
            record = link(fields, seq=seq, prev=prev)
            prev = record["hash"]
            records.append(record)
        for sink in self._sinks:
            sink.write_batch(records)
        self._seq, self._prev = seq, prev
        return records
