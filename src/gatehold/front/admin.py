"""The admin API for operators: approvals and the kill switch, as JSON under ``/admin``.

Authenticated by an operator key (``Authorization: Bearer``; see ``approval/operators.py``), never
by an agent's credential. It is not for browsers: a request carrying an ``Origin`` header is
refused, so no web page can drive it with an operator's ambient credentials. Every decision,
refusal included, is audited. The CLI (``gatehold approvals``) is a client of this API.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gatehold.approval.operators import OperatorAuthenticator, Power
from gatehold.approval.service import Approvals
from gatehold.call import Caller, new_correlation_id
from gatehold.errors import ApprovalRejected, AuthenticationFailed, GateholdError, NotGranted
from gatehold.killswitch import TARGET_KINDS, KillSwitch

_MAX_BODY = 64 * 1024


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def admin_routes(approvals: Approvals, kills: KillSwitch, operators: OperatorAuthenticator) -> list[BaseRoute]:
    auditor = approvals.auditor

    def refuse(request: Request, exc: _Refused, caller: Caller | None) -> JSONResponse:
        auditor.request(correlation_id=new_correlation_id(), caller=caller, method=f"admin {request.url.path}",
                        decision="deny", reason=exc.message, code=exc.code)
        return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status)

    def operator(request: Request, needs: Power) -> Caller:
        if request.headers.get("origin") is not None:
            raise _Refused(403, "admin.origin", "the admin API does not accept browser requests")
        try:
            return operators.authenticate(request.headers.get("authorization"), needs=needs)
        except AuthenticationFailed as exc:
            raise _Refused(401, exc.code, "operator authentication required") from None
        except NotGranted:
            raise _Refused(403, "admin.forbidden", f"this operator may not {needs}") from None

    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            raise _Refused(413, "admin.too_large", "request body too large")
        if not raw:
            return {}
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Refused(400, "admin.invalid", "body is not JSON") from None
        if not isinstance(data, dict):
            raise _Refused(400, "admin.invalid", "body must be a JSON object")
        return data

    def handler(needs: Power, work: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            caller: Caller | None = None
            try:
                caller = operator(request, needs)
                return await work(request, caller)  # type: ignore[no-any-return]
            except _Refused as exc:
                return refuse(request, exc, caller)
            except ApprovalRejected as exc:  # already audited by Approvals.decide
                status = 404 if exc.code == "approval.unknown" else 409
                return JSONResponse({"error": exc.code, "message": exc.detail}, status_code=status)
            except GateholdError as exc:
                # fail closed: e.g. the kill list is unreachable; nothing was changed
                return refuse(request, _Refused(503, exc.code, exc.public), caller)
        return endpoint

    async def list_approvals(request: Request, caller: Caller) -> Response:
        state = request.query_params.get("state")
        if state not in (None, "pending", "approved", "denied", "expired", "used"):
            raise _Refused(400, "admin.invalid", "unknown state")
        items = approvals.store.list(state)  # type: ignore[arg-type]
        return JSONResponse({"approvals": [{**a.public(), "url": approvals.page_url(a.id)} for a in items]})

    async def show_approval(request: Request, caller: Caller) -> Response:
        found = approvals.store.get(request.path_params["id"])
        if found is None:
            raise _Refused(404, "approval.unknown", "no such approval")
        return JSONResponse({**found.public(), "url": approvals.page_url(found.id)})

    def decide(approve: bool) -> Any:
        async def work(request: Request, caller: Caller) -> Response:
            data = await body(request)
            comment = data.get("comment", "")
            if not isinstance(comment, str):
                raise _Refused(400, "admin.invalid", "comment must be a string")
            decided = approvals.decide(request.path_params["id"], approve=approve, operator=caller,
                                       comment=comment, channel="admin")
            return JSONResponse(decided.public())
        return work

    async def target(request: Request) -> tuple[str, str, str]:
        data = await body(request)
        kind, value, reason = data.get("kind"), data.get("value", "*"), data.get("reason", "")
        if kind not in TARGET_KINDS or not isinstance(value, str) or not value or not isinstance(reason, str):
            raise _Refused(400, "admin.invalid", f"give kind (one of {', '.join(TARGET_KINDS)}) and value")
        return str(kind), "*" if kind == "all" else value, reason

    async def kill(request: Request, caller: Caller) -> Response:
        kind, value, reason = await target(request)
        await kills.kill(kind, value, reason=reason, by=caller)
        return JSONResponse({"killed": {"kind": kind, "value": value}})

    async def revive(request: Request, caller: Caller) -> Response:
        kind, value, _ = await target(request)
        lifted = await kills.revive(kind, value, by=caller)
        return JSONResponse({"revived": lifted, "kind": kind, "value": value})

    async def list_kills(request: Request, caller: Caller) -> Response:
        active = [k for k in await kills.kills() if k.kind in TARGET_KINDS]
        return JSONResponse({"kills": [{"kind": k.kind, "value": k.value, "reason": k.reason,
                                        "since": k.created_at, "by": k.created_by} for k in active]})

    return [
        Route("/admin/approvals", handler("approve", list_approvals), methods=["GET"]),
        Route("/admin/approvals/{id}", handler("approve", show_approval), methods=["GET"]),
        Route("/admin/approvals/{id}/approve", handler("approve", decide(True)), methods=["POST"]),
        Route("/admin/approvals/{id}/deny", handler("approve", decide(False)), methods=["POST"]),
        Route("/admin/kill", handler("kill", kill), methods=["POST"]),
        Route("/admin/revive", handler("kill", revive), methods=["POST"]),
        Route("/admin/kills", handler("kill", list_kills), methods=["GET"]),
    ]
