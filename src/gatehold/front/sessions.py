"""Handshake-era sessions (``Mcp-Session-Id``), each bound to the principal that opened it."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from gatehold.call import Caller

_RELAY_TIMEOUT = 120.0


@dataclass
class Session:
    id: str
    caller: Caller
    protocol_version: str
    client_capabilities: dict[str, Any]
    last_seen: float = field(default_factory=time.monotonic)
    inflight: dict[Any, asyncio.Task[Any]] = field(default_factory=dict)
    pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    stream: asyncio.Queue[dict[str, Any]] | None = None  # the GET stream, when one is open
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def owned_by(self, caller: Caller) -> bool:
        return self.caller.principal == caller.principal and self.caller.credential_id == caller.credential_id

    def cancel_all(self) -> None:
        for task in self.inflight.values():
            task.cancel()
        for fut in self.pending.values():
            if not fut.done():
                fut.cancel()

    async def relay(self, method: str, params: dict[str, Any] | None, emit: Any) -> dict[str, Any]:
        """Send a server->client request on the call's stream and wait for the client's answer."""
        wanted = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation",
                  "roots/list": "roots"}.get(method)
        if wanted is None or wanted not in self.client_capabilities or emit is None:
            return {"error": {"code": -32601, "message": "the client does not support this request"}}
        request_id = f"gh-{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        try:
            message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
            if params is not None:
                message["params"] = params
            await emit(message)
            return await asyncio.wait_for(future, _RELAY_TIMEOUT)
        except TimeoutError:
            return {"error": {"code": -32001, "message": "client did not answer in time"}}
        finally:
            self.pending.pop(request_id, None)

    def answer(self, request_id: Any, reply: dict[str, Any]) -> bool:
        future = self.pending.get(str(request_id))
        if future is None or future.done():
            return False
        future.set_result(reply)
        return True


class SessionStore:
    def __init__(self, *, idle_seconds: float, max_sessions: int):
        self._sessions: dict[str, Session] = {}
        self._idle = idle_seconds
        self._max = max_sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, caller: Caller, version: str, capabilities: dict[str, Any]) -> Session | None:
        self._expire()
        if len(self._sessions) >= self._max:
            return None
        session = Session(secrets.token_urlsafe(24), caller, version, capabilities)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str, caller: Caller) -> Session | None:
        """The caller's live session, or None: unknown, expired and someone else's look the same."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_seen > self._idle:
            self.drop(session_id)
            return None
        if not session.owned_by(caller):
            return None
        session.last_seen = now
        return session

    def drop(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            session.cancel_all()

    def all(self) -> list[Session]:
        return list(self._sessions.values())

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s.id for s in self._sessions.values() if now - s.last_seen > self._idle and not s.inflight]:
            self.drop(sid)
