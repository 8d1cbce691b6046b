"""The official MCP SDK client, in both protocol eras, through Gatehold to stdio and HTTP upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from tests.e2e.harness import Running, running_gateway, sdk_http_upstream, stdio_sdk_upstream

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ROLES = {
    "reader": {
        "tools": {
            "up.echo": {},
            "up.add": {"args": {"a": {"min": 0, "max": 100}}},
            "up.progress": {},
        },
        "prompts": ["up.greet"],
        "resources": ["up.demo://*"],
    }
}


@asynccontextmanager
async def gateway_for(kind: str, tmp: Path) -> AsyncIterator[Running]:
    if kind == "stdio":
        async with running_gateway(tmp, {"up": stdio_sdk_upstream()}, ROLES) as gw:
            yield gw
    else:
        async with sdk_http_upstream() as url, running_gateway(tmp, {"up": {"url": url}}, ROLES) as gw:
            yield gw


def text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.parametrize("upstream", ["stdio", "http"])
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_list_and_call_through_the_gateway(tmp_path: Path, upstream: str, mode: str) -> None:
    async with gateway_for(upstream, tmp_path) as gw, gw.client(mode) as client:
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        tools = await client.list_tools()
        # Only granted tools are listed: a caller never sees what it may not call.
        assert sorted(t.name for t in tools.tools) == ["up.add", "up.echo", "up.progress"]
        result = await client.call_tool("up.add", {"a": 2, "b": 40})
        assert not result.is_error
        assert text(result) == "42"
        assert (await client.call_tool("up.echo", {"text": "héllo"})).content[0].text == "héllo"

        prompts = await client.list_prompts()
        assert [p.name for p in prompts.prompts] == ["up.greet"]
        got = await client.get_prompt("up.greet", {"name": "Ada"})
        assert "Ada" in got.messages[0].content.text
        resources = await client.list_resources()
        assert [str(r.uri) for r in resources.resources] == ["demo://readme"]
        read = await client.read_resource("demo://readme")
        assert "readme" in read.contents[0].text

        with pytest.raises(MCPError) as denied:
            await client.call_tool("up.env", {"name": "HOME"})
        assert denied.value.error.code == -32010
        with pytest.raises(MCPError) as invalid:
            await client.call_tool("up.add", {"a": "two", "b": 1})
        assert invalid.value.error.code == -32602
        with pytest.raises(MCPError) as constrained:
            await client.call_tool("up.add", {"a": 1000, "b": 1})
        assert constrained.value.error.code == -32011

    records = gw.records()
    decisions = [(r["tool"], r["decision"], r["code"]) for r in records if r["kind"] == "decision"]
    assert ("up.add", "allow", None) in decisions
    assert ("up.env", "deny", "policy.not_granted") in decisions
    assert ("up.add", "deny", "args.schema") in decisions
    assert ("up.add", "deny", "args.constraint") in decisions
    assert all(r["principal"] == "alice" for r in records if r["kind"] == "decision")


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_progress_is_streamed_back_over_sse(tmp_path: Path, mode: str) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with gateway_for("stdio", tmp_path) as gw, gw.client(mode) as client:
        result = await client.call_tool("up.progress", {"steps": 3}, progress_callback=on_progress)
        assert text(result) == "done 3"
    assert seen == [1, 2, 3]


async def test_a_caller_without_grants_sees_nothing(tmp_path: Path) -> None:
    async with gateway_for("stdio", tmp_path) as gw, gw.client("2026-07-28", key_id="bob") as client:
        assert (await client.list_tools()).tools == []
        assert (await client.list_prompts()).prompts == []
        with pytest.raises(MCPError) as denied:
            await client.call_tool("up.echo", {"text": "x"})
        assert denied.value.error.code == -32010
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("up.nonexistent", {})
        # The same answer for "exists but not yours" and "does not exist": no catalogue oracle.
        assert unknown.value.error.code == -32010
