"""Authorise: the caller's roles (and, for OAuth callers, scopes) must grant the target. Default deny."""

from __future__ import annotations

from typing import Any

from gatehold.call import ToolCall
from gatehold.errors import InsufficientScope, NotGranted, UnknownTarget
from gatehold.pipeline.outcome import Allow, CallDecision, Deny, Keep, ResultDecision
from gatehold.policy.grants import Grants


class Authorise:
    name = "authorise"

    def __init__(self, grants: Grants):
        self._grants = grants

    async def on_call(self, call: ToolCall) -> CallDecision:
        roles, target = call.caller.roles, call.target
        rule: str | None
        if target.kind == "tool":
            found = self._grants.tool_grants(call.caller, target.exposed)
            rule = found[0].rule_id if found else None
            step_up = () if found else self._grants.step_up_scopes(call.caller, target.exposed)
            if step_up:
                # The roles allow it but no held scope does: 403 insufficient_scope names the scopes.
                return Deny(InsufficientScope(f"tool {target.exposed!r} needs scope {step_up[0]!r}",
                                              scopes=step_up))
        elif target.kind == "prompt":
            rule = self._grants.prompt_rule(roles, target.exposed)
        else:  # resources, and completions against a resource reference
            rule = self._grants.resource_rule(roles, target.exposed)
        if rule is None:
            # Default deny: nothing in the caller's roles names this target.
            return Deny(NotGranted(f"no grant for {target.kind} {target.exposed!r} in roles {list(roles)}",
                                   rule_id="default-deny"))
        if not target.upstream:
            # Granted by a glob, but no upstream serves it (or two do, and it was withheld).
            return Deny(UnknownTarget(f"no upstream serves {target.kind} {target.exposed!r}", rule_id=rule))
        return Allow(rule, "granted")

    async def on_result(self, call: ToolCall, result: dict[str, Any]) -> ResultDecision:
        return Keep()
