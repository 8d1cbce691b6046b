"""An upstream that dies mid-call: the call fails cleanly, the upstream restarts, later calls work."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from tests.e2e.harness import running_gateway, stdio_sdk_upstream

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ROLES = {"reader": {"tools": {"up.crash": {}, "up.pid": {}, "up.echo": {}}}}


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_crash_mid_call_then_recovery(tmp_path: Path, mode: str) -> None:
    async with running_gateway(tmp_path, {"up": stdio_sdk_upstream()}, ROLES) as gw, gw.client(mode) as client:
        before = (await client.call_tool("up.pid", {})).content[0].text
        with pytest.raises(MCPError) as crashed:
            await client.call_tool("up.crash", {})
        assert crashed.value.error.code == -32014
        assert crashed.value.error.data["code"] == "upstream.crashed"
        after = None
        with anyio.fail_after(20):
            while after is None:
                try:
                    after = (await client.call_tool("up.pid", {})).content[0].text
                except MCPError as exc:  # still restarting: "unavailable" is the honest answer
                    assert exc.error.data["code"] in {"upstream.unavailable", "upstream.crashed"}  # noqa: PT017
                    await anyio.sleep(0.2)
        assert after != before  # a new process answers
        assert (await client.call_tool("up.echo", {"text": "still here"})).content[0].text == "still here"
    crash = [r for r in gw.records() if r["kind"] == "decision" and r["tool"] == "up.crash"]
    assert [(r["decision"], r["code"]) for r in crash] == [("error", "upstream.crashed")]
