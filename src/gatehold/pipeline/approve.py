"""Approve: a call that needs a human waits for one, and goes on only with an approval made for it.

When approval is needed (strictest wins: any matching grant, argument pattern, a destructive
annotation when configured, or a data-flow rule's ``ask`` handed over by the Flow stage), the
stage creates a pending request and lets the call's channel wait
(see ``approval/channels.py``). It then concludes from the store alone: approved -> the approval is
consumed (single use, bound to principal, server, tool and argument digest) and the call goes on;
anything else -> a denial naming the request and the page. A call with no channel is refused at
once (fail closed), its request left for the record.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gatehold.approval.service import Approvals
from gatehold.approval.store import Approval, call_digest
from gatehold.call import ToolCall
from gatehold.config import ApprovalMatch, ApprovalSettings
from gatehold.errors import ApprovalDenied, ApprovalPending, ApprovalRejected, Denied
from gatehold.pipeline.outcome import Allow, CallDecision, Deny, Keep, ResultDecision
from gatehold.policy.grants import Grants


@dataclass(frozen=True, slots=True)
class Need:
    rule_id: str
    reason: str


def _matches(value: Any, match: ApprovalMatch) -> bool:
    if match.equals is not None and value in match.equals:
        return True
    if isinstance(value, str) and match.pattern is not None and re.search(match.pattern, value):
        return True
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and match.min is not None and value >= match.min:
        return True
    return bool(number and match.max is not None and value <= match.max)


def approval_need(call: ToolCall, grants: Grants, settings: ApprovalSettings,
                  annotations: Mapping[str, Any] | None) -> Need | None:
    """Why ``call`` needs a human, or None. Pure: the policy and the tool's listed annotations only."""
    if call.target.kind != "tool":
        return None
    for grant in grants.tool_grants(call.caller, call.target.exposed):
        if grant.tool.approval == "required":
            return Need(f"{grant.rule_id}.approval", "policy marks this tool approval: required")
        for name, match in grant.tool.approval_when.items():
            if name in call.arguments and _matches(call.arguments[name], match):
                return Need(f"{grant.rule_id}.approval_when.{name}",
                            f"argument {name!r} matches an approval pattern")
    # Annotations only ever add approval: destructiveHint false never lifts a policy requirement.
    if settings.destructive == "required" and annotations and annotations.get("destructiveHint") is True:
        return Need("approvals.destructive", "the tool is annotated destructive")
    return None


class Approve:
    name = "approve"

    def __init__(self, grants: Grants, settings: ApprovalSettings, approvals: Approvals, *,
                 policy_version: str, annotations: Callable[[str], Mapping[str, Any] | None],
                 redact: Callable[[dict[str, Any]], dict[str, Any]],
                 flow_need: Callable[[ToolCall], Need | None] | None = None):
        self._grants = grants
        self._settings = settings
        self._approvals = approvals
        self._policy_version = policy_version
        self._annotations = annotations
        self._redact = redact
        self._flow_need = flow_need  # a data-flow rule's ask (the Flow stage runs just before)

    async def on_call(self, call: ToolCall) -> CallDecision:
        flow = self._flow_need(call) if self._flow_need is not None else None
        need = approval_need(call, self._grants, self._settings, self._annotations(call.target.exposed)) or flow
        if need is None:
            return Allow("", "no approval needed")
        store = self._approvals.store
        digest = call_digest(call.target.upstream, call.target.exposed, call.arguments)
        ctx = call.approval
        if ctx is not None and ctx.ticket is not None:
            if ctx.declined:
                return Deny(ApprovalRejected(f"the client declined approval {ctx.ticket}", code="approval.declined",
                                             rule_id=need.rule_id, public="the approval request was declined"))
            approval_id = ctx.ticket
            retry = True
        else:
            approval_id = store.create(
                principal=call.caller.principal, server=call.target.upstream, tool=call.target.exposed,
                arguments=self._redact(call.arguments), digest=digest, rule_id=need.rule_id, reason=need.reason,
                policy_version=self._policy_version, correlation_id=call.correlation_id).id
            retry = False
        url = self._approvals.page_url(approval_id)
        if ctx is None:
            # Fail closed: nobody can be asked on this path, so the call is refused; the request
            # stays for the record and an approver may still act on a retry.
            current = store.get(approval_id)
            return Deny(self._unsettled(current, approval_id, url, need))
        message = (f"A human must approve {call.target.exposed} on {call.target.upstream} "
                   f"(approval {approval_id}): {need.reason}. Open the link to follow it.")
        await ctx.channel.wait(approval_id, url, message, retry=retry)
        return self._conclude(store.get(approval_id), call, approval_id, digest, url, need)

    def _conclude(self, current: Approval | None, call: ToolCall, approval_id: str, digest: str, url: str,
                  need: Need) -> CallDecision:
        if current is not None and current.state == "approved":
            try:
                used = self._approvals.store.consume(approval_id, principal=call.caller.principal,
                                                     server=call.target.upstream, tool=call.target.exposed,
                                                     digest=digest)
            except ApprovalRejected as exc:
                exc.rule_id = need.rule_id
                return Deny(exc)
            return Allow(need.rule_id, f"approved by {used.approver} (approval {approval_id})")
        return Deny(self._unsettled(current, approval_id, url, need))

    @staticmethod
    def _unsettled(current: Approval | None, approval_id: str, url: str, need: Need) -> Denied:
        if current is None:
            return ApprovalRejected(f"approval {approval_id} is unknown", code="approval.unknown",
                                    rule_id=need.rule_id)
        if current.state == "denied":
            return ApprovalDenied(f"approval {approval_id} denied by {current.approver}: {current.comment}",
                                  approval_id=approval_id, rule_id=need.rule_id)
        if current.state == "used":
            return ApprovalRejected(f"approval {approval_id} was already used", code="approval.used",
                                    rule_id=need.rule_id)
        return ApprovalPending(f"approval {approval_id} still {current.state}", approval_id=approval_id, url=url,
                               state=current.state, rule_id=need.rule_id)

    async def on_result(self, call: ToolCall, result: dict[str, Any]) -> ResultDecision:
        return Keep()
