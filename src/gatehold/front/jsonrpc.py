"""JSON-RPC 2.0 messages: parse with limits, build replies.

Parsing never trusts its input: a body that is not one well-formed JSON-RPC object raises a
``ProtocolError`` subclass with a short public message. Batches are refused (MCP removed them
in 2025-06-18).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gatehold.errors import GateholdError, InvalidRequest, ParseError

RequestId = str | int


@dataclass(frozen=True, slots=True)
class Request:
    id: RequestId
    method: str
    params: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Notification:
    method: str
    params: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Response:
    id: RequestId
    result: dict[str, Any] | None
    error: dict[str, Any] | None


Message = Request | Notification | Response


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests containers deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in node.values() if isinstance(child, dict | list))
        elif isinstance(node, list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in node if isinstance(child, dict | list))
    return False


def _valid_id(value: Any) -> bool:
    return (isinstance(value, str) and len(value) <= 256) or (
        isinstance(value, int) and not isinstance(value, bool) and -(2**53) <= value <= 2**53
    )


def parse_message(body: bytes | str, *, max_depth: int = 64) -> Message:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson also refuses nesting past its own recursion limit here.
        raise ParseError(f"body is not JSON: {exc}") from None
    if depth_exceeds(data, max_depth):
        raise InvalidRequest(f"JSON nests deeper than {max_depth}", public="JSON nesting too deep")
    return message_from(data)


def message_from(data: Any) -> Message:
    if isinstance(data, list):
        raise InvalidRequest("batch request", public="batch requests are not supported")
    if not isinstance(data, dict):
        raise InvalidRequest("body is not a JSON object", public="expected a JSON-RPC object")
    if data.get("jsonrpc") != "2.0":
        raise InvalidRequest("jsonrpc member is not '2.0'", public="expected jsonrpc: '2.0'")
    has_id = "id" in data
    if has_id and not _valid_id(data["id"]):
        raise InvalidRequest("id is not a string or integer", public="id must be a string or integer")
    if "method" in data:
        method, params = data["method"], data.get("params")
        if not isinstance(method, str) or not method or len(method) > 256:
            raise InvalidRequest("method is not a non-empty string", public="method must be a string")
        if params is not None and not isinstance(params, dict):
            raise InvalidRequest("params is not an object", public="params must be an object")
        extra = set(data) - {"jsonrpc", "id", "method", "params"}
        if extra:
            raise InvalidRequest(f"unexpected members {sorted(extra)}", public="unexpected members")
        return Request(data["id"], method, params) if has_id else Notification(method, params)
    if has_id and (("result" in data) != ("error" in data)):
        result, error = data.get("result"), data.get("error")
        if (result is not None and not isinstance(result, dict)) or (
            error is not None and not isinstance(error, dict)
        ):
            raise InvalidRequest("result/error is not an object", public="malformed response")
        return Response(data["id"], result, error)
    raise InvalidRequest("neither a request, a notification nor a response", public="not a JSON-RPC message")


def result_message(request_id: RequestId, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error_message(
    request_id: RequestId | None, code: int, message: str, data: Any = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def error_for(request_id: RequestId | None, exc: GateholdError, correlation_id: str) -> dict[str, Any]:
    """The client-facing error: public message, stable code and correlation id; never the detail."""
    data = {"code": exc.code, "correlationId": correlation_id, **exc.data}
    return error_message(request_id, exc.rpc_code, exc.public, data)


def dumps(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message)
