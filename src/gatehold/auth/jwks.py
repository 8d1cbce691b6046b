"""The issuer's signing keys (JWKS), discovered, cached and refetched within limits.

Gatehold picks the key: a token's ``kid`` is only a dictionary key into the fetched set, and
the key must fit the algorithm (RSA for RS*/PS*, EC on the matching curve for ES*, OKP for
EdDSA). An unknown ``kid`` refetches at most once per ``refetch_seconds``, concurrent fetches
share one request, and any fetch failure fails closed unless a cached key answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from jwt import PyJWK, PyJWTError

from gatehold.auth.outbound import IdentityHttp
from gatehold.errors import AuthenticationFailed, AuthUnavailable, OutboundFailed

log = logging.getLogger(__name__)

_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_OKP_CURVES = frozenset({"Ed25519", "Ed448"})
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_DEFAULT_ALG = {"RSA": "RS256", "OKP": "EdDSA"}
_FAILURE_BACKOFF_SECONDS = 5.0
MAX_KEYS = 100


def fits(jwk: dict[str, Any], alg: str) -> bool:
    """Whether this public JWK may verify ``alg``: key type, curve and any declared ``alg`` agree."""
    declared = jwk.get("alg")
    if declared is not None and declared != alg:
        return False
    kty = jwk.get("kty")
    if alg[:2] in ("RS", "PS") and alg[2:] in ("256", "384", "512"):
        return kty == "RSA"
    if alg in _CURVES:
        return kty == "EC" and jwk.get("crv") == _CURVES[alg]
    if alg == "EdDSA":
        return kty == "OKP" and jwk.get("crv") in _OKP_CURVES
    return False


def discovery_urls(issuer: str) -> list[str]:
    """RFC 8414 (well-known segment between host and path), then OpenID Connect (appended)."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    rfc8414 = urlunsplit((parts.scheme, parts.netloc, f"/.well-known/oauth-authorization-server{path}", "", ""))
    return [rfc8414, f"{issuer.rstrip('/')}/.well-known/openid-configuration"]


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    jwk: dict[str, Any]


def _usable(entry: Any) -> _Key | None:
    if not isinstance(entry, dict):
        return None
    if _PRIVATE_MEMBERS & entry.keys():
        # fail closed: a JWKS that publishes private key material is broken; never use that key
        log.warning("JWKS key %r carries private key members; skipped", entry.get("kid"))
        return None
    kty, use, ops = entry.get("kty"), entry.get("use"), entry.get("key_ops")
    if use is not None and use != "sig":
        return None
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    kid = entry.get("kid")
    if kid is not None and not isinstance(kid, str):
        return None
    probe = _DEFAULT_ALG.get(kty) if isinstance(kty, str) else None
    if kty == "EC":
        probe = next((alg for alg, crv in _CURVES.items() if crv == entry.get("crv")), None)
    if probe is None:
        return None  # a key type or curve Gatehold cannot verify with
    try:
        PyJWK(entry, algorithm=probe)
    except (PyJWTError, ValueError, TypeError):
        log.warning("JWKS key %r does not parse; skipped", kid)
        return None
    return _Key(kid, dict(entry))


class JwksCache:
    """The signing keys of one issuer."""

    def __init__(self, http: IdentityHttp, *, issuer: str, jwks_uri: str | None, refetch_seconds: float,
                 max_age_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.issuer = issuer
        self._http = http
        self._jwks_uri = jwks_uri
        self._refetch = refetch_seconds
        self._max_age = max_age_seconds
        self._clock = clock
        self._metadata: dict[str, Any] | None = None
        self._metadata_tried_at: float | None = None
        self._keys: list[_Key] = []
        self._loaded_at: float | None = None
        self._attempt_at: float | None = None
        self._failure: str | None = None
        self._generation = 0
        self._lock = asyncio.Lock()
        self._parsed: dict[tuple[int, str], PyJWK] = {}

    async def metadata(self) -> dict[str, Any] | None:
        """The authorization server metadata, discovered once; None when it cannot be had."""
        now = self._clock()
        tried = self._metadata_tried_at
        if self._metadata is None and (tried is None or now - tried >= _FAILURE_BACKOFF_SECONDS):
            self._metadata_tried_at = now
            try:
                async with self._lock:
                    if self._metadata is None:
                        await self._discover()
            except AuthUnavailable as exc:
                log.warning("authorization server metadata unavailable: %s", exc.detail)
        return self._metadata

    async def key_for(self, kid: str | None, alg: str) -> PyJWK:
        """The issuer's key for ``kid`` and ``alg``; raises AuthenticationFailed or AuthUnavailable."""
        now = self._clock()
        stale = self._loaded_at is None or now - self._loaded_at >= self._max_age
        if stale and (self._lock.locked() or self._may_retry(now, self._failure_backoff())):
            await self._refresh(self._generation)
        found = self._find(kid, alg)
        if found is not None:
            return found
        if self._loaded_at is None or (stale and self._failure):
            # fail closed: the keys could not be had and nothing cached answers
            raise AuthUnavailable(f"issuer keys unavailable: {self._failure or 'not fetched'}")
        if self._lock.locked() or self._may_retry(self._clock(), self._refetch):
            await self._refresh(self._generation)
            found = self._find(kid, alg)
            if found is not None:
                return found
            if self._failure:
                raise AuthUnavailable(f"issuer keys unavailable: {self._failure}")
        # fail closed: no key of the issuer's answers this token
        raise AuthenticationFailed(f"no {alg} key for kid {_shown(kid)} in the issuer's JWKS", code="auth.invalid")

    def _failure_backoff(self) -> float:
        return min(self._refetch, _FAILURE_BACKOFF_SECONDS) if self._failure else 0.0

    def _may_retry(self, now: float, gap: float) -> bool:
        return self._attempt_at is None or now - self._attempt_at >= gap

    def _find(self, kid: str | None, alg: str) -> PyJWK | None:
        candidates = [(i, key) for i, key in enumerate(self._keys) if fits(key.jwk, alg)]
        if kid is None:
            if len(candidates) != 1:
                return None  # fail closed: without a kid only a single possible key is unambiguous
            index, key = candidates[0]
        else:
            match = next(((i, key) for i, key in candidates if key.kid == kid), None)
            if match is None:
                return None
            index, key = match
        parsed = self._parsed.get((index, alg))
        if parsed is None:
            try:
                parsed = self._parsed[(index, alg)] = PyJWK(key.jwk, algorithm=alg)
            except (PyJWTError, ValueError, TypeError):
                return None  # fail closed: a key that does not load for this algorithm answers nothing
        return parsed

    async def _refresh(self, seen: int) -> None:
        """Fetch the key set once for everyone waiting: a fetch that ended while we waited counts."""
        async with self._lock:
            if self._generation != seen:
                return
            self._attempt_at = self._clock()
            try:
                keys = await self._fetch()
            except AuthUnavailable as exc:
                self._failure = exc.detail
                log.warning("JWKS fetch for %s failed: %s", self.issuer, exc.detail)
                return
            finally:
                self._generation += 1
            self._keys, self._parsed, self._failure = keys, {}, None
            self._loaded_at = self._clock()

    async def _fetch(self) -> list[_Key]:
        if self._jwks_uri is None:
            await self._discover()
        uri = self._jwks_uri
        if uri is None:  # fail closed: discovery sets it or raises; never fetch from nowhere
            raise AuthUnavailable("no jwks_uri")
        try:
            status, body = await self._http.get_json(uri)
        except OutboundFailed as exc:
            raise AuthUnavailable(f"JWKS fetch failed: {exc.detail}") from None
        entries = body.get("keys")
        if status != 200 or not isinstance(entries, list):
            # fail closed: keep what was cached rather than trusting a broken answer
            raise AuthUnavailable(f"JWKS at {uri} answered HTTP {status} without a key list")
        keys = [key for key in map(_usable, entries[:MAX_KEYS]) if key is not None]
        if not keys:
            raise AuthUnavailable(f"JWKS at {uri} holds no usable signing key")
        return keys

    async def _discover(self) -> None:
        problems: list[str] = []
        for url in discovery_urls(self.issuer):
            try:
                status, body = await self._http.get_json(url)
            except OutboundFailed as exc:
                problems.append(f"{url}: {exc.detail}")
                continue
            if status != 200:
                problems.append(f"{url}: HTTP {status}")
            elif body.get("issuer") != self.issuer:
                # fail closed: metadata for another issuer is never used (RFC 8414 section 3.3)
                problems.append(f"{url}: issuer {_shown(body.get('issuer'))} is not the configured issuer")
            elif not isinstance(body.get("jwks_uri"), str):
                problems.append(f"{url}: no jwks_uri")
            else:
                self._metadata = body
                if self._jwks_uri is None:
                    self._jwks_uri = body["jwks_uri"]
                return
        raise AuthUnavailable("authorization server metadata not found: " + "; ".join(problems))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
