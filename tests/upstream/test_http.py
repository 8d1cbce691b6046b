"""HttpUpstreamClient against the SDK test server served by uvicorn on 127.0.0.1, in both eras."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gatehold.config import HttpUpstream
from gatehold.errors import UpstreamFailed
from gatehold.upstream.credentials import StaticBearer
from gatehold.upstream.http import HttpUpstreamClient, SseDecoder, header_value
from tests.servers.sdk_server import server as sdk_server

pytestmark = pytest.mark.anyio

WAIT = 20.0
BEARER = "gateway-own-credential"


@dataclass
class Recorder:
    """ASGI middleware that records each HTTP request's method, path and headers."""

    app: ASGIApp
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            self.seen.append((scope["method"], scope["path"], headers))
            inner = receive

            async def receive() -> Message:
                message = await inner()
                if message["type"] == "http.request":
                    self.bodies.append(message.get("body", b""))
                return message

            if scope["path"].startswith("/broken"):
                status = int(scope["path"].rsplit("/", 1)[1])
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"nope"})
                return
        await self.app(scope, receive, send)

    def posts(self) -> list[dict[str, str]]:
        return [h for method, path, h in self.seen if method == "POST" and path == "/mcp"]


@dataclass
class Served:
    base: str
    recorder: Recorder

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    recorder = Recorder(sdk_server.streamable_http_app())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(recorder, log_level="warning", lifespan="on"))
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    async with asyncio.timeout(WAIT):
        while not uv.started:
            await asyncio.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", recorder)
    finally:
        uv.should_exit = True
        await task
        sock.close()


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any] | None]] = []

    async def __call__(self, method: str, params: dict[str, Any] | None) -> None:
        self.items.append((method, params))


def make(url: str, protocol: str = "auto", *, bearer: str | None = BEARER, **kwargs: Any) -> HttpUpstreamClient:
    headers = kwargs.pop("headers", {})
    cfg = HttpUpstream(url=url, protocol=protocol, headers=headers)
    credential = StaticBearer(bearer) if bearer is not None else None
    return HttpUpstreamClient("web", cfg, credential=credential, on_event=kwargs.pop("on_event", Events()), **kwargs)


async def call(c: HttpUpstreamClient, tool: str, timeout: float = WAIT, **arguments: Any) -> dict[str, Any]:
    return await c.request("tools/call", {"name": tool, "arguments": arguments}, timeout=timeout)


def text_of(reply: dict[str, Any]) -> str:
    assert "result" in reply, reply
    return str(reply["result"]["content"][0]["text"])


async def eventually(check: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(WAIT):
        while not check():
            await asyncio.sleep(0.05)
    assert check(), what


async def test_auto_negotiates_the_modern_era(served: Served) -> None:
    c = make(served.url)
    await c.start()
    try:
        assert c.protocol_version == "2026-07-28"
        assert c.session_id is None
        assert c.server_info["name"] == "gatehold-test-server"
        assert "tools" in c.capabilities
        listed = await c.request("tools/list", None, timeout=WAIT)
        assert "echo" in {t["name"] for t in listed["result"]["tools"]}
        assert text_of(await call(c, "echo", text="modern")) == "modern"
        read = await c.request("resources/read", {"uri": "demo://readme"}, timeout=WAIT)
        assert "readme" in read["result"]["contents"][0]["text"]
    finally:
        await c.aclose()
    posts = served.recorder.posts()
    assert [h["mcp-method"] for h in posts] == ["server/discover", "tools/list", "tools/call", "resources/read"]
    assert all(h["mcp-protocol-version"] == "2026-07-28" for h in posts)
    assert all("mcp-session-id" not in h for h in posts)
    assert posts[2]["mcp-name"] == "echo"
    assert posts[3]["mcp-name"] == "demo://readme"


async def test_legacy_era_uses_a_session(served: Served) -> None:
    c = make(served.url, "2025-11-25")
    await c.start()
    try:
        assert c.protocol_version == "2025-11-25"
        session = c.session_id
        assert session
        assert text_of(await call(c, "add", a=20, b=22)) == "42"
        prompt = await c.request("prompts/get", {"name": "greet", "arguments": {"name": "Ada"}}, timeout=WAIT)
        assert "Hello, Ada!" in str(prompt["result"])
    finally:
        await c.aclose()
    posts = served.recorder.posts()
    assert "mcp-session-id" not in posts[0]  # initialize
    assert len(posts) >= 4
    assert all(h.get("mcp-session-id") == session for h in posts[1:])
    assert all(h.get("mcp-protocol-version") == "2025-11-25" for h in posts[1:])
    assert any(m == "DELETE" and h.get("mcp-session-id") == session for m, _, h in served.recorder.seen)


@pytest.mark.parametrize("protocol", ["auto", "2025-11-25"])
async def test_the_configured_bearer_is_the_only_credential_sent(served: Served, protocol: str) -> None:
    c = make(served.url, protocol, headers={"X-Team": "blue"})
    await c.start()
    try:
        await call(c, "echo", text="x")
    finally:
        await c.aclose()
    assert served.recorder.seen
    for _, _, headers in served.recorder.seen:
        assert headers["authorization"] == f"Bearer {BEARER}"
        assert headers["x-team"] == "blue"


async def test_no_authorization_header_without_a_credential(served: Served) -> None:
    c = make(served.url, bearer=None)
    await c.start()
    try:
        await call(c, "echo", text="x")
    finally:
        await c.aclose()
    assert served.recorder.seen
    assert all("authorization" not in h for _, _, h in served.recorder.seen)


async def test_an_expired_legacy_session_is_renewed_once(served: Served) -> None:
    c = make(served.url, "2025-11-25")
    await c.start()
    try:
        old = c.session_id
        assert old
        async with httpx.AsyncClient() as other:  # the upstream forgets the session
            response = await other.delete(served.url, headers={"Mcp-Session-Id": old,
                                                               "MCP-Protocol-Version": "2025-11-25"})
            assert response.status_code == 200
        assert text_of(await call(c, "echo", text="again")) == "again"
        assert c.session_id
        assert c.session_id != old
    finally:
        await c.aclose()


@pytest.mark.parametrize("protocol", ["auto", "2025-11-25"])
async def test_progress_is_routed_with_the_callers_token(served: Served, protocol: str) -> None:
    c = make(served.url, protocol)
    await c.start()
    seen: list[tuple[str, dict[str, Any] | None]] = []

    async def collect(method: str, params: dict[str, Any] | None) -> None:
        seen.append((method, params))

    try:
        reply = await c.request("tools/call", {"name": "progress", "arguments": {"steps": 3},
                                               "_meta": {"progressToken": "client-tok"}},
                                timeout=WAIT, on_notification=collect)
        assert text_of(reply) == "done 3"
    finally:
        await c.aclose()
    progress = [p for m, p in seen if m == "notifications/progress"]
    assert [p["progress"] for p in progress if p] == [1, 2, 3]
    assert all(p and p["progressToken"] == "client-tok" for p in progress)
    bodies = b"".join(served.recorder.bodies)
    assert b"progressToken" in bodies
    assert b"client-tok" not in bodies  # the upstream saw only the gateway's own token


@pytest.mark.parametrize("protocol", ["auto", "2025-11-25"])
async def test_timeout_raises_and_the_upstream_call_is_cancelled(
    served: Served, protocol: str, capsys: pytest.CaptureFixture[str]
) -> None:
    c = make(served.url, protocol)
    await c.start()
    try:
        with pytest.raises(UpstreamFailed) as info:
            await call(c, "slow", timeout=1.0, seconds=60)
        assert info.value.code == "upstream.timeout"
        err: list[str] = []

        def cancelled() -> bool:
            err.append(capsys.readouterr().err)
            return "slow cancelled" in "".join(err)

        await eventually(cancelled, "the server cancelled the slow call")
        assert text_of(await call(c, "echo", text="fine")) == "fine"
    finally:
        await c.aclose()


async def test_a_legacy_server_request_on_the_call_stream_reaches_its_caller(served: Served) -> None:
    c = make(served.url, "2025-11-25", client_capabilities={"elicitation": {}})
    await c.start()
    asked: list[str] = []

    async def answer(method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        asked.append(method)
        return {"result": {"action": "accept", "content": {"answer": "over http"}}}

    try:
        reply = await c.request("tools/call", {"name": "ask", "arguments": {"question": "q"}},
                                timeout=WAIT, on_server_request=answer)
        assert text_of(reply) == "answer: over http"
        assert asked == ["elicitation/create"]
        refused = await call(c, "ask", question="nobody to ask")
        assert "not supported through the gateway" in text_of(refused)
    finally:
        await c.aclose()


async def test_explicit_modern_protocol(served: Served) -> None:
    c = make(served.url, "2026-07-28")
    await c.start()
    try:
        assert c.protocol_version == "2026-07-28"
        reply = await c.request("no/such/method", {}, timeout=WAIT)
        assert reply["error"]["code"] == -32601
    finally:
        await c.aclose()


async def test_unreachable_upstream_is_unavailable() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    c = make(f"http://127.0.0.1:{port}/mcp")
    with pytest.raises(UpstreamFailed) as info:
        await c.start()
    assert info.value.code == "upstream.unavailable"
    with pytest.raises(UpstreamFailed) as again:
        await call(c, "echo", text="x")
    assert again.value.code == "upstream.unavailable"
    await c.aclose()


@pytest.mark.parametrize(("status", "protocol"), [(500, "auto"), (503, "2025-11-25"), (400, "2026-07-28")])
async def test_http_errors_without_a_json_rpc_body_fail_the_start(served: Served, status: int,
                                                                   protocol: str) -> None:
    c = make(f"{served.base}/broken/{status}", protocol)
    with pytest.raises(UpstreamFailed) as info:
        await c.start()
    assert info.value.code == "upstream.unavailable"
    assert str(status) in info.value.detail
    assert BEARER not in info.value.detail
    await c.aclose()


def test_sse_decoder_handles_split_lines_multiline_data_and_comments() -> None:
    decoder = SseDecoder(1024)
    stream = b": comment\r\nevent: message\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata: two\n\ndata:three\r\rid: 9\n\n"
    events: list[str] = []
    for i in range(len(stream)):  # one byte at a time: every split point
        events += decoder.feed(stream[i:i + 1])
    assert events == ['{"a":\n1}', "two", "three"]


def test_sse_decoder_caps_an_event() -> None:
    decoder = SseDecoder(100)
    for _ in range(3):
        decoder.feed(b"data: " + b"x" * 30 + b"\n")  # 93 bytes of data so far: still fine
    with pytest.raises(UpstreamFailed) as info:
        decoder.feed(b"data: " + b"x" * 30 + b"\n")
    assert info.value.code == "upstream.protocol"
    with pytest.raises(UpstreamFailed):
        SseDecoder(100).feed(b"data: " + b"y" * 200)  # no line end yet, already too long


def test_header_values_are_base64_wrapped_when_unsafe() -> None:
    assert header_value("echo") == "echo"
    for unsafe in ("héllo", " lead", "trail ", "line\nbreak", "=?base64?abc?="):
        wrapped = header_value(unsafe)
        assert wrapped.startswith("=?base64?")
        assert wrapped.endswith("?=")
        assert base64.b64decode(wrapped[9:-2]).decode("utf-8") == unsafe


async def test_legacy_get_stream_delivers_server_notifications(served: Served) -> None:
    events = Events()
    c = make(served.url, "2025-11-25", on_event=events)
    await c.start()
    try:
        await eventually(lambda: any(m == "GET" for m, _, _ in served.recorder.seen), "GET stream opened")
        assert text_of(await call(c, "announce")) == "announced"
        await eventually(lambda: ("notifications/tools/list_changed", None) in events.items, "list_changed")
    finally:
        await c.aclose()
    get = next(h for m, _, h in served.recorder.seen if m == "GET")
    assert get["mcp-session-id"] == c.session_id
    assert get["authorization"] == f"Bearer {BEARER}"
