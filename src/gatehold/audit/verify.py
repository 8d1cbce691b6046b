"""Offline checks of an audit store, and a read-only ``tail`` for people watching it.

``verify_sqlite`` and ``verify_jsonl`` walk the whole chain from the first record, then compare
the last record with the store's head, and report the first thing wrong. They never write.
A JSONL log that is being appended to may show a half-written last line; verify a quiet log.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gatehold.audit.chain import GENESIS, check_link, is_hash
from gatehold.audit.sinks import read_head, tail_lines


@dataclass(frozen=True)
class VerifyResult:
    """``count`` records verified in order before the first problem (all of them when ``ok``).

    ``first_bad`` is the seq of the first bad or missing record, or for a JSONL line that does
    not parse, its 1-based line number (``problem`` says which); ``None`` when no single record
    is to blame (a missing head, an unreadable store). ``problem`` is ``""`` when ``ok``.
    """

    ok: bool
    count: int
    first_bad: int | None
    problem: str


@dataclass
class _Entry:
    where: int  # the line number (JSONL) or the row's seq (SQLite)
    raw: bytes
    partial: bool = False


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _walk(entries: Iterator[_Entry], head: tuple[int, str] | None, *, jsonl: bool) -> VerifyResult:
    count, prev = 0, GENESIS
    at_head: str | None = None  # the hash of the record with the head's seq, once seen
    for entry in entries:
        n = count + 1  # the seq this entry should hold; most problems blame it
        if not jsonl and entry.where != n:
            return _bad(count, n, f"record {n} is missing (deleted); the next stored is {entry.where}")
        if entry.partial:
            return _bad(count, entry.where, f"line {entry.where}: half-written last line (no newline)")
        record = _parse(entry.raw)
        if record is None:
            if jsonl:
                return _bad(count, entry.where, f"line {entry.where}: not valid JSON (corrupt)")
            return _bad(count, n, f"record {n}: stored text is not valid JSON (corrupt)")
        problem = check_link(record, seq=n, prev=prev)
        if problem == "malformed":
            return _bad(count, n, f"record {n}: seq, prev or hash is missing or malformed")
        if problem == "hash":
            return _bad(count, n, f"record {n}: hash does not match its contents (edited)")
        if problem == "seq":
            return _bad(count, n, _misplaced(n, record["seq"], entries, jsonl=jsonl))
        if problem == "prev":
            return _bad(count, n, f"record {n}: does not link to record {count} (prev mismatch)")
        count, prev = n, record["hash"]
        if head is not None and n == head[0]:
            at_head = prev
    return _check_head(count, head, at_head, "head file" if jsonl else "head row")


def _bad(count: int, first_bad: int | None, problem: str) -> VerifyResult:
    return VerifyResult(False, count, first_bad, problem)


def _misplaced(expected: int, found: int, rest: Iterator[_Entry], *, jsonl: bool) -> str:
    if not jsonl:
        return f"record {expected}: its row holds record {found} (records swapped or moved)"
    if found < expected:
        return f"record {expected}: out of order (line {expected} holds record {found})"
    for entry in rest:  # the walk stops here anyway: read on to tell a gap from a move
        record = _parse(entry.raw)
        if isinstance(record, dict) and record.get("seq") == expected:
            return f"record {expected}: out of order (line {expected} holds record {found})"
    return f"record {expected} is missing (deleted); the next line holds record {found}"


def _check_head(count: int, head: tuple[int, str] | None, at_head: str | None, name: str) -> VerifyResult:
    if head is None:
        if count == 0:
            return VerifyResult(True, 0, None, "")
        return _bad(count, None, f"the {name} is missing, so truncation cannot be ruled out")
    seq, digest = head
    if seq > count:
        return _bad(count, count + 1, f"log truncated: the head says {seq} records but only {count} remain")
    if at_head != digest:
        return _bad(count, seq, f"record {seq}: does not match the head's hash (replaced)")
    if seq < count:
        return _bad(
            count, seq + 1, f"records {seq + 1}..{count} are not covered by the head (appended, or crashed)"
        )
    return VerifyResult(True, count, None, "")


def _jsonl_entries(path: str) -> Iterator[_Entry]:
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if line.endswith(b"\n"):
                yield _Entry(number, line[:-1])
            else:
                yield _Entry(number, line, partial=True)


def verify_jsonl(path: str | os.PathLike[str]) -> VerifyResult:
    """Verify a JSONL audit log and its ``<path>.head`` file."""
    where = os.fspath(path)
    try:
        head = read_head(where + ".head")
    except ValueError as exc:
        return VerifyResult(False, 0, None, f"{exc} (corrupt head)")
    except OSError as exc:
        return VerifyResult(False, 0, None, f"cannot read the head file: {exc.strerror}")
    try:
        return _walk(_jsonl_entries(where), head, jsonl=True)
    except OSError as exc:
        return VerifyResult(False, 0, None, f"cannot read the log: {exc.strerror}")


def _connect_ro(path: str | os.PathLike[str]) -> sqlite3.Connection:
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, isolation_level=None)


def _sqlite_entries(conn: sqlite3.Connection) -> Iterator[_Entry]:
    for seq, text in conn.execute("SELECT seq, record FROM audit ORDER BY seq"):
        raw = text.encode() if isinstance(text, str) else bytes(text) if isinstance(text, bytes) else b""
        yield _Entry(seq, raw)


def verify_sqlite(path: str | os.PathLike[str]) -> VerifyResult:
    """Verify a SQLite audit store: every link, then the ``audit_head`` row."""
    try:
        conn = _connect_ro(path)
    except sqlite3.Error as exc:
        return VerifyResult(False, 0, None, f"cannot open the store: {exc}")
    try:
        conn.execute("BEGIN")  # one snapshot, so a live writer cannot make the head look wrong
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"audit", "audit_head"} <= tables:
            return VerifyResult(False, 0, None, "not a Gatehold audit store (tables missing)")
        row = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        if row is not None and (not isinstance(row[0], int) or row[0] < 1 or not is_hash(row[1])):
            return VerifyResult(False, 0, None, "the head row is corrupt")
        head = None if row is None else (int(row[0]), str(row[1]))
        return _walk(_sqlite_entries(conn), head, jsonl=False)
    except sqlite3.Error as exc:
        return VerifyResult(False, 0, None, f"cannot read the store: {exc}")
    finally:
        conn.close()


def tail(path: str | os.PathLike[str], n: int) -> list[dict[str, Any]]:
    """The last ``n`` records, oldest first, read-only. ``.jsonl`` files are JSONL, others SQLite.

    A JSONL line still being written is skipped; a line that is not JSON raises ``ValueError``.
    """
    if n <= 0:
        return []
    where = os.fspath(path)
    if where.endswith(".jsonl"):
        lines, _partial = tail_lines(where, n)
        records = []
        for line in lines:
            record = _parse(line)
            if not isinstance(record, dict):
                raise ValueError("the audit log holds a line that is not a JSON record; verify it")
            records.append(record)
        return records
    conn = _connect_ro(where)
    try:
        rows = conn.execute("SELECT record FROM audit ORDER BY seq DESC LIMIT ?", (n,)).fetchall()
    finally:
        conn.close()
    out = []
    for (text,) in reversed(rows):
        record = orjson.loads(text)
        if not isinstance(record, dict):
            raise ValueError("the audit store holds a record that is not a JSON object; verify it")
        out.append(record)
    return out
