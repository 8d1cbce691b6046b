"""Sealed ``requestState`` for 2026-07-28 clients: the client carries it, only the gateway can read it.

The state is AES-256-GCM over a small JSON document (approval id, principal, call digest, expiry,
a random nonce), so a client can neither read nor alter it. ``open`` checks, in order: it decrypts
(not forged, not altered), it has not expired, it belongs to this principal and to this exact call
(tool and arguments digest), and it was not presented before (single use: every answer the gateway
gives carries a fresh state). Any failure raises ``RequestStateInvalid`` with the reason kept for
the audit; the client only learns "Invalid or expired requestState".
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gatehold.errors import RequestStateInvalid

_AAD = b"gatehold/requestState/v1"
_NONCE_BYTES = 12
_MAX_STATE_CHARS = 4096
_MAX_REMEMBERED = 100_000


@dataclass(frozen=True, slots=True)
class SealedApproval:
    approval_id: str
    principal: str
    digest: str
    expires_at: float


class StateSealer:
    def __init__(self, key: bytes | None = None, *, clock: Callable[[], float] = time.time):
        if key is not None and len(key) < 32:
            raise ValueError("the requestState key needs at least 32 bytes")
        # A random key per process unless one is configured: a restart invalidates outstanding
        # states, which fails closed (the client is asked again).
        self._aead = AESGCM((key or os.urandom(32))[:32])
        self._clock = clock
        self._presented: dict[bytes, float] = {}  # nonce -> expiry, for single use

    def seal(self, approval_id: str, *, principal: str, digest: str, expires_at: float) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        body = orjson.dumps({"a": approval_id, "p": principal, "d": digest, "e": expires_at})
        sealed = self._aead.encrypt(nonce, body, _AAD)
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, state: object, *, principal: str, digest: str) -> SealedApproval:
        if not isinstance(state, str) or not state or len(state) > _MAX_STATE_CHARS:
            raise RequestStateInvalid("requestState is not a string of a sane length")
        try:
            raw = base64.urlsafe_b64decode(state + "=" * (-len(state) % 4))
        except (binascii.Error, ValueError):
            raise RequestStateInvalid("requestState is not base64url") from None
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        try:
            data = orjson.loads(self._aead.decrypt(nonce, sealed, _AAD))
            found = SealedApproval(str(data["a"]), str(data["p"]), str(data["d"]), float(data["e"]))
        except (InvalidTag, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            raise RequestStateInvalid("requestState forged or altered (authentication failed)") from None
        now = self._clock()
        if now >= found.expires_at:
            raise RequestStateInvalid(f"requestState for approval {found.approval_id} expired")
        if found.principal != principal:
            raise RequestStateInvalid(f"requestState of {found.principal!r} presented by {principal!r}")
        if found.digest != digest:
            raise RequestStateInvalid(f"requestState for approval {found.approval_id} covers another call "
                                      "(tool or arguments changed)")
        if nonce in self._presented:
            raise RequestStateInvalid(f"requestState for approval {found.approval_id} replayed")
        self._remember(nonce, found.expires_at, now)
        return found

    def _remember(self, nonce: bytes, expires_at: float, now: float) -> None:
        if len(self._presented) >= _MAX_REMEMBERED:
            for seen, until in list(self._presented.items()):
                if until <= now:
                    del self._presented[seen]
            if len(self._presented) >= _MAX_REMEMBERED:
                # fail closed: forgetting a nonce could let a state replay; refuse instead
                raise RequestStateInvalid("too many outstanding requestStates")
        self._presented[nonce] = expires_at
