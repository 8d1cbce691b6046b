"""The approval page on a real uvicorn: a system Chromium for the human paths, httpx for the attacks."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.async_api import expect
from starlette.applications import Starlette

from gatehold.approval.operators import OperatorAuthenticator
from gatehold.approval.page import approval_routes
from gatehold.approval.service import Approvals
from gatehold.approval.store import Approval, ApprovalStore, call_digest
from gatehold.audit import AuditLog, JsonlSink
from gatehold.auditor import Auditor
from gatehold.auth.apikeys import new_api_key
from gatehold.call import new_correlation_id
from gatehold.config import Operator
from tests.approval.browser import approve_in_browser, chromium, sign_in
from tests.serving import serve_asgi

pytestmark = pytest.mark.anyio

SCREENSHOT = Path(__file__).resolve().parents[2] / "test-artifacts" / "approval-page.png"
REQUESTER = "agent-bob"
ALICE, ALICE_HASH = new_api_key("alice")  # approver
BOB, BOB_HASH = new_api_key("bob")  # an approver who is also the agent's principal
CAROL, CAROL_HASH = new_api_key("carol")  # may throw the kill switch, may not approve
AGENT, _ = new_api_key("agent")  # an agent's key: never an operator
OPERATORS = (
    Operator(id="alice", hash=ALICE_HASH, principal="alice", can=("approve",)),
    Operator(id="bob", hash=BOB_HASH, principal=REQUESTER, can=("approve", "kill")),
    Operator(id="carol", hash=CAROL_HASH, principal="carol", can=("kill",)),
)
ARGUMENTS: dict[str, Any] = {
    "owner": "acme",
    "repo": "payments-api",
    "confirm": True,
    "keep_forks": 3,
    "note": "<script>document.title='owned'</script>",
    "options": {"archive_first": False, "labels": ["prod", "<img src=x onerror=alert(1)>"]},
}
EXPECTED_HEADERS = {
    "content-security-policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@dataclass
class Gate:
    base: str
    store: ApprovalStore
    log: AuditLog
    audit_path: Path

    def request(self, tool: str = "delete_repo", arguments: dict[str, Any] | None = None,
                principal: str = REQUESTER) -> Approval:
        arguments = ARGUMENTS if arguments is None else arguments
        return self.store.create(principal=principal, server="github", tool=tool, arguments=arguments,
                                 digest=call_digest("github", tool, arguments), rule_id="github-destructive",
                                 reason="deleting a repository needs a human", policy_version="policy-7",
                                 correlation_id=new_correlation_id())

    def records(self, method_prefix: str = "approval/") -> list[dict[str, Any]]:
        self.log.flush()
        if not self.audit_path.exists():
            return []
        records = [orjson.loads(line) for line in self.audit_path.read_text().splitlines()]
        return [r for r in records if (r.get("method") or "").startswith(method_prefix)]

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, follow_redirects=False, timeout=10.0)

    @asynccontextmanager
    async def signed_in(self, key: str) -> AsyncIterator[httpx.AsyncClient]:
        async with self.client() as client:
            response = await client.post("/approvals/login", data={"key": key})
            assert response.status_code == 303, response.text
            yield client


@asynccontextmanager
async def serve_page(tmp_path: Path, *, secure_cookies: bool = False) -> AsyncIterator[Gate]:
    log = AuditLog([JsonlSink(tmp_path / "audit.jsonl")])
    store = ApprovalStore(expiry_seconds=600)
    approvals = Approvals(store, Auditor(log), base_url="http://gatehold.invalid")
    app = Starlette(routes=approval_routes(approvals, OperatorAuthenticator(OPERATORS),
                                           secure_cookies=secure_cookies))
    try:
        async with serve_asgi(app) as base:
            yield Gate(base, store, log, tmp_path / "audit.jsonl")
    finally:
        log.close()


@pytest.fixture
async def gate(tmp_path: Path) -> AsyncIterator[Gate]:
    async with serve_page(tmp_path) as served:
        yield served


def csrf_of(page_html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page_html)
    assert found, "no csrf field on the page"
    return found.group(1)


async def wait_until_unsubscribed(store: ApprovalStore) -> None:
    async with asyncio.timeout(10):
        while store.listeners:
            await asyncio.sleep(0.05)


# -- in the browser ------------------------------------------------------------------------------


async def test_an_approver_sees_a_new_request_live_and_approves_it(gate: Gate) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        problems: list[str] = []  # script errors and CSP violations: the page must cause none
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda message: problems.append(message.text)
                if "Content Security Policy" in message.text else None)
        await page.goto(f"{gate.base}/approvals")
        assert page.url == f"{gate.base}/approvals/login"

        await page.fill("#key", AGENT)  # an agent's key is refused
        async with page.expect_navigation() as refused:
            await page.click("form.login button[type=submit]")
        assert (await refused.value).status == 401  # type: ignore[union-attr]
        await expect(page.locator(".notice")).to_contain_text("not an approver's key")

        await sign_in(page, gate.base, ALICE)
        await expect(page.locator("header")).to_contain_text("Signed in as alice")
        await expect(page.locator("#live")).to_contain_text("Live")  # the event stream is open
        assert await page.locator("#pending li.empty").count() == 1

        approval = gate.request()  # created after the page loaded: it must appear without a reload
        link = page.locator(f'#pending a[href="/approvals/{approval.id}"]')
        await expect(link).to_be_visible(timeout=10_000)
        await expect(link).to_contain_text("github / delete_repo")
        await expect(link).to_contain_text(f"asked by {REQUESTER}")

        await link.click()
        await page.wait_for_url(f"{gate.base}/approvals/{approval.id}")
        main = await page.locator("main").inner_text()
        for fact in (REQUESTER, "github", "delete_repo", "deleting a repository needs a human",
                     "github-destructive", "policy-7", approval.digest, "pending"):
            assert fact in main
        shown = await page.locator("#arguments").inner_text()
        assert orjson.loads(shown) == ARGUMENTS  # every argument, exactly
        assert "<script>document.title='owned'</script>" in shown  # shown as text, never run
        assert await page.locator("script").count() == 1  # only the page's own script
        assert await page.title() != "owned"

        await approve_in_browser(page, gate.base, ALICE, approval.id, comment="ticket OPS-42, checked",
                                 screenshot=SCREENSHOT)
        assert SCREENSHOT.stat().st_size > 0
        decided = gate.store.get(approval.id)
        assert decided is not None
        assert (decided.state, decided.approver, decided.comment) == ("approved", "alice", "ticket OPS-42, checked")
        await expect(page.locator("#state")).to_contain_text("approved by alice")
        assert await page.locator("#decide").count() == 0
        assert problems == []

    allowed = [r for r in gate.records() if r["method"] == "approval/approve"]
    assert [(r["decision"], r["principal"]) for r in allowed] == [("allow", "alice")]
    logins = [(r["decision"], r["principal"]) for r in gate.records("approval/login")]
    assert logins == [("deny", None), ("allow", "alice")]


async def test_an_approver_denies_and_an_open_detail_page_follows_live(gate: Gate) -> None:
    approval = gate.request(tool="transfer_repo", arguments={"repo": "payments-api", "to": "someone-else"})
    async with chromium() as browser:
        context = await browser.new_context()
        watching = await context.new_page()
        await sign_in(watching, gate.base, ALICE)
        await watching.goto(f"{gate.base}/approvals/{approval.id}")
        await expect(watching.locator("#state")).to_contain_text("pending")
        await expect(watching.locator("#decide")).to_be_visible()

        deciding = await context.new_page()
        await approve_in_browser(deciding, gate.base, ALICE, approval.id, approve=False, comment="not today")

        decided = gate.store.get(approval.id)
        assert decided is not None
        assert (decided.state, decided.approver, decided.comment) == ("denied", "alice", "not today")
        await expect(watching.locator("#state")).to_contain_text("denied by alice")  # no reload
        await expect(watching.locator("#decide")).to_be_hidden()
        await context.close()

    denials = [r for r in gate.records() if r["method"] == "approval/deny"]
    assert [(r["decision"], r["principal"], r["outcome"]) for r in denials] == [("allow", "alice", "denied")]


# -- over plain HTTP -----------------------------------------------------------------------------


async def test_the_requester_cannot_approve_their_own_call(gate: Gate) -> None:
    approval = gate.request()
    async with gate.signed_in(BOB) as client:
        page = await client.get(f"/approvals/{approval.id}")
        assert page.status_code == 200
        response = await client.post(f"/approvals/{approval.id}/decide",
                                     data={"decision": "approve", "comment": "mine", "csrf": csrf_of(page.text)})
        assert response.status_code == 409
        assert "you asked for this call and cannot approve it" in response.text

    current = gate.store.get(approval.id)
    assert current is not None
    assert (current.state, current.approver) == ("pending", None)
    [record] = [r for r in gate.records() if r["method"] == "approval/approve"]
    assert (record["decision"], record["code"], record["principal"]) == ("deny", "approval.self", REQUESTER)


async def test_forged_and_cross_site_posts_are_refused(gate: Gate) -> None:
    approval = gate.request()
    decide = f"/approvals/{approval.id}/decide"
    async with gate.signed_in(ALICE) as client:
        csrf = csrf_of((await client.get(f"/approvals/{approval.id}")).text)
        assert (await client.post(decide, data={"decision": "approve"})).status_code == 403
        assert (await client.post(decide, data={"decision": "approve", "csrf": "x" + csrf})).status_code == 403
        assert (await client.post(decide, data={"decision": "approve", "csrf": "é"})).status_code == 403
        foreign = await client.post(decide, data={"decision": "approve", "csrf": csrf},
                                    headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403
        other_port = await client.post(decide, data={"decision": "approve", "csrf": csrf},
                                       headers={"Origin": "http://127.0.0.1:1"})
        assert other_port.status_code == 403
        for opaque in ({"Origin": "null"}, {"Origin": "null", "Sec-Fetch-Site": "same-site"}):
            assert (await client.post(decide, data={"decision": "approve", "csrf": csrf},
                                      headers=opaque)).status_code == 403
        cross_site = await client.post(decide, data={"decision": "approve", "csrf": csrf},
                                       headers={"Sec-Fetch-Site": "cross-site"})
        assert cross_site.status_code == 403
        json_body = await client.post(decide, json={"decision": "approve", "csrf": csrf})
        assert json_body.status_code == 415

        current = gate.store.get(approval.id)
        assert current is not None
        assert current.state == "pending"
        assert gate.records("approval/approve") == []

        unknown = await client.post("/approvals/nope/decide", data={"decision": "approve", "csrf": csrf})
        assert unknown.status_code == 404
        assert (await client.get("/approvals/nope")).status_code == 404
        bad = await client.post(decide, data={"decision": "maybe", "csrf": csrf})
        assert bad.status_code == 400

        # the control: the same request with the token and our own Origin goes through
        ok = await client.post(decide, data={"decision": "approve", "comment": "fine", "csrf": csrf},
                               headers={"Origin": gate.base, "Sec-Fetch-Site": "same-origin"})
        assert ok.status_code == 303
        assert ok.headers["location"] == f"/approvals/{approval.id}"
        current = gate.store.get(approval.id)
        assert current is not None
        assert current.state == "approved"

        assert (await client.post("/approvals/logout", data={"csrf": ""})).status_code == 403
        logout = await client.post("/approvals/logout", data={"csrf": csrf})
        assert logout.status_code == 303
        assert (await client.get("/approvals/list.json")).status_code == 401

    async with gate.client() as client:
        login = await client.post("/approvals/login", data={"key": ALICE}, headers={"Origin": "http://evil.example"})
        assert login.status_code == 403
        assert "set-cookie" not in login.headers


async def test_only_operators_with_the_approve_power_sign_in(gate: Gate) -> None:
    approval = gate.request()
    async with gate.client() as client:
        for key in (CAROL, AGENT, "ghk_alice.not-the-secret", ""):
            response = await client.post("/approvals/login", data={"key": key})
            assert response.status_code == 401
            assert "set-cookie" not in response.headers
        assert not client.cookies

        to_login = await client.get("/approvals")
        assert (to_login.status_code, to_login.headers["location"]) == (303, "/approvals/login")
        detail = await client.get(f"/approvals/{approval.id}")
        assert detail.status_code == 303
        assert detail.headers["location"] == f"/approvals/login?next=%2Fapprovals%2F{approval.id}"
        assert (await client.get("/approvals/list.json")).status_code == 401
        assert (await client.get("/approvals/events")).status_code == 401
        decide = await client.post(f"/approvals/{approval.id}/decide", data={"decision": "approve", "csrf": "x"})
        assert decide.status_code == 403
        client.cookies.set("gatehold_approver", "made-up")
        assert (await client.get(f"/approvals/{approval.id}")).status_code == 303
        client.cookies.clear()

        # a login with ?next= lands on that request, and only on one of ours
        login = await client.post("/approvals/login", data={"key": ALICE, "next": f"/approvals/{approval.id}"})
        assert (login.status_code, login.headers["location"]) == (303, f"/approvals/{approval.id}")
        client.cookies.clear()
        login = await client.post("/approvals/login", data={"key": ALICE, "next": "https://evil.example/"})
        assert (login.status_code, login.headers["location"]) == (303, "/approvals")

    assert gate.store.get(approval.id).state == "pending"  # type: ignore[union-attr]
    logins = gate.records("approval/login")
    assert [(r["decision"], r["code"]) for r in logins[:4]] == [
        ("deny", "policy.not_granted"), ("deny", "auth.invalid"), ("deny", "auth.invalid"), ("deny", "auth.missing")]
    assert [(r["decision"], r["principal"]) for r in logins[4:]] == [("allow", "alice"), ("allow", "alice")]


async def test_repeated_failed_sign_ins_are_throttled(gate: Gate) -> None:
    async with gate.client() as client:
        for attempt in range(10):
            response = await client.post("/approvals/login", data={"key": f"ghk_alice.wrong-{attempt}"})
            assert response.status_code == 401
        limited = await client.post("/approvals/login", data={"key": ALICE})  # even the right key, for now
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "60"
        assert "set-cookie" not in limited.headers
    assert gate.records("approval/login")[-1]["code"] == "approval.login_limited"


async def test_security_headers_cookies_and_no_inline_code(gate: Gate) -> None:
    approval = gate.request()
    async with gate.client() as client:
        responses = [await client.get("/approvals"), await client.get("/approvals/login"),
                     await client.post("/approvals/login", data={"key": "wrong"}),
                     await client.get("/approvals/static/approvals.js"),
                     await client.get("/approvals/static/approvals.css"),
                     await client.get("/approvals/no/such/page"), await client.delete("/approvals")]
        login = await client.post("/approvals/login", data={"key": ALICE})
        cookie = login.headers["set-cookie"]
        for attribute in ("gatehold_approver=", "HttpOnly", "Path=/approvals", "SameSite=strict"):
            assert attribute.lower() in cookie.lower()
        assert "secure" not in cookie.lower()
        listed = await client.get("/approvals")
        detail = await client.get(f"/approvals/{approval.id}")
        responses += [login, listed, detail, await client.get("/approvals/list.json")]

    assert [r.status_code for r in responses] == [303, 200, 401, 200, 200, 404, 404, 303, 200, 200, 200]
    for response in responses:
        for name, value in EXPECTED_HEADERS.items():
            assert response.headers.get(name) == value, (response.url, name)
    assert responses[3].headers["content-type"].startswith("text/javascript")
    assert responses[4].headers["content-type"].startswith("text/css")

    for page in (responses[1], responses[2], listed, detail):
        assert page.headers["content-type"].startswith("text/html")
        text = page.text.lower()
        assert re.findall(r"<script\b[^>]*>", text) == ['<script src="/approvals/static/approvals.js" defer>']
        assert "style=" not in text
        assert "<style" not in text
        assert re.search(r"<[^>]*\son[a-z]+=", text) is None  # no inline event handlers
    assert "&lt;img src=x onerror=alert(1)&gt;" in detail.text  # the hostile argument, escaped
    assert "<img" not in detail.text
    assert re.search(r"\.(inner|outer)HTML\b|insertAdjacentHTML|document\.write", responses[3].text) is None


async def test_secure_cookies_are_marked_secure(tmp_path: Path) -> None:
    async with serve_page(tmp_path, secure_cookies=True) as gate, gate.client() as client:
        login = await client.post("/approvals/login", data={"key": ALICE})
        assert login.status_code == 303
        assert "; secure" in login.headers["set-cookie"].lower()


async def test_the_event_stream_announces_changes_and_unsubscribes(gate: Gate) -> None:
    async with gate.signed_in(ALICE) as client:
        async with client.stream("GET", "/approvals/events") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["x-frame-options"] == "DENY"
            lines = stream.aiter_lines()
            async with asyncio.timeout(10):
                while await anext(lines) != ": connected":
                    pass
                assert len(gate.store.listeners) == 1
                approval = gate.request()
                while not (line := await anext(lines)).startswith("data:"):
                    pass
            event = orjson.loads(line.removeprefix("data:"))
            assert event == {"event": "created", "id": approval.id, "state": "pending", "approver": None}
        await wait_until_unsubscribed(gate.store)  # the client went away: the listener is gone

        listed = orjson.loads((await client.get("/approvals/list.json")).content)
        assert [a["id"] for a in listed["pending"]] == [approval.id]
        assert listed["pending"][0]["arguments"] == ARGUMENTS
        assert listed["recent"] == []


async def test_a_broken_audit_log_signs_nobody_in(gate: Gate) -> None:
    gate.log.close()  # from now on every audit record is refused
    async with gate.client() as client:
        response = await client.post("/approvals/login", data={"key": ALICE})
    assert response.status_code == 500
    assert "set-cookie" not in response.headers
    assert "Traceback" not in response.text
    assert "audit" not in response.text.lower()
    assert response.headers["content-security-policy"] == EXPECTED_HEADERS["content-security-policy"]
