"""How a waiting call reaches its client, one class per kind of client.

- ``HoldOpen``: any client. The request stays open up to ``hold_seconds`` while a human decides.
- ``UrlElicitation``: 2025-11-25 clients that declared URL-mode elicitation. The gateway pushes
  ``elicitation/create`` (mode ``url``) pointing at the approval page, waits for the decision, then
  sends ``notifications/elicitation/complete``. The client's answer never decides anything: accept
  only means the user was shown the link; decline or cancel ends the call.
- ``InputRequired``: 2026-07-28 clients. The call ends at once with an ``input_required`` result
  carrying a URL-mode elicitation and a sealed ``requestState``; the client's retry with that state
  waits up to ``retry_wait_seconds`` for the decision, and gets a fresh state if there is none yet.

Whatever the channel, only an operator decides, on the page, the CLI or the admin API.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gatehold.approval.seal import StateSealer
from gatehold.approval.store import ApprovalStore, call_digest
from gatehold.errors import ApprovalRejected, InputRequired

log = logging.getLogger("gatehold.approval")

ELICITATION_KEY = "approval"  # the inputRequests key of the approval elicitation (2026-07-28)

RelayRequest = Callable[[str, dict[str, Any] | None], Awaitable[dict[str, Any]]]
Emit = Callable[[dict[str, Any]], Awaitable[None]]


def url_elicitation(approval_id: str, url: str, message: str) -> dict[str, Any]:
    return {"mode": "url", "message": message, "url": url, "elicitationId": approval_id}


class HoldOpen:
    def __init__(self, store: ApprovalStore, seconds: float):
        self._store = store
        self._seconds = seconds

    async def wait(self, approval_id: str, url: str, message: str, *, retry: bool) -> None:
        await self._store.wait(approval_id, self._seconds)


class UrlElicitation:
    def __init__(self, store: ApprovalStore, relay: RelayRequest, emit: Emit | None):
        self._store = store
        self._relay = relay
        self._emit = emit

    async def wait(self, approval_id: str, url: str, message: str, *, retry: bool) -> None:
        reply = await self._relay("elicitation/create", url_elicitation(approval_id, url, message))
        result = reply.get("result")
        action = result.get("action") if isinstance(result, dict) else None
        if action in ("decline", "cancel"):
            raise ApprovalRejected(f"the client answered the approval link with {action}",
                                   code="approval.declined", public="the approval request was declined")
        if action != "accept":
            # The client could not show the link (error, timeout): the call still waits for the
            # page or CLI, as a held-open request would; the error message names the page.
            log.info("URL elicitation for %s not accepted (%s); waiting anyway", approval_id, reply)
        current = self._store.get(approval_id)
        left = 0.0 if current is None else max(0.0, current.expires_at - self._store.now())
        await self._store.wait(approval_id, left)
        if self._emit is not None:
            await self._emit({"jsonrpc": "2.0", "method": "notifications/elicitation/complete",
                              "params": {"elicitationId": approval_id}})


class InputRequiredChannel:
    def __init__(self, store: ApprovalStore, sealer: StateSealer, *, principal: str, server: str, tool: str,
                 arguments: dict[str, Any], retry_wait_seconds: float):
        self._store = store
        self._sealer = sealer
        self._principal = principal
        self._call = (server, tool, arguments)  # digested only when a state is sealed: most calls never are
        self._retry_wait = retry_wait_seconds

    async def wait(self, approval_id: str, url: str, message: str, *, retry: bool) -> None:
        if retry:
            await self._store.wait(approval_id, self._retry_wait)
            current = self._store.get(approval_id)
            if current is None or current.state != "pending":
                return  # decided (or gone): the stage concludes
        current = self._store.get(approval_id)
        expires_at = current.expires_at if current is not None else self._store.now()
        state = self._sealer.seal(approval_id, principal=self._principal, digest=call_digest(*self._call),
                                  expires_at=expires_at)
        result: dict[str, Any] = {"resultType": "input_required", "requestState": state}
        if not retry:
            result["inputRequests"] = {ELICITATION_KEY: {
                "method": "elicitation/create", "params": url_elicitation(approval_id, url, message)}}
        raise InputRequired(f"approval {approval_id} pending; the client was asked to retry", result=result)
