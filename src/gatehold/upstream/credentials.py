"""What the gateway presents to an upstream: its own credential, never the caller's token.

Three kinds, one per ``credential:`` entry of an HTTP upstream:

* ``StaticBearer``: a configured secret sent as a bearer token.
* ``ClientCredentials``: the gateway's own OAuth token (client credentials grant), cached and
  refreshed before it expires.
* ``TokenExchange``: RFC 8693 on behalf of each caller; the caller's token goes to the token
  endpoint only, and the upstream sees the token issued in exchange.

Every failure to obtain a credential raises ``UpstreamFailed(code="upstream.credential")``: no
credential, no call. Details name the token endpoint's host and the OAuth error code, never a
secret or a token.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from gatehold.auth.outbound import IdentityHttp
from gatehold.call import Caller
from gatehold.config import ClientCredentialsGrant, Credential, TokenExchangeGrant, TokenGrant
from gatehold.errors import ConfigError, OutboundFailed, UpstreamFailed

Clock = Callable[[], float]

CLIENT_CREDENTIALS_GRANT_TYPE = "client_credentials"
EXCHANGE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TYPE_URN = "urn:ietf:params:oauth:token-type:access_token"
MAX_REFRESH_MARGIN_SECONDS = 60.0
REFRESH_MARGIN_FRACTION = 0.1
EXCHANGE_CACHE_SIZE = 1024

_TOKEN = re.compile(r"[\x21-\x7e]+")  # one header-safe token: printable ASCII, no spaces
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class UpstreamCredential(Protocol):
    """How the gateway authenticates to one HTTP upstream."""

    async def authorization(self, caller: Caller | None) -> str:
        """The full ``Authorization`` header value for a request made for ``caller`` (None: the gateway)."""

    def secrets(self) -> tuple[str, ...]:
        """Every secret value this credential currently holds or has obtained (for redaction)."""


def credential_failed(detail: str) -> UpstreamFailed:
    return UpstreamFailed(detail, code="upstream.credential")


@dataclass(frozen=True, slots=True)
class Issued:
    """A token from a token endpoint and the time (epoch seconds) after which it is not used."""

    token: str
    use_until: float

    def fresh(self, now: float) -> bool:
        return now < self.use_until


class StaticBearer:
    """A configured secret sent as ``Bearer <secret>`` on every request."""

    def __init__(self, token: str):
        if not _TOKEN.fullmatch(token):
            # fail closed: a secret that cannot travel as one header token is refused at start.
            raise ConfigError(["credential.bearer: the secret is not a bearer token (printable ASCII, no spaces)"])
        self._token = token

    async def authorization(self, caller: Caller | None) -> str:
        return f"Bearer {self._token}"

    def secrets(self) -> tuple[str, ...]:
        return (self._token,)


class TokenEndpoint:
    """One OAuth client at one token endpoint: builds the form, authenticates, reads the answer."""

    def __init__(self, grant: TokenGrant, client_secret: str, *, http: IdentityHttp, default_resource: str):
        self.grant = grant
        self.secret = client_secret
        self.resource = grant.resource or default_resource
        self.host = urlsplit(grant.token_endpoint).hostname or "?"
        self._http = http

    def form(self, grant_type: str) -> dict[str, str]:
        form = {"grant_type": grant_type, "resource": self.resource}
        if self.grant.audience:
            form["audience"] = self.grant.audience
        if self.grant.scope:
            form["scope"] = self.grant.scope
        return form

    async def fetch(self, form: dict[str, str], *, now: float, issued_type: str | None = None) -> Issued:
        """POST the form; return the issued bearer token, valid until its expiry minus a refresh margin."""
        auth: tuple[str, str] | None = None
        if self.grant.auth_method == "client_secret_post":
            form = {**form, "client_id": self.grant.client_id, "client_secret": self.secret}
        else:  # client_secret_basic: RFC 6749 2.3.1 form-encodes both parts before Basic
            auth = (quote(self.grant.client_id, safe=""), quote(self.secret, safe=""))
        try:
            status, body = await self._http.post_form(self.grant.token_endpoint, form, auth=auth)
        except OutboundFailed as exc:
            # fail closed: no credential, no call.
            raise credential_failed(f"token endpoint {self.host}: {exc.detail}") from None
        if status != 200:
            error = body.get("error")
            code = error if isinstance(error, str) and _ERROR_CODE.fullmatch(error) else "no OAuth error code"
            # fail closed: the endpoint refused; the upstream is not called.
            raise credential_failed(f"token endpoint {self.host} answered HTTP {status} ({code})")
        return self._issued(body, now, issued_type)

    def _issued(self, body: dict[str, Any], now: float, issued_type: str | None) -> Issued:
        token, token_type = body.get("access_token"), body.get("token_type")
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            # fail closed: nothing usable to send.
            raise credential_failed(f"token endpoint {self.host} answered without a usable access_token")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            # fail closed: a token we cannot present correctly (DPoP, MAC, N_A) is not sent as a bearer.
            raise credential_failed(f"token endpoint {self.host} issued token_type {str(token_type)[:32]!r}, "
                                    "not Bearer")
        kind = body.get("issued_token_type")
        if issued_type is not None and kind is not None and kind != issued_type:
            # fail closed: we asked for an access token and got something else.
            raise credential_failed(f"token endpoint {self.host} issued {str(kind)[:80]!r}, not an access token")
        return Issued(token, now + self._usable_seconds(body.get("expires_in")))

    def _usable_seconds(self, raw: Any) -> float:
        if raw is None:
            return 0.0  # no stated lifetime: used for this one request, never cached
        try:
            lifetime = float(raw) if isinstance(raw, int | float | str) and not isinstance(raw, bool) else math.nan
        except ValueError:
            lifetime = math.nan
        if not math.isfinite(lifetime) or lifetime <= 0:
            # fail closed: an unreadable or already-past lifetime could hand out an expired token.
            raise credential_failed(f"token endpoint {self.host} answered with an invalid expires_in")
        return lifetime - min(MAX_REFRESH_MARGIN_SECONDS, REFRESH_MARGIN_FRACTION * lifetime)


class ClientCredentials:
    """The gateway's own token for one upstream (OAuth client credentials), cached and refreshed.

    The token is reused until its ``expires_in`` minus a refresh margin (the smaller of 60 s and
    10% of its lifetime); concurrent requests that find it stale share one refresh.
    """

    def __init__(self, grant: ClientCredentialsGrant, client_secret: str, *, http: IdentityHttp,
                 default_resource: str, clock: Clock = time.time):
        self._endpoint = TokenEndpoint(grant, client_secret, http=http, default_resource=default_resource)
        self._clock = clock
        self._current: Issued | None = None
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        current = self._current
        if current is not None and current.fresh(self._clock()):
            return current.token
        async with self._lock:
            current = self._current
            if current is not None and current.fresh(self._clock()):
                return current.token  # another request refreshed it while we waited
            issued = await self._endpoint.fetch(self._endpoint.form(CLIENT_CREDENTIALS_GRANT_TYPE), now=self._clock())
            self._current = issued
            return issued.token

    async def authorization(self, caller: Caller | None) -> str:
        return f"Bearer {await self.token()}"

    def secrets(self) -> tuple[str, ...]:
        current = self._current
        return (self._endpoint.secret, current.token) if current is not None else (self._endpoint.secret,)


class TokenExchange:
    """RFC 8693 token exchange on behalf of each caller; the caller's token is never forwarded.

    The caller's bearer token is sent as ``subject_token`` to the token endpoint only; the token
    issued in exchange (bound to this upstream by ``resource``, ``audience`` and ``scope``) is what
    the upstream sees. Issued tokens are cached per caller token (keyed by its SHA-256) until they
    expire, never past the caller's own expiry, in a bounded LRU; concurrent requests for the same
    caller share one exchange.

    Gateway-level traffic has no caller (``caller is None``: the handshake, ``tools/list``
    refreshes, the session's GET stream): it carries a client-credentials token that the same
    OAuth client obtains for itself. A caller without a bearer token (API key, certificate, stdio)
    is refused: the gateway's own identity is never used for a caller's call.
    """

    def __init__(self, grant: TokenExchangeGrant, client_secret: str, *, http: IdentityHttp,
                 default_resource: str, clock: Clock = time.time, cache_size: int = EXCHANGE_CACHE_SIZE):
        self._endpoint = TokenEndpoint(grant, client_secret, http=http, default_resource=default_resource)
        own = ClientCredentialsGrant.model_validate(grant.model_dump())
        self._gateway = ClientCredentials(own, client_secret, http=http, default_resource=default_resource,
                                          clock=clock)
        self._clock = clock
        self._size = cache_size
        self._cache: OrderedDict[str, Issued] = OrderedDict()
        self._flights: dict[str, asyncio.Task[Issued]] = {}

    async def authorization(self, caller: Caller | None) -> str:
        if caller is None:
            return await self._gateway.authorization(None)
        if not caller.token:
            # fail closed: never fall back to the gateway's own identity for a caller's call.
            raise credential_failed(f"token exchange needs a delegated token; caller credential "
                                    f"{caller.credential_id!r} carries none")
        now = self._clock()
        if caller.expires_at is not None and caller.expires_at <= now:
            # fail closed: an expired subject token is not exchanged.
            raise credential_failed(f"the token of caller credential {caller.credential_id!r} has expired")
        key = hashlib.sha256(caller.token.encode("utf-8")).hexdigest()
        cached = self._cache.get(key)
        if cached is not None and cached.fresh(now):
            self._cache.move_to_end(key)
            return f"Bearer {cached.token}"
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._exchange(key, caller.token, caller.expires_at))
            self._flights[key] = flight
            flight.add_done_callback(partial(self._landed, key))
        issued = await asyncio.shield(flight)  # one waiter's cancellation does not cancel the others'
        return f"Bearer {issued.token}"

    def secrets(self) -> tuple[str, ...]:
        held = (*self._gateway.secrets(), *(issued.token for issued in self._cache.values()))
        return tuple(dict.fromkeys(held))

    async def _exchange(self, key: str, subject: str, subject_expires_at: float | None) -> Issued:
        form = {**self._endpoint.form(EXCHANGE_GRANT_TYPE), "subject_token": subject,
                "subject_token_type": ACCESS_TYPE_URN, "requested_token_type": ACCESS_TYPE_URN}
        issued = await self._endpoint.fetch(form, now=self._clock(), issued_type=ACCESS_TYPE_URN)
        if issued.token == subject:
            # fail closed: an "exchange" that hands back the caller's own token would forward it.
            raise credential_failed(f"token endpoint {self._endpoint.host} returned the subject token unchanged")
        if subject_expires_at is not None and subject_expires_at < issued.use_until:
            issued = Issued(issued.token, subject_expires_at)
        if issued.fresh(self._clock()):
            self._cache[key] = issued
            self._cache.move_to_end(key)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return issued

    def _landed(self, key: str, flight: asyncio.Task[Issued]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved: a failure whose waiters all left is not reported as lost


def build_credential(credential: Credential, secrets: Mapping[str, str], *, http: IdentityHttp,
                     default_resource: str) -> UpstreamCredential:
    """The credential an upstream's ``credential:`` entry describes, with its secret resolved."""

    def secret(name: str) -> str:
        value = secrets.get(name)
        if not value:
            # fail closed: a credential without its secret is not built, so the gateway does not start.
            raise ConfigError([f"credential: secret {name!r} is not resolved"])
        return value

    if credential.bearer is not None:
        return StaticBearer(secret(credential.bearer))
    if credential.client_credentials is not None:
        grant = credential.client_credentials
        return ClientCredentials(grant, secret(grant.client_secret), http=http, default_resource=default_resource)
    if credential.token_exchange is not None:
        exchange = credential.token_exchange
        return TokenExchange(exchange, secret(exchange.client_secret), http=http, default_resource=default_resource)
    # fail closed: the configuration model forbids this; refuse rather than send nothing.
    raise ConfigError(["credential: give exactly one of bearer, client_credentials, token_exchange"])
