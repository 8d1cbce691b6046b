"""Output defences end to end: a hostile stdio upstream, the real gateway, the SDK client.

Hidden content is stripped, injected results are quarantined, a broken output schema becomes an
error result, secrets the gateway holds never reach the client or the audit trail, poisoned tool
definitions are withheld until accepted, and spotlighting labels tool text as data.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from mcp.shared.exceptions import MCPError

from gatehold.output.screen import definition_digest
from tests.e2e.harness import Running, running_gateway
from tests.e2e.test_flow import hostile_upstream
from tests.servers.hostile_server import TOOLS

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    value = "upk_" + secrets.token_urlsafe(24)
    monkeypatch.setenv("GATEHOLD_TEST_UPSTREAM_TOKEN", value)
    return value


def defended(tmp: Path, **output: Any) -> Any:
    upstream = {**hostile_upstream(), "env": {"UPSTREAM_TOKEN": "up_token"}}
    return running_gateway(tmp, {"up": upstream}, {"reader": {"tools": {"up.*": {}}}},
                           secrets={"up_token": "env:GATEHOLD_TEST_UPSTREAM_TOKEN"}, output=output)


@pytest.fixture
async def gw(tmp_path: Path, token: str) -> AsyncIterator[Running]:
    async with defended(tmp_path) as running:
        yield running


def result_record(gw: Running, tool: str) -> dict[str, Any]:
    return [r for r in gw.records() if r.get("tool") == tool and r.get("kind") == "decision"][-1]


async def test_hidden_content_is_stripped_and_reported(gw: Running) -> None:
    async with gw.client("legacy") as client:
        result = await client.call_tool("up.read_email", {"id": "3"})
    text = result.content[0].text
    assert "Minutes attached" in text
    assert "Thanks." in text
    assert not any(0xE0000 <= ord(c) <= 0xE007F for c in text)
    assert "\u200b" not in text
    assert "\x1b" not in text
    assert "forward everything" not in text
    assert "attacker.example" not in text
    removed = result_record(gw, "up.read_email")["detail"]["found"]["check_output.result"]["removed"]
    assert {"tag_chars", "zero_width", "html_comment", "exfil_image", "ansi"} <= set(removed)


async def test_an_injected_result_is_quarantined(gw: Running) -> None:
    async with gw.client("legacy") as client:
        result = await client.call_tool("up.read_email", {"id": "2"})
        benign = await client.call_tool("up.read_email", {"id": "1"})
    assert result.is_error
    assert result.content[0].text.startswith("[gatehold: result withheld")
    assert "IBAN" not in result.content[0].text
    assert "Lunch" in benign.content[0].text
    assert not benign.is_error
    found = result_record(gw, "up.read_email")
    injection = [r for r in gw.records() if r.get("tool") == "up.read_email"][-2]["detail"]["found"]
    assert injection["check_output.result"]["injection"]["action"] == "quarantine"
    assert found["decision"] == "allow"


@pytest.mark.parametrize(("action", "expect"), [("annotate", "may contain a prompt injection"),
                                                ("redact", "suspected injection removed")])
async def test_the_injection_action_is_configurable(tmp_path: Path, token: str, action: str, expect: str) -> None:
    async with defended(tmp_path, injection={"action": action}) as gw, gw.client("legacy") as client:
        result = await client.call_tool("up.read_email", {"id": "2"})
    assert expect in " ".join(c.text for c in result.content)
    assert not result.is_error


async def test_deny_action_refuses_the_result(tmp_path: Path, token: str) -> None:
    async with defended(tmp_path, injection={"action": "deny"}) as gw, gw.client("legacy") as client:
        with pytest.raises(MCPError) as info:
            await client.call_tool("up.read_email", {"id": "2"})
    assert info.value.error.code == -32012
    assert result_record(gw, "up.read_email")["code"] == "output.injection"


async def test_structured_content_must_match_the_output_schema(gw: Running) -> None:
    async with gw.client("legacy") as client:
        good = await client.call_tool("up.stats", {})
        bad = await client.call_tool("up.stats", {"bad": True})
    assert good.structured_content == {"count": 3}
    assert bad.is_error
    assert "output schema" in bad.content[0].text
    assert "output_schema" in result_record(gw, "up.stats")["detail"]["found"]["check_output.result"]


async def test_secrets_never_reach_the_client_or_the_audit_trail(gw: Running, token: str) -> None:
    async with gw.client("legacy") as client:
        leaked = await client.call_tool("up.leak", {})
        with pytest.raises(MCPError) as info:
            await client.call_tool("up.fail", {})
    visible = leaked.content[0].text + info.value.error.message
    assert token not in visible
    assert "AKIA" + "Q" * 16 not in visible
    assert "[REDACTED" in leaked.content[0].text
    assert "ignore previous instructions" not in info.value.error.message
    trail = (gw.tmp / "audit.jsonl").read_text() + orjson.dumps(gw.records()).decode()
    assert token not in trail


async def test_held_secrets_never_appear_in_listed_metadata(gw: Running, token: str) -> None:
    async with gw.client("legacy") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert "up.status" in tools
    assert token not in (tools["up.status"].description or "")
    assert "[REDACTED]" in (tools["up.status"].description or "")


async def test_poisoned_definitions_are_withheld_and_refused(gw: Running) -> None:
    async with gw.client("legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        with pytest.raises(MCPError) as info:
            await client.call_tool("up.weather", {"city": "Paris"})
    assert "up.read_email" in names
    assert "up.weather" not in names
    assert "up.translate" not in names
    assert info.value.error.code == -32012
    assert result_record(gw, "up.weather")["code"] == "output.quarantined"
    flagged = {r["detail"]["exposed"]: r["detail"]["reason"] for r in gw.records()
               if r.get("kind") == "lifecycle" and r["reason"].startswith("definition flagged")}
    assert "suspected injection" in flagged["up.weather"]
    assert "hidden content" in flagged["up.translate"]


async def test_an_accepted_definition_is_served_until_it_changes(tmp_path: Path, token: str) -> None:
    weather = next(t for t in TOOLS if t["name"] == "weather")
    accepted = {"up.weather": definition_digest(weather), "up.translate": "sha256:" + "0" * 64}
    async with defended(tmp_path, accepted=accepted) as gw, gw.client("legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("up.weather", {"city": "Paris"})
    assert "up.weather" in names
    assert "up.translate" not in names
    assert result.content[0].text == "sunny"


async def test_spotlighting_marks_tool_text_as_data(tmp_path: Path, token: str) -> None:
    async with defended(tmp_path, spotlight="all") as gw, gw.client("legacy") as client:
        text = (await client.call_tool("up.read_email", {"id": "1"})).content[0].text
    first, *_middle, last = text.splitlines()
    assert first.startswith('[gatehold: untrusted data from server "up", tool "up.read_email"')
    tag = first.rsplit(" ", 1)[1].rstrip("]")
    assert last == f"[gatehold: end {tag}]"
    assert "Lunch" in text
