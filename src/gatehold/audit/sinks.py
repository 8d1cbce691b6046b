"""Where audit records are stored: an embedded SQLite database and an append-only JSON Lines file.

Both keep a *head*, the ``seq`` and ``hash`` of the last record, updated with every batch. The
chain catches a record edited, removed or moved in the middle; the head catches records removed
from the end. A sink refuses to resume on a store whose head and last record disagree, because
appending to it would rewrite the head and hide the damage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from typing import Any, BinaryIO, Protocol, runtime_checkable

import orjson

from gatehold.audit.chain import GENESIS, canonical, check_link, is_hash
from gatehold.errors import AuditUnavailable

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER, hash TEXT);
"""
UPSERT_HEAD = (
    "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash"
)
_CHUNK = 64 * 1024


@runtime_checkable
class AuditSink(Protocol):
    """A store for chained audit records. Only the audit log's writer thread writes to it."""

    def write_batch(self, records: list[dict[str, Any]]) -> None:
        """Durably append ``records`` (already chained, in order) and move the head to the last."""

    def last(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last stored record, ``(0, GENESIS)`` when empty.

        Raises ``AuditUnavailable`` if the head and the last record disagree.
        """

    def close(self) -> None: ...


def _resume_point(
    where: str, head: tuple[int, str] | None, last: bytes | None, *, head_may_lag: bool = False
) -> tuple[int, str]:
    """Check a store's head against its last record and return where the chain continues."""
    if last is None:
        if head is not None:
            raise AuditUnavailable(
                f"{where}: the head says {head[0]} records but the store is empty (truncated?); "
                "verify the store before restarting"
            )
        return 0, GENESIS
    try:
        record = orjson.loads(last)
    except orjson.JSONDecodeError:
        record = None
    seq = record.get("seq") if isinstance(record, dict) else None
    if not isinstance(seq, int) or check_link(record, seq=seq, prev=str(record.get("prev"))):
        raise AuditUnavailable(f"{where}: the last record is damaged; verify the store before restarting")
    end = (seq, str(record["hash"]))
    if head is None:
        raise AuditUnavailable(f"{where}: the head is missing; verify the store before restarting")
    if head == end:
        return end
    if head_may_lag and head[0] < seq:
        # Records are made durable before the head moves, so a crash between the two leaves the
        # head behind. Nothing was removed; verification flags the gap until the next batch.
        logger.warning("%s: head at seq %d lags the last record (seq %d); resuming", where, head[0], seq)
        return end
    raise AuditUnavailable(
        f"{where}: the head says seq {head[0]} but the last record is seq {seq} "
        "(records removed or replaced?); verify the store before restarting"
    )


class SqliteSink:
    """Records in ``audit(seq, record)`` as canonical JSON; the head in ``audit_head`` (one row).

    Runs in WAL mode with ``synchronous=NORMAL``: a committed batch survives the process
    crashing; an operating-system crash or power loss may lose the last few batches, never
    corrupting the store. Each batch and its head move commit in one transaction.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"cannot open the SQLite audit store {self.path}: {exc}") from exc
        try:
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
        except sqlite3.Error as exc:
            self._conn.close()
            raise AuditUnavailable(f"cannot set up the SQLite audit store {self.path}: {exc}") from exc
        if str(mode).lower() != "wal":
            logger.warning("SQLite audit store %s is in %s journal mode, not WAL", self.path, mode)

    def write_batch(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        rows = [(record["seq"], canonical(record).decode()) for record in records]
        head = (records[-1]["seq"], records[-1]["hash"])
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT INTO audit (seq, record) VALUES (?, ?)", rows)
                self._conn.execute(UPSERT_HEAD, head)
                self._conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise

    def last(self) -> tuple[int, str]:
        where = f"SQLite audit store {self.path}"
        with self._lock:
            head_row = self._conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            row = self._conn.execute("SELECT seq, record FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        head = None
        if head_row is not None:
            if not isinstance(head_row[0], int) or not is_hash(head_row[1]):
                raise AuditUnavailable(f"{where}: the head is corrupt; verify the store before restarting")
            head = (head_row[0], head_row[1])
        if row is None:
            return _resume_point(where, head, None)
        key, text = row
        raw = text.encode() if isinstance(text, str) else b""
        point = _resume_point(where, head, raw)
        if point[0] != key:
            raise AuditUnavailable(
                f"{where}: row {key} holds record {point[0]}; verify the store before restarting"
            )
        return point

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def read_head(path: str) -> tuple[int, str] | None:
    """The ``(seq, hash)`` in a JSONL head file; ``None`` if there is none.

    Raises ``ValueError`` if it exists but is not a valid head.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    try:
        head = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError("the head file is not valid JSON") from exc
    seq = head.get("seq") if isinstance(head, dict) else None
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1 or not is_hash(head.get("hash")):
        raise ValueError("the head file does not hold a seq and a hash")
    return seq, str(head["hash"])


def tail_lines(path: str, n: int) -> tuple[list[bytes], bytes]:
    """The last ``n`` complete lines of a file, in order and without newlines, and the partial
    line after them (``b""`` if the file ends with a newline). Reads backwards from the end."""
    with open(path, "rb") as f:
        pos = f.seek(0, os.SEEK_END)
        chunks: list[bytes] = []
        newlines = 0
        while pos > 0 and newlines <= n:
            step = min(_CHUNK, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step)
            chunks.append(chunk)
            newlines += chunk.count(b"\n")
    data = b"".join(reversed(chunks))
    cut = data.rfind(b"\n") + 1
    data, partial = data[:cut], data[cut:]
    lines = data.split(b"\n")[:-1]
    if pos > 0:
        lines = lines[1:]  # the first piece may start mid-line
    return (lines[-n:] if n > 0 else []), partial


def _write_atomically(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class JsonlSink:
    """One canonical JSON record per line, appended and fsynced per batch.

    The head lives in ``<path>.head`` as ``{"hash": ..., "seq": ...}`` and is replaced
    atomically after each batch is durable. A crash between the two leaves the head behind the
    records, which ``last()`` accepts; a head ahead of the records, a missing or corrupt head, or
    a half-written last line make it refuse to resume.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self.head_path = self.path + ".head"
        self._lock = threading.Lock()
        try:
            self._file: BinaryIO = open(self.path, "ab")  # noqa: SIM115 - open for the sink's lifetime
        except OSError as exc:
            raise AuditUnavailable(f"cannot open the JSONL audit log {self.path}: {exc}") from exc

    def write_batch(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        data = b"".join(canonical(record) + b"\n" for record in records)
        head = canonical({"seq": records[-1]["seq"], "hash": records[-1]["hash"]})
        with self._lock:
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
            _write_atomically(self.head_path, head)

    def last(self) -> tuple[int, str]:
        where = f"JSONL audit log {self.path}"
        with self._lock:
            try:
                head = read_head(self.head_path)
            except ValueError as exc:
                raise AuditUnavailable(f"{where}: {exc}; verify the store before restarting") from exc
            lines, partial = tail_lines(self.path, 1)
        if partial:
            raise AuditUnavailable(
                f"{where}: the last line is half-written; verify and repair the store before restarting"
            )
        return _resume_point(where, head, lines[-1] if lines else None, head_may_lag=True)

    def close(self) -> None:
        with self._lock:
            self._file.close()
