"""The pipeline: run the stages in order, forward, run them back; audit in ``finally``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gatehold.auditor import Auditor
from gatehold.call import ToolCall
from gatehold.errors import GateholdError, InputRequired, InternalFailure
from gatehold.pipeline.outcome import Allow, Deny, Keep, Replace, Stage

Forward = Callable[[ToolCall], Awaitable[dict[str, Any]]]


class Pipeline:
    def __init__(self, stages: Sequence[Stage], auditor: Auditor):
        self.stages = tuple(stages)
        self._auditor = auditor

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)

    async def run(self, call: ToolCall, forward: Forward) -> dict[str, Any]:
        """The upstream's result after every stage agreed, or a raised ``GateholdError``.

        Any exception inside a stage denies the call (fail closed): it becomes ``InternalFailure``
        with a short public message, and the audit record keeps what happened.
        """
        start = time.perf_counter()
        trail: list[list[str]] = []
        found: dict[str, Any] = {}  # per stage: what it noticed or changed, for the audit record
        decision, rule_id, reason, outcome, code = "deny", "", "", "denied", ""
        try:
            self._auditor.ensure_healthy()  # fail closed: no audit, no calls
            for stage in self.stages:
                verdict = await stage.on_call(call)
                if isinstance(verdict, Deny):
                    trail.append([stage.name, "deny", verdict.error.rule_id])
                    if verdict.error.audit:
                        found[stage.name] = verdict.error.audit
                    raise verdict.error
                if not isinstance(verdict, Allow):
                    raise InternalFailure(f"stage {stage.name} returned {verdict!r}")
                trail.append([stage.name, "allow", verdict.rule_id])
                if verdict.detail:
                    found[stage.name] = dict(verdict.detail)
                rule_id = verdict.rule_id or rule_id
            outcome = "forwarded"
            result = await forward(call)
            for stage in reversed(self.stages):
                after = await stage.on_result(call, result)
                if isinstance(after, Deny):
                    trail.append([stage.name, "deny-result", after.error.rule_id])
                    if after.error.audit:
                        found[f"{stage.name}.result"] = after.error.audit
                    raise after.error
                if isinstance(after, Replace):
                    trail.append([stage.name, "replace", after.note])
                    result = after.result
                elif not isinstance(after, Keep):
                    raise InternalFailure(f"stage {stage.name} returned {after!r}")
                if after.detail:
                    found[f"{stage.name}.result"] = dict(after.detail)
            decision, reason = "allow", "all stages allowed"
            outcome = "tool_error" if result.get("isError") else "ok"
            return result
        except InputRequired as exc:
            # Not a denial: the call waits for a human and the client will retry with its state.
            decision, outcome, reason, code = "ask", "input_required", exc.detail, exc.code
            trail.append(["approve", "ask", rule_id])
            raise
        except GateholdError as exc:
            reason, code = exc.detail, exc.code
            rule_id = getattr(exc, "rule_id", "") or rule_id
            if outcome == "forwarded" and exc.code.startswith("upstream."):
                decision, outcome = "error", exc.code
            raise
        except Exception as exc:
            failure = InternalFailure(f"{type(exc).__name__}: {exc}")
            reason, code = failure.detail, failure.code
            raise failure from exc
        finally:
            self._auditor.call(
                call,
                decision=decision,
                reason=reason,
                rule_id=rule_id or None,
                outcome=outcome,
                code=code or None,
                latency_ms=(time.perf_counter() - start) * 1000,
                stages=trail,
                found=found,
            )
