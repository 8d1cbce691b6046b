"""The upstream sees the gateway's credential, never the caller's; cancelled calls are cancelled upstream."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.types import Receive, Scope, Send

from tests.e2e.harness import running_gateway, serve_asgi, stdio_sdk_upstream

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_the_callers_key_never_reaches_an_http_upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.servers.sdk_server import server

    seen: list[str] = []
    inner = server.streamable_http_app()

    async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            seen.append(dict(scope["headers"]).get(b"authorization", b"").decode())
        await inner(scope, receive, send)

    monkeypatch.setenv("GATEHOLD_TEST_UPSTREAM_TOKEN", "upstream-secret-123")
    async with serve_asgi(recorder) as base:
        upstreams = {"up": {"url": f"{base}/mcp", "credential": {"bearer": "up_token"}}}
        roles = {"reader": {"tools": {"up.echo": {}}}}
        async with running_gateway(tmp_path, upstreams, roles,
                                   secrets={"up_token": "env:GATEHOLD_TEST_UPSTREAM_TOKEN"}) as gw:
            async with gw.client("legacy") as client:
                assert (await client.call_tool("up.echo", {"text": "hi"})).content[0].text == "hi"
            key = gw.key()
            records = gw.records()
    assert seen
    assert set(seen) == {"Bearer upstream-secret-123"}
    assert all(key not in header for header in seen)
    # The gateway's own secret is never written to the audit trail either.
    assert "upstream-secret-123" not in repr(records)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_cancelled_call_is_cancelled_upstream(tmp_path: Path, mode: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gatehold.upstream")
    roles = {"reader": {"tools": {"up.slow": {}, "up.echo": {}}}}
    async with running_gateway(tmp_path, {"up": stdio_sdk_upstream()}, roles) as gw, gw.client(mode) as client:
        with anyio.move_on_after(1.5):
            await client.call_tool("up.slow", {"seconds": 30})
            raise AssertionError("the slow call should not have finished")
        with anyio.fail_after(15):
            while "slow cancelled" not in caplog.text:
                await anyio.sleep(0.05)
        # The connection and the upstream stay usable after the cancellation.
        assert (await client.call_tool("up.echo", {"text": "after"})).content[0].text == "after"


async def test_upstream_list_changes_reach_a_session_client(tmp_path: Path) -> None:
    got: list[Any] = []

    async def on_message(message: Any) -> None:
        got.append(message)

    roles = {"reader": {"tools": {"up.announce": {}}}}
    async with running_gateway(tmp_path, {"up": stdio_sdk_upstream()}, roles) as gw, \
            gw.client("legacy", message_handler=on_message) as client:
        await anyio.sleep(0.3)  # let the client open its GET stream
        await client.call_tool("up.announce", {})
        with anyio.fail_after(10):
            while not any("ToolListChanged" in type(getattr(m, "root", m)).__name__ for m in got):
                await anyio.sleep(0.05)


async def test_an_upstream_elicitation_reaches_the_session_client(tmp_path: Path) -> None:
    from mcp_types import ElicitResult

    asked: list[str] = []

    async def answer(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"answer": "blue"})

    roles = {"reader": {"tools": {"up.ask": {}}}}
    async with running_gateway(tmp_path, {"up": stdio_sdk_upstream()}, roles) as gw, \
            gw.client("legacy", elicitation_callback=answer) as client:
        result = await client.call_tool("up.ask", {"question": "favourite colour?"})
    assert asked == ["favourite colour?"]
    assert result.content[0].text == "answer: blue"
