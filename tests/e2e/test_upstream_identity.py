"""What HTTP upstreams see: the gateway's own credential, of each configured kind, never the caller's token.

One gateway, an in-test authorization server, and three recording copies of the SDK test server
over Streamable HTTP, one per credential kind (``bearer``, ``client_credentials``,
``token_exchange``). Each recorder writes down every request's JSON-RPC method and
``Authorization`` header, so the tests can say exactly what each upstream was shown.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from tests.authserver import TOKEN_EXCHANGE, AuthServer, running_auth_server
from tests.e2e.harness import WAIT, Running, modern_body, modern_headers, running_gateway
from tests.serving import listening_socket, serve_asgi

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

KINDS = ("st", "cc", "tx")  # upstream names: static bearer, client credentials, token exchange
CC_CLIENT = "gatehold-cc"
TX_CLIENT = "gatehold-tx"
UPSTREAM_SCOPE = "mcp:tools"
CALLER_SUB = "carol"
ROLES: dict[str, Any] = {
    "agent": {"tools": {"st.echo": {}, "cc.echo": {}, "tx.echo": {}}},
    "reader": {"tools": {"st.echo": {}, "tx.echo": {}}},  # the harness's API key alice has this role
}
SCOPES = {"tools:basic": ["st.echo", "cc.echo", "tx.echo"]}


@dataclass
class Seen:
    method: str  # the JSON-RPC method, "response" for an answer, or the HTTP method when there is no body
    authorization: str

    @property
    def token(self) -> str:
        return self.authorization.partition(" ")[2]


class Recorder:
    """ASGI middleware in front of the SDK server: records each request's method and Authorization."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.seen: list[Seen] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        authorization = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        events: list[Message] = []
        body = b""
        if scope["method"] == "POST":
            while True:
                event = await receive()
                events.append(event)
                if event["type"] != "http.request":
                    break
                body += event.get("body", b"")
                if not event.get("more_body"):
                    break
        method = scope["method"]
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            method = str(parsed.get("method") or "response")
        self.seen.append(Seen(method, authorization))
        buffered = list(events)

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.inner(scope, replay, send)


@dataclass
class Setup:
    gw: Running
    auth: AuthServer
    resource: str
    urls: dict[str, str]
    recorders: dict[str, Recorder]
    bearer_secret: str
    client_secret: str
    responses: list[str] = field(default_factory=list)  # every body the gateway returned to a client

    def token(self, sub: str = CALLER_SUB) -> str:
        return self.auth.issue(sub=sub, scope="tools:basic", extra={"roles": ["agent"], "client_id": "agent-app"})

    async def post(self, method: str, params: dict[str, Any] | None, bearer: str,
                   name: str | None = None) -> httpx.Response:
        async with httpx.AsyncClient(timeout=WAIT) as http:
            response = await http.post(self.gw.url, headers=modern_headers(method, name, bearer),
                                       content=orjson.dumps(modern_body(method, params)))
        self.responses.append(response.text)
        return response

    async def call(self, bearer: str, tool: str, text: str = "hi") -> httpx.Response:
        return await self.post("tools/call", {"name": tool, "arguments": {"text": text}}, bearer, tool)

    def seen(self, upstream: str) -> list[Seen]:
        return list(self.recorders[upstream].seen)

    def token_calls(self, client_id: str, grant_type: str) -> int:
        """Token endpoint requests by ``client_id`` for ``grant_type`` (the server logs auth and form apart)."""
        return sum(1 for (who, _), form in zip(self.auth.token_auth, self.auth.token_requests, strict=True)
                   if who == client_id and form.get("grant_type") == grant_type)


def claims_of(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


@asynccontextmanager
async def gateway_with_credentials(tmp: Path, monkeypatch: pytest.MonkeyPatch,
                                   protocol: str = "auto") -> AsyncIterator[Setup]:
    """The gateway (OAuth for callers) in front of three recording SDK servers, one per credential kind.

    ``protocol`` is the upstreams' era: "auto" finds the SDK server speaks 2026-07-28 (``server/discover``,
    a POST per request); "2025-11-25" makes the gateway open a session (``initialize``, the
    ``notifications/initialized`` POST, the GET stream, the DELETE at shutdown).
    """
    from tests.servers.sdk_server import server

    bearer_secret = f"static-upstream-{secrets.token_urlsafe(18)}"
    client_secret = f"client-secret-{secrets.token_urlsafe(18)}"
    monkeypatch.setenv("GATEHOLD_TEST_STATIC_BEARER", bearer_secret)
    monkeypatch.setenv("GATEHOLD_TEST_CLIENT_SECRET", client_secret)
    async with AsyncExitStack() as stack:
        recorders = {kind: Recorder(server.streamable_http_app()) for kind in KINDS}
        urls = {kind: f"{await stack.enter_async_context(serve_asgi(recorders[kind]))}/mcp" for kind in KINDS}
        auth = await stack.enter_async_context(running_auth_server())
        auth.add_key("RS256")
        auth.register_client(CC_CLIENT, client_secret)
        auth.register_client(TX_CLIENT, client_secret)
        sock = listening_socket()
        resource = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
        auth.default_audience = resource

        def grant(client_id: str, kind: str) -> dict[str, Any]:
            return {"token_endpoint": auth.token_endpoint, "client_id": client_id, "client_secret": "client_secret",
                    "scope": UPSTREAM_SCOPE, "resource": urls[kind]}

        upstreams = {
            "st": {"url": urls["st"], "protocol": protocol, "credential": {"bearer": "static_bearer"}},
            "cc": {"url": urls["cc"], "protocol": protocol,
                   "credential": {"client_credentials": grant(CC_CLIENT, "cc")}},
            "tx": {"url": urls["tx"], "protocol": protocol, "credential": {"token_exchange": grant(TX_CLIENT, "tx")}},
        }
        oauth = {"issuer": auth.issuer, "max_lifetime_seconds": 3600, "leeway_seconds": 5,
                 "required_claims": ["iat", "sub", "jti"]}
        gw = await stack.enter_async_context(running_gateway(
            tmp, upstreams, ROLES, sock=sock, gateway={"resource": resource}, scopes=SCOPES,
            auth={"oauth": oauth},
            secrets={"static_bearer": "env:GATEHOLD_TEST_STATIC_BEARER",
                     "client_secret": "env:GATEHOLD_TEST_CLIENT_SECRET"}))
        for kind in KINDS:
            assert sorted(gw.gateway.catalog.tools).count(f"{kind}.echo") == 1, f"upstream {kind} did not start"
        yield Setup(gw, auth, resource, urls, recorders, bearer_secret, client_secret)


ERAS = {"modern": "auto", "legacy": "2025-11-25"}


@pytest.fixture(params=sorted(ERAS))
async def setup(request: pytest.FixtureRequest, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    async with gateway_with_credentials(tmp_path, monkeypatch, ERAS[request.param]) as value:
        yield value


def _echoed(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    body = response.json()
    assert "result" in body, body
    text: str = body["result"]["content"][0]["text"]
    return text


def _split(seen: list[Seen]) -> tuple[list[Seen], list[Seen]]:
    """(the gateway's own traffic: handshake and listings, the tool calls)."""
    calls = [s for s in seen if s.method == "tools/call"]
    return [s for s in seen if s.method != "tools/call"], calls


# -- (a) what each upstream saw ------------------------------------------------------------------


async def test_a_static_bearer_upstream_sees_only_the_configured_secret(setup: Setup) -> None:
    caller = setup.token()
    listed = await setup.post("tools/list", None, caller)
    assert sorted(t["name"] for t in listed.json()["result"]["tools"]) == ["cc.echo", "st.echo", "tx.echo"]
    assert _echoed(await setup.call(caller, "st.echo", "one")) == "one"
    assert _echoed(await setup.call(caller, "st.echo", "two")) == "two"

    own, calls = _split(setup.seen("st"))
    assert any(s.method in ("initialize", "server/discover") for s in own)
    assert any(s.method == "tools/list" for s in own)
    assert len(calls) == 2
    assert {s.authorization for s in own + calls} == {f"Bearer {setup.bearer_secret}"}
    assert all(caller not in s.authorization for s in own + calls)


async def test_a_client_credentials_upstream_sees_the_gateways_token_fetched_once(setup: Setup) -> None:
    first, second = setup.token(), setup.token(sub="dave")
    for bearer in (first, second, first):
        assert _echoed(await setup.call(bearer, "cc.echo")) == "hi"

    own, calls = _split(setup.seen("cc"))
    assert any(s.method == "tools/list" for s in own)
    assert len(calls) == 3
    tokens = {s.token for s in own + calls}
    assert len(tokens) == 1  # one token, reused for the handshake, the listing and every caller's call
    token = tokens.pop()
    assert all(s.authorization == f"Bearer {token}" for s in own + calls)
    assert token not in (first, second)
    claims = claims_of(token)
    assert claims["iss"] == setup.auth.issuer
    assert claims["aud"] == setup.urls["cc"]  # bound to this upstream (RFC 8707 resource)
    assert claims["sub"] == CC_CLIENT  # the gateway's own identity, not a caller's
    assert claims["scope"] == UPSTREAM_SCOPE
    assert setup.auth.verify_own(token) is not None  # really issued by the authorization server
    # (b) fetched once at start, then reused across the handshake, the listing and three calls
    assert setup.token_calls(CC_CLIENT, "client_credentials") == 1
    assert setup.token_calls(CC_CLIENT, TOKEN_EXCHANGE) == 0


async def test_a_token_exchange_upstream_sees_a_token_issued_for_the_caller(setup: Setup) -> None:
    caller = setup.token()
    assert _echoed(await setup.call(caller, "tx.echo", "first")) == "first"
    assert _echoed(await setup.call(caller, "tx.echo", "again")) == "again"

    own, calls = _split(setup.seen("tx"))
    assert len(calls) == 2
    exchanged = {s.token for s in calls}
    assert len(exchanged) == 1  # cached for the same caller token
    token = exchanged.pop()
    assert token != caller
    claims = claims_of(token)
    assert claims["sub"] == CALLER_SUB == claims_of(caller)["sub"]  # on behalf of the caller
    assert claims["act"] == {"sub": TX_CLIENT}  # ... by the gateway
    assert claims["aud"] == setup.urls["tx"]
    assert claims["jti"] != claims_of(caller)["jti"]
    assert setup.auth.verify_own(token) is not None

    # The gateway's own traffic (handshake, listing) carries its client-credentials token instead.
    assert any(s.method == "tools/list" for s in own)
    for seen in own:
        own_claims = claims_of(seen.token)
        assert own_claims["sub"] == TX_CLIENT
        assert own_claims["aud"] == setup.urls["tx"]
        assert "act" not in own_claims
    assert all(caller not in s.authorization for s in own + calls)

    # (b) the exchange sent the caller's token to the token endpoint only, as subject_token, once.
    exchanges = [form for form in setup.auth.token_requests if form.get("grant_type") == TOKEN_EXCHANGE]
    assert len(exchanges) == 1
    assert exchanges[0]["subject_token"] == caller
    assert exchanges[0]["subject_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert exchanges[0]["resource"] == setup.urls["tx"]
    assert exchanges[0]["scope"] == UPSTREAM_SCOPE
    assert setup.token_calls(TX_CLIENT, TOKEN_EXCHANGE) == 1
    assert setup.token_calls(TX_CLIENT, "client_credentials") == 1

    # A second caller gets its own exchange and its own token.
    other = setup.token(sub="erin")
    assert _echoed(await setup.call(other, "tx.echo")) == "hi"
    latest = setup.seen("tx")[-1]
    assert latest.method == "tools/call"
    assert claims_of(latest.token)["sub"] == "erin"
    assert latest.token not in (token, other)
    assert setup.token_calls(TX_CLIENT, TOKEN_EXCHANGE) == 2


# -- (c) a caller with nothing to exchange -----------------------------------------------------


async def test_an_api_key_caller_through_token_exchange_is_refused_fail_closed(setup: Setup) -> None:
    before = len(setup.seen("tx"))
    exchanges = setup.token_calls(TX_CLIENT, TOKEN_EXCHANGE)
    response = await setup.call(setup.gw.key("alice"), "tx.echo")
    error = response.json()["error"]
    assert error["data"]["code"] == "upstream.credential"
    assert error["message"] == "upstream server unavailable"
    assert "apikey" not in response.text  # the detail stays in the audit trail
    calls = [s for s in setup.seen("tx")[before:] if s.method == "tools/call"]
    assert calls == []  # the upstream was never called: no gateway identity stands in for the caller
    assert setup.token_calls(TX_CLIENT, TOKEN_EXCHANGE) == exchanges
    record = [r for r in setup.gw.records() if r.get("tool") == "tx.echo"][-1]
    assert record["principal"] == "alice"
    assert record["credential_id"] == "apikey:alice"
    assert record["code"] == "upstream.credential"
    assert record["decision"] == "error"
    assert "delegated token" in record["reason"]

    # The same key through the static-bearer upstream still works: the refusal is the exchange's alone.
    assert _echoed(await setup.call(setup.gw.key("alice"), "st.echo")) == "hi"


# -- (d) no secret anywhere ------------------------------------------------------------------------


@pytest.mark.parametrize("era", sorted(ERAS))
async def test_no_secret_or_token_leaks_to_clients_audit_or_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture, era: str) -> None:
    caplog.set_level(logging.DEBUG, logger="gatehold")
    async with gateway_with_credentials(tmp_path, monkeypatch, ERAS[era]) as s:
        caller = s.token()
        listed = await s.post("tools/list", None, caller)
        assert len(listed.json()["result"]["tools"]) == 3
        for tool in ("st.echo", "cc.echo", "tx.echo"):
            assert _echoed(await s.call(caller, tool)) == "hi"
        refused = await s.call(s.gw.key("alice"), "tx.echo")  # API key: nothing to exchange
        assert refused.json()["error"]["data"]["code"] == "upstream.credential"

        s.auth.fail["token"] = 500  # the token endpoint goes down
        fresh = s.token(sub="frank")  # a new caller token needs a new exchange
        failed = await s.call(fresh, "tx.echo")
        error = failed.json()["error"]
        assert error["data"]["code"] == "upstream.credential"
        assert [form.get("subject_token") for form in s.auth.token_requests][-1] == fresh
        assert _echoed(await s.call(fresh, "cc.echo")) == "hi"  # the cached gateway token still serves
        assert _echoed(await s.call(fresh, "st.echo")) == "hi"
        record = [r for r in s.gw.records() if r.get("tool") == "tx.echo"][-1]
        assert record["code"] == "upstream.credential"
        assert "HTTP 500" in record["reason"]  # the audit says why, by host and status only

        responses = list(s.responses)
    # after the gateway stopped: every sink is flushed and closed, and a session's DELETE was recorded too
    received = {seen.token for kind in KINDS for seen in s.seen(kind)}
    if era == "legacy":
        assert {seen.method for kind in KINDS for seen in s.seen(kind)} >= {"initialize", "GET", "DELETE"}
    assert received >= {s.bearer_secret}
    assert len(received) >= 4  # the static secret, two client-credentials tokens, exchanged tokens
    forbidden = {"static bearer secret": s.bearer_secret, "client secret": s.client_secret,
                 "caller token": caller, "second caller token": fresh, "API key": s.gw.key("alice")}
    for number, token in enumerate(sorted(received)):
        forbidden[f"token the upstream received #{number}"] = token
    for name, value in list(forbidden.items()):
        if value.count(".") == 2:  # a JWT: its signature alone would be a leak too
            forbidden[f"{name} (signature)"] = value.rsplit(".", 1)[1]

    places: dict[str, str] = {
        "tools/list result": listed.text,
        "audit JSONL": (tmp_path / "audit.jsonl").read_text(),
        "captured gatehold logs": caplog.text,
    }
    for number, body in enumerate(responses):
        places[f"response body #{number}"] = body
    for path in sorted(tmp_path.glob("audit.db*")):  # the database and any WAL/journal beside it
        places[path.name] = path.read_bytes().decode("latin-1")
    assert any(r.name.startswith("gatehold") for r in caplog.records), "no gatehold log output was captured"
    assert failed.text in responses
    assert refused.text in responses
    leaks = [(what, where) for what, value in forbidden.items() for where, text in places.items() if value in text]
    assert leaks == []
