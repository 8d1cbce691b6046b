"""Canonical serialisation and the hash chain that makes the audit log tamper-evident.

A stored record is the event's fields plus three more:

- ``seq``: its position, 1-based, with no gaps;
- ``prev``: the ``hash`` of the record before it (``GENESIS``, 64 zeros, for the first);
- ``hash``: hex SHA-256 of the canonical JSON of the record without ``hash``.

Canonical JSON is orjson with sorted keys. Editing, removing, inserting or reordering a record
breaks a link; removing records from the end is caught by the head each store keeps beside it.
The chain proves integrity, not authorship: whoever can rewrite the whole store and its head
can forge a consistent one, so ship the store (or its head hashes) somewhere else for that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Literal

import orjson

GENESIS = "0" * 64
CHAIN_FIELDS = ("seq", "prev", "hash")

LinkProblem = Literal["malformed", "hash", "seq", "prev"]


def canonical(value: Any) -> bytes:
    """The canonical JSON bytes of ``value``: UTF-8, no whitespace, keys sorted."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def record_hash(record: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of ``record`` without its ``hash`` field."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def link(fields: Mapping[str, Any], *, seq: int, prev: str) -> dict[str, Any]:
    """The stored record for an event's fields (plain JSON values) at position ``seq`` after ``prev``."""
    clash = [name for name in CHAIN_FIELDS if name in fields]
    if clash:
        raise ValueError(f"event fields may not use the chain's names: {', '.join(clash)}")
    record = dict(fields)
    record["seq"] = seq
    record["prev"] = prev
    record["hash"] = record_hash(record)
    return record


def is_hash(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 64
        and all(c in "0123456789abcdef" for c in value)
    )


def check_link(record: Any, *, seq: int, prev: str) -> LinkProblem | None:
    """Check one parsed record against the position it should hold. ``None`` means intact.

    The checks run in this order, and the first failure is returned:

    - ``"malformed"``: not an object, or ``seq``/``prev``/``hash`` missing or of the wrong type;
    - ``"hash"``: the record's contents do not match its own hash (it was edited);
    - ``"seq"``: it is intact but not the record expected here (removed or reordered records);
    - ``"prev"``: it does not link to the record before it.
    """
    if not isinstance(record, dict):
        return "malformed"
    got_seq = record.get("seq")
    if not isinstance(got_seq, int) or isinstance(got_seq, bool) or got_seq < 1:
        return "malformed"
    if not is_hash(record.get("prev")) or not is_hash(record.get("hash")):
        return "malformed"
    if record_hash(record) != record["hash"]:
        return "hash"
    if got_seq != seq:
        return "seq"
    if record["prev"] != prev:
        return "prev"
    return None
