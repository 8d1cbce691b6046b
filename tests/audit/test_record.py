import dataclasses
import re

import pytest

from gatehold.audit.record import MAX_DEPTH, REDACTED, TRUNCATED, AuditEvent, redact_arguments


def _event(**over: object) -> AuditEvent:
    fields: dict[str, object] = dict(
        kind="decision", correlation_id="c-1", principal="alice", credential_id="key-1",
        method="tools/call", server="files", tool="read", arguments={"path": "/x"},
        decision="allow", reason="granted", rule_id="role:reader", outcome=None,
        latency_ms=1.5, code=None,
    )
    fields.update(over)
    return AuditEvent(**fields)  # type: ignore[arg-type]


def test_event_defaults_and_time_format() -> None:
    event = _event()
    assert event.detail is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event.time)


def test_event_is_frozen_and_keyword_only() -> None:
    event = _event()
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.reason = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        AuditEvent("decision", "c-1")  # type: ignore[call-arg]


@pytest.mark.parametrize("over", [{"kind": "other"}, {"decision": "maybe"}])
def test_event_rejects_unknown_kind_or_decision(over: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _event(**over)


def test_to_dict_is_a_json_only_deep_copy() -> None:
    arguments = {"items": [1, 2], "pair": (1, "a"), "raw": b"xy", 3: "int key"}
    event = _event(arguments=arguments, detail={"why": "test"})
    data = event.to_dict()
    arguments["items"].append(3)  # type: ignore[attr-defined]
    assert data["arguments"] == {"items": [1, 2], "pair": [1, "a"], "raw": "b'xy'", "3": "int key"}
    assert data["detail"] == {"why": "test"}
    assert set(data) == {f.name for f in dataclasses.fields(AuditEvent)}


def test_to_dict_rejects_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        _event(arguments={"n": 2**70}).to_dict()


def test_redacts_secret_looking_keys_case_insensitively() -> None:
    value = {
        "Password": "hunter2",
        "db_passwd": 1,
        "client_secret": ["a", "b"],
        "X-Auth-Token": "t",
        "API_KEY": "k",
        "apikey": "k",
        "Authorization": "Bearer abc",
        "credentials": {"user": "u"},
        "private_key": "-----BEGIN",
        "Cookie": "sid=1",
        "user": "bob",
        "nested": [{"refresh_token": "r", "keep": "me"}],
    }
    out = redact_arguments(value, [])
    for key in ("Password", "db_passwd", "client_secret", "X-Auth-Token", "API_KEY", "apikey",
                "Authorization", "credentials", "private_key", "Cookie"):
        assert out[key] == REDACTED, key
    assert out["user"] == "bob"
    assert out["nested"] == [{"refresh_token": REDACTED, "keep": "me"}]


def test_redacts_known_secret_values_inside_strings() -> None:
    secret = "s3cr3t-value"
    value = {
        "query": f"select * where key = '{secret}'",
        "list": ["plain", secret, ("tuple", f"x{secret}y")],
        f"key-{secret}": "in a key",
        "number": 42,
        "flag": True,
        "none": None,
    }
    out = redact_arguments(value, [secret])
    assert out == {
        "query": f"select * where key = '{REDACTED}'",
        "list": ["plain", REDACTED, ["tuple", f"x{REDACTED}y"]],
        f"key-{REDACTED}": "in a key",
        "number": 42,
        "flag": True,
        "none": None,
    }


def test_short_and_empty_secret_values_are_ignored_and_longest_wins() -> None:
    out = redact_arguments(["abc", "the abcd and abcdef"], ["", "abc", "abcd", "abcdef"])
    assert out == ["abc", f"the {REDACTED} and {REDACTED}"]


def test_redaction_returns_a_copy_and_leaves_the_input_alone() -> None:
    value = {"password": "p", "inner": {"list": [1, {"a": "secret-x"}]}}
    out = redact_arguments(value, ["secret-x"])
    assert value == {"password": "p", "inner": {"list": [1, {"a": "secret-x"}]}}
    assert out["inner"] is not value["inner"]
    assert out["inner"]["list"][1] == {"a": REDACTED}


def test_other_types_become_redacted_strings() -> None:
    out = redact_arguments({"b": b"token-abcd", "s": {1}}, ["token-abcd"])
    assert out == {"b": f"b'{REDACTED}'", "s": "{1}"}


def _depth(value: object) -> int:
    depth = 0
    while isinstance(value, list) and value:
        value = value[0]
        depth += 1
    return depth


def test_depth_is_capped() -> None:
    deep: list[object] = []
    node = deep
    for _ in range(200):
        child: list[object] = []
        node.append(child)
        node = child
    out = redact_arguments(deep, [])
    assert _depth(out) == MAX_DEPTH
    inner = out
    for _ in range(MAX_DEPTH):
        inner = inner[0]
    assert inner == TRUNCATED


def test_shallow_nesting_is_kept_and_cycles_end() -> None:
    shallow = {"a": [[[["deep"]]]]}
    assert redact_arguments(shallow, []) == shallow
    cyclic: dict[str, object] = {"name": "loop"}
    cyclic["self"] = cyclic
    out = redact_arguments(cyclic, [])
    assert out["name"] == "loop"
    assert "[TRUNCATED]" in repr(out)
