"""Server->client requests (sampling, elicitation, roots) relayed to one client and answered back."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

RELAY_TIMEOUT = 120.0
_CAPABILITY = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation", "roots/list": "roots"}

Emit = Callable[[dict[str, Any]], Awaitable[None]]


class ClientRequests:
    """The requests sent to one client that await its answer."""

    def __init__(self, capabilities: dict[str, Any] | None = None):
        self.capabilities: dict[str, Any] = capabilities or {}
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count()

    async def relay(self, method: str, params: dict[str, Any] | None, emit: Emit | None) -> dict[str, Any]:
        """Send the request with ``emit`` and wait for the answer; refuse what the client did not declare."""
        wanted = _CAPABILITY.get(method)
        if wanted is None or wanted not in self.capabilities or emit is None:
            return {"error": {"code": -32601, "message": "the client does not support this request"}}
        request_id = f"gh-{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
            if params is not None:
                message["params"] = params
            await emit(message)
            return await asyncio.wait_for(future, RELAY_TIMEOUT)
        except TimeoutError:
            return {"error": {"code": -32001, "message": "client did not answer in time"}}
        finally:
            self._pending.pop(request_id, None)

    @property
    def url_elicitation(self) -> bool:
        """The client declared URL-mode elicitation (2025-11-25: ``capabilities.elicitation.url``)."""
        elicitation = self.capabilities.get("elicitation")
        return isinstance(elicitation, dict) and isinstance(elicitation.get("url"), dict)

    def answer(self, request_id: Any, reply: dict[str, Any]) -> bool:
        future = self._pending.get(str(request_id))
        if future is None or future.done():
            return False
        future.set_result(reply)
        return True

    def cancel_all(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.cancel()
