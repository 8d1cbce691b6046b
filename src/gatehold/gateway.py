"""The gateway core: one MCP server in front of many upstreams, every call through the pipeline.

Transport-neutral: the HTTP and stdio fronts parse and authenticate, then hand each request here
as a method, params and an ``Exchange`` (who asks, and how to reach them mid-call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from gatehold import __version__
from gatehold.auditor import Auditor
from gatehold.auth.outbound import IdentityHttp
from gatehold.call import Caller, Kind, Target, ToolCall
from gatehold.catalog import LIST_METHODS, Catalog, Entry, UpstreamListing
from gatehold.config import LoadedConfig
from gatehold.errors import (
    GateholdError,
    InternalFailure,
    InvalidParams,
    MethodNotFound,
    UnknownTarget,
    UpstreamFailed,
    UpstreamRpcError,
)
from gatehold.pipeline import Pipeline
from gatehold.pipeline.authorise import Authorise
from gatehold.pipeline.output_bounds import OutputBounds
from gatehold.pipeline.validate import Validate
from gatehold.policy.grants import Grants
from gatehold.policy.schema import SchemaCache
from gatehold.upstream.base import ServerRequestHandler, UpstreamClient

log = logging.getLogger("gatehold.gateway")

MODERN_VERSION = "2026-07-28"
LEGACY_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
ENVELOPE_PREFIX = "io.modelcontextprotocol/"
_MODERN_RESULT_KEYS = ("resultType", "ttlMs", "cacheScope")
_MAX_PAGES = 50

Emit = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Exchange:
    """One client request's context: who asks, and the way back to them while the call runs."""

    caller: Caller
    correlation_id: str
    modern: bool
    emit: Emit | None = None  # push a notification on this request's response stream
    client_request: ServerRequestHandler | None = None  # relay a server->client request


def new_correlation_id() -> str:
    return uuid.uuid4().hex[:16]


def _drop_envelope(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` without the protocol's own ``_meta`` keys (each side of the gateway adds its own)."""
    meta = message.get("_meta")
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if not k.startswith(ENVELOPE_PREFIX)}
        if kept:
            message["_meta"] = kept
        else:
            message.pop("_meta")
    return message


def upstream_params(params: dict[str, Any], **replace: Any) -> dict[str, Any]:
    """The client's params for the upstream: names mapped back, the client's protocol envelope dropped."""
    return _drop_envelope({**params, **replace})


def plain_result(result: dict[str, Any]) -> dict[str, Any]:
    """An upstream result without era-specific envelope fields (each front adds its own)."""
    if result.get("resultType", "complete") != "complete":
        # Multi round-trip upstream results are not relayed yet: refuse rather than pass half a protocol.
        raise UpstreamFailed(f"upstream resultType {result.get('resultType')!r}", code="upstream.protocol")
    return _drop_envelope({k: v for k, v in result.items() if k not in _MODERN_RESULT_KEYS})


class Gateway:
    def __init__(self, loaded: LoadedConfig, auditor: Auditor, clients: dict[str, UpstreamClient],
                 identity_http: IdentityHttp | None = None):
        self.loaded = loaded
        self.config = loaded.config
        self.auditor = auditor
        self.clients = clients
        self.catalog = Catalog({n: loaded.config.prefix_of(n) for n in clients},
                               loaded.config.gateway.namespace_separator)
        oauth = loaded.config.auth.oauth
        self.grants = Grants(loaded.config.roles, loaded.config.scopes, oauth.scope_mode if oauth else "roles")
        self.pipeline = Pipeline(
            [Authorise(self.grants), Validate(self.grants, SchemaCache()),
             OutputBounds(self.grants, loaded.config.gateway)],
            auditor,
        )
        self.list_changed_listeners: list[Callable[[str], Awaitable[None]]] = []
        self._background: set[asyncio.Task[None]] = set()  # background work, cancelled on stop
        self.closers: list[Callable[[], Awaitable[None]]] = []  # shared clients and stores, closed last
        # The one client for JWKS, metadata, introspection and token endpoints.
        self.identity_http = identity_http or IdentityHttp()
        self.closers.append(self.identity_http.aclose)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        results = await asyncio.gather(*(self._start_one(n) for n in self.clients), return_exceptions=True)
        for name, outcome in zip(self.clients, results, strict=True):
            if isinstance(outcome, BaseException):
                log.error("upstream %s did not start: %s; retrying in the background", name, outcome)
                self.auditor.lifecycle(f"upstream {name} unavailable at start", {"error": str(outcome)})
                task = asyncio.create_task(self._retry_start(name))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def _start_one(self, name: str) -> None:
        await self.clients[name].start()
        await self.refresh(name)

    async def _retry_start(self, name: str) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                await self._start_one(name)
            except Exception as exc:  # noqa: BLE001 -- keep retrying; its tools stay unlisted meanwhile
                log.warning("upstream %s still unavailable: %s", name, exc)
                delay = min(delay * 2, 30.0)
                continue
            self.auditor.lifecycle(f"upstream {name} started after retry")
            await self._announce("tools")
            return

    def in_background(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` until it ends or the gateway stops."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*(c.aclose() for c in self.clients.values()), return_exceptions=True)
        for close in self.closers:
            with contextlib.suppress(Exception):
                await close()

    async def refresh(self, name: str) -> None:
        """Re-list one upstream's tools, prompts and resources."""
        client = self.clients[name]
        caps = client.capabilities or {}
        listing = UpstreamListing()
        for kind, (method, key) in LIST_METHODS.items():
            cap = "resources" if kind == "templates" else kind
            if cap in caps:
                setattr(listing, kind, await self._list_all(client, method, key))
        collisions = self.catalog.update(name, listing)
        if collisions:
            self.auditor.lifecycle("name collision", {"collisions": collisions})

    async def _list_all(self, client: UpstreamClient, method: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            reply = await client.request(method, {"cursor": cursor} if cursor else None,
                                         timeout=self.config.gateway.call_timeout_seconds)
            if "error" in reply:
                if reply["error"].get("code") == -32601:
                    return items
                raise UpstreamRpcError(reply["error"])
            result = reply.get("result") or {}
            page = result.get(key)
            if isinstance(page, list):
                items += [i for i in page if isinstance(i, dict)]
            cursor = result.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
        return items

    async def on_upstream_event(self, upstream: str, method: str, params: dict[str, Any] | None) -> None:
        """Called on the upstream's reader: hand the work to a task so replies keep flowing."""
        if method.endswith("/list_changed"):
            task = asyncio.create_task(self._refresh_and_announce(upstream, method))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _refresh_and_announce(self, upstream: str, method: str) -> None:
        try:
            await self.refresh(upstream)
        except Exception as exc:  # noqa: BLE001 -- handled: the upstream's entries are withdrawn
            # Fail closed: a catalogue we could not refresh is dropped, not left stale.
            log.error("refresh of %s failed: %s; its entries are withdrawn", upstream, exc)
            self.catalog.update(upstream, UpstreamListing())
        kind = method.removeprefix("notifications/").split("/")[0]
        await self._announce(kind)

    async def _announce(self, kind: str) -> None:
        for listener in list(self.list_changed_listeners):
            try:
                await listener(kind)
            except Exception as exc:  # noqa: BLE001 -- a client stream that went away is not a control
                log.debug("list_changed listener failed: %s", exc)

    # -- protocol answers --------------------------------------------------------------------

    def capabilities(self) -> dict[str, Any]:
        return {
            "tools": {"listChanged": True},
            "prompts": {"listChanged": True},
            "resources": {"listChanged": True, "subscribe": False},
            "completions": {},
            "logging": {},
        }

    def server_info(self) -> dict[str, Any]:
        return {"name": "gatehold", "version": __version__}

    def initialize_result(self, requested: Any) -> dict[str, Any]:
        version = requested if requested in LEGACY_VERSIONS else LEGACY_VERSIONS[0]
        return {"protocolVersion": version, "capabilities": self.capabilities(),
                "serverInfo": self.server_info(),
                "instructions": "Tools behind a Gatehold gateway: every call is checked and audited."}

    def discover_result(self) -> dict[str, Any]:
        return {"supportedVersions": [MODERN_VERSION], "capabilities": self.capabilities(),
                "instructions": "Tools behind a Gatehold gateway: every call is checked and audited."}

    # -- requests ----------------------------------------------------------------------------

    async def handle(self, method: str, params: dict[str, Any] | None, ex: Exchange) -> dict[str, Any]:
        """Answer one request. Raises ``GateholdError`` (already audited) when it is refused."""
        params = params or {}
        if method in ("tools/call", "prompts/get", "resources/read"):
            call = self._call_for(method, params, ex)
            return await self.pipeline.run(call, lambda c: self._forward(c, ex))
        start = time.perf_counter()
        try:
            result = await self._answer(method, params, ex)
        except GateholdError as exc:
            self.auditor.request(correlation_id=ex.correlation_id, caller=ex.caller, method=method,
                                 decision="deny", reason=exc.detail, code=exc.code,
                                 latency_ms=(time.perf_counter() - start) * 1000)
            raise
        except Exception as exc:
            failure = InternalFailure(f"{type(exc).__name__}: {exc}")
            self.auditor.request(correlation_id=ex.correlation_id, caller=ex.caller, method=method,
                                 decision="error", reason=failure.detail, code=failure.code)
            raise failure from exc
        self.auditor.request(correlation_id=ex.correlation_id, caller=ex.caller, method=method,
                             decision="allow", reason="answered", outcome="ok",
                             latency_ms=(time.perf_counter() - start) * 1000)
        return result

    def _call_for(self, method: str, params: dict[str, Any], ex: Exchange) -> ToolCall:
        try:
            if method == "resources/read":
                uri = params.get("uri")
                if not isinstance(uri, str) or not uri:
                    raise InvalidParams("resources/read without a string uri", public="uri must be a string")
                entry = self.catalog.resource_for(uri)
                target = entry.target if entry else Target("resource", f"?.{uri}", "", uri)
                return ToolCall(ex.caller, method, target, {}, ex.correlation_id, params)
            name = params.get("name")
            args = params.get("arguments", {})
            if not isinstance(name, str) or not name:
                raise InvalidParams(f"{method} without a string name", public="name must be a string")
            if args is None:
                args = {}
            if not isinstance(args, dict):
                raise InvalidParams("arguments is not an object", public="arguments must be an object")
        except GateholdError as exc:
            self.auditor.request(correlation_id=ex.correlation_id, caller=ex.caller, method=method,
                                 decision="deny", reason=exc.detail, code=exc.code)
            raise
        table = self.catalog.tools if method == "tools/call" else self.catalog.prompts
        found: Entry | None = table.get(name)
        kind: Kind = "tool" if method == "tools/call" else "prompt"
        target = found.target if found else Target(kind, name, "", name)
        return ToolCall(ex.caller, method, target, args, ex.correlation_id, params)

    async def _forward(self, call: ToolCall, ex: Exchange) -> dict[str, Any]:
        target = call.target
        client = self.clients.get(target.upstream)
        if client is None:
            raise UnknownTarget(f"upstream {target.upstream!r} is not configured")
        key = "uri" if target.kind == "resource" else "name"
        params = upstream_params(call.params, **{key: target.name})
        timeout = self.config.upstreams[target.upstream].timeout_seconds or \
            self.config.gateway.call_timeout_seconds

        async def relay(method: str, note: dict[str, Any] | None) -> None:
            if ex.emit is not None:
                await ex.emit({"jsonrpc": "2.0", "method": method, "params": note or {}})

        reply = await client.request(call.method, params, timeout=timeout,
                                     on_server_request=ex.client_request, on_notification=relay,
                                     caller=call.caller)
        if "error" in reply:
            raise UpstreamRpcError(reply["error"] if isinstance(reply["error"], dict) else {})
        result = reply.get("result")
        if not isinstance(result, dict):
            raise UpstreamFailed("upstream result is not an object", code="upstream.protocol")
        return plain_result(result)

    async def _answer(self, method: str, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        roles = ex.caller.roles
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": [e.definition for name, e in self.catalog.tools.items()
                              if self.grants.tool_visible(ex.caller, name)]}
        if method == "prompts/list":
            return {"prompts": [e.definition for name, e in self.catalog.prompts.items()
                                if self.grants.prompt_rule(roles, name)]}
        if method == "resources/list":
            return {"resources": [e.definition for e in self.catalog.resources.values()
                                  if self.grants.resource_rule(roles, e.target.exposed)]}
        if method == "resources/templates/list":
            return {"resourceTemplates": [e.definition for _, e in self.catalog.templates
                                          if self.grants.resource_rule(roles, e.target.exposed)]}
        if method == "completion/complete":
            return await self._complete(params, ex)
        if method == "logging/setLevel":
            return {}  # upstreams are shared: one client's log level is not pushed to them
        raise MethodNotFound(f"method {method!r} is not served", public="method not found")

    async def _complete(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        ref = params.get("ref")
        if not isinstance(ref, dict):
            raise InvalidParams("completion/complete without a ref", public="ref must be an object")
        roles = ex.caller.roles
        entry: Entry | None = None
        if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
            entry = self.catalog.prompts.get(ref["name"])
            allowed = entry is not None and self.grants.prompt_rule(roles, entry.target.exposed)
            new_ref = {**ref, "name": entry.target.name} if entry else ref
        elif ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
            entry = self.catalog.resource_for(ref["uri"])
            allowed = entry is not None and self.grants.resource_rule(roles, entry.target.exposed)
            new_ref = ref
        else:
            raise InvalidParams("unknown completion ref", public="unknown ref type")
        if entry is None or not allowed:
            # The same answer for "does not exist" and "not yours": no catalogue oracle.
            raise UnknownTarget("completion for an unknown or ungranted ref", rule_id="default-deny")
        client = self.clients[entry.target.upstream]
        reply = await client.request("completion/complete", upstream_params(params, ref=new_ref),
                                     timeout=self.config.gateway.call_timeout_seconds, caller=ex.caller)
        if "error" in reply:
            raise UpstreamRpcError(reply["error"])
        return plain_result(reply.get("result") or {})
