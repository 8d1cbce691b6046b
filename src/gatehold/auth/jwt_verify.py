"""Bearer JWT verification: Gatehold chooses the key and algorithm, then checks every claim itself.

Header members that point at keys (``jku``, ``x5u``, ``jwk``, ``x5c``) are never read; the
algorithm must be on the allow-list and fit the issuer's key. Verified claims are remembered by
the token's SHA-256 until ``exp``, so a repeated token costs a dictionary lookup and an expiry check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson
from jwt import PyJWS, PyJWTError

from gatehold.auth.jwks import JwksCache
from gatehold.config import OAuthSettings
from gatehold.errors import AuthenticationFailed

MAX_TOKEN_CHARS = 32 * 1024
NEGATIVE_TTL_SECONDS = 5.0
_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_JWS = PyJWS(options={"verify_signature": True, "enforce_minimum_key_length": True})


def _b64decode(segment: str) -> bytes:
    if not segment or not _B64URL.issuperset(segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _header(token: str) -> dict[str, Any] | None:
    segments = token.split(".")
    if len(segments) != 3 or not all(segments) or not _B64URL.issuperset(segments[1] + segments[2]):
        return None
    try:
        header = orjson.loads(_b64decode(segments[0]))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        return None
    return header


def looks_like_jwt(token: str) -> bool:
    """Three base64url segments whose first is a JSON header naming ``alg``."""
    return len(token) <= MAX_TOKEN_CHARS and _header(token) is not None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _invalid(detail: str) -> AuthenticationFailed:
    return AuthenticationFailed(detail, code="auth.invalid")


class JwtVerifier:
    """Verify bearer JWTs of one issuer for one audience."""

    def __init__(self, settings: OAuthSettings, *, audience: str, jwks: JwksCache,
                 clock: Callable[[], float] = time.time):
        self._settings = settings
        self._audience = audience
        self._jwks = jwks
        self._clock = clock
        self._algorithms = frozenset(settings.algorithms)
        self._verified: OrderedDict[bytes, tuple[dict[str, Any], float]] = OrderedDict()
        self._rejected: OrderedDict[bytes, tuple[float, AuthenticationFailed]] = OrderedDict()

    async def verify(self, token: str) -> dict[str, Any]:
        """The verified claims (shared with later calls for this token: do not mutate), or AuthenticationFailed."""
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise _invalid("token too long or not ASCII")
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        cached = self._verified.get(digest)
        if cached is not None:
            claims, exp = cached
            if now <= exp + self._settings.leeway_seconds:
                self._verified.move_to_end(digest)
                return claims
            del self._verified[digest]
            # fail closed: a remembered token is still refused once it expires
            raise AuthenticationFailed("token expired", code="auth.expired")
        rejected = self._rejected.get(digest)
        if rejected is not None:
            until, error = rejected
            if now < until:
                raise AuthenticationFailed(error.detail, code=error.code)
            del self._rejected[digest]
        key, alg = await self._key(token)
        try:
            claims = self._checked(token, key, alg, now)
        except _Transient as exc:
            raise AuthenticationFailed(exc.detail, code=exc.code) from None
        except AuthenticationFailed as exc:
            self._remember_rejection(digest, exc, now)
            raise
        self._verified[digest] = (claims, float(claims["exp"]))
        if len(self._verified) > self._settings.token_cache_size:
            self._verified.popitem(last=False)
        return claims

    async def _key(self, token: str) -> tuple[Any, str]:
        header = _header(token)
        if header is None:
            raise _invalid("malformed JWT")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _TYPES):
            raise _invalid("typ header is not a JWT access token type")
        if "crit" in header:
            raise _invalid("critical header extensions are not supported")
        alg = header["alg"]
        if alg not in self._algorithms:
            raise _invalid(f"algorithm {alg[:20]!r} not allowed")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _invalid("kid is not a string")
        # jku, x5u, jwk and x5c are never read: the key comes from the issuer's JWKS alone.
        return await self._jwks.key_for(kid, alg), alg

    def _checked(self, token: str, key: Any, alg: str, now: float) -> dict[str, Any]:
        try:
            payload = _JWS.decode_complete(token, key=key, algorithms=[alg])["payload"]
            claims = orjson.loads(payload)
        except (PyJWTError, ValueError, TypeError):
            # fail closed: any failure to verify or decode is a bad token
            raise _invalid("signature check failed") from None
        if not isinstance(claims, dict):
            raise _invalid("payload is not a JSON object")
        self._check_claims(claims, now)
        return claims

    def _check_claims(self, claims: dict[str, Any], now: float) -> None:
        settings, leeway = self._settings, self._settings.leeway_seconds
        if claims.get("iss") != settings.issuer:
            raise _invalid("iss is not the configured issuer")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self._audience not in audiences:
            raise _invalid("aud does not name this resource")
        for name in ("exp", "nbf", "iat"):
            if (name == "exp" or name in claims) and not _number(claims.get(name)):
                raise _invalid(f"{name} missing or not a number")
        missing = [name for name in settings.required_claims if claims.get(name) is None]
        if missing:
            raise _invalid(f"required claim missing: {', '.join(missing)}")
        exp = float(claims["exp"])
        nbf = float(claims["nbf"]) if "nbf" in claims else None
        iat = float(claims["iat"]) if "iat" in claims else None
        if now > exp + leeway:
            raise AuthenticationFailed("token expired", code="auth.expired")
        if nbf is not None and nbf > now + leeway:
            raise _Transient("token not yet valid (nbf)", code="auth.not_yet_valid")
        if iat is not None and iat > now + leeway:
            raise _Transient("iat in the future", code="auth.invalid")
        cap = settings.max_lifetime_seconds
        if cap is not None and exp - (iat if iat is not None else now) > cap:
            raise _invalid("lifetime over the configured maximum")

    def _remember_rejection(self, digest: bytes, error: AuthenticationFailed, now: float) -> None:
        self._rejected[digest] = (now + NEGATIVE_TTL_SECONDS, error)
        if len(self._rejected) > self._settings.token_cache_size:
            self._rejected.popitem(last=False)


class _Transient(AuthenticationFailed):
    """A rejection that may turn into acceptance later (nbf, iat); never remembered."""
