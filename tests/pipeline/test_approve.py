"""approval_need: which calls need a human. Pure policy, strictest wins, annotations only tighten."""

from __future__ import annotations

from typing import Any

import pytest

from gatehold.call import Caller, Target, ToolCall
from gatehold.config import ApprovalSettings, Role, ToolGrant
from gatehold.pipeline.approve import approval_need
from gatehold.policy.grants import Grants

ROLES = {
    "ops": Role(tools={"crm.delete_*": ToolGrant(approval="required"), "crm.*": ToolGrant(),
                       "bank.transfer": ToolGrant(approval_when={
                           "amount": {"min": 1000}, "to": {"pattern": "^ext-"},  # type: ignore[dict-item]
                           "currency": {"equals": ["BTC"]}})}),  # type: ignore[dict-item]
    "reader": Role(tools={"crm.*": ToolGrant()}),
}
GRANTS = Grants(ROLES)


def call(tool: str, roles: tuple[str, ...] = ("ops",), **arguments: Any) -> ToolCall:
    server = tool.split(".")[0]
    return ToolCall(Caller("p", roles, "apikey:p"), "tools/call", Target("tool", tool, server, tool), arguments, "c")


def need(tool: str, roles: tuple[str, ...] = ("ops",), destructive: str = "none",
         annotations: dict[str, Any] | None = None, **arguments: Any) -> str | None:
    found = approval_need(call(tool, roles, **arguments), GRANTS, ApprovalSettings(destructive=destructive),
                          annotations)
    return None if found is None else found.rule_id


def test_a_grant_marked_required_asks() -> None:
    assert need("crm.delete_invoice") == "roles.ops.tools[crm.delete_*].approval"
    assert need("crm.get_invoice") is None


def test_strictest_wins_across_roles() -> None:
    assert need("crm.delete_invoice", ("reader", "ops")) is not None
    assert need("crm.delete_invoice", ("reader",)) is None


@pytest.mark.parametrize(("arguments", "asks"), [
    ({"amount": 999, "to": "acct-1", "currency": "EUR"}, False),
    ({"amount": 1000, "to": "acct-1"}, True),
    ({"amount": 5.5, "to": "ext-99"}, True),
    ({"amount": 1, "to": "acct", "currency": "BTC"}, True),
    ({"amount": True, "to": "acct"}, False),  # a boolean is not a number here
    ({"amount": "5000"}, False),  # a string is not compared as a number
    ({}, False),
])
def test_argument_patterns(arguments: dict[str, Any], asks: bool) -> None:
    assert (need("bank.transfer", **arguments) is not None) is asks


def test_annotations_only_tighten() -> None:
    assert need("crm.get_invoice", destructive="required", annotations={"destructiveHint": True}) \
        == "approvals.destructive"
    assert need("crm.get_invoice", destructive="none", annotations={"destructiveHint": True}) is None
    assert need("crm.get_invoice", destructive="required", annotations={}) is None  # only an explicit true
    assert need("crm.delete_invoice", destructive="required", annotations={"destructiveHint": False}) is not None
