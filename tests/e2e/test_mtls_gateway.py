"""The whole gateway over TLS with client certificates required: a SPIFFE ID in a certificate is the caller.

A real uvicorn serves the real app with ``ssl_options`` and our TLS protocol class, in front of the
SDK test server over stdio. Callers are real httpx (and SDK) clients holding certificates from the
test PKI of ``tests/front/test_tls.py``; the gateway's config maps one URI SAN to ``builder``.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import orjson
import pytest
from cryptography import x509
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from gatehold.config import TlsSettings
from gatehold.front.tls import ssl_options, uvicorn_protocol_kwargs
from gatehold.state.revocations import Revocation, SqliteRevocations
from tests.e2e.harness import WAIT, Running, modern_body, modern_headers, running_gateway, stdio_sdk_upstream
from tests.e2e.identity import after_revocation_window
from tests.front.test_tls import Pki, _name, build_pki, issue

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

SPIFFE_ID = "spiffe://example.org/ns/a/sa/b"
ROLES: dict[str, Any] = {"builder": {"tools": {"sdk.echo": {}}}}
# TLS 1.2 fails the handshake itself (ConnectError); in TLS 1.3 the client finishes its side first and
# reads the server's alert with the first response (ReadError).
TLS_HANDSHAKE_REFUSED = (httpx.ConnectError, httpx.ReadError)
VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


@dataclass
class Tls:
    gw: Running
    pki: Pki

    def context(self, who: str | None = None, version: str | None = None) -> ssl.SSLContext:
        """A client context trusting the test CA, holding ``who``'s certificate (None: no certificate)."""
        ctx = self.pki.client_context(who)
        if version is not None:
            ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
        return ctx

    def fingerprint(self, who: str) -> str:
        return hashlib.sha256(self.pki.clients[who].der).hexdigest()

    async def call(self, who: str | None, text: str = "hi", *, version: str | None = None) -> httpx.Response:
        async with httpx.AsyncClient(verify=self.context(who, version), timeout=WAIT, trust_env=False) as http:
            return await http.post(self.gw.url, headers=modern_headers("tools/call", "sdk.echo"),
                                   content=orjson.dumps(modern_body("tools/call", {"name": "sdk.echo",
                                                                                   "arguments": {"text": text}})))

    def last(self) -> dict[str, Any]:
        return self.gw.records()[-1]


@pytest.fixture
async def tls(tmp_path: Path) -> AsyncIterator[Tls]:
    folder = tmp_path / "pki"
    folder.mkdir()
    pki = build_pki(folder)
    # a second, independently generated workload: the same CA, no mapping for it
    pki.clients["stranger"] = issue(folder, "stranger", pki.ca, _name(O="Acme", CN="stranger"),
                                    sans=[x509.UniformResourceIdentifier("spiffe://example.org/ns/a/sa/other")])
    settings = {"cert": str(pki.server.certfile), "key": str(pki.server.keyfile),
                "client_ca": str(pki.ca.certfile), "client_certs": "required"}
    options = {**ssl_options(TlsSettings.model_validate(settings), Path), **uvicorn_protocol_kwargs(),
               "scheme": "https"}
    mtls = {"mappings": [{"san_uri": SPIFFE_ID, "principal": "builder", "roles": ["builder"]}]}
    async with running_gateway(tmp_path, {"sdk": stdio_sdk_upstream()}, ROLES, serve_options=options,
                               gateway={"tls": settings}, auth={"mtls": mtls}) as gw:
        assert gw.url.startswith("https://127.0.0.1:")
        yield Tls(gw, pki)


async def test_a_mapped_certificate_calls_without_any_authorization_header(tls: Tls) -> None:
    response = await tls.call("spiffe")
    assert response.status_code == 200, response.text
    assert response.json()["result"]["content"][0]["text"] == "hi"
    decision = [r for r in tls.gw.records() if r.get("tool") == "sdk.echo"][-1]
    assert decision["decision"] == "allow"
    assert decision["principal"] == "builder"
    assert decision["credential_id"] == f"cert:{tls.fingerprint('spiffe')}"
    assert len(decision["credential_id"]) == len("cert:") + 64  # the full SHA-256, not a prefix


@pytest.mark.parametrize("version", sorted(VERSIONS))
async def test_no_client_certificate_is_refused_in_the_handshake(tls: Tls, version: str) -> None:
    before = len(tls.gw.records())
    with pytest.raises(TLS_HANDSHAKE_REFUSED):
        await tls.call(None, version=version)
    assert len(tls.gw.records()) == before  # refused below HTTP: the app never saw a request
    assert (await tls.call("spiffe", version=version)).status_code == 200  # control: this version works


@pytest.mark.parametrize("version", sorted(VERSIONS))
@pytest.mark.parametrize("who", ["wrong_ca", "expired"])
async def test_a_certificate_the_ca_did_not_vouch_for_is_refused_in_the_handshake(tls: Tls, who: str,
                                                                                   version: str) -> None:
    # wrong_ca: a subject like a real client's, signed by an unrelated CA; expired: the right CA, out of date
    before = len(tls.gw.records())
    with pytest.raises(TLS_HANDSHAKE_REFUSED):
        await tls.call(who, version=version)
    assert len(tls.gw.records()) == before


async def test_a_valid_but_unmapped_certificate_gets_401_and_is_audited(tls: Tls) -> None:
    for who in ("stranger", "spiffe_evil"):  # another SPIFFE ID; one that merely extends the mapped one
        response = await tls.call(who)
        assert response.status_code == 401, (who, response.text)
        assert response.json()["error"] == "auth.unmapped_cert"
        record = tls.last()
        assert record["decision"] == "deny"
        assert record["code"] == "auth.unmapped_cert"
        assert record["principal"] is None
    assert not [r for r in tls.gw.records() if r.get("tool") == "sdk.echo"]  # nothing reached the pipeline


async def test_revoking_the_certificate_fingerprint_refuses_requests_after_the_window(tls: Tls) -> None:
    assert (await tls.call("spiffe")).status_code == 200
    fingerprint = tls.fingerprint("spiffe")
    store = SqliteRevocations(tls.gw.tmp / "gatehold-revocations.db")
    try:
        await store.revoke(Revocation("cert", fingerprint, "key compromised", 0.0, "test"))
        await after_revocation_window()  # the store above is another process's view of the file
        response = await tls.call("spiffe")
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "auth.revoked"
        assert tls.last()["code"] == "auth.revoked"
        assert fingerprint in tls.last()["reason"]  # a refused request has no caller; the reason names it
        assert await store.restore("cert", fingerprint)
        await after_revocation_window()
    finally:
        await store.aclose()
    assert (await tls.call("spiffe", "back")).json()["result"]["content"][0]["text"] == "back"


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_the_sdk_client_connects_with_the_certificate(tls: Tls, mode: str) -> None:
    # httpx2 takes an ssl.SSLContext as ``verify``: the client certificate rides in the context.
    http = httpx2.AsyncClient(verify=tls.context("spiffe"), timeout=WAIT, trust_env=False)
    async with http, Client(streamable_http_client(tls.gw.url, http_client=http), mode=mode) as client:
        tools = await client.list_tools()
        assert [t.name for t in tools.tools] == ["sdk.echo"]
        result = await client.call_tool("sdk.echo", {"text": "over mTLS"})
        assert getattr(result.content[0], "text", None) == "over mTLS"
    decision = [r for r in tls.gw.records() if r.get("tool") == "sdk.echo"][-1]
    assert decision["principal"] == "builder"
    assert decision["credential_id"] == f"cert:{tls.fingerprint('spiffe')}"
