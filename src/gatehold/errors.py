"""Gatehold's error tree.

Every error carries a stable ``code`` (a dotted string operators can grep and alert on), a
JSON-RPC error number for the wire, an HTTP status for the transport, and a short ``public``
message that is safe to show a client. The ``detail`` stays server-side: it goes to the audit
record and the log, never to the client.

::

    GateholdError                      code                  json-rpc   http
    ├── ConfigError                    config.invalid        -          -
    ├── ProtocolError                  protocol.*            -32700..   400
    │   ├── ParseError                 protocol.parse        -32700     400
    │   ├── InvalidRequest             protocol.invalid      -32600     400
    │   ├── MethodNotFound             protocol.method       -32601     404
    │   ├── InvalidParams              protocol.params       -32602     400
    │   ├── HeaderMismatch             protocol.header       -32020     400
    │   ├── UnsupportedVersion         protocol.version      -32022     400
    │   └── RequestTooLarge            protocol.too_large    -32600     413
    ├── TransportRejected              transport.*           -          403/404/405/406/415
    ├── AuthenticationFailed           auth.*                -          401
    │   ├── CredentialMisplaced        auth.token_in_query   -          400
    │   ├── CredentialRevoked          auth.revoked          -          401
    │   └── AuthUnavailable            auth.unavailable      -          503
    ├── OutboundFailed                 outbound.*            -          -
    ├── Denied                         policy.* / args.*     -32010..   200
    │   ├── NotGranted                 policy.not_granted    -32010
    │   ├── InsufficientScope          auth.insufficient_scope -32010   403
    │   ├── UnknownTarget              policy.unknown        -32602
    │   ├── ArgumentsInvalid           args.schema           -32602
    │   ├── ConstraintViolated         args.constraint       -32011
    │   ├── OutputRejected             output.too_large      -32012
    │   │   ├── InjectionBlocked       output.injection      -32012
    │   │   └── ToolQuarantined        output.quarantined    -32012
    │   ├── FlowDenied                 flow.*                -32017
    │   ├── AuditUnavailable           audit.unavailable     -32013
    │   ├── ApprovalRejected           approval.*            -32015
    │   │   ├── ApprovalDenied         approval.denied       -32015
    │   │   └── ApprovalPending        approval.pending      -32015
    │   └── CallKilled                 kill.active           -32016
    ├── RequestStateInvalid            protocol.request_state -32602    400
    ├── InputRequired                  approval.input_required (a result, not an error, on the wire)
    ├── UpstreamFailed                 upstream.*            -32014     200
    ├── UpstreamRpcError               upstream.error        (theirs)   200
    └── InternalFailure                internal.error        -32603     200
"""

from __future__ import annotations

from typing import Any, ClassVar

# JSON-RPC numbers. MCP reserves -32000..-32002, -32020..-32022 and -32042; Gatehold's own
# denials use -32010..-32019, which no MCP revision assigns.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020
UNSUPPORTED_PROTOCOL_VERSION = -32022
POLICY_DENIED = -32010
CONSTRAINT_VIOLATED = -32011
OUTPUT_REJECTED = -32012
AUDIT_UNAVAILABLE = -32013
UPSTREAM_FAILED = -32014
APPROVAL_REJECTED = -32015
KILLED = -32016
FLOW_DENIED = -32017


class GateholdError(Exception):
    """Base of every error Gatehold raises on purpose."""

    code: ClassVar[str] = "gatehold.error"
    rpc_code: ClassVar[int] = INTERNAL_ERROR
    http_status: ClassVar[int] = 200
    default_public: ClassVar[str] = "request failed"

    def __init__(self, detail: str = "", *, public: str | None = None, data: dict[str, Any] | None = None):
        super().__init__(detail or self.default_public)
        self.detail = detail or self.default_public
        self.public = public or self.default_public
        self.data = data or {}


class ConfigError(GateholdError):
    """The configuration file is missing or invalid. ``problems`` lists one line per field."""

    code = "config.invalid"
    default_public = "invalid configuration"

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class ProtocolError(GateholdError):
    code = "protocol.error"
    rpc_code = INVALID_REQUEST
    http_status = 400
    default_public = "invalid request"


class ParseError(ProtocolError):
    code = "protocol.parse"
    rpc_code = PARSE_ERROR
    default_public = "parse error"


class InvalidRequest(ProtocolError):
    code = "protocol.invalid"
    rpc_code = INVALID_REQUEST
    default_public = "invalid request"


class MethodNotFound(ProtocolError):
    code = "protocol.method"
    rpc_code = METHOD_NOT_FOUND
    http_status = 404
    default_public = "method not found"


class InvalidParams(ProtocolError):
    code = "protocol.params"
    rpc_code = INVALID_PARAMS
    default_public = "invalid params"


class HeaderMismatch(ProtocolError):
    code = "protocol.header"
    rpc_code = HEADER_MISMATCH
    default_public = "header does not match the request body"


class UnsupportedVersion(ProtocolError):
    code = "protocol.version"
    rpc_code = UNSUPPORTED_PROTOCOL_VERSION
    default_public = "unsupported protocol version"


class RequestTooLarge(ProtocolError):
    code = "protocol.too_large"
    rpc_code = INVALID_REQUEST
    http_status = 413
    default_public = "request too large"


class TransportRejected(GateholdError):
    """Rejected at the HTTP layer before any JSON-RPC handling (origin, method, media type)."""

    code = "transport.rejected"
    http_status = 400
    default_public = "request rejected"

    def __init__(self, detail: str, *, status: int, code: str, public: str):
        super().__init__(detail, public=public)
        self.http_status = status  # type: ignore[misc]
        self.code = code  # type: ignore[misc]


class AuthenticationFailed(GateholdError):
    code = "auth.failed"
    http_status = 401
    default_public = "authentication required"

    def __init__(self, detail: str, *, code: str = "auth.failed"):
        super().__init__(detail)
        self.code = code  # type: ignore[misc]


class CredentialMisplaced(AuthenticationFailed):
    """A bearer token sent where OAuth 2.1 forbids it (the URL query); RFC 6750 ``invalid_request``."""

    http_status = 400
    default_public = "access tokens are accepted only in the Authorization header"

    def __init__(self, detail: str):
        super().__init__(detail, code="auth.token_in_query")


class CredentialRevoked(AuthenticationFailed):
    """A credential that verified but is on the revocation list. ``caller`` names it for the audit."""

    def __init__(self, detail: str, *, caller: Any):
        super().__init__(detail, code="auth.revoked")
        self.caller = caller


class AuthUnavailable(AuthenticationFailed):
    """The credential could not be checked (keys, introspection or revocation store unreachable).

    The request is refused, fail closed, with 503 rather than 401: the token may be good.
    """

    http_status = 503
    default_public = "authentication temporarily unavailable"

    def __init__(self, detail: str):
        super().__init__(detail, code="auth.unavailable")


class OutboundFailed(GateholdError):
    """An outbound identity fetch (JWKS, metadata, introspection, token endpoint) failed or was refused."""

    code = "outbound.failed"
    default_public = "identity provider unavailable"

    def __init__(self, detail: str, *, code: str = "outbound.failed"):
        super().__init__(detail)
        self.code = code  # type: ignore[misc]


class Denied(GateholdError):
    """A control refused the call. ``rule_id`` names the rule that decided."""

    code = "policy.denied"
    rpc_code = POLICY_DENIED
    default_public = "denied by policy"

    def __init__(self, detail: str = "", *, rule_id: str = "", public: str | None = None,
                 data: dict[str, Any] | None = None):
        super().__init__(detail, public=public, data=data)
        self.rule_id = rule_id
        self.audit: dict[str, Any] = {}  # server-side detail for the audit record (never sent to the client)


class NotGranted(Denied):
    code = "policy.not_granted"
    default_public = "not permitted"


class InsufficientScope(Denied):
    """The caller's token lacks every scope that grants the call; 403 with a step-up challenge."""

    code = "auth.insufficient_scope"
    http_status = 403
    default_public = "insufficient scope"

    def __init__(self, detail: str, *, scopes: tuple[str, ...], rule_id: str = "scopes"):
        super().__init__(detail, rule_id=rule_id, data={"requiredScopes": list(scopes)})
        self.scopes = scopes


class UnknownTarget(Denied):
    code = "policy.unknown"
    rpc_code = INVALID_PARAMS
    default_public = "unknown tool, prompt or resource"


class ArgumentsInvalid(Denied):
    code = "args.schema"
    rpc_code = INVALID_PARAMS
    default_public = "arguments do not match the tool's input schema"


class ConstraintViolated(Denied):
    code = "args.constraint"
    rpc_code = CONSTRAINT_VIOLATED
    default_public = "arguments violate policy"


class OutputRejected(Denied):
    code = "output.too_large"
    rpc_code = OUTPUT_REJECTED
    default_public = "result exceeds the size limit"


class InjectionBlocked(OutputRejected):
    """The result carried a suspected prompt injection and policy says deny."""

    code = "output.injection"
    default_public = "the result was withheld: it looks like a prompt injection"


class ToolQuarantined(OutputRejected):
    """The tool's listed metadata was flagged; it is hidden and refused until a human accepts it."""

    code = "output.quarantined"
    default_public = "this tool is quarantined until an operator accepts its definition"


class FlowDenied(Denied):
    """A data-flow rule forbids this call after what the session has read (``flow.denied``), or the
    flow state could not be kept (``flow.unavailable``)."""

    code = "flow.denied"
    rpc_code = FLOW_DENIED
    default_public = "denied by a data-flow rule"

    def __init__(self, detail: str = "", *, rule_id: str = "", code: str = "flow.denied",
                 public: str | None = None):
        super().__init__(detail, rule_id=rule_id, public=public)
        self.code = code  # type: ignore[misc]


class AuditUnavailable(Denied):
    code = "audit.unavailable"
    rpc_code = AUDIT_UNAVAILABLE
    default_public = "audit log unavailable; calls are refused"


class ApprovalRejected(Denied):
    """An approval could not be created, decided or used; ``code`` says why (approval.self, .mismatch, ...)."""

    code = "approval.rejected"
    rpc_code = APPROVAL_REJECTED
    default_public = "approval not valid for this call"

    def __init__(self, detail: str, *, code: str = "approval.rejected", rule_id: str = "approval",
                 public: str | None = None, data: dict[str, Any] | None = None):
        super().__init__(detail, rule_id=rule_id, public=public, data=data)
        self.code = code  # type: ignore[misc]


class ApprovalDenied(ApprovalRejected):
    """A human denied the call, or it was denied for them (kill switch)."""

    default_public = "a human approver denied this call"

    def __init__(self, detail: str, *, approval_id: str, rule_id: str = "approval"):
        super().__init__(detail, code="approval.denied", rule_id=rule_id,
                         data={"approvalId": approval_id})


class ApprovalPending(ApprovalRejected):
    """No decision within the wait; the public message names the request and the page to visit."""

    def __init__(self, detail: str, *, approval_id: str, url: str, state: str = "pending",
                 rule_id: str = "approval"):
        public = (f"this call needs a human approval that was not given in time (approval {approval_id}, "
                  f"{state}); an approver can decide at {url}, then retry the call")
        super().__init__(detail, code=f"approval.{state}", rule_id=rule_id, public=public,
                         data={"approvalId": approval_id, "approvalUrl": url})


class CallKilled(Denied):
    code = "kill.active"
    rpc_code = KILLED
    default_public = "stopped by the kill switch"


class RequestStateInvalid(ProtocolError):
    """A 2026-07-28 ``requestState`` that is forged, altered, replayed, expired or someone else's."""

    code = "protocol.request_state"
    rpc_code = INVALID_PARAMS
    default_public = "Invalid or expired requestState"


class InputRequired(GateholdError):
    """Not a failure: the call waits for a human, and a 2026-07-28 client gets ``result`` to retry with."""

    code = "approval.input_required"
    default_public = "input required"

    def __init__(self, detail: str, *, result: dict[str, Any]):
        super().__init__(detail)
        self.result = result


class UpstreamFailed(GateholdError):
    code = "upstream.failed"
    rpc_code = UPSTREAM_FAILED
    default_public = "upstream server unavailable"

    def __init__(self, detail: str = "", *, code: str = "upstream.failed", public: str | None = None):
        super().__init__(detail, public=public)
        self.code = code  # type: ignore[misc]


class UpstreamRpcError(GateholdError):
    """The upstream answered with a JSON-RPC error; its code and (bounded) message pass through."""

    code = "upstream.error"
    default_public = "upstream error"

    def __init__(self, error: dict[str, Any]):
        raw_code = error.get("code")
        message = error.get("message")
        text = message[:500] if isinstance(message, str) else "upstream error"
        super().__init__(f"upstream error {raw_code}: {text}", public=text)
        self.rpc_code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else -32603  # type: ignore[misc]


class InternalFailure(GateholdError):
    code = "internal.error"
    rpc_code = INTERNAL_ERROR
    default_public = "internal error; the call was not forwarded"
