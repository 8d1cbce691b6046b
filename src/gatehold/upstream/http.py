"""An upstream MCP server reached over Streamable HTTP, in either protocol era.

Modern (2026-07-28): every request is a self-contained POST carrying the protocol envelope in
``params._meta`` and routing headers; there is no handshake and no session. Legacy
(2024-11-05 .. 2025-11-25): ``initialize`` opens a session (``Mcp-Session-Id``) that every later
request carries. The gateway's own credential for the upstream (``UpstreamCredential``) is the
only one ever sent: a caller's bearer token never reaches an upstream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from collections.abc import Mapping
from functools import partial
from typing import Any

import httpx
import orjson

from gatehold.call import Caller
from gatehold.config import HttpUpstream
from gatehold.errors import UpstreamFailed
from gatehold.upstream.base import (
    CLIENT_INFO,
    LATEST_LEGACY_VERSION,
    LEGACY_VERSIONS,
    MODERN_VERSION,
    NotificationHandler,
    Pending,
    RequestRouter,
    ServerRequestHandler,
    failed,
    reply_of,
)
from gatehold.upstream.credentials import UpstreamCredential

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 64 * 1024
HANDSHAKE_TIMEOUT_SECONDS = 30.0
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=30.0, pool=10.0)

META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"
NAME_PARAM = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
JSON_AND_SSE = "application/json, text/event-stream"
RESERVED_HEADERS = frozenset({
    "accept", "content-type", "content-length", "host", "authorization", "proxy-authorization", "cookie",
    "mcp-protocol-version", "mcp-method", "mcp-name", "mcp-session-id", "last-event-id",
})
UNAVAILABLE_STATUSES = frozenset({401, 403, 407, 408, 429})

_HEADER_SAFE = re.compile(r"[\x20-\x7e]*")
_LINE_END = re.compile(rb"\r\n|\r|\n")


def header_value(value: str) -> str:
    """A value as sent in an ``Mcp-Name`` header: as is when safe, else ``=?base64?...?=``."""
    looks_encoded = value.startswith("=?base64?") and value.endswith("?=")
    if _HEADER_SAFE.fullmatch(value) and value == value.strip() and not looks_encoded:
        return value
    return f"=?base64?{base64.b64encode(value.encode('utf-8')).decode('ascii')}?="


class SseDecoder:
    """Incremental ``text/event-stream`` parser yielding each event's data; one event is capped."""

    def __init__(self, max_event_bytes: int = MAX_MESSAGE_BYTES):
        self._max = max_event_bytes
        self._buf = bytearray()
        self._data: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[str]:
        self._buf += chunk
        events: list[str] = []
        pos = 0
        while (match := _LINE_END.search(self._buf, pos)) is not None:
            if match.group() == b"\r" and match.end() == len(self._buf):
                break  # may be the first half of a \r\n split across chunks
            self._line(bytes(self._buf[pos:match.start()]), events)
            pos = match.end()
        del self._buf[:pos]
        if len(self._buf) > self._max:
            raise failed("upstream.protocol", f"SSE line exceeds {self._max} bytes")
        return events

    def _line(self, line: bytes, events: list[str]) -> None:
        if not line:
            if self._data:
                events.append(b"\n".join(self._data).decode("utf-8", "replace"))
            self._data, self._size = [], 0
        elif not line.startswith(b":"):
            name, _, value = line.partition(b":")
            if name == b"data":
                value = value.removeprefix(b" ")
                self._size += len(value) + 1
                if self._size > self._max:
                    raise failed("upstream.protocol", f"SSE event exceeds {self._max} bytes")
                self._data.append(value)


class HttpUpstreamClient:
    """One MCP server behind a Streamable HTTP endpoint."""

    def __init__(
        self,
        name: str,
        cfg: HttpUpstream,
        *,
        credential: UpstreamCredential | None,
        on_event: NotificationHandler,
        client: httpx.AsyncClient | None = None,
        client_capabilities: Mapping[str, Any] | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        handshake_timeout: float = HANDSHAKE_TIMEOUT_SECONDS,
        listen: bool = True,
    ):
        self.name = name
        self.protocol_version = ""
        self.server_info: dict[str, Any] = {}
        self.capabilities: dict[str, Any] = {}
        self._cfg = cfg
        self._credential = credential
        self._on_event = on_event
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(follow_redirects=False, timeout=DEFAULT_TIMEOUT)
        self._client_capabilities = dict(client_capabilities or {})
        self._max = max_message_bytes
        self._handshake_timeout = handshake_timeout
        self._listen_enabled = listen
        self._log = logging.getLogger(f"gatehold.upstream.{name}")
        self._router = RequestRouter(self._log)
        self._init_lock = asyncio.Lock()
        self._modern = False
        self._session_id: str | None = None
        self._listener: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    @property
    def session_id(self) -> str | None:
        """The legacy session id, if the upstream assigned one."""
        return self._session_id

    async def start(self) -> None:
        if self._closed:
            raise failed("upstream.unavailable", "client is closed")
        try:
            if not (self._cfg.protocol in ("auto", MODERN_VERSION) and await self._discover()):
                await self._initialize()
        except UpstreamFailed as exc:
            if exc.code in ("upstream.unavailable", "upstream.credential"):
                raise
            raise failed("upstream.unavailable", f"handshake with {self.name} failed: {exc.detail}") from None
        self._started = True

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        timeout: float,  # noqa: ASYNC109 - the interface's per-call deadline
        on_server_request: ServerRequestHandler | None = None,
        on_notification: NotificationHandler | None = None,
        caller: Caller | None = None,
    ) -> dict[str, Any]:
        """``caller`` picks the credential (token exchange acts on its behalf); None is the gateway itself."""
        if not self._started or self._closed:
            raise failed("upstream.unavailable", f"upstream {self.name} is not connected")
        return await self._call(method, params, timeout, on_server_request, on_notification, caller=caller)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
        if not self._modern and self._session_id is not None:
            with contextlib.suppress(httpx.HTTPError, UpstreamFailed):
                headers = await self._headers("", None, modern=False, caller=None)
                await self._client.delete(self._cfg.url, headers=headers, timeout=5.0)
        await self._router.aclose_background()
        if self._owns_client:
            await self._client.aclose()

    # -- handshakes -------------------------------------------------------------------------

    async def _discover(self) -> bool:
        """Probe ``server/discover``; True when the upstream speaks the modern era."""
        required = self._cfg.protocol == MODERN_VERSION
        try:
            reply = await self._call("server/discover", None, self._handshake_timeout, None, None,
                                     modern=True)
        except UpstreamFailed as exc:
            if required or exc.code != "upstream.protocol":
                raise
            return False  # an HTTP 4xx without a JSON-RPC body: not a modern server
        result = reply.get("result")
        versions = result.get("supportedVersions") if result is not None else None
        if not isinstance(versions, list) or MODERN_VERSION not in versions:
            if required:
                raise failed("upstream.protocol", f"server/discover did not offer {MODERN_VERSION}: {reply}")
            return False
        assert result is not None
        meta = result.get("_meta")
        info = meta.get(META_SERVER_INFO) if isinstance(meta, dict) else result.get("serverInfo")
        capabilities = result.get("capabilities")
        self._modern = True
        self.protocol_version = MODERN_VERSION
        self.server_info = info if isinstance(info, dict) else {}
        self.capabilities = capabilities if isinstance(capabilities, dict) else {}
        return True

    async def _initialize(self) -> None:
        offered = self._cfg.protocol if self._cfg.protocol in LEGACY_VERSIONS else LATEST_LEGACY_VERSION
        reply = await self._call("initialize", {
            "protocolVersion": offered,
            "capabilities": self._client_capabilities,
            "clientInfo": CLIENT_INFO,
        }, self._handshake_timeout, None, None, modern=False)
        result = reply.get("result")
        if result is None:
            raise failed("upstream.protocol", f"initialize was refused: {reply.get('error')}")
        version = result.get("protocolVersion")
        if version not in LEGACY_VERSIONS:
            raise failed("upstream.protocol", f"unsupported protocol version {version!r}")
        self._modern = False
        self.protocol_version = str(version)
        info, capabilities = result.get("serverInfo"), result.get("capabilities")
        self.server_info = info if isinstance(info, dict) else {}
        self.capabilities = capabilities if isinstance(capabilities, dict) else {}
        await self._notify("notifications/initialized", None)
        if self._listen_enabled and self._session_id is not None:
            if self._listener is not None:
                self._listener.cancel()
            self._listener = self._router.spawn(self._listen())

    async def _renew_session(self, stale: str) -> None:
        async with self._init_lock:
            if self._session_id == stale:
                self._log.info("upstream %s: session expired; initializing a new one", self.name)
                await self._initialize()

    # -- requests -----------------------------------------------------------------------------

    async def _headers(self, method: str, params: dict[str, Any] | None, *, modern: bool,
                       caller: Caller | None) -> dict[str, str]:
        headers = {k: v for k, v in self._cfg.headers.items() if k.lower() not in RESERVED_HEADERS}
        headers["Accept"] = JSON_AND_SSE
        headers["Content-Type"] = "application/json"
        if self._credential is not None:
            authorization = await self._credential.authorization(caller)
            if caller is not None and caller.token and authorization.partition(" ")[2] == caller.token:
                # fail closed: the caller's own token is never forwarded to an upstream.
                raise failed("upstream.credential", f"credential for {self.name} would forward the caller's token")
            headers["Authorization"] = authorization
        if modern:
            headers["MCP-Protocol-Version"] = MODERN_VERSION
            headers["Mcp-Method"] = method
            key = NAME_PARAM.get(method)
            value = params.get(key) if key is not None and params is not None else None
            if isinstance(value, str):
                headers["Mcp-Name"] = header_value(value)
        elif method != "initialize":
            if self.protocol_version:
                headers["MCP-Protocol-Version"] = self.protocol_version
            if self._session_id is not None:
                headers["Mcp-Session-Id"] = self._session_id
        return headers

    def _envelope(self, params: dict[str, Any] | None) -> dict[str, Any]:
        meta = params.get("_meta") if params is not None else None
        return {**(params or {}), "_meta": {
            **(meta if isinstance(meta, dict) else {}),
            META_PROTOCOL_VERSION: MODERN_VERSION,
            META_CLIENT_CAPABILITIES: self._client_capabilities,
            META_CLIENT_INFO: CLIENT_INFO,
        }}

    async def _call(
        self,
        method: str,
        params: dict[str, Any] | None,
        timeout: float,  # noqa: ASYNC109 - the per-call deadline
        on_server_request: ServerRequestHandler | None,
        on_notification: NotificationHandler | None,
        *,
        modern: bool | None = None,
        caller: Caller | None = None,
    ) -> dict[str, Any]:
        modern = self._modern if modern is None else modern
        pending, message = self._router.open(method, params, on_server_request, on_notification)
        if modern:
            message["params"] = self._envelope(message.get("params"))
        try:
            async with asyncio.timeout(timeout):
                return await self._exchange(pending, message, modern=modern, retried=False, caller=caller)
        except TimeoutError:
            self._cancel_upstream(pending, modern, "timed out at the gateway", caller)
            detail = f"{method} on {self.name} timed out after {timeout:g}s"
            raise failed("upstream.timeout", detail) from None
        except asyncio.CancelledError:
            self._cancel_upstream(pending, modern, "cancelled by the client", caller)
            raise
        finally:
            self._router.close(pending)

    async def _exchange(self, pending: Pending, message: dict[str, Any], *, modern: bool,
                        retried: bool, caller: Caller | None) -> dict[str, Any]:
        session = self._session_id
        headers = await self._headers(pending.method, message.get("params"), modern=modern, caller=caller)
        try:
            async with self._client.stream("POST", self._cfg.url, content=orjson.dumps(message),
                                           headers=headers) as response:
                if pending.method == "initialize" and response.status_code < 400:
                    self._session_id = self._valid_session_id(response.headers.get("mcp-session-id"))
                if not (response.status_code == 404 and not modern and session is not None and not retried):
                    return await self._read_reply(response, pending, modern=modern, caller=caller)
                error = await self._error_body(response)
                if error is not None and error.get("id") == pending.id:
                    return reply_of(error)
        except httpx.HTTPError as exc:
            detail = f"{pending.method} on {self.name}: {type(exc).__name__}: {exc}"
            raise failed("upstream.unavailable", detail) from None
        # HTTP 404 for our session: the upstream forgot it. Start a new one and retry once.
        await self._renew_session(session)
        return await self._exchange(pending, message, modern=modern, retried=True, caller=caller)

    @staticmethod
    def _valid_session_id(value: str | None) -> str | None:
        if value is not None and not (value and _HEADER_SAFE.fullmatch(value) and " " not in value):
            raise failed("upstream.protocol", "the upstream sent an invalid Mcp-Session-Id")
        return value

    async def _read_reply(self, response: httpx.Response, pending: Pending, *,
                          modern: bool, caller: Caller | None) -> dict[str, Any]:
        status = response.status_code
        if status >= 400:
            error = await self._error_body(response)
            if error is not None:
                return {"error": error["error"]}
            unavailable = status >= 500 or status in UNAVAILABLE_STATUSES
            code = "upstream.unavailable" if unavailable else "upstream.protocol"
            raise failed(code, f"{pending.method} on {self.name}: HTTP {status}")
        if status != 200:
            raise failed("upstream.protocol", f"{pending.method} on {self.name}: unexpected HTTP {status}")
        content_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type == "application/json":
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self._max:
                    raise failed("upstream.protocol", f"response exceeds {self._max} bytes")
            try:
                decoded = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise failed("upstream.protocol", "response body is not JSON") from None
            for item in decoded if isinstance(decoded, list) else [decoded]:
                if isinstance(item, dict) and item.get("id") == pending.id and "method" not in item:
                    return reply_of(item)
            raise failed("upstream.protocol", "JSON response does not answer the request")
        if content_type == "text/event-stream":
            decoder = SseDecoder(self._max)
            async for chunk in response.aiter_bytes():
                for data in decoder.feed(chunk):
                    reply = await self._on_stream_message(data, pending, modern=modern, caller=caller)
                    if reply is not None:
                        return reply
            detail = f"{pending.method} on {self.name}: stream ended without a response"
            raise failed("upstream.protocol", detail)
        raise failed("upstream.protocol", f"unexpected content type {content_type!r}")

    async def _error_body(self, response: httpx.Response) -> dict[str, Any] | None:
        """The JSON-RPC error message in an error response's body, if it is one."""
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_ERROR_BODY_BYTES:
                return None
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
            return decoded
        return None

    async def _on_stream_message(self, data: str, owner: Pending | None, *,
                                 modern: bool, caller: Caller | None) -> dict[str, Any] | None:
        """Handle one SSE event; return the reply when it is the response ``owner`` waits for."""
        if not data.strip():
            return None
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._log.info("ignoring a non-JSON event from upstream %s", self.name)
            return None
        if not isinstance(message, dict):
            return None
        method = message.get("method")
        if isinstance(method, str):
            if "id" not in message:
                params = message.get("params")
                await self._router.notify(method, params if isinstance(params, dict) else None,
                                          owner=owner, on_event=self._on_event)
            elif modern:
                self._log.warning("ignoring a %s request from upstream %s: 2026-07-28 has no back channel",
                                  method, self.name)
            else:
                self._router.serve(message, owner, partial(self._answer, caller=caller))
            return None
        if owner is not None and message.get("id") == owner.id:
            return reply_of(message)
        self._log.debug("ignoring an unexpected response on a stream from upstream %s", self.name)
        return None

    # -- legacy extras: notifications, answers, the GET stream ---------------------------

    async def _post(self, message: dict[str, Any], caller: Caller | None) -> int:
        headers = await self._headers("", None, modern=False, caller=caller)
        response = await self._client.post(self._cfg.url, content=orjson.dumps(message), headers=headers)
        return response.status_code

    async def _notify(self, method: str, params: dict[str, Any] | None, caller: Caller | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        try:
            status = await self._post(message, caller)
        except (httpx.HTTPError, UpstreamFailed) as exc:
            self._log.warning("upstream %s: sending %s failed: %s", self.name, method, type(exc).__name__)
            return
        if status not in (200, 202):
            self._log.warning("upstream %s answered %s with HTTP %d", self.name, method, status)

    async def _answer(self, message: dict[str, Any], *, caller: Caller | None) -> None:
        try:
            status = await self._post(message, caller)
        except httpx.HTTPError as exc:
            detail = f"answering the upstream failed: {type(exc).__name__}"
            raise failed("upstream.unavailable", detail) from None
        if status not in (200, 202):
            raise failed("upstream.protocol", f"answering the upstream got HTTP {status}")

    def _cancel_upstream(self, pending: Pending, modern: bool, reason: str, caller: Caller | None) -> None:
        # Modern era: closing the response stream is the cancellation, and that already happened.
        if not modern and pending.method != "initialize" and not self._closed:
            params = {"requestId": pending.id, "reason": reason}
            self._router.spawn(self._notify("notifications/cancelled", params, caller))

    async def _listen(self) -> None:
        """Read the session's GET stream (server notifications and requests not tied to a call)."""
        try:
            headers = await self._headers("", None, modern=False, caller=None)
            headers["Accept"] = "text/event-stream"
            del headers["Content-Type"]
            async with self._client.stream("GET", self._cfg.url, headers=headers) as response:
                content_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
                if response.status_code != 200 or content_type != "text/event-stream":
                    self._log.debug("upstream %s offers no GET stream (HTTP %d)", self.name,
                                    response.status_code)
                    return
                decoder = SseDecoder(self._max)
                async for chunk in response.aiter_bytes():
                    for data in decoder.feed(chunk):
                        await self._on_stream_message(data, None, modern=False, caller=None)
        except (httpx.HTTPError, UpstreamFailed) as exc:
            self._log.info("upstream %s: GET stream ended: %s", self.name, type(exc).__name__)
