"""What every upstream client offers, plus the request bookkeeping both transports share.

An upstream client owns its own JSON-RPC id space: callers' ids never reach the upstream.
Progress tokens are swapped for fresh ones so one request's progress can never be routed to
another, and server->client requests reach a caller only when the link to that caller is
certain (fail closed).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from gatehold import __version__
from gatehold.call import Caller
from gatehold.errors import INTERNAL_ERROR, METHOD_NOT_FOUND, UpstreamFailed

ServerRequestHandler = Callable[[str, dict[str, Any] | None], Awaitable[dict[str, Any]]]
"""Answers a server->client request (sampling, elicitation, roots) made while a gateway request
is in flight; returns ``{"result": ...}`` or ``{"error": {...}}``."""

NotificationHandler = Callable[[str, dict[str, Any] | None], Awaitable[None]]
"""Receives a notification as ``(method, params)``. It runs on the upstream's reader, so it should
hand the notification on quickly (queue it) rather than wait on a slow client."""

LEGACY_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
"""Handshake-era protocol revisions (``initialize``) an upstream may answer with."""
LATEST_LEGACY_VERSION = "2025-11-25"
MODERN_VERSION = "2026-07-28"
"""The per-request-envelope revision: no ``initialize``, no session."""

CLIENT_INFO: dict[str, Any] = {"name": "gatehold", "version": __version__}

CATALOGUE_EVENTS = frozenset(
    {
        "notifications/tools/list_changed",
        "notifications/resources/list_changed",
        "notifications/prompts/list_changed",
        "notifications/resources/updated",
    }
)
"""Notifications about the upstream as a whole: always delivered to ``on_event``."""

NOT_SUPPORTED: dict[str, Any] = {"code": METHOD_NOT_FOUND, "message": "not supported through the gateway"}


class UpstreamClient(Protocol):
    """A connection to one real MCP server."""

    name: str
    protocol_version: str
    server_info: dict[str, Any]
    capabilities: dict[str, Any]

    async def start(self) -> None:
        """Spawn or connect and handshake; raise UpstreamFailed(code="upstream.unavailable") on failure."""

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        timeout: float,  # noqa: ASYNC109 - part of the interface: the upstream call's own deadline
        on_server_request: ServerRequestHandler | None = None,
        on_notification: NotificationHandler | None = None,
        caller: Caller | None = None,
    ) -> dict[str, Any]:
        """Send one request; return ``{"result": ...}`` or ``{"error": ...}`` as the upstream sent it.

        ``caller`` is whom the request is made for (None: the gateway itself, e.g. a catalogue
        refresh); an HTTP upstream picks its credential by it, and never forwards the caller's token.
        Raises UpstreamFailed with code upstream.timeout, .crashed, .unavailable, .protocol or .credential.
        """

    async def aclose(self) -> None:
        """Stop the upstream connection or process."""


def failed(code: str, detail: str) -> UpstreamFailed:
    return UpstreamFailed(detail, code=code)


def reply_of(message: dict[str, Any]) -> dict[str, Any]:
    """The ``{"result": ...}`` / ``{"error": ...}`` part of a JSON-RPC response, or a protocol error."""
    if isinstance(error := message.get("error"), dict):
        return {"error": error}
    if isinstance(result := message.get("result"), dict):
        return {"result": result}
    raise failed("upstream.protocol", "response carries neither a result object nor an error object")


@dataclass(eq=False)
class Pending:
    """One request in flight on an upstream."""

    id: int
    method: str
    future: asyncio.Future[dict[str, Any]]
    on_server_request: ServerRequestHandler | None
    on_notification: NotificationHandler | None
    caller_token: Any = None  # the caller's progress token, restored on the way back
    upstream_token: str | None = None  # the fresh token the upstream sees
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


async def call_safely(log: logging.Logger, handler: NotificationHandler | None, method: str,
                      params: dict[str, Any] | None) -> None:
    if handler is None:
        return
    try:
        await handler(method, params)
    except Exception:
        # Not a control: a progress or list-changed relay that fails loses one notification, and
        # a failed catalogue refresh already withdraws the upstream's entries (fail closed there).
        log.exception("notification handler failed for %s", method)


class RequestRouter:
    """Upstream ids, progress-token mapping and server-request routing for one upstream."""

    def __init__(self, log: logging.Logger):
        self.log = log
        self.pending: dict[int, Pending] = {}
        self._next_id = 0
        self._by_token: dict[str, Pending] = {}
        self._server_tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()

    def open(
        self,
        method: str,
        params: dict[str, Any] | None,
        on_server_request: ServerRequestHandler | None,
        on_notification: NotificationHandler | None,
    ) -> tuple[Pending, dict[str, Any]]:
        """Register a request; return it and the JSON-RPC message to send (the caller's params untouched)."""
        self._next_id += 1
        future = asyncio.get_running_loop().create_future()
        pending = Pending(self._next_id, method, future, on_server_request, on_notification)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": pending.id, "method": method}
        if params is not None:
            meta = params.get("_meta")
            if isinstance(meta, dict) and "progressToken" in meta:
                pending.caller_token = meta["progressToken"]
                pending.upstream_token = f"gatehold-{pending.id}-{secrets.token_hex(8)}"
                self._by_token[pending.upstream_token] = pending
                params = {**params, "_meta": {**meta, "progressToken": pending.upstream_token}}
            message["params"] = params
        self.pending[pending.id] = pending
        return pending, message

    def close(self, pending: Pending) -> None:
        """Forget a request: later responses and progress for it are dropped."""
        self.pending.pop(pending.id, None)
        if pending.upstream_token is not None:
            self._by_token.pop(pending.upstream_token, None)
        for task in pending.tasks:
            task.cancel()
        if not pending.future.done():
            pending.future.cancel()

    def resolve(self, message: dict[str, Any]) -> None:
        """Hand a response to the request awaiting it."""
        pending = self.pending.get(message["id"]) if isinstance(message.get("id"), int) else None
        if pending is None or pending.future.done():
            self.log.debug("dropping a response for an unknown or finished request id")
            return
        try:
            pending.future.set_result(reply_of(message))
        except UpstreamFailed as exc:
            pending.future.set_exception(exc)

    def fail_all(self, code: str, detail: str) -> None:
        for pending in list(self.pending.values()):
            if not pending.future.done():
                pending.future.set_exception(failed(code, detail))
                pending.future.exception()  # retrieved: no "never retrieved" warning if nobody awaits

    async def notify(self, method: str, params: dict[str, Any] | None, *, owner: Pending | None,
                     on_event: NotificationHandler) -> None:
        """Deliver a notification from the upstream to whoever it belongs to."""
        if method == "notifications/progress":
            token = params.get("progressToken") if isinstance(params, dict) else None
            target = self._by_token.get(token) if isinstance(token, str) else None
            if target is None or params is None:
                self.log.debug("dropping progress for an unknown token")
                return
            await call_safely(self.log, target.on_notification, method,
                              {**params, "progressToken": target.caller_token})
        elif method == "notifications/cancelled":
            request_id = params.get("requestId") if isinstance(params, dict) else None
            task = self._server_tasks.get(repr(request_id))
            if task is not None:
                task.cancel()
        elif owner is not None and owner.on_notification is not None and method not in CATALOGUE_EVENTS:
            await call_safely(self.log, owner.on_notification, method, params)
        else:
            await call_safely(self.log, on_event, method, params)

    def handler_for(self, owner: Pending | None) -> ServerRequestHandler | None:
        """Whose handler answers a server->client request.

        With an owner (an HTTP response stream) the request belongs to it. Without one (stdio,
        the HTTP GET stream) it goes to a caller only when exactly one request is in flight and
        that request has a handler: guessing could hand one client's data to another.
        """
        if owner is not None:
            return owner.on_server_request
        if len(self.pending) == 1:
            (only,) = self.pending.values()
            return only.on_server_request
        return None

    def serve(self, message: dict[str, Any], owner: Pending | None,
              answer: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Answer a server->client request in the background via ``answer(response_message)``."""
        request_id = message.get("id")
        handler = None if message.get("method") == "ping" else self.handler_for(owner)
        if owner is None and handler is not None:
            owner = next(iter(self.pending.values()))

        async def run() -> None:
            reply: dict[str, Any]
            if message.get("method") == "ping":
                reply = {"result": {}}
            elif handler is None:
                reply = {"error": NOT_SUPPORTED}
            else:
                params = message.get("params")
                method = str(message["method"])
                try:
                    reply = await handler(method, params if isinstance(params, dict) else None)
                    reply = reply_of(reply)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.log.exception("server request handler failed for %s", message.get("method"))
                    reply = {"error": {"code": INTERNAL_ERROR, "message": "the client could not answer"}}
            try:
                await answer({"jsonrpc": "2.0", "id": request_id, **reply})
            except UpstreamFailed:
                self.log.warning("could not answer the upstream's %s request", message.get("method"))

        task = self.spawn(run())
        key = repr(request_id)
        self._server_tasks[key] = task
        task.add_done_callback(lambda _: self._server_tasks.pop(key, None))
        if owner is not None:
            owner.tasks.add(task)
            task.add_done_callback(owner.tasks.discard)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a coroutine in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def aclose_background(self) -> None:
        """Cancel every background task and wait for them to finish."""
        current = asyncio.current_task()
        tasks = [task for task in self._background if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
