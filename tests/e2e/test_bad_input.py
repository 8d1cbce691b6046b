"""Hostile and malformed input: each answered with the right error, and each audited."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.harness import Running, modern_body, modern_headers, running_gateway

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Running]:
    root = tmp_path / "files"
    (root / "out").mkdir(parents=True)
    (root / "notes.txt").write_text("inside\n")
    outside = tmp_path / "secret.txt"
    outside.write_text("outside\n")
    os.symlink(outside, root / "escape.txt")
    os.symlink(tmp_path, root / "up")
    upstreams = {"demo": {"command": [sys.executable, "-m", "gatehold.demo.server", "--root", str(root)]}}
    roles = {"reader": {"tools": {
        "demo.read_file": {"args": {"path": {"path_within": str(root)}}},
        "demo.send_message": {"args": {"to": {"pattern": r"[a-z]+@example\.com"}}},
        "demo.ghost*": {},
    }}}
    async with running_gateway(tmp_path, upstreams, roles, gateway={"max_body_bytes": 4096}) as running:
        yield running


def audited(gw: Running, correlation_id: str) -> dict[str, Any]:
    matches = [r for r in gw.records() if r["correlation_id"] == correlation_id]
    assert len(matches) == 1, f"expected one audit record for {correlation_id}, got {matches}"
    return matches[0]


def correlation(response: Any) -> str:
    body = response.json()
    if "error" in body and isinstance(body["error"], dict):
        return str(body["error"]["data"]["correlationId"])
    return str(body["correlationId"])


async def post(gw: Running, body: bytes | dict[str, Any], headers: dict[str, str]) -> Any:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    async with gw.raw() as http:
        return await http.post(gw.url, content=content, headers=headers)


def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return modern_body("tools/call", {"name": name, "arguments": arguments})


@pytest.mark.parametrize(("body", "status", "rpc", "code"), [
    (b"{not json", 400, -32700, "protocol.parse"),
    (b"[]", 400, -32600, "protocol.invalid"),
    (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', 400, -32600, "protocol.invalid"),
    (b'{"id":1,"method":"ping"}', 400, -32600, "protocol.invalid"),
    (b'{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', 400, -32600, "protocol.invalid"),
    (b'{"jsonrpc":"2.0","id":1,"method":"ping","params":[1,2]}', 400, -32600, "protocol.invalid"),
    (b'{"jsonrpc":"2.0","id":1,"params":{}}', 400, -32600, "protocol.invalid"),
    (b'{"jsonrpc":"2.0","id":1,"method":"x","params":' + b'{"a":' * 80 + b"1" + b"}" * 80 + b"}",
     400, -32600, "protocol.invalid"),
])
async def test_malformed_bodies(gw: Running, body: bytes, status: int, rpc: int, code: str) -> None:
    response = await post(gw, body, modern_headers("ping", key=gw.key()))
    assert response.status_code == status
    assert response.json()["error"]["code"] == rpc
    record = audited(gw, correlation(response))
    assert (record["decision"], record["code"], record["principal"]) == ("deny", code, "alice")


async def test_oversized_body_is_413(gw: Running) -> None:
    body = call("demo.send_message", {"to": "a@example.com", "body": "x" * 10_000})
    response = await post(gw, body, modern_headers("tools/call", "demo.send_message", key=gw.key()))
    assert response.status_code == 413
    assert audited(gw, correlation(response))["code"] == "protocol.too_large"


@pytest.mark.parametrize(("headers", "code"), [
    (modern_headers("tools/list", "demo.read_file"), "protocol.header"),
    (modern_headers("tools/call", "demo.send_message"), "protocol.header"),
    (modern_headers("tools/call"), "protocol.header"),
    ({**modern_headers("tools/call", "demo.read_file"), "MCP-Protocol-Version": "2026-07-28"}, None),
])
async def test_header_body_mismatch_is_400_with_32020(gw: Running, headers: dict[str, str],
                                                        code: str | None) -> None:
    headers = {**headers, "Authorization": f"Bearer {gw.key()}"}
    response = await post(gw, call("demo.read_file", {"path": "notes.txt"}), headers)
    if code is None:  # the matching control case goes through
        assert response.status_code == 200
        assert response.json()["result"]["content"][0]["text"] == "inside\n"
        return
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32020
    assert audited(gw, correlation(response))["code"] == code


async def test_unsupported_modern_version(gw: Running) -> None:
    body = call("demo.read_file", {"path": "notes.txt"})
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2099-01-01"
    headers = {**modern_headers("tools/call", "demo.read_file", key=gw.key()), "MCP-Protocol-Version": "2099-01-01"}
    response = await post(gw, body, headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32022
    assert error["data"]["supported"] == ["2026-07-28"]
    assert audited(gw, correlation(response))["code"] == "protocol.version"
    headers = modern_headers("tools/call", "demo.read_file", key=gw.key())
    response = await post(gw, body, headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32020  # header says 2026-07-28, body says otherwise


@pytest.mark.parametrize(("extra", "status", "code"), [
    ({"Origin": "https://evil.example"}, 403, "transport.origin"),
    ({"Origin": "http://127.0.0.1.evil.example"}, 403, "transport.origin"),
    ({"Host": "evil.example"}, 403, "transport.host"),
    ({"Content-Type": "text/plain"}, 415, "transport.media"),
    ({"Accept": "text/html"}, 406, "transport.accept"),
])
async def test_transport_rejections(gw: Running, extra: dict[str, str], status: int, code: str) -> None:
    headers = {**modern_headers("ping", key=gw.key()), **extra}
    response = await post(gw, modern_body("ping"), headers)
    assert response.status_code == status
    assert audited(gw, correlation(response))["code"] == code


async def test_loopback_origin_is_allowed(gw: Running) -> None:
    headers = {**modern_headers("ping", key=gw.key()), "Origin": "http://localhost:3000"}
    response = await post(gw, modern_body("ping"), headers)
    assert response.status_code == 200


@pytest.mark.parametrize(("authorization", "code"), [
    (None, "auth.missing"),
    ("Bearer ghk_alice.wrong", "auth.invalid"),
    ("Bearer ghk_nobody.x", "auth.invalid"),
    ("Basic YWxpY2U6eA==", "auth.invalid"),
    ("Bearer", "auth.invalid"),
])
async def test_missing_or_invalid_key_is_401(gw: Running, authorization: str | None, code: str) -> None:
    headers = modern_headers("ping")
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await post(gw, modern_body("ping"), headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    record = audited(gw, correlation(response))
    assert (record["code"], record["principal"]) == (code, None)
    assert "wrong" not in orjson.dumps(record).decode()  # the presented credential is never recorded


@pytest.mark.parametrize(("name", "arguments", "rpc", "code"), [
    ("demo.ghost_tool", {}, -32602, "policy.unknown"),
    ("demo.write_file", {"path": "out/x", "content": "x"}, -32010, "policy.not_granted"),
    ("demo.read_file", {"path": "notes.txt", "extra": 1}, -32602, "args.schema"),
    ("demo.read_file", {"path": 7}, -32602, "args.schema"),
    ("demo.read_file", {}, -32602, "args.schema"),
    ("demo.read_file", {"path": "../secret.txt"}, -32011, "args.constraint"),
    ("demo.read_file", {"path": "up/secret.txt"}, -32011, "args.constraint"),
    ("demo.read_file", {"path": "/etc/passwd"}, -32011, "args.constraint"),
    ("demo.read_file", {"path": "escape.txt"}, -32011, "args.constraint"),
    ("demo.read_file", {"path": "notes.txt\u0000"}, -32011, "args.constraint"),
    ("demo.send_message", {"to": "x@evil.com", "body": "hi"}, -32011, "args.constraint"),
])
async def test_denied_calls(gw: Running, name: str, arguments: dict[str, Any], rpc: int, code: str) -> None:
    response = await post(gw, call(name, arguments), modern_headers("tools/call", name, key=gw.key()))
    error = response.json()["error"]
    assert error["code"] == rpc
    assert error["data"]["code"] == code
    record = audited(gw, error["data"]["correlationId"])
    assert (record["kind"], record["decision"], record["code"], record["tool"]) == ("decision", "deny", code, name)
    assert record["rule_id"]
    assert "outside" not in response.text  # nothing from outside the root leaked


async def test_unknown_method(gw: Running) -> None:
    response = await post(gw, modern_body("tools/explode"), modern_headers("tools/explode", key=gw.key()))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == -32601
    assert audited(gw, correlation(response))["code"] == "protocol.method"


async def test_legacy_session_rules(gw: Running) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}
    base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    alice = {**base, "Authorization": f"Bearer {gw.key()}"}
    bob = {**base, "Authorization": f"Bearer {gw.key('bob')}"}
    opened = await post(gw, init, alice)
    assert opened.status_code == 200
    session = opened.headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    missing = await post(gw, listing, alice)
    assert missing.status_code == 400
    assert audited(gw, correlation(missing))["decision"] == "deny"
    unknown = await post(gw, listing, {**alice, "Mcp-Session-Id": "nope"})
    assert unknown.status_code == 404
    # Another principal presenting alice's session id is treated as an unknown session.
    stolen = await post(gw, listing, {**bob, "Mcp-Session-Id": session})
    assert stolen.status_code == 404
    ok = await post(gw, listing, {**alice, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"})
    assert ok.status_code == 200
    assert [t["name"] for t in ok.json()["result"]["tools"]] == ["demo.read_file", "demo.send_message"]
    assert any(r["code"] == "session.unknown" and r["principal"] == "bob" for r in gw.records())
