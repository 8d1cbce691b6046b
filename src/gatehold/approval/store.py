"""Approval requests: what a human is asked to allow, and what they decided.

An approval is created pending for one call (principal, server, tool, the digest of its canonical
arguments) and ends in exactly one of approved, denied or expired; an approved one becomes used
when the call it covers goes through, and can be used once only. Rules kept here, whatever channel
the decision came through (page, CLI, admin API):

- the approver is never the principal who asked (no self-approval);
- only a pending, unexpired request can be decided;
- ``consume`` succeeds once, for the same principal, server, tool and argument digest.

The embedded store is in-process (a restart forgets pending requests: their calls fail closed).
Every change is announced to listeners (the page's live view, the webhook), each guarded so a
failing listener never blocks a decision.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson

from gatehold.errors import ApprovalRejected

log = logging.getLogger("gatehold.approval")

State = Literal["pending", "approved", "denied", "expired", "used"]
FINAL: frozenset[str] = frozenset({"denied", "expired", "used"})
_KEEP_DECIDED_SECONDS = 24 * 3600.0  # decided requests stay listable this long, then are dropped
_MAX_REQUESTS = 10_000


def call_digest(server: str, tool: str, arguments: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON (sorted keys) of server, tool and the full arguments."""
    canonical = orjson.dumps({"server": server, "tool": tool, "arguments": arguments},
                             option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True, slots=True)
class Approval:
    id: str
    principal: str
    server: str
    tool: str
    arguments: dict[str, Any]  # as shown to the approver: secrets already redacted
    digest: str  # call_digest of the real arguments
    rule_id: str
    reason: str
    policy_version: str
    correlation_id: str
    created_at: float
    expires_at: float
    state: State = "pending"
    approver: str | None = None
    comment: str = ""
    decided_at: float | None = None

    def public(self) -> dict[str, Any]:
        """The record as JSON for the page, the admin API and the webhook."""
        return {
            "id": self.id, "principal": self.principal, "server": self.server, "tool": self.tool,
            "arguments": self.arguments, "digest": self.digest, "rule_id": self.rule_id,
            "reason": self.reason, "policy_version": self.policy_version,
            "correlation_id": self.correlation_id, "created_at": self.created_at,
            "expires_at": self.expires_at, "state": self.state, "approver": self.approver,
            "comment": self.comment, "decided_at": self.decided_at,
        }


Listener = Callable[[str, Approval], None]  # (event: "created" | "decided" | "used", approval)


class ApprovalStore:
    """Pending and decided approvals, in process. Safe on one event loop (no awaits inside changes)."""

    def __init__(self, *, expiry_seconds: float, clock: Callable[[], float] = time.time):
        self._expiry = expiry_seconds
        self._clock = clock
        self._items: dict[str, Approval] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self.listeners: list[Listener] = []

    # -- reading -------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock()

    def get(self, approval_id: str) -> Approval | None:
        found = self._items.get(approval_id)
        return None if found is None else self._aged(found)

    def list(self, state: State | None = None) -> list[Approval]:
        """Newest first."""
        self._prune()
        items = [self._aged(a) for a in self._items.values()]
        return sorted((a for a in items if state is None or a.state == state),
                      key=lambda a: a.created_at, reverse=True)

    # -- changes -------------------------------------------------------------------------------

    def create(self, *, principal: str, server: str, tool: str, arguments: dict[str, Any], digest: str,
               rule_id: str, reason: str, policy_version: str, correlation_id: str) -> Approval:
        self._prune()
        if len(self._items) >= _MAX_REQUESTS:
            # fail closed: the call is refused rather than the store growing without bound
            raise ApprovalRejected("too many approval requests outstanding", code="approval.full")
        now = self._clock()
        approval = Approval(id=secrets.token_urlsafe(12), principal=principal, server=server, tool=tool,
                            arguments=arguments, digest=digest, rule_id=rule_id, reason=reason,
                            policy_version=policy_version, correlation_id=correlation_id,
                            created_at=now, expires_at=now + self._expiry)
        self._items[approval.id] = approval
        self._changed[approval.id] = asyncio.Event()
        self._announce("created", approval)
        return approval

    def decide(self, approval_id: str, *, approve: bool, approver: str, comment: str = "") -> Approval:
        """Approve or deny a pending request. Raises ``ApprovalRejected`` naming why not."""
        current = self.get(approval_id)
        if current is None:
            raise ApprovalRejected(f"no approval {approval_id!r}", code="approval.unknown")
        if current.state != "pending":
            raise ApprovalRejected(f"approval {approval_id} is {current.state}, not pending",
                                   code=f"approval.{current.state}")
        if not approver or approver == current.principal:
            raise ApprovalRejected(f"{approver!r} asked for this call and cannot approve it",
                                   code="approval.self")
        decided = replace(current, state="approved" if approve else "denied", approver=approver,
                          comment=comment[:2000], decided_at=self._clock())
        self._put(decided, "decided")
        return decided

    def deny_where(self, matches: Callable[[Approval], bool], *, approver: str,
                   comment: str) -> builtins.list[Approval]:
        """Deny every pending request ``matches`` selects (the kill switch)."""
        denied = []
        for approval in self.list("pending"):
            if matches(approval):
                decided = replace(approval, state="denied", approver=approver, comment=comment,
                                  decided_at=self._clock())
                self._put(decided, "decided")
                denied.append(decided)
        return denied

    def consume(self, approval_id: str, *, principal: str, server: str, tool: str, digest: str) -> Approval:
        """Mark an approved request used by the call it covers; once only. Raises ``ApprovalRejected``."""
        current = self.get(approval_id)
        if current is None:
            raise ApprovalRejected(f"no approval {approval_id!r}", code="approval.unknown")
        if (current.principal, current.server, current.tool) != (principal, server, tool):
            raise ApprovalRejected(f"approval {approval_id} covers another principal or tool",
                                   code="approval.mismatch")
        if current.digest != digest:
            raise ApprovalRejected(f"approval {approval_id} covers other arguments", code="approval.mismatch")
        if current.state != "approved":
            raise ApprovalRejected(f"approval {approval_id} is {current.state}", code=f"approval.{current.state}")
        used = replace(current, state="used")
        self._put(used, "used")
        return used

    async def wait(self, approval_id: str, seconds: float) -> Approval | None:
        """The request once it is no longer pending, or as it is after ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            current = self.get(approval_id)
            if current is None or current.state != "pending":
                return current
            left = min(deadline - time.monotonic(), current.expires_at - self._clock())
            if left <= 0:
                return self.get(approval_id)
            event = self._changed.setdefault(approval_id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), timeout=left)
            except TimeoutError:
                continue  # re-read: expiry is computed on read

    # -- internals -----------------------------------------------------------------------------

    def _aged(self, approval: Approval) -> Approval:
        if approval.state in ("pending", "approved") and self._clock() >= approval.expires_at:
            expired = replace(approval, state="expired")
            self._items[approval.id] = expired
            self._wake(approval.id)
            return expired
        return approval

    def _put(self, approval: Approval, event: str) -> None:
        self._items[approval.id] = approval
        self._wake(approval.id)
        self._announce(event, approval)

    def _wake(self, approval_id: str) -> None:
        waiter = self._changed.pop(approval_id, None)
        if waiter is not None:
            waiter.set()

    def _announce(self, event: str, approval: Approval) -> None:
        for listener in list(self.listeners):
            try:
                listener(event, approval)
            except Exception:  # a listener (page, webhook) never blocks a decision
                log.exception("approval listener failed on %s %s", event, approval.id)

    def _prune(self) -> None:
        horizon = self._clock() - _KEEP_DECIDED_SECONDS
        for approval_id, approval in list(self._items.items()):
            if approval.state in FINAL and (approval.decided_at or approval.expires_at) < horizon:
                del self._items[approval_id]
                self._changed.pop(approval_id, None)
