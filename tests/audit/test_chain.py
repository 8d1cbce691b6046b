import hashlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatehold.audit.chain import GENESIS, canonical, check_link, link, record_hash


def test_canonical_sorts_keys_without_whitespace() -> None:
    assert canonical({"b": 1, "a": {"d": [1, 2], "c": None}}) == b'{"a":{"c":null,"d":[1,2]},"b":1}'
    assert canonical({"x": 1, "y": 2}) == canonical({"y": 2, "x": 1})


def test_link_adds_seq_prev_and_the_hash_of_the_rest() -> None:
    record = link({"reason": "ok", "n": 1}, seq=1, prev=GENESIS)
    assert record["seq"] == 1
    assert record["prev"] == "0" * 64
    body = {"reason": "ok", "n": 1, "seq": 1, "prev": GENESIS}
    expected = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert record["hash"] == expected == record_hash(record)


def test_link_refuses_chain_field_names() -> None:
    with pytest.raises(ValueError):
        link({"seq": 5}, seq=1, prev=GENESIS)


def test_check_link_accepts_a_good_chain() -> None:
    first = link({"n": 1}, seq=1, prev=GENESIS)
    second = link({"n": 2}, seq=2, prev=first["hash"])
    assert check_link(first, seq=1, prev=GENESIS) is None
    assert check_link(second, seq=2, prev=first["hash"]) is None


def test_check_link_names_the_problem() -> None:
    first = link({"n": 1}, seq=1, prev=GENESIS)
    second = link({"n": 2}, seq=2, prev=first["hash"])
    assert check_link({**second, "n": 3}, seq=2, prev=first["hash"]) == "hash"
    assert check_link(second, seq=1, prev=GENESIS) == "seq"
    assert check_link(second, seq=2, prev=GENESIS) == "prev"


@pytest.mark.parametrize(
    "record",
    [
        None,
        [1, 2],
        {"seq": 1, "prev": GENESIS},
        {"seq": True, "prev": GENESIS, "hash": GENESIS},
        {"seq": 0, "prev": GENESIS, "hash": GENESIS},
        {"seq": 1, "prev": "zz", "hash": GENESIS},
        {"seq": 1, "prev": GENESIS, "hash": GENESIS.upper().replace("0", "A")},
    ],
)
def test_check_link_flags_malformed_records(record: Any) -> None:
    assert check_link(record, seq=1, prev=GENESIS) == "malformed"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=10).filter(lambda k: k not in {"seq", "prev", "hash"}), json_values))
def test_a_stored_record_verifies_after_a_round_trip(fields: dict[str, Any]) -> None:
    record = link(fields, seq=7, prev="a" * 64)
    stored = canonical(record)
    parsed = orjson.loads(stored)
    assert canonical(parsed) == stored
    assert check_link(parsed, seq=7, prev="a" * 64) is None
