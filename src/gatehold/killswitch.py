"""The kill switch: stop a principal, a tool, a server or everything, in-flight calls included.

Kills live in the revocation list (the state backend), so they survive restarts, reach every
gateway sharing Redis, and can be written by ``gatehold kill`` in another process. A principal kill
is a principal revocation: the HTTP front refuses the principal's credential too. Targets:

- ``("principal", P)``, ``("tool", <exposed name>)``, ``("server", <upstream name>)``, ``("all", "*")``.

Enforcement has three parts: the ``KillCheck`` stage refuses new calls; ``enforce`` cancels the
in-flight calls of every killed target (the upstream is sent a cancellation) and denies their
pending approvals; ``watch`` runs ``enforce`` a few times a second so a kill written elsewhere
reaches in-flight calls within about a second. A kill through this object enforces at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gatehold.approval.store import Approval, ApprovalStore
from gatehold.auditor import Auditor
from gatehold.call import Caller, ToolCall, new_correlation_id
from gatehold.errors import GateholdError
from gatehold.state.revocations import Revocation, RevocationStore

log = logging.getLogger("gatehold.kill")

TARGET_KINDS: tuple[str, ...] = ("principal", "tool", "server", "all")
ALL = ("all", "*")
WATCH_SECONDS = 0.25


def kill_keys(principal: str, tool: str, server: str) -> tuple[tuple[str, str], ...]:
    return (("principal", principal), ("tool", tool), ("server", server), ALL)


def call_keys(call: ToolCall) -> tuple[tuple[str, str], ...]:
    return kill_keys(call.caller.principal, call.target.exposed, call.target.upstream)


@dataclass
class _InFlight:
    call: ToolCall
    killed_by: Revocation | None = None


class KillSwitch:
    def __init__(self, store: RevocationStore, auditor: Auditor, approvals: ApprovalStore | None = None):
        self.store = store
        self._auditor = auditor
        self._approvals = approvals
        self._inflight: dict[asyncio.Future[Any], _InFlight] = {}

    async def active_for(self, call: ToolCall) -> Revocation | None:
        """The kill that stops ``call``, or None. Raises ``AuthUnavailable`` when the list is unreadable."""
        return await self.store.is_revoked(call_keys(call))

    async def kill(self, kind: str, value: str, *, reason: str, by: Caller | str) -> None:
        who = by.principal if isinstance(by, Caller) else by
        await self.store.revoke(Revocation(kind, value, reason or "kill switch", time.time(), who))
        self._audit(by, "kill", kind, value, reason)
        await self.enforce()

    async def revive(self, kind: str, value: str, *, by: Caller | str) -> bool:
        lifted = await self.store.restore(kind, value)
        self._audit(by, "revive", kind, value, "" if lifted else "was not killed")
        return lifted

    async def kills(self) -> list[Revocation]:
        return await self.store.list()

    @contextlib.contextmanager
    def tracking(self, task: asyncio.Future[Any], call: ToolCall) -> Iterator[_InFlight]:
        """Register a forwarding task so a kill can cancel it; yields what the kill recorded."""
        entry = _InFlight(call)
        self._inflight[task] = entry
        try:
            yield entry
        finally:
            self._inflight.pop(task, None)

    async def enforce(self) -> None:
        """Cancel in-flight calls and deny pending approvals of every killed target."""
        if not self._inflight and (self._approvals is None or not self._approvals.list("pending")):
            return
        active = {(r.kind, r.value): r for r in await self.store.list()}
        if not active:
            return
        for task, entry in list(self._inflight.items()):
            hit = next((active[k] for k in call_keys(entry.call) if k in active), None)
            if hit is not None and not task.done():
                entry.killed_by = hit
                task.cancel()
        if self._approvals is not None:
            def stopped(approval: Approval) -> bool:
                return any(k in active for k in kill_keys(approval.principal, approval.tool, approval.server))

            for denied in self._approvals.deny_where(stopped, approver="kill-switch",
                                                      comment="denied by the kill switch"):
                log.info("approval %s denied by the kill switch", denied.id)

    async def watch(self, interval: float = WATCH_SECONDS) -> None:
        """Enforce kills written by other processes or gateways, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.enforce()
            except GateholdError as exc:
                # The list is unreadable: new calls are refused by KillCheck (fail closed); keep trying.
                log.warning("kill switch cannot read the list: %s", exc.detail)

    def _audit(self, by: Caller | str, action: str, kind: str, value: str, note: str) -> None:
        caller = by if isinstance(by, Caller) else None
        detail = {"target": {"kind": kind, "value": value}, "by": by if isinstance(by, str) else by.principal}
        self._auditor.request(correlation_id=new_correlation_id(), caller=caller, method=f"admin/{action}",
                              decision="allow", reason=f"{action} {kind} {value}" + (f": {note}" if note else ""),
                              outcome=action, detail=detail)
