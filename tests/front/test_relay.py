from typing import Any

import pytest

from gatehold.front.relay import ClientRequests

pytestmark = pytest.mark.anyio


async def test_undeclared_or_unknown_requests_are_refused() -> None:
    sent: list[dict[str, Any]] = []

    async def emit(message: dict[str, Any]) -> None:
        sent.append(message)

    requests = ClientRequests({"roots": {}})
    assert (await requests.relay("elicitation/create", {}, emit))["error"]["code"] == -32601
    assert (await requests.relay("tools/call", {}, emit))["error"]["code"] == -32601
    assert (await ClientRequests({"roots": {}}).relay("roots/list", None, None))["error"]["code"] == -32601
    assert sent == []


async def test_an_answer_reaches_the_waiting_relay() -> None:
    requests = ClientRequests({"roots": {}})

    async def emit(message: dict[str, Any]) -> None:
        assert not requests.answer("gh-unknown", {"result": {}})
        assert requests.answer(message["id"], {"result": {"roots": []}})

    assert await requests.relay("roots/list", None, emit) == {"result": {"roots": []}}
