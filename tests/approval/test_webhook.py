"""The approval webhook against a real HTTP receiver on 127.0.0.1: signing, retries, formats, background."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from gatehold.approval.store import Approval, ApprovalStore, call_digest
from gatehold.approval.webhook import WebhookNotifier, slack_escape, verify_signature
from gatehold.audit import AuditLog, JsonlSink
from gatehold.auditor import Auditor
from gatehold.config import WebhookSettings
from tests.serving import listening_socket, serve_asgi

pytestmark = pytest.mark.anyio

SECRET = "webhook-signing-key-for-tests"
DISTINCTIVE = "zq-distinctive-argument-value-7731"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path: str


@dataclass
class Receiver:
    base: str = ""
    statuses: list[int] = field(default_factory=lambda: [200])  # one per request; the last repeats
    delay: float = 0.0  # the first request sleeps this long before answering
    retry_after: str | None = None
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            index = len(self.received)
            self.received.append(Received(dict(request.headers), await request.body(), request.url.path))
            self.arrived.set()
            if index == 0 and self.delay:
                await asyncio.sleep(self.delay)
            status = self.statuses[min(index, len(self.statuses) - 1)]
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
            return PlainTextResponse("ok" if status < 300 else "no", status_code=status, headers=headers)

        async def moved(request: Request) -> Response:
            self.received.append(Received(dict(request.headers), await request.body(), request.url.path))
            return RedirectResponse(f"{self.base}/hook", status_code=302)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"]),
                                 Route("/t/{token}/hook", hook, methods=["POST"]),
                                 Route("/moved", moved, methods=["POST"])])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    site = Receiver()
    async with serve_asgi(site.app(), fast_exit=True) as base:
        site.base = base
        yield site


@pytest.fixture
def audit(tmp_path: Path) -> Any:
    log = AuditLog([JsonlSink(tmp_path / "a.jsonl")])
    yield log, tmp_path / "a.jsonl"
    log.close()


def records(audit: Any) -> list[dict[str, Any]]:
    audit[0].flush()
    return [orjson.loads(line) for line in audit[1].read_bytes().splitlines()]


def approval(**changes: Any) -> Approval:
    now = time.time()
    values: dict[str, Any] = {
        "id": "apr-1", "principal": "alice", "server": "files", "tool": "delete",
        "arguments": {"path": DISTINCTIVE, "token": "[REDACTED]"},
        "digest": call_digest("files", "delete", {"path": DISTINCTIVE}), "rule_id": "rule-destructive",
        "reason": "destructive tool", "policy_version": "v1", "correlation_id": "cid-1",
        "created_at": now, "expires_at": now + 900,
    }
    values.update(changes)
    return Approval(**values)


@pytest.fixture
def make(audit: Any) -> Any:
    made: list[WebhookNotifier] = []

    def build(url: str, *, fmt: str = "gatehold", retries: int = 3, timeout: float = 5.0) -> WebhookNotifier:
        settings = WebhookSettings(url=url, secret="hook", format=fmt, retries=retries,  # type: ignore[arg-type]
                                   timeout_seconds=timeout)
        notifier = WebhookNotifier(settings, SECRET, page_url=lambda i: f"https://gate.example/approvals/{i}",
                                   auditor=Auditor(audit[0]), backoff_seconds=0.01)
        made.append(notifier)
        return notifier

    yield build
    # closed by each test that needs it; aclose twice is harmless but must run in the loop
    for notifier in made:
        assert notifier._closed, "test forgot to close its notifier"


async def test_delivery_is_signed_and_verifies(receiver: Receiver, make: Any) -> None:
    notifier = make(f"{receiver.base}/hook")
    try:
        assert await notifier.deliver(approval()) is True
    finally:
        await notifier.aclose()
    [got] = receiver.received
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-gatehold-event"] == "approval.created"
    payload = orjson.loads(got.body)
    assert payload["event"] == "approval.created"
    assert payload["url"] == "https://gate.example/approvals/apr-1"
    assert payload["approval"]["id"] == "apr-1"
    assert payload["approval"]["arguments"]["path"] == DISTINCTIVE  # the gatehold format carries them
    signature = got.headers["x-gatehold-signature"]
    assert verify_signature(SECRET, signature, got.body)
    assert not verify_signature(SECRET, signature, got.body.replace(b"alice", b"mallory"))
    assert not verify_signature("another-secret", signature, got.body)
    stamp = int(signature.split(",")[0].removeprefix("t="))
    assert abs(stamp - time.time()) < 60
    assert not verify_signature(SECRET, signature, got.body, now=stamp + 301)
    assert not verify_signature(SECRET, signature, got.body, now=stamp - 301)  # from the future
    assert verify_signature(SECRET, signature, got.body, now=stamp + 299)


@pytest.mark.parametrize("header", [
    "", "garbage", "t=,v1=abc", "v1=abc", "t=123", "t=12x,v1=ab", "t=1,t=2,v1=ab", "t=-5,v1=ab",
    "t=\uff11\uff12\uff13,v1=ab", "t=1,v1=" + "a" * 2000,
])
def test_malformed_signature_headers_are_rejected(header: str) -> None:
    assert not verify_signature(SECRET, header, b"{}", now=1)


def test_any_of_several_v1_values_may_match() -> None:
    from gatehold.approval.webhook import sign

    header = f"t=1000,v1={'0' * 64},v1={sign(SECRET, 1000, b'{}')}"
    assert verify_signature(SECRET, header, b"{}", now=1000)
    assert not verify_signature("", header, b"{}", now=1000)


async def test_server_errors_are_retried_with_one_delivery_id(receiver: Receiver, make: Any, audit: Any) -> None:
    receiver.statuses = [500, 503, 200]
    notifier = make(f"{receiver.base}/hook")
    try:
        assert await notifier.deliver(approval()) is True
    finally:
        await notifier.aclose()
    assert len(receiver.received) == 3
    assert len({r.headers["x-gatehold-delivery"] for r in receiver.received}) == 1
    for got in receiver.received:
        assert verify_signature(SECRET, got.headers["x-gatehold-signature"], got.body)
    assert not [r for r in records(audit) if r["reason"] == "webhook delivery failed"]


async def test_exhausted_retries_return_false_and_are_audited(receiver: Receiver, make: Any, audit: Any) -> None:
    receiver.statuses = [500]
    notifier = make(f"{receiver.base}/t/secret-path-token/hook", retries=2)
    try:
        assert await notifier.deliver(approval()) is False
    finally:
        await notifier.aclose()
    assert len(receiver.received) == 3  # the first attempt and two retries
    [failed] = [r for r in records(audit) if r["reason"] == "webhook delivery failed"]
    assert failed["kind"] == "lifecycle"
    detail = failed["detail"]
    assert detail["approval_id"] == "apr-1"
    assert detail["status"] == 500
    assert detail["attempts"] == 3
    assert detail["delivery_id"] == receiver.received[0].headers["x-gatehold-delivery"]
    assert detail["destination"] == receiver.base  # the origin only: a path may hold a token
    assert "secret-path-token" not in orjson.dumps(failed).decode()


async def test_rate_limit_is_retried_after_the_receivers_delay(receiver: Receiver, make: Any) -> None:
    receiver.statuses = [429, 200]
    receiver.retry_after = "1"
    notifier = make(f"{receiver.base}/hook")
    started = time.monotonic()
    try:
        assert await notifier.deliver(approval()) is True
    finally:
        await notifier.aclose()
    assert len(receiver.received) == 2
    assert time.monotonic() - started >= 0.9  # Retry-After beat the 0.01 s backoff


async def test_client_errors_are_not_retried(receiver: Receiver, make: Any, audit: Any) -> None:
    receiver.statuses = [400, 200]
    notifier = make(f"{receiver.base}/hook")
    try:
        assert await notifier.deliver(approval()) is False
    finally:
        await notifier.aclose()
    assert len(receiver.received) == 1
    [failed] = [r for r in records(audit) if r["reason"] == "webhook delivery failed"]
    assert failed["detail"]["status"] == 400
    assert failed["detail"]["attempts"] == 1


async def test_redirects_are_not_followed(receiver: Receiver, make: Any, audit: Any) -> None:
    notifier = make(f"{receiver.base}/moved")
    try:
        assert await notifier.deliver(approval()) is False
    finally:
        await notifier.aclose()
    assert [r.path for r in receiver.received] == ["/moved"]  # /hook never saw the body
    [failed] = [r for r in records(audit) if r["reason"] == "webhook delivery failed"]
    assert failed["detail"]["status"] == 302


async def test_a_slow_receiver_times_out_and_is_retried(receiver: Receiver, make: Any) -> None:
    receiver.delay = 1.0
    notifier = make(f"{receiver.base}/hook", timeout=0.3)
    try:
        assert await notifier.deliver(approval()) is True
    finally:
        await notifier.aclose()
    assert len(receiver.received) == 2


async def test_slack_format_omits_arguments_and_escapes(receiver: Receiver, make: Any) -> None:
    notifier = make(f"{receiver.base}/hook", fmt="slack")
    tricky = approval(principal="eve <!channel> & co", reason="wants <https://evil.example|click> > now",
                      tool="drop\ntable")
    try:
        assert await notifier.deliver(tricky) is True
    finally:
        await notifier.aclose()
    [got] = receiver.received
    assert verify_signature(SECRET, got.headers["x-gatehold-signature"], got.body)
    text = got.body.decode()
    assert DISTINCTIVE not in text
    assert "[REDACTED]" not in text  # no arguments at all, not even redacted ones
    message = orjson.loads(got.body)
    assert set(message) == {"text", "blocks"}
    assert "\n" not in message["text"]
    assert "eve &lt;!channel&gt; &amp; co" in message["text"]
    assert "files.drop table" in message["text"]
    assert all(block["type"] == "section" for block in message["blocks"])
    shown = orjson.dumps(message["blocks"]).decode()
    assert "<!channel>" not in shown
    assert "<https://evil.example|click>" not in shown
    assert "wants &lt;https://evil.example|click&gt; &gt; now" in shown
    assert "<https://gate.example/approvals/apr-1|" in shown  # the one real link: the page
    assert "<!date^" in shown  # the expiry, in each reader's time zone


def test_slack_escape() -> None:
    assert slack_escape("a & <b> >") == "a &amp; &lt;b&gt; &gt;"
    assert slack_escape("&amp;") == "&amp;amp;"


async def test_listener_delivers_created_in_the_background(receiver: Receiver, make: Any) -> None:
    notifier = make(f"{receiver.base}/hook")
    store = ApprovalStore(expiry_seconds=60)
    store.listeners.append(notifier.listener)
    try:
        created = store.create(principal="alice", server="files", tool="delete", arguments={"path": "/x"},
                               digest=call_digest("files", "delete", {"path": "/x"}), rule_id="r",
                               reason="destructive", policy_version="v1", correlation_id="c1")
        assert not receiver.received  # the listener returned before anything was sent
        async with asyncio.timeout(10):
            await receiver.arrived.wait()
        store.decide(created.id, approve=True, approver="bob")
        store.consume(created.id, principal="alice", server="files", tool="delete", digest=created.digest)
        async with asyncio.timeout(10):
            while notifier._tasks:
                await asyncio.sleep(0.01)
    finally:
        await notifier.aclose()
    [got] = receiver.received  # "decided" and "used" sent nothing
    assert orjson.loads(got.body)["approval"]["id"] == created.id


async def test_aclose_cancels_pending_deliveries(make: Any) -> None:
    sock = listening_socket()  # accepts connections but never answers
    try:
        notifier = make(f"http://127.0.0.1:{sock.getsockname()[1]}/hook")
        notifier.listener("created", approval())
        await asyncio.sleep(0.05)
        assert notifier._tasks
        await notifier.aclose()
        assert not notifier._tasks
        notifier.listener("created", approval())  # after close: ignored, not raised
        assert not notifier._tasks
    finally:
        sock.close()


async def test_unreachable_receiver_returns_false(make: Any, audit: Any) -> None:
    sock = listening_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connections are refused
    notifier = make(f"http://127.0.0.1:{port}/hook", retries=1)
    try:
        assert await notifier.deliver(approval()) is False
    finally:
        await notifier.aclose()
    [failed] = [r for r in records(audit) if r["reason"] == "webhook delivery failed"]
    assert failed["detail"]["error"] == "ConnectError"
    assert failed["detail"]["attempts"] == 2


def test_listener_without_a_running_loop_does_not_raise(make: Any) -> None:
    notifier = make("http://127.0.0.1:9/hook")
    notifier.listener("created", approval())
    assert not notifier._tasks
    asyncio.run(notifier.aclose())


async def test_an_invalid_url_is_a_failure_not_an_exception(make: Any, audit: Any) -> None:
    notifier = make("http://a:b:c/hook")  # passes the settings' pattern; httpx rejects the port
    try:
        assert await notifier.deliver(approval()) is False
    finally:
        await notifier.aclose()
    [failed] = [r for r in records(audit) if r["reason"] == "webhook delivery failed"]
    assert failed["detail"] == {"approval_id": "apr-1", "delivery_id": failed["detail"]["delivery_id"],
                                "destination": "(invalid url)", "attempts": 1, "error": "InvalidURL"}
