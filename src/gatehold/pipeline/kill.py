"""KillCheck: the first stage. A killed principal, tool, server or "all" refuses the call."""

from __future__ import annotations

from typing import Any

from gatehold.call import ToolCall
from gatehold.errors import CallKilled
from gatehold.killswitch import KillSwitch
from gatehold.pipeline.outcome import Allow, CallDecision, Deny, Keep, ResultDecision


class KillCheck:
    name = "kill"

    def __init__(self, kills: KillSwitch):
        self._kills = kills

    async def on_call(self, call: ToolCall) -> CallDecision:
        # An unreadable kill list raises AuthUnavailable: the pipeline turns it into a denial (fail closed).
        hit = await self._kills.active_for(call)
        if hit is not None:
            return Deny(CallKilled(f"{hit.kind} {hit.value} is killed: {hit.reason}", rule_id=f"kill.{hit.kind}"))
        return Allow("", "not killed")

    async def on_result(self, call: ToolCall, result: dict[str, Any]) -> ResultDecision:
        return Keep()
