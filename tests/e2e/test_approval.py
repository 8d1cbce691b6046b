"""Human approval end to end: the real SDK client in both eras, a real gateway, a real upstream.

The human acts through the admin API (the CLI's and the page's own tests cover those channels);
the agent's side is the ``mcp`` SDK client, which can only answer elicitations, never decide.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import ElicitResult

from gatehold.auth.apikeys import new_api_key
from tests.approval.browser import approve_in_browser, chromium
from tests.e2e.harness import REPO, Running, modern_body, modern_headers, running_gateway, stdio_sdk_upstream

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

OPERATORS = {name: new_api_key(name) for name in ("olivia", "alice-ops", "watcher")}
ROLES = {"reader": {"tools": {"up.echo": {}, "up.add": {"approval": "required"},
                              "up.big": {"approval_when": {"n": {"min": 100}}}}}}
MODERN = "2026-07-28"


def operators() -> list[dict[str, Any]]:
    return [
        {"id": "olivia", "hash": OPERATORS["olivia"][1], "principal": "olivia", "can": ["approve", "kill"]},
        {"id": "alice-ops", "hash": OPERATORS["alice-ops"][1], "principal": "alice", "can": ["approve"]},
        {"id": "watcher", "hash": OPERATORS["watcher"][1], "principal": "wendy", "can": ["kill"]},
    ]


async def admin(gw: Running, method: str, path: str, *, operator: str = "olivia",
                body: dict[str, Any] | None = None) -> httpx.Response:
    base = gw.url.removesuffix("/mcp")
    async with httpx.AsyncClient(timeout=20) as http:
        return await http.request(method, base + path, content=None if body is None else orjson.dumps(body),
                                  headers={"authorization": f"Bearer {OPERATORS[operator][0]}"})


async def pending(gw: Running) -> dict[str, Any]:
    """The one pending approval, once it appears."""
    async with asyncio.timeout(10):
        while True:
            items = (await admin(gw, "GET", "/admin/approvals?state=pending")).json()["approvals"]
            if items:
                assert len(items) == 1
                return items[0]  # type: ignore[no-any-return]
            await asyncio.sleep(0.02)


def gateway(tmp: Path, **approvals: Any) -> Any:
    settings = {"hold_seconds": 10, "retry_wait_seconds": 1, **approvals}
    return running_gateway(tmp, {"up": stdio_sdk_upstream()}, ROLES, approvals=settings, operators=operators())


def human(gw: Running, decision: str, asked: list[Any]) -> Callable[[Any, Any], Awaitable[ElicitResult]]:
    """An elicitation callback: the user follows the link, where an operator decides; then accept."""
    async def answer(context: Any, params: Any) -> ElicitResult:
        asked.append(params)
        approval_id = params.url.rsplit("/", 1)[1]
        response = await admin(gw, "POST", f"/admin/approvals/{approval_id}/{decision}", body={"comment": "seen"})
        assert response.status_code == 200, response.text
        return ElicitResult(action="accept")
    return answer


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Running]:
    async with gateway(tmp_path) as running:
        yield running


def approve_stage(gw: Running) -> list[dict[str, Any]]:
    return [r for r in gw.records() if r.get("tool") == "up.add" and r.get("kind") == "decision"]


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_an_approved_call_completes_in_each_era(gw: Running, mode: str) -> None:
    asked: list[Any] = []
    async with gw.client(mode, elicitation_callback=human(gw, "approve", asked)) as client:
        assert (await client.call_tool("up.echo", {"text": "no approval needed"})).content[0].text
        result = await client.call_tool("up.add", {"a": 2, "b": 3})
    assert result.content[0].text == "5"
    assert len(asked) == 1
    assert asked[0].mode == "url"
    assert asked[0].url.startswith(gw.url.removesuffix("/mcp") + "/approvals/")
    decided = [r for r in gw.records() if r.get("method") == "approval/approve"]
    assert decided[0]["principal"] == "olivia"
    assert decided[0]["decision"] == "allow"
    final = approve_stage(gw)[-1]
    assert final["decision"] == "allow"
    assert "approved by olivia" in str(final["detail"]) or final["outcome"] == "ok"
    state = (await admin(gw, "GET", "/admin/approvals")).json()["approvals"][0]["state"]
    assert state == "used"


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_a_denied_call_fails_with_a_clear_error_in_each_era(gw: Running, mode: str) -> None:
    asked: list[Any] = []
    async with gw.client(mode, elicitation_callback=human(gw, "deny", asked)) as client:
        with pytest.raises(MCPError) as info:
            await client.call_tool("up.add", {"a": 2, "b": 3})
    assert info.value.error.code == -32015
    assert "denied" in info.value.error.message
    assert approve_stage(gw)[-1]["code"] == "approval.denied"


async def test_a_client_without_elicitation_is_held_open_until_a_human_decides(gw: Running) -> None:
    async with gw.client("legacy") as client:
        call = asyncio.ensure_future(client.call_tool("up.add", {"a": 20, "b": 22}))
        request = await pending(gw)
        assert request["arguments"] == {"a": 20, "b": 22}
        assert request["principal"] == "alice"
        assert request["tool"] == "up.add"
        assert request["server"] == "up"
        assert not call.done()
        assert (await admin(gw, "POST", f"/admin/approvals/{request['id']}/approve", body={})).status_code == 200
        result = await asyncio.wait_for(call, 10)
    assert result.content[0].text == "42"


async def test_a_held_call_times_out_naming_the_approval_and_the_page(tmp_path: Path) -> None:
    async with gateway(tmp_path, hold_seconds=0.3) as gw, gw.client("legacy") as client:
        with pytest.raises(MCPError) as info:
            await client.call_tool("up.add", {"a": 1, "b": 1})
    message = info.value.error.message
    assert "approval" in message
    assert "/approvals/" in message
    assert info.value.error.code == -32015


async def test_an_argument_pattern_asks_only_for_matching_calls(gw: Running) -> None:
    async with gw.client("legacy") as client:
        assert (await client.call_tool("up.big", {"n": 3})).content[0].text == "xxx"
        call = asyncio.ensure_future(client.call_tool("up.big", {"n": 150}))
        request = await pending(gw)
        assert request["rule_id"].endswith("approval_when.n")
        await admin(gw, "POST", f"/admin/approvals/{request['id']}/deny", body={"comment": "too big"})
        with pytest.raises(MCPError):
            await asyncio.wait_for(call, 10)


async def test_the_requesting_principal_cannot_approve_their_own_call(gw: Running) -> None:
    async with gw.client("legacy") as client:
        call = asyncio.ensure_future(client.call_tool("up.add", {"a": 1, "b": 2}))
        request = await pending(gw)
        refused = await admin(gw, "POST", f"/admin/approvals/{request['id']}/approve", operator="alice-ops",
                              body={})
        assert refused.status_code == 409
        assert refused.json()["error"] == "approval.self"
        no_power = await admin(gw, "POST", f"/admin/approvals/{request['id']}/approve", operator="watcher",
                               body={})
        assert no_power.status_code == 403
        assert (await admin(gw, "GET", f"/admin/approvals/{request['id']}")).json()["state"] == "pending"
        await admin(gw, "POST", f"/admin/approvals/{request['id']}/deny", body={})
        with pytest.raises(MCPError):
            await asyncio.wait_for(call, 10)
    denials = [r for r in gw.records() if r.get("method") == "approval/approve" and r["decision"] == "deny"]
    assert denials
    assert denials[0]["code"] == "approval.self"
    assert denials[0]["principal"] == "alice"


async def test_an_approval_after_expiry_is_refused(tmp_path: Path) -> None:
    async with gateway(tmp_path, expiry_seconds=0.5, hold_seconds=0.2) as gw, gw.client("legacy") as client:
        with pytest.raises(MCPError):
            await client.call_tool("up.add", {"a": 1, "b": 2})
        request = (await admin(gw, "GET", "/admin/approvals")).json()["approvals"][0]
        await asyncio.sleep(0.6)
        late = await admin(gw, "POST", f"/admin/approvals/{request['id']}/approve", body={})
    assert late.status_code == 409
    assert late.json()["error"] == "approval.expired"


# -- 2026-07-28 requestState, on the raw wire ------------------------------------------------------

async def modern_call(gw: Running, arguments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=20) as http:
        response = await http.post(gw.url, headers=modern_headers("tools/call", "up.add", gw.key()),
                                   content=orjson.dumps(modern_body("tools/call", {
                                       "name": "up.add", "arguments": arguments, **extra})))
    return response.json()  # type: ignore[no-any-return]


async def first_round(gw: Running, arguments: dict[str, Any]) -> tuple[str, str]:
    answer = await modern_call(gw, arguments)
    result = answer["result"]
    assert result["resultType"] == "input_required"
    request = result["inputRequests"]["approval"]
    assert request["method"] == "elicitation/create"
    assert request["params"]["mode"] == "url"
    return result["requestState"], request["params"]["url"].rsplit("/", 1)[1]


async def test_request_state_tampered_replayed_or_reused_for_other_arguments_is_refused(gw: Running) -> None:
    state, approval_id = await first_round(gw, {"a": 1, "b": 2})
    assert (await admin(gw, "POST", f"/admin/approvals/{approval_id}/approve", body={})).status_code == 200

    tampered = state[:-2] + ("AA" if not state.endswith("AA") else "BB")
    other_args = await modern_call(gw, {"a": 1, "b": 999}, requestState=state)
    bad = await modern_call(gw, {"a": 1, "b": 2}, requestState=tampered)
    for answer in (other_args, bad):
        assert answer["error"]["code"] == -32602
        assert answer["error"]["message"] == "Invalid or expired requestState"
    good = await modern_call(gw, {"a": 1, "b": 2}, requestState=state,
                             inputResponses={"approval": {"action": "accept"}})
    assert good["result"]["content"][0]["text"] == "3"  # refused attempts did not use the state up
    replayed = await modern_call(gw, {"a": 1, "b": 2}, requestState=state)
    assert replayed["error"]["message"] == "Invalid or expired requestState"
    codes = [r.get("code") for r in gw.records() if r.get("code") == "protocol.request_state"]
    assert len(codes) == 3  # other arguments, tampered, replayed: each audited


async def test_a_pending_retry_gets_a_fresh_state_and_another_principal_cannot_use_it(gw: Running) -> None:
    state, approval_id = await first_round(gw, {"a": 2, "b": 2})
    retry = (await modern_call(gw, {"a": 2, "b": 2}, requestState=state))["result"]
    assert retry["resultType"] == "input_required"
    assert retry["requestState"] != state
    assert "inputRequests" not in retry
    async with httpx.AsyncClient(timeout=20) as http:
        response = await http.post(gw.url, headers=modern_headers("tools/call", "up.add", gw.key("bob")),
                                   content=orjson.dumps(modern_body("tools/call", {
                                       "name": "up.add", "arguments": {"a": 2, "b": 2},
                                       "requestState": retry["requestState"]})))
    assert response.json()["error"]["message"] == "Invalid or expired requestState"
    declined = await modern_call(gw, {"a": 2, "b": 2}, requestState=retry["requestState"],
                                 inputResponses={"approval": {"action": "decline"}})
    assert declined["error"]["code"] == -32015
    assert (await admin(gw, "GET", f"/admin/approvals/{approval_id}")).json()["state"] == "pending"


async def test_an_operator_approves_on_the_page_in_chromium_and_the_call_completes(gw: Running) -> None:
    async with chromium() as browser, gw.client("legacy") as client:
        call = asyncio.ensure_future(client.call_tool("up.add", {"a": 40, "b": 2}))
        request = await pending(gw)
        page = await (await browser.new_context()).new_page()
        await approve_in_browser(page, gw.url.removesuffix("/mcp"), OPERATORS["olivia"][0], request["id"],
                                 comment="checked on the page",
                                 screenshot=REPO / "test-artifacts" / "approval-e2e.png")
        result = await asyncio.wait_for(call, 10)
    assert result.content[0].text == "42"
    shown = (await admin(gw, "GET", f"/admin/approvals/{request['id']}")).json()
    assert (shown["state"], shown["approver"], shown["comment"]) == ("used", "olivia", "checked on the page")


async def test_a_new_request_is_posted_to_the_signed_webhook(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from gatehold.approval.webhook import verify_signature
    from tests.serving import serve_asgi

    received: list[tuple[bytes, str]] = []

    async def hook(request: Request) -> Response:
        received.append((await request.body(), request.headers["x-gatehold-signature"]))
        return Response(status_code=204)

    from starlette.applications import Starlette

    monkeypatch.setenv("GATEHOLD_TEST_HOOK_KEY", "hook-secret-0123456789")
    async with serve_asgi(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as receiver, \
            running_gateway(tmp_path, {"up": stdio_sdk_upstream()}, ROLES, operators=operators(),
                            secrets={"hook": "env:GATEHOLD_TEST_HOOK_KEY"},
                            approvals={"hold_seconds": 10, "webhook": {"url": f"{receiver}/hook", "secret": "hook"}}
                            ) as gw, gw.client("legacy") as client:
        call = asyncio.ensure_future(client.call_tool("up.add", {"a": 1, "b": 1}))
        request = await pending(gw)
        async with asyncio.timeout(10):
            while not received:
                await asyncio.sleep(0.02)
        await admin(gw, "POST", f"/admin/approvals/{request['id']}/deny", body={})
        with pytest.raises(MCPError):
            await asyncio.wait_for(call, 10)
    body, signature = received[0]
    assert verify_signature("hook-secret-0123456789", signature, body)
    sent = orjson.loads(body)
    assert sent["approval"]["id"] == request["id"]
    assert sent["url"].endswith(f"/approvals/{request['id']}")
    assert len(received) == 1  # decisions are not posted
