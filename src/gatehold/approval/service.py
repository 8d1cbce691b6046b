"""The approvals a gateway holds, and the one way any channel decides them (audited)."""

from __future__ import annotations

from urllib.parse import quote

from gatehold.approval.store import Approval, ApprovalStore
from gatehold.auditor import Auditor
from gatehold.call import Caller, new_correlation_id
from gatehold.errors import ApprovalRejected


class Approvals:
    """Store + audit + links. The page, the admin API and the CLI (through the admin API) use ``decide``."""

    def __init__(self, store: ApprovalStore, auditor: Auditor, *, base_url: str):
        self.store = store
        self.auditor = auditor
        self.base_url = base_url.rstrip("/")

    def page_url(self, approval_id: str | None = None) -> str:
        """The approval page, or one request's detail view on it."""
        if approval_id is None:
            return f"{self.base_url}/approvals"
        return f"{self.base_url}/approvals/{quote(approval_id, safe='')}"

    def decide(self, approval_id: str, *, approve: bool, operator: Caller, comment: str,
               channel: str) -> Approval:
        """Approve or deny as ``operator``; every attempt, refused or not, is audited."""
        verb = "approve" if approve else "deny"
        self.auditor.ensure_healthy()  # fail closed: no decision that cannot be audited
        try:
            decided = self.store.decide(approval_id, approve=approve, approver=operator.principal,
                                        comment=comment)
        except ApprovalRejected as exc:
            self.auditor.request(correlation_id=new_correlation_id(), caller=operator, method=f"approval/{verb}",
                                 decision="deny", reason=exc.detail, code=exc.code,
                                 detail={"approval": approval_id, "channel": channel})
            raise
        self.auditor.request(correlation_id=decided.correlation_id, caller=operator, method=f"approval/{verb}",
                             decision="allow", reason=f"{decided.state} by {operator.principal}",
                             outcome=decided.state, server=decided.server, tool=decided.tool,
                             detail={"approval": approval_id, "channel": channel, "comment": comment[:200],
                                     "requested_by": decided.principal})
        return decided
