"""Output bounds: cap the size of what an upstream returns (truncate with a marker, or deny)."""

from __future__ import annotations

from typing import Any

import orjson

from gatehold.call import ToolCall
from gatehold.config import GatewaySettings
from gatehold.errors import OutputRejected
from gatehold.pipeline.outcome import Allow, CallDecision, Deny, Keep, Replace, ResultDecision
from gatehold.policy.grants import Grants

MARKER = "\n[gatehold: output truncated at {limit} bytes]"


def _truncate_text(result: dict[str, Any], limit: int) -> dict[str, Any] | None:
    """Shorten text content so the serialised result fits in ``limit``; None when it cannot fit."""
    content = result.get("content")
    if not isinstance(content, list):
        return None
    trimmed = {k: v for k, v in result.items() if k != "content"}
    trimmed["content"] = []
    budget = limit - len(orjson.dumps(trimmed)) - 64
    marker = MARKER.format(limit=limit)
    out: list[Any] = []
    for item in content:
        size = len(orjson.dumps(item))
        if size <= budget:
            out.append(item)
            budget -= size + 1
            continue
        if isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
            room = budget - len(orjson.dumps({**item, "text": ""})) - len(marker.encode()) - 8
            if room > 0:
                # Cut by bytes so multi-byte text cannot overshoot; drop a split trailing character.
                text = item["text"].encode()[:room].decode("utf-8", errors="ignore")
                out.append({**item, "text": text + marker})
                break
        out.append({"type": "text", "text": marker.strip()})
        break
    trimmed["content"] = out
    return trimmed if len(orjson.dumps(trimmed)) <= limit else None


class OutputBounds:
    name = "output_bounds"

    def __init__(self, grants: Grants, settings: GatewaySettings):
        self._grants = grants
        self._settings = settings

    def _limits(self, call: ToolCall) -> tuple[int, str]:
        limit, mode = self._settings.max_result_bytes, self._settings.on_oversize
        if call.target.kind == "tool":
            for grant in self._grants.tool_grants(call.caller, call.target.exposed):
                if grant.tool.max_result_bytes is not None:
                    limit = min(limit, grant.tool.max_result_bytes)  # strictest wins
                if grant.tool.on_oversize == "deny":
                    mode = "deny"
        return limit, mode

    async def on_call(self, call: ToolCall) -> CallDecision:
        return Allow()

    async def on_result(self, call: ToolCall, result: dict[str, Any]) -> ResultDecision:
        limit, mode = self._limits(call)
        size = len(orjson.dumps(result))
        if size <= limit:
            return Keep()
        if mode == "truncate" and "structuredContent" not in result:
            trimmed = _truncate_text(result, limit)
            if trimmed is not None:
                return Replace(trimmed, f"truncated from {size} to at most {limit} bytes")
        # Fail closed: a result that cannot be brought under the cap is not delivered.
        return Deny(OutputRejected(f"result of {size} bytes exceeds the {limit}-byte cap",
                                   rule_id="output.max_result_bytes"))
