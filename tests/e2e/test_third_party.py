"""A real third-party MCP server (PyPI's mcp-server-time, written by others) behind Gatehold."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

from tests.e2e.harness import running_gateway

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

UPSTREAM = {"time": {"command": [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]}}
ROLES = {"reader": {"tools": {
    "time.get_current_time": {"args": {"timezone": {"enum": ["UTC", "Europe/Paris"]}}},
}}}


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_time_server_list_call_and_denials(tmp_path: Path, mode: str) -> None:
    async with running_gateway(tmp_path, UPSTREAM, ROLES) as gw:
        # The upstream really offers more than the grant: the gateway shows only what is granted.
        assert {"time.get_current_time", "time.convert_time"} <= set(gw.gateway.catalog.tools)
        async with gw.client(mode) as client:
            tools = await client.list_tools()
            assert [t.name for t in tools.tools] == ["time.get_current_time"]
            result = await client.call_tool("time.get_current_time", {"timezone": "Europe/Paris"})
            assert not result.is_error
            assert "Europe/Paris" in result.content[0].text
            with pytest.raises(MCPError) as denied:
                await client.call_tool("time.convert_time", {"source_timezone": "UTC", "time": "12:00",
                                                             "target_timezone": "Asia/Tokyo"})
            assert denied.value.error.code == -32010
            with pytest.raises(MCPError) as constrained:
                await client.call_tool("time.get_current_time", {"timezone": "Asia/Tokyo"})
            assert constrained.value.error.code == -32011
    codes = [r["code"] for r in gw.records() if r["kind"] == "decision"]
    assert codes == [None, "policy.not_granted", "args.constraint"]
