"""RFC 7662 token introspection for opaque bearer tokens.

Gatehold authenticates to the endpoint as a client and accepts only ``active: true`` answers
bound to this resource (RFC 8707 ``aud``). An unreachable or failing endpoint refuses the token
with AuthUnavailable. Active answers are remembered by the token's SHA-256 for at most
``cache_seconds`` and never past ``exp``; rejections only for a few seconds.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from gatehold.auth.outbound import IdentityHttp
from gatehold.config import IntrospectionSettings
from gatehold.errors import AuthenticationFailed, AuthUnavailable, OutboundFailed

NEGATIVE_TTL_SECONDS = 3.0
MAX_TOKEN_CHARS = 32 * 1024
DEFAULT_CACHE_SIZE = 10_000


def _invalid(detail: str) -> AuthenticationFailed:
    return AuthenticationFailed(detail, code="auth.invalid")


class Introspector:
    """Ask the authorization server whether an opaque token is active, and for whom."""

    def __init__(self, settings: IntrospectionSettings, client_secret: str, *, http: IdentityHttp, audience: str,
                 issuer: str, clock: Callable[[], float] = time.time, cache_size: int = DEFAULT_CACHE_SIZE):
        self._settings = settings
        self._secret = client_secret
        self._http = http
        self._audience = audience
        self._issuer = issuer
        self._clock = clock
        self._cache_size = cache_size
        self._active: OrderedDict[bytes, tuple[dict[str, Any], float]] = OrderedDict()
        self._rejected: OrderedDict[bytes, tuple[float, AuthenticationFailed]] = OrderedDict()

    async def introspect(self, token: str) -> dict[str, Any]:
        """The introspection answer for an active token of this resource, or AuthenticationFailed."""
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise _invalid("token empty, too long or not ASCII")  # fail closed: never sent to the endpoint
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        cached = self._active.get(digest)
        if cached is not None:
            claims, until = cached
            if now < until:
                self._active.move_to_end(digest)
                return claims
            del self._active[digest]
        rejected = self._rejected.get(digest)
        if rejected is not None:
            until, error = rejected
            if now < until:
                raise AuthenticationFailed(error.detail, code=error.code)
            del self._rejected[digest]
        answer = await self._ask(token)
        now = self._clock()
        try:
            until = self._checked(answer, now)
        except AuthenticationFailed as exc:
            self._remember(self._rejected, digest, (now + NEGATIVE_TTL_SECONDS, exc))
            raise
        if until > now:
            self._remember(self._active, digest, (answer, until))
        return answer

    async def _ask(self, token: str) -> dict[str, Any]:
        settings = self._settings
        form = {"token": token, "token_type_hint": "access_token"}
        auth: tuple[str, str] | None = None
        if settings.auth_method == "client_secret_post":
            form.update(client_id=settings.client_id, client_secret=self._secret)
        else:
            # RFC 6749 section 2.3.1: form-encode id and secret before HTTP Basic
            auth = (quote(settings.client_id, safe=""), quote(self._secret, safe=""))
        try:
            status, answer = await self._http.post_form(settings.endpoint, form, auth=auth)
        except OutboundFailed as exc:
            # fail closed: the token cannot be checked, so it is not accepted
            raise AuthUnavailable(f"introspection failed: {exc.detail}") from None
        if status != 200:
            # fail closed: an error answer says nothing about the token
            raise AuthUnavailable(f"introspection endpoint answered HTTP {status}")
        return answer

    def _checked(self, answer: dict[str, Any], now: float) -> float:
        """Check the answer; returns until when it may be remembered."""
        if answer.get("active") is not True:
            raise _invalid("token is not active")
        exp = answer.get("exp")
        if exp is not None:
            if not isinstance(exp, int | float) or isinstance(exp, bool):
                raise _invalid("introspection exp is not a number")
            if exp <= now:
                raise AuthenticationFailed("token expired", code="auth.expired")
        aud = answer.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self._audience not in audiences:
            # fail closed: a token not bound to this resource is refused (RFC 8707)
            raise _invalid("aud missing or does not name this resource")
        if "iss" in answer and answer["iss"] != self._issuer:
            raise _invalid("iss is not the configured issuer")
        until = now + self._settings.cache_seconds
        return min(until, float(exp)) if exp is not None else until

    def _remember(self, cache: OrderedDict[bytes, Any], digest: bytes, entry: Any) -> None:
        cache[digest] = entry
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
