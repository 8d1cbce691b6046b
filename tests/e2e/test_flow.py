"""Data-flow rules end to end: the SDK client, a real gateway, a real (hostile) stdio upstream.

The session reads an injected e-mail (``untrusted``) or the user's profile (``private``); later
sends are asked about, refused, or let through according to where their arguments came from.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from tests.e2e.harness import REPO, Running, running_gateway
from tests.e2e.test_approval import admin, operators, pending
from tests.servers.hostile_server import ATTACKER

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

MODERN = "2026-07-28"
LABELS = {"up.read_email": ["untrusted"], "up.profile": ["private"], "up.send_email": ["external_sink"]}
FLOWS = [
    {"id": "copied-to-sink", "from": ["untrusted"], "to": ["external_sink"], "effect": "ask", "match": "arguments"},
    {"id": "private-to-sink", "from": ["private"], "to": ["external_sink"], "effect": "deny", "match": "arguments"},
    {"id": "untrusted-then-destroy", "from": ["untrusted"], "to": ["destructive"], "effect": "ask"},
]


def hostile_upstream() -> dict[str, Any]:
    return {"command": [sys.executable, "-m", "tests.servers.hostile_server"], "cwd": str(REPO)}


def flow_gateway(tmp: Path, flows: list[dict[str, Any]] = FLOWS, **sections: Any) -> Any:
    return running_gateway(tmp, {"up": hostile_upstream()}, {"reader": {"tools": {"up.*": {}}}},
                           labels=LABELS, flows=flows, approvals={"hold_seconds": 10, "retry_wait_seconds": 1},
                           operators=operators(), **sections)


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Running]:
    async with flow_gateway(tmp_path) as running:
        yield running


def decisions(gw: Running, tool: str) -> list[dict[str, Any]]:
    return [r for r in gw.records() if r.get("tool") == tool and r.get("kind") == "decision"]


async def test_untrusted_read_then_copied_address_waits_for_a_human(gw: Running) -> None:
    async with gw.client("legacy") as client:
        read = await client.call_tool("up.read_email", {"id": "2"})
        assert not read.is_error or "withheld" in read.content[0].text
        call = asyncio.ensure_future(client.call_tool("up.send_email", {"to": ATTACKER, "body": "hi"}))
        request = await pending(gw)
        assert request["rule_id"] == "flow.copied-to-sink"
        assert "up.read_email" in request["reason"]
        assert not call.done()
        assert (await admin(gw, "POST", f"/admin/approvals/{request['id']}/approve", body={})).status_code == 200
        result = await asyncio.wait_for(call, 10)
    assert result.content[0].text == f"sent to {ATTACKER}"


async def test_a_human_who_says_no_stops_the_send_in_the_2026_era(gw: Running) -> None:
    from mcp_types import ElicitResult

    async def deny(context: Any, params: Any) -> ElicitResult:
        approval_id = params.url.rsplit("/", 1)[1]
        assert (await admin(gw, "POST", f"/admin/approvals/{approval_id}/deny", body={})).status_code == 200
        return ElicitResult(action="accept")

    async with gw.client(MODERN, elicitation_callback=deny) as client:
        await client.call_tool("up.read_email", {"id": "2"})
        with pytest.raises(MCPError) as info:
            await client.call_tool("up.send_email", {"to": ATTACKER, "body": "hi"})
    assert info.value.error.code == -32015
    assert decisions(gw, "up.send_email")[-1]["code"] == "approval.denied"


async def test_private_data_copied_into_a_send_is_refused(gw: Running) -> None:
    async with gw.client("legacy") as client:
        await client.call_tool("up.profile", {})
        with pytest.raises(MCPError) as info:
            await client.call_tool("up.send_email", {"to": "bob@corp.example", "body": "IBAN GB29NWBK60161331926819"})
    assert info.value.error.code == -32017
    record = decisions(gw, "up.send_email")[-1]
    assert record["code"] == "flow.denied"
    assert record["rule_id"] == "flow.private-to-sink"
    assert record["detail"]["found"]["flow"]["values"][0]["tool"] == "up.profile"


async def test_a_send_whose_arguments_come_from_trusted_sources_goes_through(gw: Running) -> None:
    async with gw.client("legacy") as client:
        await client.call_tool("up.read_email", {"id": "2"})
        await client.call_tool("up.profile", {})
        result = await client.call_tool("up.send_email", {"to": "bob@corp.example", "body": "See you at noon"})
    assert result.content[0].text == "sent to bob@corp.example"
    assert (await admin(gw, "GET", "/admin/approvals")).json()["approvals"] == []
    assert decisions(gw, "up.send_email")[-1]["decision"] == "allow"


async def test_a_destructive_tool_after_an_untrusted_read_asks(gw: Running) -> None:
    async with gw.client("legacy") as client:
        assert (await client.call_tool("up.delete_file", {"id": "7"})).content[0].text == "deleted 7"
        await client.call_tool("up.read_email", {"id": "1"})
        call = asyncio.ensure_future(client.call_tool("up.delete_file", {"id": "7"}))
        request = await pending(gw)
        assert request["rule_id"] == "flow.untrusted-then-destroy"
        assert (await admin(gw, "POST", f"/admin/approvals/{request['id']}/deny", body={})).status_code == 200
        with pytest.raises(MCPError):
            await asyncio.wait_for(call, 10)


async def test_each_session_has_its_own_memory(gw: Running) -> None:
    async with gw.client("legacy") as client:
        await client.call_tool("up.profile", {})
        with pytest.raises(MCPError):
            await client.call_tool("up.send_email", {"to": "x@corp.example", "body": "GB29NWBK60161331926819"})
    async with gw.client("legacy") as fresh:
        result = await fresh.call_tool("up.send_email", {"to": "x@corp.example", "body": "GB29NWBK60161331926819"})
    assert result.content[0].text == "sent to x@corp.example"


async def test_provenance_escalates_a_copied_value_when_no_rule_fires(tmp_path: Path) -> None:
    scoped_elsewhere = [{"from": ["untrusted"], "to": ["external_sink"], "effect": "deny", "principals": ["ci-*"]}]
    async with flow_gateway(tmp_path, flows=scoped_elsewhere) as gw, gw.client("legacy") as client:
        await client.call_tool("up.read_email", {"id": "2"})
        assert (await client.call_tool("up.send_email", {"to": "bob@corp.example", "body": "ok"})).content
        call = asyncio.ensure_future(client.call_tool("up.send_email", {"to": ATTACKER, "body": "ok"}))
        request = await pending(gw)
        assert request["rule_id"] == "flow.provenance"
        assert (await admin(gw, "POST", f"/admin/approvals/{request['id']}/deny", body={})).status_code == 200
        with pytest.raises(MCPError):
            await asyncio.wait_for(call, 10)


async def test_gatehold_explain_shows_the_call_that_tainted_the_session(gw: Running) -> None:
    async with gw.client("legacy") as client:
        await client.call_tool("up.profile", {})
        with pytest.raises(MCPError):
            await client.call_tool("up.send_email", {"to": "bob@corp.example", "body": "GB29NWBK60161331926819"})
    denied = decisions(gw, "up.send_email")[-1]
    tainting = decisions(gw, "up.profile")[-1]["correlation_id"]
    explained = subprocess.run(
        [sys.executable, "-m", "gatehold", "explain", "--jsonl", str(gw.tmp / "audit.jsonl"),
         denied["correlation_id"]], capture_output=True, text=True, timeout=60, check=False)
    assert explained.returncode == 0, explained.stderr
    out = explained.stdout
    assert "decision deny" in out
    assert "flow.private-to-sink" in out
    assert f"tainted by call {tainting}" in out
    assert "up.profile" in out
    missing = subprocess.run([sys.executable, "-m", "gatehold", "explain", "--jsonl", str(gw.tmp / "audit.jsonl"),
                              "0000nosuchcall"], capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 1


SUSPECT_FLOWS = [
    {"id": "suspect-then-act", "from": ["suspect"], "to": ["external_sink", "destructive"], "effect": "ask"},
    {"id": "suspect-values-out", "from": ["suspect"], "to": ["external_sink"], "effect": "deny", "match": "arguments"},
]


async def test_a_session_that_read_suspicious_output_asks_before_any_send(tmp_path: Path) -> None:
    async with flow_gateway(tmp_path, flows=SUSPECT_FLOWS, flow={"provenance": "off"}) as gw, \
            gw.client("legacy") as client:
        await client.call_tool("up.read_email", {"id": "1"})  # no injection cue: the session stays clean
        assert (await client.call_tool("up.send_email", {"to": "bob@corp.example", "body": "ok"})).content
        withheld = await client.call_tool("up.read_email", {"id": "2"})
        assert "withheld" in withheld.content[0].text
        with pytest.raises(MCPError) as info:  # the address in the withheld e-mail: never sent to
            await client.call_tool("up.send_email", {"to": ATTACKER, "body": "noon"})
        assert info.value.error.code == -32017
        call = asyncio.ensure_future(client.call_tool("up.send_email", {"to": "bob@corp.example", "body": "noon"}))
        request = await pending(gw)
        assert request["rule_id"] == "flow.suspect-then-act"
        assert "up.read_email" in request["reason"]
        assert (await admin(gw, "POST", f"/admin/approvals/{request['id']}/approve", body={})).status_code == 200
        assert (await asyncio.wait_for(call, 10)).content[0].text == "sent to bob@corp.example"
    read = [r for r in decisions(gw, "up.read_email") if r["detail"]["found"].get("check_output.result")]
    assert read[-1]["detail"]["found"]["check_output.result"]["suspect"] >= 0.6


async def test_a_value_from_a_weak_injection_that_was_not_flagged_is_refused(tmp_path: Path) -> None:
    async with flow_gateway(tmp_path, flows=SUSPECT_FLOWS, flow={"provenance": "off"}) as gw, \
            gw.client("legacy") as client:
        read = await client.call_tool("up.read_email", {"id": "4"})
        assert ATTACKER in read.content[0].text  # below the detector's threshold: the agent reads it
        with pytest.raises(MCPError) as info:
            await client.call_tool("up.send_email", {"to": ATTACKER, "body": "the report"})
    assert info.value.error.code == -32017
    record = decisions(gw, "up.send_email")[-1]
    assert record["rule_id"] == "flow.suspect-values-out"
    assert record["detail"]["found"]["flow"]["values"][0] == {
        "value": ATTACKER, "tool": "up.read_email", "correlation_id": record["detail"]["found"]["flow"][
            "tainted_by"][0]["correlation_id"]}


async def test_suspicion_can_be_turned_off(tmp_path: Path) -> None:
    async with flow_gateway(tmp_path, flows=SUSPECT_FLOWS, flow={"provenance": "off", "suspect_score": None}) as gw, \
            gw.client("legacy") as client:
        await client.call_tool("up.read_email", {"id": "4"})
        assert (await client.call_tool("up.send_email", {"to": ATTACKER, "body": "x"})).content[0].text == \
            f"sent to {ATTACKER}"
