"""The pipeline with a real audit log and plain stage objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from gatehold.audit import AuditLog, JsonlSink
from gatehold.auditor import Auditor
from gatehold.call import Caller, Target, ToolCall
from gatehold.errors import AuditUnavailable, InternalFailure, NotGranted
from gatehold.pipeline import Allow, Deny, Keep, Pipeline, Replace
from gatehold.pipeline.outcome import CallDecision, ResultDecision

pytestmark = pytest.mark.anyio
CALL = ToolCall(Caller("alice", ("r",), "apikey:a"), "tools/call", Target("tool", "s.t", "s", "t"),
                {"password": "hunter22", "q": 1}, "cid-1")


class Recorder:
    def __init__(self, name: str, order: list[str], *, call: Any = None, result: Any = None, boom: bool = False):
        self.name, self.order, self.call, self.result, self.boom = name, order, call, result, boom

    async def on_call(self, call: ToolCall) -> CallDecision:
        self.order.append(f"call:{self.name}")
        if self.boom:
            raise RuntimeError("stage bug")
        return self.call or Allow(f"rule-{self.name}")

    async def on_result(self, call: ToolCall, result: dict[str, Any]) -> ResultDecision:
        self.order.append(f"result:{self.name}")
        return self.result or Keep()


@pytest.fixture
def audit(tmp_path: Path) -> Any:
    log = AuditLog([JsonlSink(tmp_path / "a.jsonl")])
    yield log, tmp_path / "a.jsonl"
    log.close()


def records(audit: Any) -> list[dict[str, Any]]:
    audit[0].flush()
    return [orjson.loads(line) for line in audit[1].read_bytes().splitlines()]


async def test_stages_run_down_then_up_and_replace_applies(audit: Any) -> None:
    order: list[str] = []
    forwarded: list[ToolCall] = []

    async def forward(call: ToolCall) -> dict[str, Any]:
        forwarded.append(call)
        order.append("forward")
        return {"content": []}

    replaced = Replace({"content": [{"type": "text", "text": "clean"}]}, "cleaned")
    pipeline = Pipeline([Recorder("a", order), Recorder("b", order, result=replaced)], Auditor(audit[0]))
    result = await pipeline.run(CALL, forward)
    assert order == ["call:a", "call:b", "forward", "result:b", "result:a"]
    assert result == replaced.result
    (record,) = records(audit)
    assert (record["decision"], record["outcome"], record["rule_id"]) == ("allow", "ok", "rule-b")
    assert record["arguments"] == {"password": "[REDACTED]", "q": 1}


async def test_a_deny_stops_before_forwarding_and_is_audited(audit: Any) -> None:
    order: list[str] = []

    async def forward(call: ToolCall) -> dict[str, Any]:
        raise AssertionError("must not forward")

    deny = Deny(NotGranted("nope", rule_id="default-deny"))
    pipeline = Pipeline([Recorder("a", order, call=deny), Recorder("b", order)], Auditor(audit[0]))
    with pytest.raises(NotGranted):
        await pipeline.run(CALL, forward)
    assert order == ["call:a"]
    (record,) = records(audit)
    assert (record["decision"], record["code"], record["rule_id"]) == ("deny", "policy.not_granted", "default-deny")


@pytest.mark.parametrize("stage_kind", ["raises", "returns-none", "result-raises"])
async def test_a_broken_stage_denies(audit: Any, stage_kind: str) -> None:
    order: list[str] = []
    forwarded: list[int] = []

    async def forward(call: ToolCall) -> dict[str, Any]:
        forwarded.append(1)
        return {"content": []}

    if stage_kind == "raises":
        stage = Recorder("x", order, boom=True)
    elif stage_kind == "returns-none":
        stage = Recorder("x", order, call=True)  # not a decision value
    else:
        stage = Recorder("x", order, result=object())
    pipeline = Pipeline([stage], Auditor(audit[0]))
    with pytest.raises(InternalFailure) as caught:
        await pipeline.run(CALL, forward)
    assert "stage bug" not in caught.value.public  # the client sees a short public message
    (record,) = records(audit)
    assert record["decision"] == "deny"
    assert record["code"] == "internal.error"
    if stage_kind != "result-raises":
        assert forwarded == []


async def test_an_unhealthy_audit_log_refuses_calls(tmp_path: Path) -> None:
    class Broken:
        def write_batch(self, records: list[dict[str, Any]]) -> None:
            raise OSError("disk gone")

        def last(self) -> tuple[int, str]:
            return 0, "0" * 64

        def close(self) -> None:
            pass

    log = AuditLog([Broken()])
    auditor = Auditor(log)
    auditor.lifecycle("first write fails")
    with pytest.raises(Exception):  # noqa: B017 -- flush reports the failed write
        log.flush()
    assert not log.healthy

    async def forward(call: ToolCall) -> dict[str, Any]:
        raise AssertionError("must not forward")

    with pytest.raises(AuditUnavailable):
        await Pipeline([], auditor).run(CALL, forward)
