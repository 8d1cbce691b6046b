"""Validate: arguments against the tool's input schema, then the grant's argument constraints."""

from __future__ import annotations

from typing import Any

from gatehold.call import ToolCall
from gatehold.errors import ArgumentsInvalid, ConstraintViolated, Denied, NotGranted
from gatehold.pipeline.outcome import Allow, CallDecision, Deny, Keep, ResultDecision
from gatehold.policy.constraints import check_arguments
from gatehold.policy.grants import Grants
from gatehold.policy.schema import SchemaCache

_OPEN_SCHEMA: dict[str, Any] = {"type": "object"}


class Validate:
    name = "validate"

    def __init__(self, grants: Grants, schemas: SchemaCache):
        self._grants = grants
        self._schemas = schemas

    async def on_call(self, call: ToolCall) -> CallDecision:
        if call.target.kind != "tool":
            return Allow("", "not a tool call")
        grants = self._grants.tool_grants(call.caller, call.target.exposed)
        if not grants:
            # Fail closed: Authorise should have stopped this, but Validate never passes ungranted calls.
            return Deny(NotGranted("no grant at validation", rule_id="default-deny"))
        schema = call.target.schema if call.target.schema is not None else _OPEN_SCHEMA
        first: Denied | None = None
        for grant in grants:  # allowed when any matching grant accepts the arguments
            try:
                compiled = self._schemas.compile(schema, strict=grant.tool.strict)
            except ArgumentsInvalid as exc:
                exc.rule_id = grant.rule_id
                return Deny(exc)
            errors = compiled.errors(call.arguments)
            if errors:
                first = first or ArgumentsInvalid(
                    "; ".join(errors), rule_id=f"{grant.rule_id}.schema", data={"errors": errors[:5]}
                )
                continue
            violations = check_arguments(call.arguments, grant.tool.args)
            if violations:
                shown = [f"{v.argument}: {v.message}" for v in violations]
                first = first or ConstraintViolated(
                    "; ".join(shown),
                    rule_id=f"{grant.rule_id}.args.{violations[0].argument}.{violations[0].rule}",
                    data={"violations": [{"argument": v.argument, "rule": v.rule} for v in violations]},
                )
                continue
            return Allow(grant.rule_id, "arguments valid")
        assert first is not None
        return Deny(first)

    async def on_result(self, call: ToolCall, result: dict[str, Any]) -> ResultDecision:
        return Keep()
