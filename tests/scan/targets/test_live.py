"""Live targets against real servers: stdio processes, HTTP servers on 127.0.0.1, and the gateway itself."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from gatehold.auth.apikeys import new_api_key
from gatehold.scan.targets.errors import TargetError
from gatehold.scan.targets.live import FOREIGN_ORIGIN, MAX_PAGES, child_env, list_http, list_stdio
from tests.servers.sdk_server import server as sdk_server
from tests.serving import serve_asgi

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[3]
WAIT = 20.0
SDK_STDIO = [sys.executable, "-m", "tests.servers.sdk_server"]
HOSTILE = [sys.executable, "-m", "tests.servers.hostile_server"]

PAGED_SERVER = r'''
import json, sys
PAGES = int(sys.argv[1])
LOOP = sys.argv[2] == "loop"
for line in sys.stdin:
    message = json.loads(line)
    if "id" not in message:
        continue
    method, params = message["method"], message.get("params") or {}
    reply = {"jsonrpc": "2.0", "id": message["id"]}
    if method == "initialize":
        reply["result"] = {"protocolVersion": params["protocolVersion"],
                           "serverInfo": {"name": "paged", "version": "1"},
                           "capabilities": {"tools": {}, "prompts": {}}}
    elif method == "tools/list" and sys.argv[2] == "broken":
        reply["error"] = {"code": -32603, "message": "tool registry unavailable"}
    elif method == "tools/list":
        page = 0 if LOOP else int(params.get("cursor") or 0)
        reply["result"] = {"tools": [{"name": f"tool_{page}", "inputSchema": {"type": "object"}}]}
        if LOOP:
            reply["result"]["nextCursor"] = "again"
        elif page + 1 < PAGES:
            reply["result"]["nextCursor"] = str(page + 1)
    elif method == "prompts/list":
        reply["error"] = {"code": -32603, "message": "prompt store offline \x1b[31m"}
    elif method == "resources/list":
        reply["result"] = {"resources": [{"uri": "file:///undeclared", "name": "undeclared"}]}
    else:
        reply["error"] = {"code": -32601, "message": "method not found"}
    print(json.dumps(reply), flush=True)
'''


@pytest.fixture
def paged(tmp_path: Path) -> Path:
    script = tmp_path / "paged_server.py"
    script.write_text(PAGED_SERVER, encoding="utf-8")
    return script


# -- stdio ---------------------------------------------------------------------------------------


async def test_stdio_lists_tools_prompts_and_resources_of_the_sdk_server() -> None:
    listed = await list_stdio("sdk", SDK_STDIO, {}, str(REPO), WAIT)
    snapshot = listed.snapshot
    assert listed.errors == ()
    assert snapshot.name == "sdk"
    assert snapshot.source == "stdio"
    assert snapshot.listed
    assert {"echo", "add", "slow"} <= {t["name"] for t in snapshot.tools}
    assert [p["name"] for p in snapshot.prompts] == ["greet"]
    assert [r["uri"] for r in snapshot.resources] == ["demo://readme"]
    assert snapshot.launch is not None
    assert snapshot.launch.command == tuple(SDK_STDIO)
    assert snapshot.launch.cwd == str(REPO)
    assert snapshot.transport is None


async def test_stdio_lists_a_third_party_server_from_pypi() -> None:
    listed = await list_stdio(None, [sys.executable, "-m", "mcp_server_time"], {}, None, WAIT)
    assert listed.errors == ()
    assert {t["name"] for t in listed.snapshot.tools} == {"get_current_time", "convert_time"}
    assert listed.snapshot.name is None


async def test_stdio_child_gets_a_minimal_environment_plus_the_configured_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_TOKEN", "scanner-own-secret-value")
    bare = await list_stdio("hostile", HOSTILE, {}, str(REPO), WAIT)
    status = next(t for t in bare.snapshot.tools if t["name"] == "status")
    assert status["description"] == "Service status. Build ."  # the scanner's own variable was not inherited
    configured = await list_stdio("hostile", HOSTILE, {"UPSTREAM_TOKEN": "configured"}, str(REPO), WAIT)
    status = next(t for t in configured.snapshot.tools if t["name"] == "status")
    assert status["description"] == "Service status. Build configured."
    assert dict(configured.snapshot.launch.env) == {"UPSTREAM_TOKEN": "configured"}  # type: ignore[union-attr]


def test_child_env_keeps_only_path_home_lang() -> None:
    parent = {"PATH": "/bin", "HOME": "/home/me", "LANG": "C.UTF-8", "AWS_SECRET_ACCESS_KEY": "x", "SYSTEMROOT": "C:"}
    assert child_env({"A": "1", "PATH": "/opt/bin"}, parent, "linux") == {
        "PATH": "/opt/bin", "HOME": "/home/me", "LANG": "C.UTF-8", "A": "1"}
    assert child_env({}, parent, "win32")["SYSTEMROOT"] == "C:"


async def test_stdio_follows_pages_and_skips_undeclared_kinds(paged: Path) -> None:
    listed = await list_stdio("paged", [sys.executable, str(paged), "3", "count"], {}, None, WAIT)
    assert [t["name"] for t in listed.snapshot.tools] == ["tool_0", "tool_1", "tool_2"]
    assert listed.snapshot.resources == ()  # resources are not declared: resources/list is not asked
    (error,) = listed.errors
    assert "prompts/list failed: error -32603: prompt store offline ?[31m" in error  # escape made harmless


async def test_a_failed_tools_list_leaves_the_server_unlisted(paged: Path) -> None:
    listed = await list_stdio("paged", [sys.executable, str(paged), "1", "broken"], {}, None, WAIT)
    assert listed.snapshot.listed is False
    assert listed.snapshot.tools == ()
    assert any("tools/list failed: error -32603: tool registry unavailable" in e for e in listed.errors)


async def test_stdio_pagination_is_capped(paged: Path) -> None:
    listed = await list_stdio("paged", [sys.executable, str(paged), str(MAX_PAGES + 5), "count"], {}, None, WAIT)
    assert len(listed.snapshot.tools) == MAX_PAGES
    assert any(f"more than {MAX_PAGES} pages" in e for e in listed.errors)


async def test_a_repeated_cursor_stops_the_listing(paged: Path) -> None:
    listed = await list_stdio("paged", [sys.executable, str(paged), "1", "loop"], {}, None, WAIT)
    assert [t["name"] for t in listed.snapshot.tools] == ["tool_0", "tool_0"]
    assert any("repeated a page cursor" in e for e in listed.errors)


@pytest.mark.parametrize(("command", "expected"), [
    (["/nonexistent/mcp-server", "--flag"], r"^cannot start /nonexistent/mcp-server --flag: \[Errno 2\] No such file"),
    ([sys.executable, "-c", "import sys; print('missing API_KEY', file=sys.stderr); sys.exit(3)"],
     r": handshake failed: (stdout closed|process exited with code 3) \(stderr: missing API_KEY\)$"),
    ([sys.executable, "-c", "print('hello, not json-rpc')"], r": handshake failed: (stdout closed|process exited)"),
])
async def test_stdio_failures_are_short_target_errors(command: list[str], expected: str) -> None:
    with pytest.raises(TargetError, match=expected) as caught:
        await list_stdio("broken", command, {}, None, WAIT)
    assert "scan-" not in str(caught.value)  # no internal client names


async def test_a_stdio_server_that_never_answers_times_out() -> None:
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(TargetError, match=r"no complete answer within 1s|timed out after 1s"):
        await list_stdio("mute", command, {}, None, 1.0)


async def test_an_empty_command_is_refused() -> None:
    with pytest.raises(TargetError, match="empty command"):
        await list_stdio("none", [], {}, None, WAIT)


async def test_a_secret_in_the_command_is_not_repeated_in_the_error() -> None:
    secret = "ghp_" + "a1B2c3D4" * 4 + "e5F6"
    with pytest.raises(TargetError) as caught:
        await list_stdio("x", ["/nonexistent/server", "--token", secret], {}, None, WAIT)
    assert secret not in str(caught.value)


# -- HTTP ------------------------------------------------------------------------------------------


async def test_http_without_auth_lists_everything_and_says_so() -> None:
    async with serve_asgi(sdk_server.streamable_http_app()) as base:
        listed = await list_http("sdk", f"{base}/mcp", bearer=None, timeout=WAIT)
    snapshot, probe = listed.snapshot, listed.snapshot.transport
    assert listed.errors == ()
    assert snapshot.listed
    assert snapshot.source == "http"
    assert snapshot.name == "sdk"
    assert {"echo", "add"} <= {t["name"] for t in snapshot.tools}
    assert [p["name"] for p in snapshot.prompts] == ["greet"]
    assert [r["uri"] for r in snapshot.resources] == ["demo://readme"]
    assert probe is not None
    assert (probe.tls, probe.loopback) == (False, True)
    assert probe.unauthenticated_list is True
    assert probe.auth_challenge is False
    assert probe.resource_metadata is False
    assert probe.origin_rejected is True  # the SDK server validates Origin on a loopback host
    assert probe.protocol_version == "2026-07-28"


async def test_http_server_that_accepts_any_origin() -> None:
    open_app = sdk_server.streamable_http_app(
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
    async with serve_asgi(open_app) as base:
        listed = await list_http(None, f"{base}/mcp", bearer=None, timeout=WAIT)
    assert listed.snapshot.transport is not None
    assert listed.snapshot.transport.origin_rejected is False


class LegacyOnly:
    """A 2025-era server: it refuses the 2026-07-28 protocol version header as a 2025 server does."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.origins: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            if "origin" in headers:
                self.origins.append(headers["origin"])
            if headers.get("mcp-protocol-version") == "2026-07-28":
                body = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Unsupported protocol version"}}'
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


async def test_http_legacy_era_server() -> None:
    app = LegacyOnly(sdk_server.streamable_http_app())
    async with serve_asgi(app) as base:
        listed = await list_http("legacy", f"{base}/mcp", bearer=None, timeout=WAIT)
    assert listed.errors == ()
    probe = listed.snapshot.transport
    assert probe is not None
    assert probe.protocol_version == "2025-11-25"
    assert {"echo", "add"} <= {t["name"] for t in listed.snapshot.tools}
    assert probe.unauthenticated_list is True
    assert probe.origin_rejected is True
    assert app.origins == [FOREIGN_ORIGIN]  # one probe with a foreign Origin, nothing else sent one


class ToolsNeedAuth:
    """Discovery is open, but ``tools/list`` answers 401 (no challenge header) without a credential."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            if headers.get("mcp-method") == "tools/list" and "authorization" not in headers:
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


async def test_a_server_that_guards_only_its_tools() -> None:
    async with serve_asgi(ToolsNeedAuth(sdk_server.streamable_http_app())) as base:
        anonymous = await list_http("guarded", f"{base}/mcp", bearer=None, timeout=WAIT)
        authenticated = await list_http("guarded", f"{base}/mcp", bearer="any-token", timeout=WAIT)
    assert anonymous.snapshot.listed is False
    (error,) = anonymous.errors
    assert "requires authentication (tools/list: HTTP 401)" in error
    probe = anonymous.snapshot.transport
    assert probe is not None
    assert probe.unauthenticated_list is False
    assert probe.auth_challenge is False  # discovery answered 200: the first request was not challenged
    assert probe.protocol_version == "2026-07-28"
    assert authenticated.snapshot.listed is True
    assert authenticated.errors == ()
    assert authenticated.snapshot.transport is not None
    assert authenticated.snapshot.transport.unauthenticated_list is False


def write_gateway_config(tmp_path: Path, key_hash: str) -> Path:
    data: dict[str, Any] = {
        "gateway": {"listen": "127.0.0.1:0", "resource": "https://mcp.example.test/mcp"},
        "audit": {"sqlite": str(tmp_path / "audit.db")},
        "auth": {"api_keys": [{"id": "ci", "hash": key_hash, "principal": "ci", "roles": ["reader"]}],
                 "oauth": {"issuer": "https://idp.example.test", "jwks_uri": "https://idp.example.test/jwks"}},
        "scopes": {"tools:read": ["time.*"]},
        "upstreams": {"time": {"command": [sys.executable, "-m", "mcp_server_time"]}},
        "roles": {"reader": {"tools": {"time.*": {}}}},
    }
    path = tmp_path / "gatehold.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@asynccontextmanager
async def gatehold_serve(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """``gatehold serve`` as a real process, API keys and an OAuth resource configured; yields (URL, key)."""
    key, key_hash = new_api_key("ci")
    config = write_gateway_config(tmp_path, key_hash)
    proc = subprocess.Popen([sys.executable, "-m", "gatehold", "serve", "--config", str(config), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = await asyncio.wait_for(asyncio.to_thread(_url_line, proc), WAIT)
        yield url, key
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT)


def _url_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    for line in _lines(proc):
        if line.startswith("URL: "):
            return line.removeprefix("URL: ").strip()
    raise AssertionError(f"gatehold serve exited: {proc.stderr.read() if proc.stderr else ''}")


def _lines(proc: subprocess.Popen[str]) -> Iterator[str]:
    assert proc.stdout is not None
    yield from iter(proc.stdout.readline, "")


async def test_the_gateway_with_api_keys_challenges_and_serves_metadata(tmp_path: Path) -> None:
    async with gatehold_serve(tmp_path) as (url, key):
        anonymous = await list_http("gw", url, bearer=None, timeout=WAIT)
        authenticated = await list_http("gw", url, bearer=key, timeout=WAIT)
        with pytest.raises(TargetError, match="with the bearer token: server/discover: HTTP 401"):
            await list_http("gw", url, bearer="ghk_ci.not-the-key", timeout=WAIT)
    probe = anonymous.snapshot.transport
    assert probe is not None
    assert anonymous.snapshot.listed is False
    assert anonymous.snapshot.tools == ()
    (error,) = anonymous.errors
    assert "requires authentication (server/discover: HTTP 401)" in error
    assert "--bearer-env" in error
    assert probe.unauthenticated_list is False
    assert probe.auth_challenge is True
    assert probe.resource_metadata is True
    assert probe.origin_rejected is True
    assert probe.protocol_version is None  # it never let the scanner connect
    assert authenticated.errors == ()
    assert {t["name"] for t in authenticated.snapshot.tools} == {"time.get_current_time", "time.convert_time"}
    probe = authenticated.snapshot.transport
    assert probe is not None
    assert (probe.unauthenticated_list, probe.auth_challenge, probe.resource_metadata, probe.origin_rejected) == (
        False, True, True, True)
    assert probe.protocol_version == "2026-07-28"


async def test_an_unreachable_url_is_a_target_error() -> None:
    expected = r"cannot connect to http://127\.0\.0\.1:1/mcp: server/discover: ConnectError"
    with pytest.raises(TargetError, match=expected):
        await list_http(None, "http://127.0.0.1:1/mcp", bearer=None, timeout=5)


async def test_a_server_that_never_answers_times_out() -> None:
    async def mute(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await asyncio.sleep(3600)

    async with serve_asgi(mute, lifespan="off", fast_exit=True) as base:
        with pytest.raises(TargetError, match=r"no complete answer within 1s|timed out after 1s"):
            await list_http(None, f"{base}/mcp", bearer=None, timeout=1.0)


class Recorder:
    def __init__(self, status: int, headers: list[tuple[bytes, bytes]]):
        self.status, self.headers = status, headers
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": b""})


async def test_redirects_are_not_followed_and_nothing_else_is_contacted() -> None:
    elsewhere = Recorder(200, [])
    async with serve_asgi(elsewhere, lifespan="off") as other:
        redirect = Recorder(307, [(b"location", f"{other}/mcp".encode())])
        async with serve_asgi(redirect, lifespan="off") as base:
            with pytest.raises(TargetError, match="HTTP 307"):
                await list_http(None, f"{base}/mcp", bearer=None, timeout=WAIT)
    assert elsewhere.paths == []
    assert redirect.paths
    assert all(p == "/mcp" for p in redirect.paths)


async def test_proxies_from_the_environment_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = Recorder(200, [])
    async with serve_asgi(proxy, lifespan="off") as proxy_url, serve_asgi(sdk_server.streamable_http_app()) as base:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy_url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        listed = await list_http(None, f"{base}/mcp", bearer=None, timeout=WAIT)
    assert listed.snapshot.listed
    assert proxy.paths == []


async def test_bad_urls_and_bearers_are_refused() -> None:
    with pytest.raises(TargetError, match="not an http"):
        await list_http(None, "ftp://example.com/mcp", bearer=None, timeout=WAIT)
    with pytest.raises(TargetError, match="not a valid URL"):
        await list_http(None, "http://[::1/mcp", bearer=None, timeout=WAIT)
    with pytest.raises(TargetError, match="not a valid URL"):
        await list_http(None, "http://127.0.0.1:99999/mcp", bearer=None, timeout=WAIT)
    with pytest.raises(TargetError, match="not a valid token"):
        await list_http(None, "http://127.0.0.1:1/mcp", bearer="two words", timeout=WAIT)



