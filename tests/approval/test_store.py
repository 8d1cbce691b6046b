"""ApprovalStore: single use, bound to principal/tool/digest, no self-approval, expiry, waiting."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from gatehold.approval.store import Approval, ApprovalStore, call_digest
from gatehold.errors import ApprovalRejected
from tests.authserver import FakeClock

pytestmark = pytest.mark.anyio


def make(store: ApprovalStore, *, principal: str = "agent", arguments: dict[str, Any] | None = None) -> Approval:
    args = arguments if arguments is not None else {"id": 7}
    return store.create(principal=principal, server="crm", tool="crm.delete_invoice", arguments=args,
                        digest=call_digest("crm", "crm.delete_invoice", args), rule_id="r", reason="why",
                        policy_version="v1", correlation_id="c1")


def rejected(code: str, fn: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(ApprovalRejected) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value.detail


def test_digest_is_canonical_and_covers_every_argument() -> None:
    assert call_digest("s", "t", {"a": 1, "b": [1, 2]}) == call_digest("s", "t", {"b": [1, 2], "a": 1})
    assert call_digest("s", "t", {"a": 1}) != call_digest("s", "t", {"a": 2})
    assert call_digest("s", "t", {"a": 1}) != call_digest("s", "u", {"a": 1})
    assert call_digest("s", "t", {"a": 1}) != call_digest("r", "t", {"a": 1})


def test_approve_then_consume_once() -> None:
    store = ApprovalStore(expiry_seconds=60)
    approval = make(store)
    decided = store.decide(approval.id, approve=True, approver="olivia", comment="ok")
    assert (decided.state, decided.approver, decided.comment) == ("approved", "olivia", "ok")
    used = store.consume(approval.id, principal="agent", server="crm", tool="crm.delete_invoice",
                         digest=approval.digest)
    assert used.state == "used"
    rejected("approval.used", store.consume, approval.id, principal="agent", server="crm",
             tool="crm.delete_invoice", digest=approval.digest)


def test_an_approval_covers_only_its_own_call() -> None:
    store = ApprovalStore(expiry_seconds=60)
    approval = make(store)
    store.decide(approval.id, approve=True, approver="olivia")
    other = call_digest("crm", "crm.delete_invoice", {"id": 8})
    rejected("approval.mismatch", store.consume, approval.id, principal="agent", server="crm",
             tool="crm.delete_invoice", digest=other)
    rejected("approval.mismatch", store.consume, approval.id, principal="mallory", server="crm",
             tool="crm.delete_invoice", digest=approval.digest)
    rejected("approval.mismatch", store.consume, approval.id, principal="agent", server="crm",
             tool="crm.pay_invoice", digest=approval.digest)
    assert store.get(approval.id).state == "approved"  # type: ignore[union-attr]  # still usable by its own call


def test_the_requester_cannot_approve_and_decisions_are_final() -> None:
    store = ApprovalStore(expiry_seconds=60)
    approval = make(store, principal="olivia")
    rejected("approval.self", store.decide, approval.id, approve=True, approver="olivia")
    rejected("approval.self", store.decide, approval.id, approve=True, approver="")
    store.decide(approval.id, approve=False, approver="sam", comment="no")
    rejected("approval.denied", store.decide, approval.id, approve=True, approver="sam")
    rejected("approval.denied", store.consume, approval.id, principal="olivia", server="crm",
             tool="crm.delete_invoice", digest=approval.digest)
    rejected("approval.unknown", store.decide, "nope", approve=True, approver="sam")


def test_expiry_blocks_deciding_and_using() -> None:
    clock = FakeClock()
    store = ApprovalStore(expiry_seconds=60, clock=clock)
    pending, approved = make(store), make(store)
    store.decide(approved.id, approve=True, approver="olivia")
    clock.advance(60)
    assert store.get(pending.id).state == "expired"  # type: ignore[union-attr]
    rejected("approval.expired", store.decide, pending.id, approve=True, approver="olivia")
    rejected("approval.expired", store.consume, approved.id, principal="agent", server="crm",
             tool="crm.delete_invoice", digest=approved.digest)


async def test_wait_returns_on_decision_and_times_out_pending() -> None:
    store = ApprovalStore(expiry_seconds=60)
    approval = make(store)
    assert (await store.wait(approval.id, 0.05)).state == "pending"  # type: ignore[union-attr]

    async def decide_soon() -> None:
        await anyio.sleep(0.05)
        store.decide(approval.id, approve=False, approver="olivia")

    async with anyio.create_task_group() as tg:
        tg.start_soon(decide_soon)
        with anyio.fail_after(5):
            done = await store.wait(approval.id, 30)
    assert done is not None
    assert done.state == "denied"


def test_listeners_hear_every_change_and_a_failing_one_blocks_nothing() -> None:
    store = ApprovalStore(expiry_seconds=60)
    heard: list[tuple[str, str]] = []

    def broken(event: str, approval: Approval) -> None:
        raise RuntimeError("listener down")

    store.listeners += [broken, lambda event, approval: heard.append((event, approval.state))]
    approval = make(store)
    store.decide(approval.id, approve=True, approver="olivia")
    store.consume(approval.id, principal="agent", server="crm", tool="crm.delete_invoice", digest=approval.digest)
    assert heard == [("created", "pending"), ("decided", "approved"), ("used", "used")]


def test_kill_switch_denies_matching_pending_requests_only() -> None:
    store = ApprovalStore(expiry_seconds=60)
    mine, theirs = make(store, principal="agent"), make(store, principal="other")
    denied = store.deny_where(lambda a: a.principal == "agent", approver="kill-switch", comment="killed")
    assert [a.id for a in denied] == [mine.id]
    assert store.get(mine.id).state == "denied"  # type: ignore[union-attr]
    assert store.get(theirs.id).state == "pending"  # type: ignore[union-attr]
