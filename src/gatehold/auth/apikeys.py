"""API keys: ``ghk_<id>.<secret>`` presented as ``Authorization: Bearer``, stored as scrypt hashes.

The id inside the key picks the one configured entry to check, so an unknown id costs no
scrypt work. A key that verified once is remembered by its SHA-256 (never the key itself) so
the per-call cost is a dictionary lookup, not a key derivation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict

from gatehold.call import Caller
from gatehold.config import ApiKey
from gatehold.errors import AuthenticationFailed

PREFIX = "ghk_"
_N, _R, _P = 2**14, 8, 1
_NEGATIVE_TTL = 60.0
_CACHE_MAX = 4096


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time check of ``secret`` against a stored scrypt hash. A malformed hash never matches."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = _unb64(digest)
        got = hashlib.scrypt(
            secret.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(want), maxmem=2**26
        )
    except (ValueError, TypeError):
        return False  # fail closed: an unreadable hash authenticates nobody
    return hmac.compare_digest(got, want)


def new_api_key(key_id: str) -> tuple[str, str]:
    """A fresh key for ``key_id`` and the hash to put in the config."""
    key = f"{PREFIX}{key_id}.{secrets.token_urlsafe(24)}"
    return key, hash_secret(key)


class ApiKeyAuthenticator:
    def __init__(self, keys: tuple[ApiKey, ...]):
        self._by_id = {k.id: k for k in keys}
        self._verified: OrderedDict[bytes, ApiKey] = OrderedDict()
        self._rejected: OrderedDict[bytes, float] = OrderedDict()

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller a ``Bearer`` header names, or ``AuthenticationFailed`` (401)."""
        if not authorization:
            raise AuthenticationFailed("no Authorization header", code="auth.missing")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed("Authorization is not a Bearer credential", code="auth.invalid")
        fingerprint = hashlib.sha256(token.encode()).digest()
        entry = self._verified.get(fingerprint)
        if entry is None:
            entry = self._verify(token, fingerprint)
        return Caller(principal=entry.principal, roles=entry.roles, credential_id=f"apikey:{entry.id}")

    def _verify(self, token: str, fingerprint: bytes) -> ApiKey:
        now = time.monotonic()
        seen = self._rejected.get(fingerprint)
        if seen is not None and now - seen < _NEGATIVE_TTL:
            raise AuthenticationFailed("API key rejected (cached)", code="auth.invalid")
        key_id = token[len(PREFIX):].partition(".")[0] if token.startswith(PREFIX) else ""
        entry = self._by_id.get(key_id)
        if entry is None or not verify_secret(token, entry.hash):
            self._rejected[fingerprint] = now
            if len(self._rejected) > _CACHE_MAX:
                self._rejected.popitem(last=False)
            raise AuthenticationFailed(f"API key not valid (id {key_id or '?'})", code="auth.invalid")
        self._verified[fingerprint] = entry
        if len(self._verified) > _CACHE_MAX:
            self._verified.popitem(last=False)
        return entry
