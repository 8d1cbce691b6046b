"""From a parsed request to a JSON-RPC reply, shared by the HTTP and stdio fronts."""

from __future__ import annotations

import logging
from typing import Any

from gatehold.errors import (
    GateholdError,
    HeaderMismatch,
    InputRequired,
    InternalFailure,
    InvalidParams,
    UnsupportedVersion,
)
from gatehold.front.jsonrpc import Request, error_for, result_message
from gatehold.gateway import MODERN_VERSION, Exchange, Gateway

log = logging.getLogger("gatehold.front")

PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"
_LIST_METHODS = frozenset({"tools/list", "prompts/list", "resources/list", "resources/templates/list",
                           "server/discover"})


def check_envelope(request: Request, header_version: str | None = None) -> str:
    """The modern per-request envelope's protocol version, or a protocol error.

    Rungs in order: the envelope is present; the ``MCP-Protocol-Version`` header (HTTP only)
    equals it; the version is one this gateway serves (-32022 names the ones it does).
    """
    meta = (request.params or {}).get("_meta")
    if not isinstance(meta, dict) or PROTOCOL_VERSION_KEY not in meta or CLIENT_CAPABILITIES_KEY not in meta:
        raise InvalidParams("missing per-request envelope",
                            public=f"params._meta must carry {PROTOCOL_VERSION_KEY} and {CLIENT_CAPABILITIES_KEY}")
    version = meta[PROTOCOL_VERSION_KEY]
    if header_version is not None and header_version != version:
        raise HeaderMismatch("MCP-Protocol-Version differs from the envelope",
                             public="MCP-Protocol-Version header does not match the request envelope")
    if version != MODERN_VERSION:
        raise UnsupportedVersion(f"requested {version!r}",
                                 data={"supported": [MODERN_VERSION], "requested": str(version)})
    return MODERN_VERSION


def modern_result(method: str, result: dict[str, Any], gateway: Gateway) -> dict[str, Any]:
    # Upstream results never carry resultType here (plain_result drops it); only the gateway's own
    # input_required answers do.
    out = {**result, "resultType": result.get("resultType", "complete")}
    if method in _LIST_METHODS:
        # Lists are filtered per principal, so no cache may share them.
        out["ttlMs"] = 0
        out["cacheScope"] = "private"
    meta = dict(out.get("_meta") or {})
    meta[SERVER_INFO_KEY] = gateway.server_info()
    out["_meta"] = meta
    return out


async def reply_to(gateway: Gateway, request: Request, ex: Exchange) -> dict[str, Any]:
    """The JSON-RPC reply for ``request``; refusals become error replies with a public message."""
    try:
        if request.method == "server/discover" and ex.modern:
            result = gateway.discover_result()
            gateway.auditor.request(correlation_id=ex.correlation_id, caller=ex.caller,
                                    method=request.method, decision="allow", reason="answered", outcome="ok")
        else:
            try:
                result = await gateway.handle(request.method, request.params, ex)
            except InputRequired as exc:
                if not ex.modern:
                    raise InternalFailure("input_required for a handshake-era client") from exc
                result = exc.result
        if ex.modern:
            result = modern_result(request.method, result, gateway)
        return result_message(request.id, result)
    except GateholdError as exc:
        return error_for(request.id, exc, ex.correlation_id)
    except Exception as exc:
        # Fail closed: anything unexpected is an error reply, never a half-checked forward.
        log.exception("unexpected failure answering %s", request.method)
        return error_for(request.id, InternalFailure(str(exc)), ex.correlation_id)
