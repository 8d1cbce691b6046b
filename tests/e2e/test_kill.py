"""The kill switch end to end: in-flight calls cancelled upstream, new calls refused until revive."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from mcp.shared.exceptions import MCPError

from tests.e2e.harness import REPO, running_gateway, stdio_sdk_upstream
from tests.e2e.test_approval import OPERATORS, admin, operators, pending

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ROLES = {"reader": {"tools": {"up.slow": {}, "up.echo": {}, "up.add": {"approval": "required"}}}}


def gateway(tmp: Path) -> Any:
    return running_gateway(tmp, {"up": stdio_sdk_upstream()}, ROLES, operators=operators(),
                           approvals={"hold_seconds": 30})


async def wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> None:
    with anyio.fail_after(15):
        while text not in caplog.text:
            await anyio.sleep(0.05)


@pytest.mark.parametrize("target", [{"kind": "tool", "value": "up.slow"}, {"kind": "server", "value": "up"},
                                    {"kind": "principal", "value": "alice"}, {"kind": "all"}])
async def test_a_kill_cancels_the_in_flight_call_within_a_second(tmp_path: Path, target: dict[str, str],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gatehold.upstream")
    async with gateway(tmp_path) as gw, gw.client("legacy") as client:
        call = asyncio.ensure_future(client.call_tool("up.slow", {"seconds": 30}))
        await asyncio.sleep(0.5)  # the upstream is working on it
        assert not call.done()
        killed = await admin(gw, "POST", "/admin/kill", body={**target, "reason": "incident 7"})
        assert killed.status_code == 200, killed.text
        started = time.monotonic()
        with pytest.raises(MCPError) as info:
            await asyncio.wait_for(call, 5)
        assert time.monotonic() - started < 1.0
        assert info.value.error.code == -32016
        assert "kill switch" in info.value.error.message
        await wait_for_log(caplog, "slow cancelled")  # the upstream was told
        if target["kind"] != "principal":  # a killed principal's credential is refused outright
            with pytest.raises(MCPError) as again:
                await client.call_tool("up.slow", {"seconds": 0})
            assert again.value.error.code == -32016
    records = gw.records()
    assert any(r.get("method") == "admin/kill" and r["principal"] == "olivia" for r in records)
    assert any(r.get("code") == "kill.active" and r.get("tool") == "up.slow" for r in records)


async def test_revive_lets_calls_through_again_and_others_are_untouched(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw, gw.client("legacy") as client:
        await admin(gw, "POST", "/admin/kill", body={"kind": "tool", "value": "up.slow"})
        with pytest.raises(MCPError):
            await client.call_tool("up.slow", {"seconds": 0})
        assert (await client.call_tool("up.echo", {"text": "still fine"})).content[0].text == "still fine"
        listed = (await admin(gw, "GET", "/admin/kills")).json()["kills"]
        assert [(k["kind"], k["value"]) for k in listed] == [("tool", "up.slow")]
        revived = await admin(gw, "POST", "/admin/revive", body={"kind": "tool", "value": "up.slow"})
        assert revived.json()["revived"] is True
        assert (await client.call_tool("up.slow", {"seconds": 0})).content[0].text == "slept 0.0"
    assert any(r.get("method") == "admin/revive" for r in gw.records())


async def test_a_kill_denies_the_targets_pending_approvals(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw, gw.client("legacy") as client:
        call = asyncio.ensure_future(client.call_tool("up.add", {"a": 1, "b": 2}))
        request = await pending(gw)
        await admin(gw, "POST", "/admin/kill", body={"kind": "tool", "value": "up.add"})
        with pytest.raises(MCPError):
            await asyncio.wait_for(call, 5)
        shown = (await admin(gw, "GET", f"/admin/approvals/{request['id']}")).json()
        assert (shown["state"], shown["approver"]) == ("denied", "kill-switch")


async def test_the_admin_api_needs_an_operator_with_the_kill_power(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        body = {"kind": "all"}
        assert (await admin(gw, "POST", "/admin/kill", operator="alice-ops", body=body)).status_code == 403
        base = gw.url.removesuffix("/mcp")
        async with httpx.AsyncClient() as http:
            agent = await http.post(base + "/admin/kill", json=body, headers=gw.headers())
            browser = await http.post(base + "/admin/kill", json=body, headers={
                "authorization": f"Bearer {OPERATORS['olivia'][0]}", "origin": base})
        assert agent.status_code == 401  # an agent's API key is not an operator key
        assert browser.status_code == 403  # no browser may drive the admin API
        assert (await admin(gw, "GET", "/admin/kills")).json()["kills"] == []


async def test_the_cli_kills_and_revives_through_the_admin_api(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw, gw.client("legacy") as client:
        config = tmp_path / "ops.yaml"
        config.write_text(yaml.safe_dump({"approvals": {"public_url": gw.url.removesuffix("/mcp")}}))
        env = {**os.environ, "GATEHOLD_OPERATOR_KEY": OPERATORS["olivia"][0]}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "gatehold", *args, "--config", str(config)],
                                  capture_output=True, text=True, cwd=REPO, env=env, timeout=60)

        done = await asyncio.to_thread(cli, "kill", "--server", "up", "--reason", "drill")
        assert (done.returncode, done.stdout.strip()) == (0, "killed: server up"), done.stderr
        with pytest.raises(MCPError):
            await client.call_tool("up.echo", {"text": "x"})
        usage = await asyncio.to_thread(cli, "kill", "--server", "up", "--all")
        assert usage.returncode == 2
        done = await asyncio.to_thread(cli, "revive", "--server", "up")
        assert (done.returncode, done.stdout.strip()) == (0, "revived: server up"), done.stderr
        assert (await client.call_tool("up.echo", {"text": "x"})).content[0].text == "x"

        call = asyncio.ensure_future(client.call_tool("up.add", {"a": 2, "b": 2}))
        request = await pending(gw)
        listed = await asyncio.to_thread(cli, "approvals", "list")
        assert request["id"] in listed.stdout
        assert "up.add" in listed.stdout
        shown = await asyncio.to_thread(cli, "approvals", "show", request["id"])
        assert '"arguments"' in shown.stdout
        approved = await asyncio.to_thread(cli, "approvals", "approve", request["id"], "--comment", "ok")
        assert approved.returncode == 0, approved.stderr
        assert approved.stdout.startswith("approved: ")
        assert (await asyncio.wait_for(call, 10)).content[0].text == "4"
        again = await asyncio.to_thread(cli, "approvals", "deny", request["id"])
        assert again.returncode == 1
        assert "used" in again.stderr
        env.pop("GATEHOLD_OPERATOR_KEY")
        assert (await asyncio.to_thread(cli, "approvals", "list")).returncode == 2
