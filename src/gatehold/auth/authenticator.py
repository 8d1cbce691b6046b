"""Authentication of every HTTP request: one credential, one caller, then the revocation list.

Which check runs follows from what was presented:

- ``Authorization: Bearer ghk_...``: a Gatehold API key (hashed at rest).
- ``Authorization: Bearer <JWT>``: an OAuth 2.1 access token verified against the issuer's keys.
- ``Authorization: Bearer <other>``: an opaque token, introspected (RFC 7662) when configured.
- no Authorization header, and a verified client certificate: the certificate's mapped principal.

A bearer credential, when presented, is what identifies the caller even over mTLS (the handshake
already proved the certificate chains to the configured CA). Whatever the route, the caller is
checked against the revocation list on every request (an answer at most
``auth.revocation_check_ms`` old). Any failure raises ``AuthenticationFailed`` (401) or ``AuthUnavailable`` (503).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from gatehold.auth.apikeys import PREFIX, ApiKeyAuthenticator
from gatehold.auth.claims import caller_from_claims
from gatehold.auth.introspection import Introspector
from gatehold.auth.jwt_verify import JwtVerifier, looks_like_jwt
from gatehold.auth.mtls import CertificateAuthenticator
from gatehold.call import Caller
from gatehold.config import OAuthSettings
from gatehold.errors import AuthenticationFailed, CredentialRevoked
from gatehold.state.revocations import RevocationStore, revocation_keys

MAX_TOKEN_BYTES = 16 * 1024


class Authenticator:
    def __init__(self, *, api_keys: ApiKeyAuthenticator, revocations: RevocationStore,
                 oauth: OAuthSettings | None = None, jwt: JwtVerifier | None = None,
                 introspector: Introspector | None = None, certificates: CertificateAuthenticator | None = None,
                 clock: Callable[[], float] = time.time):
        self._api_keys = api_keys
        self._clock = clock
        # Verified JWT -> its Caller, so a repeated token skips parsing and claim mapping too.
        # Entries live no longer than the token: an expired one falls through to the verifier.
        self._jwt_callers: OrderedDict[str, Caller] = OrderedDict()
        self._revocations = revocations
        self._oauth = oauth
        self._jwt = jwt
        self._introspector = introspector
        self._certificates = certificates

    async def authenticate(self, authorization: str | None, tls: Mapping[str, Any] | None = None) -> Caller:
        if authorization:
            caller = await self._bearer(authorization)
        elif self._certificates is not None and tls is not None and tls.get("client_cert"):
            caller = self._certificates.authenticate(tls)
        else:
            raise AuthenticationFailed("no credential presented", code="auth.missing")
        revoked = await self._revocations.is_revoked(revocation_keys(caller))
        if revoked is not None:
            raise CredentialRevoked(f"credential revoked ({revoked.kind} {revoked.value})", caller=caller)
        return caller

    async def revoked(self, caller: Caller) -> bool:
        """Whether a caller authenticated earlier has been revoked since (for open sessions)."""
        return await self._revocations.is_revoked(revocation_keys(caller)) is not None

    async def _bearer(self, authorization: str) -> Caller:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed("Authorization is not a Bearer credential", code="auth.invalid")
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthenticationFailed(f"bearer token over {MAX_TOKEN_BYTES} bytes", code="auth.invalid")
        if token.startswith(PREFIX):
            return self._api_keys.authenticate(authorization)
        if self._oauth is None:
            # Fail closed: without an issuer configured no token but an API key is accepted.
            raise AuthenticationFailed("not an API key, and OAuth is not configured", code="auth.invalid")
        if self._jwt is not None:
            cached = self._cached_jwt_caller(token, self._oauth)
            if cached is not None:
                return cached
            if looks_like_jwt(token):
                claims = await self._jwt.verify(token)
                caller = caller_from_claims(claims, self._oauth, token=token, kind="jwt")
                self._remember_jwt_caller(token, caller, self._oauth)
                return caller
        if self._introspector is not None:
            claims = await self._introspector.introspect(token)
            return caller_from_claims(claims, self._oauth, token=token, kind="introspection")
        raise AuthenticationFailed("token is not a JWT and no introspection endpoint is configured",
                                   code="auth.invalid")

    def _cached_jwt_caller(self, token: str, oauth: OAuthSettings) -> Caller | None:
        caller = self._jwt_callers.get(token)
        if caller is None:
            return None
        if caller.expires_at is None or self._clock() > caller.expires_at + oauth.leeway_seconds:
            # expired: forget it and let the verifier refuse the token with its own reason
            del self._jwt_callers[token]
            return None
        self._jwt_callers.move_to_end(token)
        return caller

    def _remember_jwt_caller(self, token: str, caller: Caller, oauth: OAuthSettings) -> None:
        if caller.expires_at is None:
            return  # never cache what cannot expire (the verifier requires exp, so this is a guard)
        self._jwt_callers[token] = caller
        if len(self._jwt_callers) > oauth.token_cache_size:
            self._jwt_callers.popitem(last=False)
