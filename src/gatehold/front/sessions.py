"""Handshake-era sessions (``Mcp-Session-Id``), each bound to the principal that opened it."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from gatehold.call import Caller
from gatehold.front.relay import ClientRequests


@dataclass
class Session:
    id: str
    caller: Caller
    protocol_version: str
    requests: ClientRequests  # server->client requests awaiting this client's answer
    last_seen: float = field(default_factory=time.monotonic)
    inflight: dict[Any, asyncio.Task[Any]] = field(default_factory=dict)
    stream: asyncio.Queue[dict[str, Any]] | None = None  # the GET stream, when one is open
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # set when dropped: ends the GET stream

    def owned_by(self, caller: Caller) -> bool:
        return binding(self.caller) == binding(caller)

    def refresh(self, caller: Caller) -> None:
        """Remember the newest credential the session's owner presented (a refreshed or stepped-up token)."""
        self.caller = caller

    def cancel_all(self) -> None:
        for task in self.inflight.values():
            task.cancel()
        self.requests.cancel_all()

def binding(caller: Caller) -> tuple[str, ...]:
    """What a session is bound to. An OAuth caller keeps its session across token refreshes and
    step-ups (same subject and client); any other credential binds the session to itself."""
    if caller.scopes is not None or caller.credential_id.startswith(("jwt:", "introspection:")):
        return ("oauth", caller.principal, caller.client_id or "")
    return ("credential", caller.principal, caller.credential_id)


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
        session = Session(secrets.token_urlsafe(24), caller, version, ClientRequests(capabilities))
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
        session.refresh(caller)
        return session

    def drop(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            session.closed.set()
            session.cancel_all()

    def all(self) -> list[Session]:
        return list(self._sessions.values())

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s.id for s in self._sessions.values() if now - s.last_seen > self._idle and not s.inflight]:
            self.drop(sid)
