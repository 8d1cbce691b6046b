import contextlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatehold.errors import InvalidRequest, ParseError, ProtocolError
from gatehold.front.jsonrpc import Notification, Request, Response, depth_exceeds, parse_message

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_a_protocol_error(body: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_message(body)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_is_a_message_or_an_invalid_request(value: object) -> None:
    try:
        message = parse_message(orjson.dumps(value))
    except InvalidRequest:
        return
    assert isinstance(message, Request | Notification | Response)
    assert isinstance(value, dict)
    assert value.get("jsonrpc") == "2.0"


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=50)), st.text(min_size=1, max_size=40),
       st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_valid_requests_round_trip(rid: int | str, method: str, params: dict[str, object]) -> None:
    body = orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
    message = parse_message(body, max_depth=100)
    assert message == Request(rid, method, params)


@pytest.mark.parametrize("body", [b"", b"{", b"nul", b'{"a":}', b"\xff\xfe"])
def test_malformed_json_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_message(body)


@pytest.mark.parametrize("value", [
    [], [{"jsonrpc": "2.0", "id": 1, "method": "ping"}], "x", 1, None,
    {"id": 1, "method": "ping"},
    {"jsonrpc": "1.0", "id": 1, "method": "ping"},
    {"jsonrpc": "2.0", "id": True, "method": "ping"},
    {"jsonrpc": "2.0", "id": 1.5, "method": "ping"},
    {"jsonrpc": "2.0", "id": None, "method": "ping"},
    {"jsonrpc": "2.0", "id": 1, "method": 5},
    {"jsonrpc": "2.0", "id": 1, "method": ""},
    {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]},
    {"jsonrpc": "2.0", "id": 1, "method": "ping", "extra": 1},
    {"jsonrpc": "2.0", "id": 1, "result": {}, "error": {}},
    {"jsonrpc": "2.0", "result": {}},
])
def test_wrong_shapes_are_invalid_requests(value: object) -> None:
    with pytest.raises(InvalidRequest):
        parse_message(orjson.dumps(value))


def test_depth_limit() -> None:
    deep: object = 1
    for _ in range(70):
        deep = {"a": deep}
    with pytest.raises(InvalidRequest):
        parse_message(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "x", "params": deep}), max_depth=64)
    assert depth_exceeds([[[1]]], 2)
    assert not depth_exceeds([[[1]]], 3)


def test_orjson_recursion_limit_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_message(b"[" * 100_000 + b"]" * 100_000)
