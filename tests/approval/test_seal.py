"""Sealed requestState: forged, altered, replayed, expired or foreign states are refused."""

from __future__ import annotations

import base64

import pytest

from gatehold.approval.seal import StateSealer
from gatehold.errors import RequestStateInvalid
from tests.authserver import FakeClock

DIGEST = "d" * 64


def refused(sealer: StateSealer, state: object, *, principal: str = "agent", digest: str = DIGEST,
            why: str) -> None:
    with pytest.raises(RequestStateInvalid) as info:
        sealer.open(state, principal=principal, digest=digest)
    assert why in info.value.detail
    assert info.value.public == "Invalid or expired requestState"


def test_a_sealed_state_opens_once_for_its_principal_and_call() -> None:
    clock = FakeClock()
    sealer = StateSealer(clock=clock)
    state = sealer.seal("ap-1", principal="agent", digest=DIGEST, expires_at=clock.now + 60)
    assert "ap-1" not in state
    assert "agent" not in state
    opened = sealer.open(state, principal="agent", digest=DIGEST)
    assert opened.approval_id == "ap-1"
    refused(sealer, state, why="replayed")


def test_foreign_principal_other_call_and_expiry_are_refused() -> None:
    clock = FakeClock()
    sealer = StateSealer(clock=clock)
    seal = lambda: sealer.seal("ap-1", principal="agent", digest=DIGEST, expires_at=clock.now + 60)  # noqa: E731
    refused(sealer, seal(), principal="mallory", why="presented by")
    refused(sealer, seal(), digest="e" * 64, why="covers another call")
    late = seal()
    clock.advance(60)
    refused(sealer, late, why="expired")


def test_altered_forged_and_garbage_states_are_refused() -> None:
    sealer = StateSealer()
    state = sealer.seal("ap-1", principal="agent", digest=DIGEST, expires_at=9e9)
    raw = bytearray(base64.urlsafe_b64decode(state + "=" * (-len(state) % 4)))
    raw[20] ^= 1
    altered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    refused(sealer, altered, why="forged or altered")
    other_key = StateSealer(b"k" * 32).seal("ap-1", principal="agent", digest=DIGEST, expires_at=9e9)
    refused(sealer, other_key, why="forged or altered")
    for garbage in ("", "%%%", "AAAA", 42, None, "A" * 5000):
        with pytest.raises(RequestStateInvalid):
            sealer.open(garbage, principal="agent", digest=DIGEST)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        StateSealer(b"short")
