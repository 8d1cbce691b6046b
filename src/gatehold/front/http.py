"""Streamable HTTP front: one endpoint for the handshake era (2025-06-18, 2025-11-25) and 2026-07-28.

Order of checks on every request, each failing closed with an audit record:
Origin/Host → method → no token in the query → authentication (and revocation) → media types →
body size → JSON-RPC parse → era rules. RFC 9728 metadata is served beside ``/mcp``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gatehold.approval.operators import OperatorAuthenticator
from gatehold.approval.page import approval_routes
from gatehold.auth.authenticator import Authenticator
from gatehold.auth.challenge import challenge, metadata_path, protected_resource_metadata
from gatehold.call import Caller
from gatehold.config import Config
from gatehold.errors import (
    AuthenticationFailed,
    CredentialMisplaced,
    CredentialRevoked,
    GateholdError,
    HeaderMismatch,
    InvalidRequest,
    ProtocolError,
    RequestTooLarge,
    TransportRejected,
)
from gatehold.front.admin import admin_routes
from gatehold.front.dispatch import check_envelope, reply_to
from gatehold.front.jsonrpc import (
    Message,
    Notification,
    Request,
    Response,
    dumps,
    error_for,
    error_message,
    parse_message,
)
from gatehold.front.sessions import Session, SessionStore
from gatehold.gateway import LEGACY_VERSIONS, MODERN_VERSION, Exchange, Gateway, new_correlation_id

log = logging.getLogger("gatehold.http")

NAME_BEARING = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
ROUTING_HEADERS = (b"mcp-protocol-version", b"mcp-method", b"mcp-name")
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-transform"),
               (b"x-accel-buffering", b"no")]
_PING_SECONDS = 15.0
_SWEEP_SECONDS = 1.0
_MODERN_STATUS = {-32700: 400, -32600: 400, -32602: 400, -32020: 400, -32021: 400, -32022: 400,
                  -32601: 404}


def decode_header_value(value: str | None) -> str | None:
    """Undo the ``=?base64?...?=`` wrapping clients use for non-ASCII header values."""
    if value is None or not (value.startswith("=?base64?") and value.endswith("?=")):
        return value
    payload = value[len("=?base64?"):-2]
    try:
        raw = base64.b64decode(payload, validate=True)
        if base64.b64encode(raw).decode() != payload:
            return None
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None  # a corrupt header never matches a body value


def _sse(message: dict[str, Any]) -> bytes:
    return b"event: message\r\ndata: " + dumps(message) + b"\r\n\r\n"


class McpEndpoint:
    """The raw ASGI endpoint at ``/mcp``."""

    def __init__(self, gateway: Gateway, authenticator: Authenticator, config: Config):
        self.gateway = gateway
        self.auth = authenticator
        self.settings = config.gateway
        self.resource = config.gateway.resource if config.auth.oauth is not None else None
        self.initial_scopes = config.auth.oauth.initial_scopes if config.auth.oauth is not None else ()
        self.sessions = SessionStore(idle_seconds=self.settings.session_idle_seconds,
                                     max_sessions=self.settings.max_sessions)
        gateway.list_changed_listeners.append(self._broadcast_list_changed)
        self._sweeper: asyncio.Task[None] | None = None

    async def sweep_sessions(self, interval: float = _SWEEP_SECONDS) -> None:
        """Close sessions whose credential was revoked or has expired, in-flight calls included."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self._sweep_once(time.time())
            except Exception:
                log.exception("session sweep failed; retrying")  # each request still checks revocation

    async def _sweep_once(self, now: float) -> None:
        for session in self.sessions.all():
            caller = session.caller
            try:
                revoked = await self.auth.revoked(caller)
            except AuthenticationFailed:
                revoked = True  # fail closed: a session whose standing cannot be checked ends
            expired = caller.expires_at is not None and caller.expires_at < now
            if revoked or expired:
                self.sessions.drop(session.id)
                self.gateway.auditor.request(
                    correlation_id=new_correlation_id(), caller=caller, method=None, decision="deny",
                    reason="session closed: credential " + ("revoked" if revoked else "expired"),
                    code="auth.revoked" if revoked else "auth.expired")

    # -- the ASGI entry ---------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[bytes, bytes] = {}
        duplicated: bytes | None = None
        for k, v in scope["headers"]:
            if k in headers and k in ROUTING_HEADERS:
                duplicated = k
            headers[k] = v
        correlation_id = new_correlation_id()
        caller: Caller | None = None
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = self.gateway.in_background(self.sweep_sessions())
        try:
            self._check_origin(headers)
            method = scope["method"]
            if method not in ("POST", "GET", "DELETE"):
                raise TransportRejected(f"HTTP {method}", status=405, code="transport.method",
                                        public="method not allowed")
            if any(k == "access_token" for k, _ in parse_qsl(scope.get("query_string", b"").decode("latin-1"))):
                # OAuth 2.1: bearer tokens travel in the Authorization header only (they leak from URLs).
                raise CredentialMisplaced("access_token in the query string")
            tls = scope.get("extensions", {}).get("tls")
            caller = await self.auth.authenticate(
                headers.get(b"authorization", b"").decode("latin-1") or None, tls)
            if method == "GET":
                await self._get_stream(scope, receive, send, headers, caller, correlation_id)
                return
            if method == "DELETE":
                await self._delete(send, headers, caller, correlation_id)
                return
            self._check_media(headers)
            body = await self._read_body(receive, headers)
            message = parse_message(body, max_depth=self.settings.max_json_depth)
        except GateholdError as exc:
            if isinstance(exc, CredentialRevoked):
                caller = exc.caller  # the audit names whose revoked credential was refused
            await self._reject(send, exc, correlation_id, caller)
            return
        if duplicated is not None:
            rid = message.id if isinstance(message, Request) else None
            await self._reject(send, HeaderMismatch(f"{duplicated.decode()} header appears more than once"),
                               correlation_id, caller, request_id=rid)
            return
        version = headers.get(b"mcp-protocol-version", b"").decode("latin-1")
        params = message.params if isinstance(message, Request | Notification) else None
        meta = (params or {}).get("_meta")
        has_envelope = isinstance(meta, dict) and "io.modelcontextprotocol/protocolVersion" in meta
        modern = version == MODERN_VERSION or (version not in LEGACY_VERSIONS and bool(version)) or (
            not version and has_envelope and isinstance(message, Request))
        if modern:
            await self._modern(scope, receive, send, headers, message, caller, correlation_id)
        else:
            await self._legacy(scope, receive, send, headers, message, caller, correlation_id)

    # -- checks -----------------------------------------------------------------------------

    def _check_origin(self, headers: dict[bytes, bytes]) -> None:
        origin = headers.get(b"origin")
        if origin is not None:
            text = origin.decode("latin-1")
            host = (urlsplit(text).hostname or "") if text != "null" else ""
            if text not in self.settings.allowed_origins and host not in LOOPBACK_HOSTS:
                raise TransportRejected(f"foreign Origin {text!r}", status=403, code="transport.origin",
                                        public="origin not allowed")
        if self.settings.is_loopback:
            # A loopback gateway answers only loopback Host names: DNS rebinding stops here.
            host_header = headers.get(b"host", b"").decode("latin-1")
            name = host_header.rsplit(":", 1)[0] if not host_header.startswith("[") else \
                host_header.split("]")[0] + "]"
            if name not in LOOPBACK_HOSTS:
                raise TransportRejected(f"Host {host_header!r} on a loopback gateway", status=403,
                                        code="transport.host", public="host not allowed")

    def _check_media(self, headers: dict[bytes, bytes]) -> None:
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype != b"application/json":
            raise TransportRejected(f"Content-Type {ctype!r}", status=415, code="transport.media",
                                    public="Content-Type must be application/json")
        accept = headers.get(b"accept", b"*/*").lower()
        if b"application/json" not in accept and b"text/event-stream" not in accept and b"*/*" not in accept:
            raise TransportRejected(f"Accept {accept!r}", status=406, code="transport.accept",
                                    public="Accept must allow application/json or text/event-stream")

    async def _read_body(self, receive: Receive, headers: dict[bytes, bytes]) -> bytes:
        limit = self.settings.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise RequestTooLarge(f"Content-Length {declared!r} over {limit}")
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                raise InvalidRequest("client disconnected mid-body")
            chunk = event.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(f"body over {limit} bytes")
            chunks.append(chunk)
            if not event.get("more_body"):
                return b"".join(chunks)

    async def _reject(self, send: Send, exc: GateholdError, correlation_id: str, caller: Caller | None,
                      request_id: Any = None, method: str | None = None) -> None:
        self.gateway.auditor.request(correlation_id=correlation_id, caller=caller, method=method,
                                     decision="deny", reason=exc.detail, code=exc.code)
        status = exc.http_status
        extra: list[tuple[bytes, bytes]] = []
        if isinstance(exc, AuthenticationFailed) and exc.http_status != 503:
            if isinstance(exc, CredentialMisplaced):
                error: str | None = "invalid_request"
            else:
                error = None if exc.code == "auth.missing" else "invalid_token"
            header = challenge(resource=self.resource, scopes=self.initial_scopes, error=error, code=exc.code)
            extra.append((b"www-authenticate", header.encode()))
        elif exc.http_status == 503:
            extra.append((b"retry-after", b"5"))
        if isinstance(exc, ProtocolError):
            await self._json(send, error_for(request_id, exc, correlation_id), status, extra)
        else:
            body = {"error": exc.code, "message": exc.public, "correlationId": correlation_id}
            await self._json(send, body, status, extra)

    @staticmethod
    async def _json(send: Send, body: dict[str, Any], status: int = 200,
                    extra: list[tuple[bytes, bytes]] | None = None) -> None:
        payload = dumps(body)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                   *(extra or [])]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    async def _empty(send: Send, status: int, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", b"0"), *(extra or [])]})
        await send({"type": "http.response.body", "body": b""})

    # -- 2026-07-28 ---------------------------------------------------------------------------

    async def _modern(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes],
                      message: Message, caller: Caller, correlation_id: str) -> None:
        if isinstance(message, Notification):
            await self._empty(send, 202)  # no client notification carries state at this revision
            return
        if isinstance(message, Response):
            await self._reject(send, InvalidRequest("response posted to a stateless endpoint"),
                               correlation_id, caller)
            return
        try:
            version = headers.get(b"mcp-protocol-version", b"").decode("latin-1")
            if not version:
                raise HeaderMismatch("no MCP-Protocol-Version header",
                                     public="MCP-Protocol-Version header does not match the request envelope")
            self._check_routing(headers, message)
            check_envelope(message, version)
        except ProtocolError as exc:
            self.gateway.auditor.request(correlation_id=correlation_id, caller=caller, method=message.method,
                                         decision="deny", reason=exc.detail, code=exc.code)
            await self._json(send, error_for(message.id, exc, correlation_id), exc.http_status)
            return
        ex_factory: Callable[[Any], Exchange] = lambda emit: Exchange(  # noqa: E731
            caller, correlation_id, modern=True, emit=emit)
        await self._exchange(receive, send, message, ex_factory, modern=True)

    def _check_routing(self, headers: dict[bytes, bytes], request: Request) -> None:
        if headers.get(b"mcp-method", b"").decode("latin-1") != request.method:
            raise HeaderMismatch("Mcp-Method does not match the body", public="Mcp-Method header does not "
                                 "match the request body's method")
        key = NAME_BEARING.get(request.method)
        if key is not None:
            body_value = (request.params or {}).get(key)
            header = headers.get(b"mcp-name")
            if body_value is not None and decode_header_value(
                    header.decode("latin-1") if header is not None else None) != body_value:
                raise HeaderMismatch("Mcp-Name does not match the body",
                                     public=f"Mcp-Name header does not match the request body's {key!r}")

    # -- handshake era ------------------------------------------------------------------------

    async def _legacy(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes],
                      message: Message, caller: Caller, correlation_id: str) -> None:
        if isinstance(message, Request) and message.method == "initialize":
            await self._initialize(send, message, caller, correlation_id)
            return
        sid = headers.get(b"mcp-session-id", b"").decode("latin-1")
        rid = message.id if isinstance(message, Request) else None
        if not sid:
            await self._reject(send, InvalidRequest("no Mcp-Session-Id", public="missing Mcp-Session-Id"),
                               correlation_id, caller, request_id=rid)
            return
        session = self.sessions.get(sid, caller)
        if session is None:
            self.gateway.auditor.request(correlation_id=correlation_id, caller=caller, method=None,
                                         decision="deny", reason="unknown, expired or foreign session",
                                         code="session.unknown")
            await self._json(send, error_message(rid, -32001, "session not found"), 404)
            return
        if isinstance(message, Response):
            reply = {"result": message.result} if message.error is None else {"error": message.error}
            session.requests.answer(message.id, reply)
            await self._empty(send, 202)
            return
        if isinstance(message, Notification):
            if message.method == "notifications/cancelled":
                target = (message.params or {}).get("requestId")
                task = session.inflight.get(target)
                if task is not None:
                    task.cancel()
            await self._empty(send, 202)
            return

        def ex_factory(emit: Any) -> Exchange:
            async def relay(method: str, params: dict[str, Any] | None) -> dict[str, Any]:
                return await session.requests.relay(method, params, emit)

            return Exchange(caller, correlation_id, modern=False, emit=emit, client_request=relay,
                            url_elicitation=session.requests.url_elicitation, session_id=session.id)

        await self._exchange(receive, send, message, ex_factory, modern=False, session=session,
                             extra=[(b"mcp-session-id", session.id.encode())])

    async def _initialize(self, send: Send, message: Request, caller: Caller, correlation_id: str) -> None:
        params = message.params or {}
        caps = params.get("capabilities")
        session = self.sessions.create(caller, str(params.get("protocolVersion", "")),
                                       caps if isinstance(caps, dict) else {})
        if session is None:
            exc = TransportRejected("session limit reached", status=503, code="session.limit",
                                    public="too many sessions")
            await self._reject(send, exc, correlation_id, caller)
            return
        result = self.gateway.initialize_result(params.get("protocolVersion"))
        session.protocol_version = result["protocolVersion"]
        self.gateway.auditor.request(correlation_id=correlation_id, caller=caller, method="initialize",
                                     decision="allow", reason="session opened", outcome="ok",
                                     detail={"protocolVersion": session.protocol_version})
        await self._json(send, {"jsonrpc": "2.0", "id": message.id, "result": result}, 200,
                         [(b"mcp-session-id", session.id.encode())])

    async def _get_stream(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes],
                          caller: Caller, correlation_id: str) -> None:
        sid = headers.get(b"mcp-session-id", b"").decode("latin-1")
        session = self.sessions.get(sid, caller) if sid else None
        if session is None or b"text/event-stream" not in headers.get(b"accept", b""):
            await self._empty(send, 405 if session is None and not sid else 404 if session is None else 406)
            return
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        session.stream = queue
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*SSE_HEADERS, (b"mcp-session-id", session.id.encode())]})
        gone = asyncio.ensure_future(self._wait_disconnect(receive))
        ended = asyncio.ensure_future(session.closed.wait())
        try:
            while not gone.done() and not ended.done():
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, gone, ended}, timeout=_PING_SECONDS,
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    await send({"type": "http.response.body", "body": _sse(getter.result()), "more_body": True})
                else:
                    getter.cancel()
                    if not gone.done() and not ended.done():
                        await send({"type": "http.response.body", "body": b": ping\r\n\r\n", "more_body": True})
            if ended.done() and not gone.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()
            ended.cancel()
            if session.stream is queue:
                session.stream = None

    async def _delete(self, send: Send, headers: dict[bytes, bytes], caller: Caller,
                      correlation_id: str) -> None:
        sid = headers.get(b"mcp-session-id", b"").decode("latin-1")
        session = self.sessions.get(sid, caller) if sid else None
        if session is None:
            await self._empty(send, 404)
            return
        self.sessions.drop(session.id)
        self.gateway.auditor.request(correlation_id=correlation_id, caller=caller, method="DELETE",
                                     decision="allow", reason="session closed", outcome="ok")
        await self._empty(send, 200)

    async def _broadcast_list_changed(self, kind: str) -> None:
        note = {"jsonrpc": "2.0", "method": f"notifications/{kind}/list_changed"}
        for session in self.sessions.all():
            if session.stream is not None and not session.stream.full():
                session.stream.put_nowait(note)

    # -- running one request ------------------------------------------------------------------

    @staticmethod
    async def _wait_disconnect(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def _exchange(self, receive: Receive, send: Send, request: Request,
                        ex_factory: Callable[[Any], Exchange], *, modern: bool,
                        session: Session | None = None,
                        extra: list[tuple[bytes, bytes]] | None = None) -> None:
        """Run one request. The reply is JSON unless something must be streamed first, then SSE.

        If the client goes away (or, in a session, cancels), the call is cancelled: the upstream
        is told, and nothing more is sent.
        """
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def emit(message: dict[str, Any]) -> None:
            await outbox.put(message)

        ex = ex_factory(emit)
        work = asyncio.ensure_future(reply_to(self.gateway, request, ex))
        if session is not None:
            session.inflight[request.id] = work
        gone = asyncio.ensure_future(self._wait_disconnect(receive))
        streaming = False
        try:
            while True:
                getter = asyncio.ensure_future(outbox.get())
                done, _ = await asyncio.wait({work, gone, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    if not streaming:
                        streaming = True
                        await send({"type": "http.response.start", "status": 200,
                                    "headers": [*SSE_HEADERS, *(extra or [])]})
                    await send({"type": "http.response.body", "body": _sse(getter.result()), "more_body": True})
                    continue
                getter.cancel()
                if gone in done and not work.done():
                    work.cancel()
                    return
                break
            try:
                reply = work.result()
            except asyncio.CancelledError:
                reply = error_message(request.id, -32800, "request cancelled")
            while not outbox.empty() and streaming:
                await send({"type": "http.response.body", "body": _sse(outbox.get_nowait()), "more_body": True})
            if streaming:
                await send({"type": "http.response.body", "body": _sse(reply), "more_body": False})
            else:
                status, headers = 200, list(extra or [])
                error = reply.get("error")
                data = error.get("data") if isinstance(error, dict) else None
                if isinstance(data, dict) and data.get("code") == "auth.insufficient_scope":
                    # Step-up: 403 with every scope that would grant the call, in both eras.
                    status = 403
                    scopes = tuple(str(x) for x in data.get("requiredScopes", ()))
                    headers.append((b"www-authenticate", challenge(
                        resource=self.resource, scopes=scopes, error="insufficient_scope").encode()))
                elif modern and isinstance(error, dict) and isinstance(error.get("code"), int):
                    status = _MODERN_STATUS.get(error["code"], 200)
                await self._json(send, reply, status, headers)
        finally:
            gone.cancel()
            if not work.done():
                work.cancel()
            if session is not None:
                session.inflight.pop(request.id, None)


def build_app(gateway: Gateway, authenticator: Authenticator, config: Config,
              on_startup: list[Callable[[], Awaitable[None]]] | None = None,
              on_shutdown: list[Callable[[], Awaitable[None]]] | None = None) -> Starlette:
    endpoint = McpEndpoint(gateway, authenticator, config)
    started = time.time()
    metadata = protected_resource_metadata(config)

    async def resource_metadata(request: StarletteRequest) -> JSONResponse:
        if metadata is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        return JSONResponse(metadata, headers={"cache-control": "max-age=300"})

    async def health(request: StarletteRequest) -> JSONResponse:
        healthy = gateway.auditor.log.healthy
        body = {"status": "ok" if healthy else "audit-unhealthy", "uptime": round(time.time() - started)}
        return JSONResponse(body, status_code=200 if healthy else 503)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        for hook in on_startup or []:
            await hook()
        yield
        for hook in on_shutdown or []:
            await hook()

    well_known = {"/.well-known/oauth-protected-resource"}
    if config.gateway.resource is not None:
        well_known.add(metadata_path(config.gateway.resource))
    operators = OperatorAuthenticator(config.operators)
    # Operators' channels: the approval page (its own login) and the admin API (operator keys).
    human = [*approval_routes(gateway.approvals, operators, secure_cookies=config.gateway.tls is not None),
             *admin_routes(gateway.approvals, gateway.kills, operators)]
    app = Starlette(routes=[Route("/mcp", endpoint, methods=["GET", "POST", "DELETE", "PUT", "PATCH"]),
                            Route("/healthz", health, methods=["GET"]),
                            *(Route(path, resource_metadata, methods=["GET"]) for path in sorted(well_known)),
                            *human],
                    lifespan=lifespan)
    app.state.endpoint = endpoint
    return app
