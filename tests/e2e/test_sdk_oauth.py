"""The official MCP SDK client's own OAuth flow, in both protocol eras, through Gatehold.

The SDK (``mcp.client.auth.OAuthClientProvider``) gets a 401, reads Gatehold's RFC 9728 metadata,
registers with the in-test authorization server (RFC 7591), runs the authorization-code flow with
PKCE and RFC 8707 ``resource``, and calls. A call needing another scope gets a 403
``insufficient_scope``; the SDK re-authorizes (step-up) and its retried call succeeds.

The browser is a plain HTTP GET of the authorization URL: the in-test server auto-approves and
redirects to the client's redirect URI with ``code`` and ``state``, which the callback hands back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from tests.e2e.harness import WAIT
from tests.e2e.identity import Setup, identity_gateway

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

MODES = ["legacy", "2026-07-28"]
REDIRECT_URI = "http://127.0.0.1:9/callback"  # never contacted: the callback is read from the Location header


@dataclass
class MemoryStorage:
    """An in-memory ``TokenStorage``; keeps every token set so the test can read each grant."""

    tokens: OAuthToken | None = None
    client_info: OAuthClientInformationFull | None = None
    history: list[OAuthToken] = field(default_factory=list)

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.history.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@dataclass
class Browser:
    """Follows the authorization URL once, as a browser would, and keeps what the redirect carried."""

    authorizations: list[dict[str, list[str]]] = field(default_factory=list)  # query of each /authorize
    pending: AuthorizationCodeResult | None = None

    async def redirect(self, url: str) -> None:
        self.authorizations.append(parse_qs(urlsplit(url).query))
        async with httpx.AsyncClient(timeout=WAIT) as http:
            response = await http.get(url, follow_redirects=False)
        assert response.status_code == 302, response.text
        location = response.headers["location"]
        assert location.startswith(REDIRECT_URI + "?"), location
        query = parse_qs(urlsplit(location).query)
        self.pending = AuthorizationCodeResult(code=query["code"][0], state=query.get("state", [None])[0],
                                               iss=query.get("iss", [None])[0])

    async def callback(self) -> AuthorizationCodeResult:
        result, self.pending = self.pending, None
        assert result is not None, "callback without a preceding redirect"
        return result


@dataclass
class SdkOAuth:
    setup: Setup
    storage: MemoryStorage
    browser: Browser
    client: Client

    def claims(self, index: int) -> dict[str, Any]:
        """Claims of the index-th access token the SDK stored (unverified: the gateway verified them)."""
        return jwt.decode(self.storage.history[index].access_token, options={"verify_signature": False})

    def authorization_codes(self) -> list[dict[str, Any]]:
        return [r for r in self.setup.auth.token_requests if r.get("grant_type") == "authorization_code"]


def text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


@asynccontextmanager
async def sdk_oauth_client(tmp: Path, mode: str) -> AsyncIterator[SdkOAuth]:
    # Tokens from the code flow carry no roles claim: every OAuth caller gets the agent role.
    async with identity_gateway(tmp, default_roles=["agent"]) as setup:
        storage, browser = MemoryStorage(), Browser()
        metadata = OAuthClientMetadata(redirect_uris=[REDIRECT_URI],
                                       grant_types=["authorization_code", "refresh_token"], response_types=["code"],
                                       token_endpoint_auth_method="none", client_name="gatehold-test")
        provider = OAuthClientProvider(setup.gw.url, metadata, storage, redirect_handler=browser.redirect,
                                       callback_handler=browser.callback)
        http = httpx2.AsyncClient(auth=provider, timeout=WAIT)
        async with Client(streamable_http_client(setup.gw.url, http_client=http), mode=mode) as client:
            yield SdkOAuth(setup, storage, browser, client)


@pytest.mark.parametrize("mode", MODES)
async def test_sdk_client_authorizes_itself_and_calls_with_the_initial_scope(tmp_path: Path, mode: str) -> None:
    async with sdk_oauth_client(tmp_path, mode) as s:
        assert s.client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        tools = await s.client.list_tools()
        assert sorted(t.name for t in tools.tools) == ["sdk.add", "sdk.echo"]
        result = await s.client.call_tool("sdk.echo", {"text": "héllo"})
        assert not result.is_error
        assert text(result) == "héllo"

        auth = s.setup.auth
        # RFC 7591: the SDK registered itself, as a public client with our redirect URI.
        assert len(auth.registrations) == 1
        assert auth.registrations[0]["redirect_uris"] == [REDIRECT_URI]
        assert auth.registrations[0]["token_endpoint_auth_method"] == "none"
        assert s.storage.client_info is not None
        assert s.storage.client_info.client_id in auth.clients

        # One authorization, asking for the scope the 401 challenge named, bound to the gateway (RFC 8707).
        assert len(s.browser.authorizations) == 1
        first = s.browser.authorizations[0]
        assert first["scope"] == ["tools:basic"]
        assert first["resource"] == [s.setup.resource]
        assert first["code_challenge_method"] == ["S256"]
        codes = s.authorization_codes()
        assert len(codes) == 1
        assert codes[0]["resource"] == s.setup.resource
        assert codes[0]["client_id"] == s.storage.client_info.client_id
        assert "code_verifier" in codes[0]

        # The token the SDK then used is for the gateway's resource and carries only the initial scope.
        assert len(s.storage.history) == 1
        claims = s.claims(0)
        assert claims["aud"] == s.setup.resource
        assert claims["scope"] == "tools:basic"
        assert claims["iss"] == auth.issuer

    records = [r for r in s.setup.gw.records() if r["kind"] != "lifecycle"]
    assert (records[0]["decision"], records[0]["code"]) == ("deny", "auth.missing")  # the 401 that started it
    echo = [r for r in records if r.get("tool") == "sdk.echo"]
    assert [(r["decision"], r["principal"]) for r in echo] == [("allow", "alice")]
    assert echo[0]["credential_id"] == f"jwt:jti:{claims['jti']}"  # the call used the SDK's token
    assert not any(r["code"] == "auth.insufficient_scope" for r in records)


@pytest.mark.parametrize("mode", MODES)
async def test_sdk_client_steps_up_on_insufficient_scope_and_the_retry_succeeds(tmp_path: Path, mode: str) -> None:
    async with sdk_oauth_client(tmp_path, mode) as s:
        assert text(await s.client.call_tool("sdk.echo", {"text": "hi"})) == "hi"
        assert [a["scope"] for a in s.browser.authorizations] == [["tools:basic"]]

        result = await s.client.call_tool("sdk.add", {"a": 1, "b": 2})
        assert not result.is_error
        assert text(result) == "3"

        # A second authorization happened, transparently. The SDK (SEP-2350) asks for the union of
        # what it held and every scope the 403 named: the gateway names only the narrowest scope
        # that grants sdk.add, so the token does not widen to tools:all.
        assert len(s.browser.authorizations) == 2
        second = s.browser.authorizations[1]
        assert second["scope"] == ["tools:basic tools:math"]
        assert second["resource"] == [s.setup.resource]
        assert len(s.authorization_codes()) == 2
        assert all(r["resource"] == s.setup.resource for r in s.authorization_codes())
        assert len(s.setup.auth.registrations) == 1  # the registration was reused

        stepped = s.claims(1)
        assert stepped["aud"] == s.setup.resource
        assert set(stepped["scope"].split()) == {"tools:basic", "tools:math"}
        assert "tools:basic" in stepped["scope"].split()  # the earlier grant was kept
        first = s.claims(0)
        assert first["scope"] == "tools:basic"

        # The stepped-up token keeps working for what the first one could do.
        assert text(await s.client.call_tool("sdk.echo", {"text": "again"})) == "again"
        assert len(s.browser.authorizations) == 2

    records = s.setup.gw.records()
    add = [r for r in records if r.get("tool") == "sdk.add"]
    assert [(r["decision"], r["code"]) for r in add] == [("deny", "auth.insufficient_scope"), ("allow", None)]
    # The refusal was for the first token, the allowed retry carried the stepped-up one.
    assert add[0]["credential_id"] == f"jwt:jti:{first['jti']}"
    assert add[1]["credential_id"] == f"jwt:jti:{stepped['jti']}"
