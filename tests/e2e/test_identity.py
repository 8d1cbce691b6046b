"""Identity end to end: OAuth tokens from a real in-test authorization server, through a real gateway.

Covers RFC 9728 metadata, the 401/403 challenges, the JWT attack suite (counted in the run's
summary), scope step-up, revocation through the command line, and session sweeping.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.attack_report import record
from tests.e2e.harness import (
    REPO,
    WAIT,
    modern_body,
    modern_headers,
    serve_asgi,
)
from tests.e2e.identity import LIFETIME_CAP, SCOPES, Setup, after_revocation_window, identity_gateway

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async with identity_gateway(tmp_path) as value:
        yield value


# -- metadata and challenges -----------------------------------------------------------------


async def test_protected_resource_metadata_is_served_at_both_well_known_paths(setup: Setup) -> None:
    base = setup.resource.removesuffix("/mcp")
    async with httpx.AsyncClient(timeout=WAIT) as http:
        for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
            response = await http.get(base + path)
            assert response.status_code == 200, path
            document = response.json()
            assert document["resource"] == setup.resource
            assert document["authorization_servers"] == [setup.auth.issuer]
            assert document["scopes_supported"] == sorted(SCOPES)
            assert document["bearer_methods_supported"] == ["header"]


async def test_no_token_gets_a_401_pointing_at_the_metadata_with_the_initial_scope(setup: Setup) -> None:
    response = await setup.call(None)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{setup.resource.removesuffix("/mcp")}/.well-known/oauth-protected-resource/mcp"' \
        in challenge
    assert 'scope="tools:basic"' in challenge
    assert "error=" not in challenge  # RFC 6750: no error code when no credential was sent
    assert setup.last_record()["code"] == "auth.missing"


async def test_a_valid_token_calls_and_the_audit_names_the_token_id_never_the_token(setup: Setup) -> None:
    token = setup.token()
    response = await setup.call(token)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["content"][0]["text"] == "hi"
    claims = jwt.decode(token, options={"verify_signature": False})
    decision = [r for r in setup.gw.records() if r.get("tool") == "sdk.echo"][-1]
    assert decision["principal"] == "alice"
    assert decision["credential_id"] == f"jwt:jti:{claims['jti']}"
    everything = (setup.gw.tmp / "audit.jsonl").read_text() + (setup.gw.tmp / "audit.db").read_bytes().decode(
        "latin-1")
    assert token not in everything
    assert token.split(".")[2] not in everything


async def test_roles_come_from_the_token_and_unknown_roles_grant_nothing(setup: Setup) -> None:
    response = await setup.call(setup.token(extra={"roles": ["nobody", "made-up"]}))
    assert response.status_code == 200
    assert response.json()["error"]["data"]["code"] == "policy.not_granted"


# -- the JWT attack suite --------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _segment(obj: dict[str, Any]) -> str:
    return _b64(orjson.dumps(obj))


def _alg_none(s: Setup) -> str:
    claims = s.auth.claims(extra={"roles": ["agent"]}, scope="tools:basic")
    return f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(claims)}."


def _hmac_with_public_key(s: Setup) -> str:
    key = s.auth.signing_key()
    rsa_key = next(k for k in s.auth.keys.values() if k.alg == "RS256")
    pem = rsa_key.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = _segment({"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid})
    payload = _segment(s.auth.claims(extra={"roles": ["agent"]}, scope="tools:basic"))
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert key is not None
    return f"{header}.{payload}.{_b64(signature)}"


def _attacker_key() -> tuple[Any, dict[str, Any]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = orjson.loads(RSAAlgorithm.to_jwk(private.public_key()))
    return private, {**public, "kid": "attacker", "alg": "RS256", "use": "sig"}


def _signed_by_attacker(s: Setup, headers: dict[str, Any]) -> str:
    private, _ = _attacker_key()
    claims = s.auth.claims(extra={"roles": ["agent"]}, scope="tools:basic")
    return jwt.encode(claims, private, algorithm="RS256", headers={"kid": "attacker", **headers})


def _embedded_jwk(s: Setup) -> str:
    private, public = _attacker_key()
    claims = s.auth.claims(extra={"roles": ["agent"]}, scope="tools:basic")
    return jwt.encode(claims, private, algorithm="RS256", headers={"kid": "attacker", "jwk": public})


def _tampered(s: Setup) -> str:
    header, _payload, signature = s.token().split(".")
    forged = s.auth.claims(sub="root", extra={"roles": ["agent"]}, scope="tools:all")
    return f"{header}.{_segment(forged)}.{signature}"


def _truncated(s: Setup) -> str:
    return s.token()[:-10]


def _with_kid(kid: str) -> Callable[[Setup], str]:
    def make(s: Setup) -> str:
        claims = s.auth.claims(extra={"roles": ["agent"]}, scope="tools:basic")
        return jwt.encode(claims, s.auth.signing_key().private, algorithm=s.auth.signing_key().alg,
                          headers={"kid": kid})
    return make


ATTACKS: dict[str, tuple[Callable[[Setup], str], str]] = {
    "alg none": (_alg_none, "auth.invalid"),
    "RS256->HS256 with the public key as secret": (_hmac_with_public_key, "auth.invalid"),
    "unknown kid": (_with_kid("no-such-key"), "auth.invalid"),
    "kid path traversal": (_with_kid("../../../../../../dev/null"), "auth.invalid"),
    "kid SQL injection": (_with_kid("x' UNION SELECT 'secret' --"), "auth.invalid"),
    "embedded jwk": (_embedded_jwk, "auth.invalid"),
    "wrong iss": (lambda s: s.token(extra={"iss": "https://evil.example"}), "auth.invalid"),
    "wrong aud": (lambda s: s.token(aud="https://elsewhere.example/mcp"), "auth.invalid"),
    "missing aud": (lambda s: s.token(aud=None), "auth.invalid"),
    "sibling resource audience (replay)": (
        lambda s: s.token(aud=s.resource.replace("/mcp", "/billing/mcp")), "auth.invalid"),
    "expired": (lambda s: s.token(extra={"exp": int(s.auth.clock()) - 600, "iat": int(s.auth.clock()) - 900}),
                "auth.expired"),
    "not yet valid": (lambda s: s.token(extra={"nbf": int(s.auth.clock()) + 600}), "auth.not_yet_valid"),
    "far-future iat": (lambda s: s.token(extra={"iat": int(s.auth.clock()) + 86400,
                                                "exp": int(s.auth.clock()) + 86400 + 60}), "auth.invalid"),
    "lifetime over the cap": (lambda s: s.token(lifetime=LIFETIME_CAP * 4), "auth.invalid"),
    "tampered payload": (_tampered, "auth.invalid"),
    "truncated signature": (_truncated, "auth.invalid"),
    "missing required claim (jti)": (lambda s: s.token(omit=["jti"]), "auth.invalid"),
    "missing required claim (exp)": (lambda s: s.token(omit=["exp"]), "auth.invalid"),
}


@pytest.mark.parametrize("case", sorted(ATTACKS))
async def test_jwt_attack_is_refused_with_401_and_audited(setup: Setup, case: str) -> None:
    make, code = ATTACKS[case]
    response = await setup.call(make(setup))
    refused = response.status_code == 401 and setup.last_record()["code"] == code
    record("JWT attack suite", case, refused)
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge
    assert "resource_metadata=" in challenge
    assert setup.last_record()["decision"] == "deny"
    assert setup.last_record()["code"] == code


@asynccontextmanager
async def attacker_server() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []
    _, public = _attacker_key()

    async def jwks(request: Any) -> JSONResponse:
        seen.append(request.url.path)
        return JSONResponse({"keys": [public]})

    async with serve_asgi(Starlette(routes=[Route("/{path:path}", jwks)])) as base:
        yield base, seen


@pytest.mark.parametrize("header", ["jku", "x5u"])
async def test_key_url_headers_are_ignored_and_never_fetched(setup: Setup, header: str) -> None:
    async with attacker_server() as (base, seen):
        token = _signed_by_attacker(setup, {header: f"{base}/jwks.json"})
        response = await setup.call(token)
        refused = response.status_code == 401 and not seen
        record("JWT attack suite", f"{header} pointing elsewhere", refused)
        assert response.status_code == 401
        assert seen == []  # the gateway never asked the attacker's server for keys
        assert setup.last_record()["code"] == "auth.invalid"


async def test_token_in_the_query_string_is_refused_even_when_valid(setup: Setup) -> None:
    token = setup.token()
    response = await setup.call(None, query=f"?access_token={token}")
    record("JWT attack suite", "token in query string", response.status_code == 400)
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["www-authenticate"]
    assert setup.last_record()["code"] == "auth.token_in_query"
    assert token not in (setup.gw.tmp / "audit.jsonl").read_text()


async def test_a_revoked_jti_is_refused_once_the_revocation_window_passes(setup: Setup) -> None:
    token = setup.token()
    assert (await setup.call(token)).status_code == 200
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    config = setup.gw.tmp / "revoke.yaml"
    config.write_text(f"auth: {{revocations: {setup.gw.tmp / 'gatehold-revocations.db'}}}\n")
    done = subprocess.run([sys.executable, "-m", "gatehold", "revoke", "--config", str(config), "jti", jti,
                           "--reason", "leaked in a ticket"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    await after_revocation_window()
    response = await setup.call(token)
    record("JWT attack suite", "revoked jti", response.status_code == 401)
    assert response.status_code == 401
    assert 'error_description="the credential was revoked"' in response.headers["www-authenticate"]
    assert setup.last_record()["code"] == "auth.revoked"
    assert setup.last_record()["credential_id"] == f"jwt:jti:{jti}"  # whose revoked token was refused
    assert (await setup.call(setup.token())).status_code == 200  # another token of the same subject still works


# -- step-up ---------------------------------------------------------------------------------


async def test_a_call_needing_another_scope_gets_403_naming_it_then_succeeds_after_step_up(setup: Setup) -> None:
    basic = setup.token(scope="tools:basic")
    response = await setup.call(basic, "sdk.add")
    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="tools:math"' in challenge  # the narrowest scope that grants sdk.add, not tools:all
    assert "resource_metadata=" in challenge
    assert response.json()["error"]["data"]["requiredScopes"] == ["tools:math"]
    assert setup.last_record()["code"] == "auth.insufficient_scope"

    stepped = setup.token(scope="tools:basic tools:math")
    response = await setup.call(stepped, "sdk.add")
    assert response.status_code == 200
    assert response.json()["result"]["content"][0]["text"] == "3"


async def test_tools_list_shows_what_a_step_up_could_unlock_but_not_what_roles_forbid(setup: Setup) -> None:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.post(setup.gw.url, headers=modern_headers("tools/list", None, setup.token(
            scope="tools:basic")), content=orjson.dumps(modern_body("tools/list")))
    names = sorted(t["name"] for t in response.json()["result"]["tools"])
    assert names == ["sdk.add", "sdk.echo"]  # sdk.env matches tools:all but no role grants it


async def test_scope_mode_roles_ignores_scopes(tmp_path: Path) -> None:
    async with identity_gateway(tmp_path, scope_mode="roles") as s:
        assert (await s.call(s.token(scope="unrelated"), "sdk.add")).status_code == 200


async def test_scope_mode_scopes_lets_a_scope_alone_grant(tmp_path: Path) -> None:
    async with identity_gateway(tmp_path, scope_mode="scopes") as s:
        no_roles = s.token(scope="tools:math", extra={"roles": []})
        assert (await s.call(no_roles, "sdk.add")).status_code == 200
        assert (await s.call(no_roles, "sdk.echo")).status_code == 403


# -- sessions and revocation -----------------------------------------------------------------


async def _legacy_session(http: httpx.AsyncClient, url: str, token: str) -> str:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    response = await http.post(url, json=body, headers={"Authorization": f"Bearer {token}",
                                                        "Accept": "application/json, text/event-stream"})
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"]


async def test_a_session_survives_a_refreshed_token_but_ends_when_its_credential_is_revoked(setup: Setup) -> None:
    first = setup.token()
    async with httpx.AsyncClient(timeout=WAIT) as http:
        sid = await _legacy_session(http, setup.gw.url, first)
        headers = {"Accept": "text/event-stream", "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"}
        # A refreshed token for the same subject and client keeps the session.
        second = setup.token()
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        response = await http.post(setup.gw.url, json=ping, headers={
            **headers, "Accept": "application/json, text/event-stream", "Authorization": f"Bearer {second}"})
        assert response.status_code == 200, response.text

        async def stream_until_closed() -> None:
            async with http.stream("GET", setup.gw.url, headers={**headers, "Authorization": f"Bearer {second}"}) \
                    as stream:
                assert stream.status_code == 200
                async for _ in stream.aiter_bytes():
                    pass

        reader = asyncio.create_task(stream_until_closed())
        await asyncio.sleep(0.3)
        assert not reader.done()
        jti = jwt.decode(second, options={"verify_signature": False})["jti"]
        from gatehold.state.revocations import Revocation, SqliteRevocations

        store = SqliteRevocations(setup.gw.tmp / "gatehold-revocations.db")
        await store.revoke(Revocation("jti", jti, "test", 0.0, "test", None))
        await store.aclose()
        await asyncio.wait_for(reader, timeout=10)  # the sweep closed the open stream
        third = setup.token()
        response = await http.post(setup.gw.url, json=ping, headers={
            **headers, "Accept": "application/json, text/event-stream", "Authorization": f"Bearer {third}"})
        assert response.status_code == 404  # the session is gone, even for a fresh token
    assert any(r.get("reason") == "session closed: credential revoked" for r in setup.gw.records())


async def test_jwks_down_fails_closed_with_503(setup: Setup) -> None:
    setup.auth.fail["jwks"] = 500
    token = setup.auth.issue(kid=setup.auth.add_key("RS256"), extra={"roles": ["agent"]}, scope="tools:basic")
    response = await setup.call(token)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert setup.last_record()["code"] == "auth.unavailable"
