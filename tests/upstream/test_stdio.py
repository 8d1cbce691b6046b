"""StdioUpstreamClient against a real MCP server (the SDK test server) run as a child process."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gatehold.config import StdioUpstream
from gatehold.errors import ConfigError, UpstreamFailed
from gatehold.upstream.stdio import StdioUpstreamClient, scrubbed_env

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
SERVER = (sys.executable, "-m", "tests.servers.sdk_server")
WAIT = 20.0  # generous bound for things that happen "soon"


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any] | None]] = []

    async def __call__(self, method: str, params: dict[str, Any] | None) -> None:
        self.items.append((method, params))


def make(name: str = "demo", *, secrets: dict[str, str] | None = None, events: Events | None = None,
         parent: dict[str, str] | None = None, **kwargs: Any) -> StdioUpstreamClient:
    fields = {k: kwargs.pop(k) for k in ("env", "env_allow", "command", "restart_max_backoff_seconds")
              if k in kwargs}
    cfg = StdioUpstream(command=fields.pop("command", SERVER), **fields)
    env = scrubbed_env(cfg, secrets or {}, os.environ if parent is None else parent)
    return StdioUpstreamClient(name, cfg, env=env, on_event=events or Events(), cwd=str(REPO), **kwargs)


@pytest.fixture
async def client() -> AsyncIterator[StdioUpstreamClient]:
    c = make()
    await c.start()
    try:
        yield c
    finally:
        await c.aclose()


async def call(c: StdioUpstreamClient, tool: str, timeout: float = WAIT, **arguments: Any) -> dict[str, Any]:
    return await c.request("tools/call", {"name": tool, "arguments": arguments}, timeout=timeout)


def text_of(reply: dict[str, Any]) -> str:
    assert "result" in reply, reply
    return str(reply["result"]["content"][0]["text"])


async def eventually(check: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(WAIT):
        while not check():
            await asyncio.sleep(0.05)
    assert check(), what


def stderr_lines(caplog: pytest.LogCaptureFixture, name: str = "demo") -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == f"gatehold.upstream.{name}"]


async def test_handshake_list_and_call(client: StdioUpstreamClient) -> None:
    assert client.protocol_version == "2025-11-25"
    assert client.server_info["name"] == "gatehold-test-server"
    assert "tools" in client.capabilities
    listed = await client.request("tools/list", None, timeout=WAIT)
    names = {tool["name"] for tool in listed["result"]["tools"]}
    assert {"echo", "add", "slow", "crash", "big", "env", "progress"} <= names
    assert text_of(await call(client, "echo", text="héllo")) == "héllo"
    assert text_of(await call(client, "add", a=2, b=40)) == "42"
    resource = await client.request("resources/read", {"uri": "demo://readme"}, timeout=WAIT)
    assert "readme" in resource["result"]["contents"][0]["text"]
    prompt = await client.request("prompts/get", {"name": "greet", "arguments": {"name": "Ada"}}, timeout=WAIT)
    assert "Hello, Ada!" in str(prompt["result"])


async def test_upstream_errors_are_returned_not_raised(client: StdioUpstreamClient) -> None:
    reply = await client.request("no/such/method", {}, timeout=WAIT)
    assert reply["error"]["code"] == -32601


async def test_concurrent_calls_get_their_own_answers(client: StdioUpstreamClient) -> None:
    # Slow calls started first finish last, so responses come back out of order.
    calls = [call(client, "slow", seconds=0.6 - i * 0.1) for i in range(5)]
    calls += [call(client, "add", a=i, b=1000) for i in range(20)]
    replies = await asyncio.gather(*calls)
    assert [text_of(r) for r in replies[:5]] == [f"slept {0.6 - i * 0.1}" for i in range(5)]
    assert [text_of(r) for r in replies[5:]] == [str(i + 1000) for i in range(20)]


async def test_progress_is_routed_with_the_callers_token(client: StdioUpstreamClient) -> None:
    seen: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}

    def collector(key: str) -> Callable[[str, dict[str, Any] | None], Any]:
        async def collect(method: str, params: dict[str, Any] | None) -> None:
            assert method == "notifications/progress"
            assert params is not None
            seen[key].append(params)
        return collect

    # Two callers that happen to use the same token must each see only their own progress.
    replies = await asyncio.gather(*(
        client.request("tools/call", {"name": "progress", "arguments": {"steps": n},
                                      "_meta": {"progressToken": "tok"}},
                       timeout=WAIT, on_notification=collector(key))
        for key, n in (("a", 3), ("b", 5))
    ))
    assert [text_of(r) for r in replies] == ["done 3", "done 5"]
    assert [p["progress"] for p in seen["a"]] == [1, 2, 3]
    assert [p["progress"] for p in seen["b"]] == [1, 2, 3, 4, 5]
    assert {p["progressToken"] for p in seen["a"] + seen["b"]} == {"tok"}


async def test_env_is_scrubbed_and_secrets_are_injected(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = dict(os.environ, GATEHOLD_LEAK="parent-only", GATEHOLD_ALLOWED="passed")
    c = make(parent=parent, env={"API_TOKEN": "token"}, env_allow=("GATEHOLD_ALLOWED",),
             secrets={"token": "s3cret-value"})
    await c.start()
    try:
        assert text_of(await call(c, "env", name="GATEHOLD_LEAK")) == "<unset>"
        assert text_of(await call(c, "env", name="GATEHOLD_ALLOWED")) == "passed"
        assert text_of(await call(c, "env", name="API_TOKEN")) == "s3cret-value"
    finally:
        await c.aclose()


def test_scrubbed_env_keeps_only_the_allow_list() -> None:
    cfg = StdioUpstream(command=("x",), env={"TOKEN": "tok"}, env_allow=("EXTRA",))
    env = scrubbed_env(cfg, {"tok": "v"}, {"PATH": "/bin", "HOME": "/h", "EXTRA": "e", "AWS_SECRET": "no"})
    assert env == {"PATH": "/bin", "HOME": "/h", "EXTRA": "e", "TOKEN": "v"}


def test_scrubbed_env_fails_closed_on_a_missing_secret() -> None:
    cfg = StdioUpstream(command=("x",), env={"TOKEN": "tok"})
    with pytest.raises(ConfigError) as info:
        scrubbed_env(cfg, {}, {"PATH": "/bin"})
    assert "TOKEN" in str(info.value)


async def test_crash_fails_pending_calls_then_restarts() -> None:
    events = Events()
    c = make(events=events)
    await c.start()
    try:
        first_pid = c.pid
        bystander = asyncio.create_task(call(c, "slow", seconds=30))
        await asyncio.sleep(0.2)
        with pytest.raises(UpstreamFailed) as crashed:
            await call(c, "crash")
        assert crashed.value.code == "upstream.crashed"
        with pytest.raises(UpstreamFailed) as also:
            await bystander
        assert also.value.code == "upstream.crashed"
        # The next call waits for the restart and succeeds on a new process.
        assert text_of(await call(c, "echo", text="back")) == "back"
        assert c.pid is not None
        assert c.pid != first_pid
        await eventually(lambda: ("notifications/tools/list_changed", None) in events.items, "list_changed")
    finally:
        await c.aclose()


async def test_timeout_raises_and_cancels_the_call_upstream(
    client: StdioUpstreamClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gatehold.upstream.demo")
    with pytest.raises(UpstreamFailed) as info:
        await call(client, "slow", timeout=1.0, seconds=60)
    assert info.value.code == "upstream.timeout"
    # The server saw notifications/cancelled: its handler was cancelled and said so on stderr.
    await eventually(lambda: any("slow cancelled" in m for m in stderr_lines(caplog)), "cancelled upstream")
    assert text_of(await call(client, "echo", text="still up")) == "still up"


async def test_cancelling_the_caller_cancels_upstream(
    client: StdioUpstreamClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gatehold.upstream.demo")
    started = asyncio.Event()

    async def on_progress(method: str, params: dict[str, Any] | None) -> None:
        started.set()

    task = asyncio.create_task(client.request(
        "tools/call", {"name": "slow", "arguments": {"seconds": 60}, "_meta": {"progressToken": 7}},
        timeout=120, on_notification=on_progress))
    async with asyncio.timeout(WAIT):
        await started.wait()  # the server is running the call
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: any("slow cancelled" in m for m in stderr_lines(caplog)), "cancelled upstream")
    assert text_of(await call(client, "add", a=1, b=2)) == "3"


async def test_stderr_reaches_the_log(client: StdioUpstreamClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gatehold.upstream.demo")
    await call(client, "stderr", text="hello from the child")
    await call(client, "stderr", text="y" * 5000)
    await eventually(lambda: any("hello from the child" in m for m in stderr_lines(caplog)), "stderr line")
    await eventually(lambda: any("yyy" in m for m in stderr_lines(caplog)), "long stderr line")
    long = next(m for m in stderr_lines(caplog) if "yyy" in m)
    assert len(long) < 2100


async def test_an_overlong_line_is_a_protocol_error_and_the_process_restarts() -> None:
    c = make(max_line_bytes=4096)
    await c.start()
    try:
        assert text_of(await call(c, "big", n=100)) == "x" * 100
        with pytest.raises(UpstreamFailed) as info:
            await call(c, "big", n=10_000)
        assert info.value.code == "upstream.protocol"
        assert text_of(await call(c, "echo", text="recovered")) == "recovered"
    finally:
        await c.aclose()


async def test_a_server_request_reaches_the_only_caller_in_flight() -> None:
    c = make(client_capabilities={"elicitation": {}})
    await c.start()
    asked: list[tuple[str, dict[str, Any] | None]] = []

    async def answer(method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        asked.append((method, params))
        return {"result": {"action": "accept", "content": {"answer": "yes"}}}

    try:
        reply = await c.request("tools/call", {"name": "ask", "arguments": {"question": "ok?"}},
                                timeout=WAIT, on_server_request=answer)
        assert text_of(reply) == "answer: yes"
        assert asked
        assert asked[0][0] == "elicitation/create"
        assert asked[0][1] is not None
        assert asked[0][1]["message"] == "ok?"
    finally:
        await c.aclose()


async def test_a_server_request_is_refused_when_the_caller_is_ambiguous() -> None:
    c = make(client_capabilities={"elicitation": {}})
    await c.start()
    asked: list[str] = []

    async def answer(method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        asked.append(method)
        return {"result": {"action": "accept", "content": {"answer": "leaked"}}}

    try:
        # No handler at all: the upstream is told the method is not supported.
        reply = await call(c, "ask", question="no handler?")
        assert "not supported through the gateway" in text_of(reply)
        # Two requests in flight: the server request cannot be attributed, so nobody is asked.
        other = asyncio.create_task(c.request("tools/call", {"name": "slow", "arguments": {"seconds": 1}},
                                              timeout=WAIT, on_server_request=answer))
        await asyncio.sleep(0.2)
        reply = await c.request("tools/call", {"name": "ask", "arguments": {"question": "two?"}},
                                timeout=WAIT, on_server_request=answer)
        assert "not supported through the gateway" in text_of(reply)
        await other
        assert asked == []
    finally:
        await c.aclose()


async def test_unstartable_command_is_unavailable() -> None:
    c = make(command=("/nonexistent/definitely-not-a-command",))
    with pytest.raises(UpstreamFailed) as info:
        await c.start()
    assert info.value.code == "upstream.unavailable"
    with pytest.raises(UpstreamFailed) as again:
        await c.request("tools/list", None, timeout=1)
    assert again.value.code == "upstream.unavailable"


async def test_a_server_that_does_not_speak_mcp_is_unavailable() -> None:
    script = "import sys\nfor line in sys.stdin:\n    print('not json', flush=True)\n"
    c = make(command=(sys.executable, "-c", script), handshake_timeout=2.0)
    with pytest.raises(UpstreamFailed) as info:
        await c.start()
    assert info.value.code == "upstream.unavailable"
    await c.aclose()


async def test_aclose_stops_the_process_and_later_requests_fail() -> None:
    c = make()
    await c.start()
    pid = c.pid
    assert pid is not None
    await c.aclose()
    with pytest.raises(UpstreamFailed) as info:
        await call(c, "echo", text="x")
    assert info.value.code == "upstream.unavailable"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_notifications_tied_to_no_request_go_to_on_event() -> None:
    events = Events()
    c = make(events=events)
    await c.start()
    try:
        assert text_of(await call(c, "announce")) == "announced"
        await eventually(lambda: ("notifications/tools/list_changed", None) in events.items, "list_changed")
    finally:
        await c.aclose()
