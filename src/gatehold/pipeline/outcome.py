"""Closed decision values. A stage answers with one of these, never ``None`` or a bare bool."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gatehold.call import ToolCall
from gatehold.errors import Denied


@dataclass(frozen=True, slots=True)
class Allow:
    rule_id: str = ""
    reason: str = ""
    detail: Mapping[str, Any] | None = None  # what the stage found, for the audit record


@dataclass(frozen=True, slots=True)
class Deny:
    error: Denied


@dataclass(frozen=True, slots=True)
class Keep:
    """The result passes unchanged (``detail``: what the stage noticed, for the audit record)."""

    detail: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Replace:
    result: dict[str, Any]
    note: str
    detail: Mapping[str, Any] | None = None  # what the stage changed, for the audit record


CallDecision = Allow | Deny
ResultDecision = Keep | Replace | Deny


class Stage(Protocol):
    name: str

    async def on_call(self, call: ToolCall) -> CallDecision: ...

    async def on_result(self, call: ToolCall, result: dict[str, Any]) -> ResultDecision: ...
