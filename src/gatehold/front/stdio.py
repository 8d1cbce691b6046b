"""The stdio front: ``gatehold stdio`` serves one local client over stdin/stdout.

The principal is configured (``auth.stdio``), not claimed by the client: a local process that
can start the gateway is that principal. Without that configuration the front refuses to start.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, BinaryIO

from gatehold.call import Caller
from gatehold.errors import ConfigError, GateholdError, ProtocolError
from gatehold.front.dispatch import check_envelope, reply_to
from gatehold.front.jsonrpc import Notification, Request, Response, dumps, error_for, parse_message
from gatehold.front.relay import ClientRequests
from gatehold.gateway import Exchange, Gateway, new_correlation_id

log = logging.getLogger("gatehold.stdio")
_MAX_LINE = 16 * 1024 * 1024


class StdioFront:
    def __init__(self, gateway: Gateway, *, out: BinaryIO | None = None):
        identity = gateway.config.auth.stdio
        if identity is None:
            # Fail closed: no configured principal, no stdio service.
            raise ConfigError(["auth.stdio: `gatehold stdio` needs a configured principal and roles"])
        self.gateway = gateway
        self.caller = Caller(identity.principal, identity.roles, "stdio", transport="stdio")
        self._out = out or sys.stdout.buffer
        self._write_lock = asyncio.Lock()
        self._inflight: dict[Any, asyncio.Task[None]] = {}
        self._requests = ClientRequests()
        self.session_id = "stdio-" + new_correlation_id()  # one client per process: one flow memory
        gateway.list_changed_listeners.append(self._list_changed)

    async def write(self, message: dict[str, Any]) -> None:
        async with self._write_lock:
            self._out.write(dumps(message) + b"\n")
            self._out.flush()

    async def _list_changed(self, kind: str) -> None:
        await self.write({"jsonrpc": "2.0", "method": f"notifications/{kind}/list_changed"})

    async def serve(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                line = exc.partial
                if not line.strip():
                    break
            except asyncio.LimitOverrunError:
                await self.write(error_for(None, ProtocolError("line too long", public="message too large"),
                                           new_correlation_id()))
                break
            if line.strip():
                await self.handle_line(line)
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    async def handle_line(self, line: bytes) -> None:
        correlation_id = new_correlation_id()
        try:
            message = parse_message(line, max_depth=self.gateway.config.gateway.max_json_depth)
        except GateholdError as exc:
            self.gateway.auditor.request(correlation_id=correlation_id, caller=self.caller, method=None,
                                         decision="deny", reason=exc.detail, code=exc.code)
            await self.write(error_for(None, exc, correlation_id))
            return
        if isinstance(message, Response):
            self._requests.answer(message.id, {"result": message.result} if message.error is None
                                  else {"error": message.error})
            return
        if isinstance(message, Notification):
            if message.method == "notifications/cancelled":
                task = self._inflight.get((message.params or {}).get("requestId"))
                if task is not None:
                    task.cancel()
            return
        task = asyncio.ensure_future(self._run(message, correlation_id))
        self._inflight[message.id] = task
        rid = message.id

        def forget(_task: asyncio.Task[None]) -> None:
            self._inflight.pop(rid, None)

        task.add_done_callback(forget)

    async def _run(self, request: Request, correlation_id: str) -> None:
        meta = (request.params or {}).get("_meta")
        modern = isinstance(meta, dict) and "io.modelcontextprotocol/protocolVersion" in meta
        if request.method == "initialize" and not modern:
            params = request.params or {}
            caps = params.get("capabilities")
            self._requests.capabilities = caps if isinstance(caps, dict) else {}
            result = self.gateway.initialize_result(params.get("protocolVersion"))
            self.gateway.auditor.request(correlation_id=correlation_id, caller=self.caller, method="initialize",
                                         decision="allow", reason="session opened", outcome="ok")
            await self.write({"jsonrpc": "2.0", "id": request.id, "result": result})
            return
        if modern:
            try:
                check_envelope(request)
            except ProtocolError as exc:
                self.gateway.auditor.request(correlation_id=correlation_id, caller=self.caller,
                                             method=request.method, decision="deny", reason=exc.detail,
                                             code=exc.code)
                await self.write(error_for(request.id, exc, correlation_id))
                return
        ex = Exchange(self.caller, correlation_id, modern=modern, emit=self.write,
                      client_request=None if modern else self._relay,
                      url_elicitation=not modern and self._requests.url_elicitation, session_id=self.session_id)
        try:
            reply = await reply_to(self.gateway, request, ex)
        except asyncio.CancelledError:
            return  # the client cancelled: no reply is owed
        await self.write(reply)

    async def _relay(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        return await self._requests.relay(method, params, self.write)


async def open_stdin() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


