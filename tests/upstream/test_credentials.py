"""Per-upstream credentials against a real token endpoint and a real MCP upstream on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gatehold.auth.outbound import IdentityHttp
from gatehold.call import Caller
from gatehold.config import ClientCredentialsGrant, Credential, HttpUpstream, TokenExchangeGrant
from gatehold.errors import ConfigError, UpstreamFailed
from gatehold.upstream.credentials import (
    ACCESS_TYPE_URN,
    EXCHANGE_GRANT_TYPE,
    ClientCredentials,
    StaticBearer,
    TokenExchange,
    UpstreamCredential,
    build_credential,
)
from gatehold.upstream.http import HttpUpstreamClient
from tests.servers.sdk_server import server as sdk_server
from tests.serving import serve_asgi
from tests.upstream.test_http import Events

pytestmark = pytest.mark.anyio

WAIT = 20.0
CLIENT_ID = "gatehold-gw"
CLIENT_SECRET = "client-secret:with/odd chars"
UPSTREAM = "https://tools.example.test/mcp"
CALLER_TOKEN = "caller-presented-token-abc123"


@dataclass
class TokenServer:
    """A token endpoint that checks client authentication and records every form it gets."""

    forms: list[dict[str, str]] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)  # the client authentication each request used
    answer: dict[str, Any] | None = None  # overrides the token answer's fields
    status: int = 200
    delay: float = 0.0
    echo_subject: bool = False
    issued: int = 0

    def client_auth(self, request: Request, form: dict[str, str]) -> str | None:
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            ok = (unquote(user), unquote(password)) == (CLIENT_ID, CLIENT_SECRET)
            return "client_secret_basic" if ok and "client_secret" not in form else None
        ok = (form.get("client_id"), form.get("client_secret")) == (CLIENT_ID, CLIENT_SECRET)
        return "client_secret_post" if ok else None

    async def token(self, request: Request) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        self.forms.append(form)
        method = self.client_auth(request, form)
        if method is None:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        self.methods.append(method)
        if self.status != 200:
            return JSONResponse({"error": "invalid_scope", "error_description": f"no, {CLIENT_SECRET}"},
                                status_code=self.status)
        await asyncio.sleep(self.delay)
        self.issued += 1
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": 3600}
        if form.get("grant_type") == EXCHANGE_GRANT_TYPE:
            subject = form.get("subject_token", "")
            body["access_token"] = subject if self.echo_subject else f"xchg-{self.issued}-{len(subject)}"
            body["issued_token_type"] = ACCESS_TYPE_URN
        else:
            body["access_token"] = f"cc-{self.issued}"
        body.update(self.answer or {})
        return JSONResponse({k: v for k, v in body.items() if v is not None})

    def grants(self) -> list[str]:
        return [f.get("grant_type", "") for f in self.forms]


@dataclass
class Endpoint:
    url: str
    server: TokenServer


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    server = TokenServer()
    async with serve_asgi(Starlette(routes=[Route("/token", server.token, methods=["POST"])])) as base:
        yield Endpoint(f"{base}/token", server)


@pytest.fixture
async def http() -> AsyncIterator[IdentityHttp]:
    client = IdentityHttp()
    try:
        yield client
    finally:
        await client.aclose()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def grant_fields(url: str, **extra: Any) -> dict[str, Any]:
    return {"token_endpoint": url, "client_id": CLIENT_ID, "client_secret": "cc_secret", **extra}


def client_credentials(ep: Endpoint, http: IdentityHttp, clock: Clock | None = None,
                       **extra: Any) -> ClientCredentials:
    grant = ClientCredentialsGrant(**grant_fields(ep.url, **extra))
    return ClientCredentials(grant, CLIENT_SECRET, http=http, default_resource=UPSTREAM, clock=clock or Clock())


def token_exchange(ep: Endpoint, http: IdentityHttp, clock: Clock | None = None, **extra: Any) -> TokenExchange:
    cache_size = extra.pop("cache_size", 1024)
    grant = TokenExchangeGrant(**grant_fields(ep.url, **extra))
    return TokenExchange(grant, CLIENT_SECRET, http=http, default_resource=UPSTREAM, clock=clock or Clock(),
                         cache_size=cache_size)


def caller(token: str | None = CALLER_TOKEN, expires_at: float | None = None, name: str = "ada") -> Caller:
    return Caller(name, ("dev",), f"oauth:{name}", token=token, expires_at=expires_at)


# -- client credentials -------------------------------------------------------------------------


async def test_client_credentials_are_fetched_once_and_cached(endpoint: Endpoint, http: IdentityHttp) -> None:
    cred = client_credentials(endpoint, http, scope="tools:read tools:write", audience="tools-api")
    assert await cred.authorization(None) == "Bearer cc-1"
    assert await cred.authorization(caller()) == "Bearer cc-1"
    assert await cred.authorization(None) == "Bearer cc-1"
    assert len(endpoint.server.forms) == 1
    assert endpoint.server.forms[0] == {"grant_type": "client_credentials", "resource": UPSTREAM,
                                        "scope": "tools:read tools:write", "audience": "tools-api"}
    assert endpoint.server.methods == ["client_secret_basic"]
    assert set(cred.secrets()) == {CLIENT_SECRET, "cc-1"}


async def test_client_secret_post_and_an_explicit_resource(endpoint: Endpoint, http: IdentityHttp) -> None:
    cred = client_credentials(endpoint, http, auth_method="client_secret_post", resource="https://api.example.test")
    assert await cred.authorization(None) == "Bearer cc-1"
    form = endpoint.server.forms[0]
    assert form["resource"] == "https://api.example.test"
    assert (form["client_id"], form["client_secret"]) == (CLIENT_ID, CLIENT_SECRET)
    assert "scope" not in form
    assert "audience" not in form
    assert endpoint.server.methods == ["client_secret_post"]


async def test_client_credentials_refresh_before_expiry(endpoint: Endpoint, http: IdentityHttp) -> None:
    clock = Clock()
    endpoint.server.answer = {"expires_in": 100}  # margin min(60, 10) = 10 s: used for 90 s
    cred = client_credentials(endpoint, http, clock)
    start = clock.now
    assert await cred.authorization(None) == "Bearer cc-1"
    clock.now = start + 89
    assert await cred.authorization(None) == "Bearer cc-1"
    endpoint.server.answer = {"expires_in": 3600}  # the next token: margin 60 s
    clock.now = start + 90
    assert await cred.authorization(None) == "Bearer cc-2"
    clock.now = start + 90 + 3539
    assert await cred.authorization(None) == "Bearer cc-2"
    clock.now = start + 90 + 3540
    assert await cred.authorization(None) == "Bearer cc-3"
    assert set(cred.secrets()) == {CLIENT_SECRET, "cc-3"}


async def test_a_token_without_expires_in_is_used_once(endpoint: Endpoint, http: IdentityHttp) -> None:
    endpoint.server.answer = {"expires_in": None}
    cred = client_credentials(endpoint, http)
    assert await cred.authorization(None) == "Bearer cc-1"
    assert await cred.authorization(None) == "Bearer cc-2"


async def test_concurrent_first_calls_share_one_fetch(endpoint: Endpoint, http: IdentityHttp) -> None:
    endpoint.server.delay = 0.3
    cred = client_credentials(endpoint, http)
    answers = await asyncio.gather(*(cred.authorization(None) for _ in range(10)))
    assert set(answers) == {"Bearer cc-1"}
    assert len(endpoint.server.forms) == 1


@pytest.mark.parametrize("status", [400, 401, 500])
async def test_error_answers_fail_closed_without_the_secret(endpoint: Endpoint, http: IdentityHttp,
                                                            status: int) -> None:
    endpoint.server.status = status
    cred = client_credentials(endpoint, http)
    with pytest.raises(UpstreamFailed) as info:
        await cred.authorization(None)
    exc = info.value
    assert exc.code == "upstream.credential"
    assert f"HTTP {status}" in exc.detail
    assert "invalid_scope" in exc.detail
    for text in (str(exc), exc.detail, exc.public, repr(exc)):
        assert CLIENT_SECRET not in text
        assert "with/odd" not in text


async def test_wrong_client_secret_is_refused(endpoint: Endpoint, http: IdentityHttp) -> None:
    grant = ClientCredentialsGrant(**grant_fields(endpoint.url))
    cred = ClientCredentials(grant, "not-the-secret", http=http, default_resource=UPSTREAM)
    with pytest.raises(UpstreamFailed, match=r"HTTP 401 \(invalid_client\)") as info:
        await cred.authorization(None)
    assert "not-the-secret" not in str(info.value)


@pytest.mark.parametrize("answer", [
    {"access_token": None},
    {"access_token": ""},
    {"access_token": "two words"},
    {"access_token": 42},
    {"expires_in": 0},
    {"expires_in": -5},
    {"expires_in": "soon"},
    {"expires_in": True},
])
async def test_unusable_token_answers_are_refused(endpoint: Endpoint, http: IdentityHttp,
                                                  answer: dict[str, Any]) -> None:
    endpoint.server.answer = answer
    with pytest.raises(UpstreamFailed) as info:
        await client_credentials(endpoint, http).authorization(None)
    assert info.value.code == "upstream.credential"


@pytest.mark.parametrize("token_type", ["DPoP", "N_A", "mac", None])
async def test_non_bearer_token_types_are_refused(endpoint: Endpoint, http: IdentityHttp,
                                                  token_type: str | None) -> None:
    endpoint.server.answer = {"token_type": token_type}
    with pytest.raises(UpstreamFailed, match="not Bearer") as info:
        await client_credentials(endpoint, http).authorization(None)
    assert info.value.code == "upstream.credential"


async def test_bearer_token_type_is_case_insensitive(endpoint: Endpoint, http: IdentityHttp) -> None:
    endpoint.server.answer = {"token_type": "bearer"}
    assert await client_credentials(endpoint, http).authorization(None) == "Bearer cc-1"


async def test_an_unreachable_token_endpoint_fails_closed(http: IdentityHttp) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    cred = client_credentials(Endpoint(f"http://127.0.0.1:{port}/token", TokenServer()), http)
    with pytest.raises(UpstreamFailed) as info:
        await cred.authorization(None)
    assert info.value.code == "upstream.credential"
    assert CLIENT_SECRET not in str(info.value)


# -- token exchange -----------------------------------------------------------------------------


async def test_token_exchange_sends_the_callers_token_as_subject(endpoint: Endpoint, http: IdentityHttp) -> None:
    cred = token_exchange(endpoint, http, scope="tools:call", audience="tools-api")
    header = await cred.authorization(caller())
    assert header == f"Bearer xchg-1-{len(CALLER_TOKEN)}"
    assert CALLER_TOKEN not in header
    assert endpoint.server.forms == [{
        "grant_type": EXCHANGE_GRANT_TYPE,
        "subject_token": CALLER_TOKEN,
        "subject_token_type": ACCESS_TYPE_URN,
        "requested_token_type": ACCESS_TYPE_URN,
        "resource": UPSTREAM,
        "audience": "tools-api",
        "scope": "tools:call",
    }]
    assert endpoint.server.methods == ["client_secret_basic"]


async def test_token_exchange_caches_per_caller(endpoint: Endpoint, http: IdentityHttp) -> None:
    cred = token_exchange(endpoint, http)
    ada = await cred.authorization(caller())
    assert await cred.authorization(caller()) == ada
    bob = await cred.authorization(caller("bob-token-xyz", name="bob"))
    assert bob != ada
    assert await cred.authorization(caller("bob-token-xyz", name="bob")) == bob
    assert await cred.authorization(caller()) == ada
    assert [f["subject_token"] for f in endpoint.server.forms] == [CALLER_TOKEN, "bob-token-xyz"]
    held = set(cred.secrets())
    assert {CLIENT_SECRET, ada.removeprefix("Bearer "), bob.removeprefix("Bearer ")} <= held
    assert CALLER_TOKEN not in held


async def test_exchanged_tokens_never_outlive_the_callers_token(endpoint: Endpoint, http: IdentityHttp) -> None:
    clock = Clock()
    cred = token_exchange(endpoint, http, clock)
    expires = clock.now + 30
    first = await cred.authorization(caller(expires_at=expires))
    clock.now = expires - 1
    assert await cred.authorization(caller(expires_at=expires)) == first
    clock.now = expires
    with pytest.raises(UpstreamFailed, match="expired") as info:
        await cred.authorization(caller(expires_at=expires))
    assert info.value.code == "upstream.credential"
    assert len(endpoint.server.forms) == 1


async def test_exchanged_tokens_are_refreshed_after_their_expiry(endpoint: Endpoint, http: IdentityHttp) -> None:
    clock = Clock()
    endpoint.server.answer = {"expires_in": 600}  # margin 60 s
    cred = token_exchange(endpoint, http, clock)
    first = await cred.authorization(caller())
    clock.now += 539
    assert await cred.authorization(caller()) == first
    clock.now += 1
    assert await cred.authorization(caller()) != first
    assert len(endpoint.server.forms) == 2


async def test_the_exchange_cache_is_bounded(endpoint: Endpoint, http: IdentityHttp) -> None:
    cred = token_exchange(endpoint, http, cache_size=2)
    for name in ("a", "b", "c"):
        await cred.authorization(caller(f"token-{name}", name=name))
    await cred.authorization(caller("token-c", name="c"))  # still cached
    assert len(endpoint.server.forms) == 3
    await cred.authorization(caller("token-a", name="a"))  # evicted: exchanged again
    assert [f["subject_token"] for f in endpoint.server.forms] == ["token-a", "token-b", "token-c", "token-a"]


async def test_concurrent_exchanges_for_one_caller_share_one_fetch(endpoint: Endpoint, http: IdentityHttp) -> None:
    endpoint.server.delay = 0.3
    cred = token_exchange(endpoint, http)
    answers = await asyncio.gather(*(cred.authorization(caller()) for _ in range(8)),
                                   cred.authorization(caller("other-token", name="bob")))
    assert len(set(answers[:8])) == 1
    assert answers[8] != answers[0]
    assert len(endpoint.server.forms) == 2


@pytest.mark.parametrize("token", [None, ""])
async def test_a_caller_without_a_token_is_refused(endpoint: Endpoint, http: IdentityHttp,
                                                   token: str | None) -> None:
    cred = token_exchange(endpoint, http)
    with pytest.raises(UpstreamFailed, match="needs a delegated token") as info:
        await cred.authorization(caller(token))
    assert info.value.code == "upstream.credential"
    assert endpoint.server.forms == []  # never fell back to the gateway's own token


async def test_gateway_traffic_uses_a_client_credentials_token(endpoint: Endpoint, http: IdentityHttp) -> None:
    cred = token_exchange(endpoint, http, scope="tools:list", audience="tools-api")
    assert await cred.authorization(None) == "Bearer cc-1"
    assert await cred.authorization(None) == "Bearer cc-1"
    assert endpoint.server.forms == [{"grant_type": "client_credentials", "resource": UPSTREAM,
                                      "audience": "tools-api", "scope": "tools:list"}]


async def test_an_exchange_that_echoes_the_subject_is_refused(endpoint: Endpoint, http: IdentityHttp) -> None:
    endpoint.server.echo_subject = True
    cred = token_exchange(endpoint, http)
    with pytest.raises(UpstreamFailed, match="subject token unchanged") as info:
        await cred.authorization(caller())
    assert CALLER_TOKEN not in str(info.value)
    assert CALLER_TOKEN not in cred.secrets()


async def test_an_exchange_issuing_another_token_type_is_refused(endpoint: Endpoint, http: IdentityHttp) -> None:
    endpoint.server.answer = {"issued_token_type": "urn:ietf:params:oauth:token-type:id_token"}
    with pytest.raises(UpstreamFailed, match="not an access token"):
        await token_exchange(endpoint, http).authorization(caller())


# -- building -----------------------------------------------------------------------------------


async def test_build_credential_picks_the_configured_kind(http: IdentityHttp) -> None:
    secrets = {"tok": "static-token", "cs": CLIENT_SECRET}
    grant = grant_fields("https://idp.example.test/token", client_secret="cs")
    static = build_credential(Credential(bearer="tok"), secrets, http=http, default_resource=UPSTREAM)
    assert isinstance(static, StaticBearer)
    assert await static.authorization(caller()) == "Bearer static-token"
    assert static.secrets() == ("static-token",)
    built = build_credential(Credential(client_credentials=grant), secrets, http=http, default_resource=UPSTREAM)
    assert isinstance(built, ClientCredentials)
    built = build_credential(Credential(token_exchange=grant), secrets, http=http, default_resource=UPSTREAM)
    assert isinstance(built, TokenExchange)
    with pytest.raises(ConfigError, match="not resolved"):
        build_credential(Credential(bearer="missing"), secrets, http=http, default_resource=UPSTREAM)
    with pytest.raises(ConfigError, match="not a bearer token"):
        StaticBearer("has a space")


# -- an HTTP upstream sees the gateway's credential only ----------------------------------------


@dataclass
class Seen:
    method: str
    authorization: str | None
    body: bytearray = field(default_factory=bytearray)


@dataclass
class Upstream:
    """The SDK test server behind a middleware recording each request's Authorization header and body."""

    app: ASGIApp
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization")
        entry = Seen(scope["method"], auth.decode("latin-1") if auth is not None else None)
        self.seen.append(entry)

        async def recording() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                entry.body += message.get("body", b"")
            return message

        return await self.app(scope, recording, send)

    def authorizations(self) -> list[str | None]:
        return [entry.authorization for entry in self.seen]

    def call_authorizations(self) -> list[str | None]:
        return [entry.authorization for entry in self.seen if b'"tools/call"' in entry.body]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream(sdk_server.streamable_http_app())
    async with serve_asgi(up) as base:
        up.url = f"{base}/mcp"
        yield up


async def call_through(up: Upstream, credential: UpstreamCredential, protocol: str,
                       who: Caller | None) -> dict[str, Any]:
    client = HttpUpstreamClient("tools", HttpUpstream(url=up.url, protocol=protocol), credential=credential,
                                on_event=Events())
    await client.start()
    try:
        return await client.request("tools/call", {"name": "echo", "arguments": {"text": "hi"}}, timeout=WAIT,
                                    caller=who)
    finally:
        await client.aclose()


@pytest.mark.parametrize("protocol", ["auto", "2025-11-25"])
@pytest.mark.parametrize("kind", ["static", "client_credentials", "token_exchange"])
async def test_the_upstream_sees_the_gateways_credential_never_the_callers(
        upstream: Upstream, endpoint: Endpoint, http: IdentityHttp, protocol: str, kind: str) -> None:
    credential: UpstreamCredential
    if kind == "static":
        credential = StaticBearer("static-upstream-token")
        expected_call, expected_gateway = "Bearer static-upstream-token", "Bearer static-upstream-token"
    elif kind == "client_credentials":
        credential = client_credentials(endpoint, http)
        expected_call, expected_gateway = "Bearer cc-1", "Bearer cc-1"
    else:
        credential = token_exchange(endpoint, http)
        expected_call, expected_gateway = f"Bearer xchg-2-{len(CALLER_TOKEN)}", "Bearer cc-1"
    reply = await call_through(upstream, credential, protocol, caller())
    assert reply["result"]["content"][0]["text"] == "hi"
    seen = upstream.authorizations()
    assert seen
    assert all(h is not None and CALLER_TOKEN not in h for h in seen)
    assert set(seen) == {expected_call, expected_gateway}
    assert upstream.call_authorizations() == [expected_call]
    if kind == "token_exchange":
        subjects = [f.get("subject_token") for f in endpoint.server.forms]
        assert subjects == [None, CALLER_TOKEN]  # the handshake's own token, then the caller's exchange
    if protocol == "2025-11-25":
        assert any(entry.method == "DELETE" for entry in upstream.seen)


async def test_a_caller_without_a_token_never_reaches_a_token_exchange_upstream(
        upstream: Upstream, endpoint: Endpoint, http: IdentityHttp) -> None:
    with pytest.raises(UpstreamFailed, match="needs a delegated token") as info:
        await call_through(upstream, token_exchange(endpoint, http), "auto", caller(None))
    assert info.value.code == "upstream.credential"
    assert upstream.call_authorizations() == []
    assert endpoint.server.grants() == ["client_credentials"]  # the handshake only


async def test_a_failing_token_endpoint_fails_the_handshake_closed(
        upstream: Upstream, endpoint: Endpoint, http: IdentityHttp) -> None:
    endpoint.server.status = 400
    with pytest.raises(UpstreamFailed) as info:
        await call_through(upstream, client_credentials(endpoint, http), "auto", None)
    assert info.value.code == "upstream.credential"
    assert upstream.seen == []


class Forwarding:
    """A (wrong) credential that would pass the caller's own token on: the client must refuse it."""

    async def authorization(self, caller: Caller | None) -> str:
        return f"Bearer {caller.token}" if caller is not None else "Bearer gateway-token"

    def secrets(self) -> tuple[str, ...]:
        return ("gateway-token",)


async def test_the_client_refuses_to_forward_the_callers_token(upstream: Upstream) -> None:
    with pytest.raises(UpstreamFailed, match="would forward the caller's token") as info:
        await call_through(upstream, Forwarding(), "auto", caller())
    assert info.value.code == "upstream.credential"
    assert CALLER_TOKEN not in str(info.value)
    assert upstream.seen
    assert all(entry.authorization == "Bearer gateway-token" for entry in upstream.seen)
    assert upstream.call_authorizations() == []
