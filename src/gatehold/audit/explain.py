"""``gatehold explain``: why a call was decided as it was, and which earlier calls led there.

Reads the audit store (read-only). For a correlation id it shows the decision record: decision,
rule, reason and each stage's verdict; where a data-flow rule or argument provenance took part,
the calls that tainted the session (their tool, label and own decision), followed back through
their own records, so the whole chain is on the screen.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

_MAX_CHAIN = 16


def records_for(path: str | os.PathLike[str], correlation_id: str) -> list[dict[str, Any]]:
    """Every record of ``correlation_id`` in a SQLite store or a ``.jsonl`` mirror, oldest first."""
    where = os.fspath(path)
    return [r for r in _records(where, correlation_id) if r.get("correlation_id") == correlation_id]


def _records(where: str, correlation_id: str) -> Iterator[dict[str, Any]]:
    if where.endswith(".jsonl"):
        needle = correlation_id.encode()
        with open(where, "rb") as handle:
            for line in handle:
                if needle in line:
                    try:
                        record = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue  # a line still being written
                    if isinstance(record, dict):
                        yield record
        return
    uri = Path(where).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        rows = conn.execute("SELECT record FROM audit WHERE instr(record, ?) > 0 ORDER BY seq",
                            (f'"{correlation_id}"',)).fetchall()
    finally:
        conn.close()
    for (text,) in rows:
        record = orjson.loads(text)
        if isinstance(record, dict):
            yield record


def _decision(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    for record in reversed(records):
        if record.get("kind") == "decision":
            return dict(record)
    return records[-1] if records else None


def explain(path: str | os.PathLike[str], correlation_id: str) -> list[str]:
    """Lines that explain the call; empty when the store holds no record of it."""
    lines: list[str] = []
    seen: set[str] = set()
    queue = [(correlation_id, 0)]
    while queue and len(seen) < _MAX_CHAIN:
        cid, depth = queue.pop(0)
        if cid in seen:
            continue
        seen.add(cid)
        record = _decision(records_for(path, cid))
        indent = "  " * depth
        if record is None:
            if depth == 0:
                return []
            lines.append(f"{indent}call {cid}: no record in this store")
            continue
        lines += _describe(record, indent, depth)
        found = (record.get("detail") or {}).get("found") or {}
        flow = found.get("flow") if isinstance(found, dict) else None
        if isinstance(flow, dict):
            for taint in flow.get("tainted_by") or []:
                if isinstance(taint, dict) and isinstance(taint.get("correlation_id"), str):
                    queue.append((taint["correlation_id"], depth + 1))
    return lines


def _describe(record: dict[str, Any], indent: str, depth: int) -> list[str]:
    head = "call" if depth == 0 else "tainted by call"
    lines = [f"{indent}{head} {record.get('correlation_id')} at {record.get('time', '?')}: "
             f"{record.get('principal') or '-'} {record.get('method') or '-'} {record.get('tool') or ''}".rstrip(),
             f"{indent}  decision {record.get('decision')} ({record.get('outcome') or '-'})"
             f"{' rule ' + str(record.get('rule_id')) if record.get('rule_id') else ''}"
             f"{' code ' + str(record.get('code')) if record.get('code') else ''}",
             f"{indent}  reason: {record.get('reason')}"]
    detail = record.get("detail") or {}
    for stage in detail.get("stages") or []:
        if isinstance(stage, list) and len(stage) == 3:
            lines.append(f"{indent}  stage {stage[0]}: {stage[1]}{' ' + stage[2] if stage[2] else ''}")
    found = detail.get("found") or {}
    flow = found.get("flow") if isinstance(found, dict) else None
    if isinstance(flow, dict):
        lines.append(f"{indent}  flow: labels {', '.join(flow.get('labels') or []) or '-'}; effect {flow.get('effect')}"
                     f"{' by ' + str(flow.get('rule')) if flow.get('rule') else ''}: {flow.get('reason')}")
        for value in flow.get("values") or []:
            if isinstance(value, dict):
                lines.append(f"{indent}  value {value.get('value')!r} came from {value.get('tool')} "
                             f"(call {value.get('correlation_id')})")
    for key, value in sorted(found.items()) if isinstance(found, dict) else ():
        if key != "flow":
            lines.append(f"{indent}  {key}: {orjson.dumps(value).decode()[:300]}")
    return lines
