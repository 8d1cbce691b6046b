"""The gateway core: one MCP server in front of many upstreams, every call through the pipeline.

Transport-neutral: the HTTP and stdio fronts parse and authenticate, then hand each request here
as a method, params and an ``Exchange`` (who asks, and how to reach them mid-call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from gatehold import __version__
from gatehold.approval.channels import ELICITATION_KEY, HoldOpen, InputRequiredChannel, UrlElicitation
from gatehold.approval.seal import StateSealer
from gatehold.approval.service import Approvals
from gatehold.approval.store import ApprovalStore, call_digest
from gatehold.auditor import Auditor
from gatehold.auth.outbound import IdentityHttp
from gatehold.call import ApprovalContext, Caller, Kind, Target, ToolCall
from gatehold.call import new_correlation_id as new_correlation_id  # re-exported for the fronts
from gatehold.catalog import LIST_METHODS, Catalog, Entry, UpstreamListing
from gatehold.config import LoadedConfig
from gatehold.errors import (
    CallKilled,
    GateholdError,
    InternalFailure,
    InvalidParams,
    MethodNotFound,
    UnknownTarget,
    UpstreamFailed,
    UpstreamRpcError,
)
from gatehold.killswitch import KillSwitch
from gatehold.output.detect import DEFAULT_THRESHOLD, InjectionDetector
from gatehold.output.sanitise import Sanitiser
from gatehold.output.screen import Flag, MetadataScreen
from gatehold.output.secrets import SecretRedactor
from gatehold.output.walk import rewrite_json, rewrite_result
from gatehold.pipeline import Pipeline
from gatehold.pipeline.approve import Approve
from gatehold.pipeline.authorise import Authorise
from gatehold.pipeline.check_output import CheckOutput
from gatehold.pipeline.flow import Flow, FlowMemory
from gatehold.pipeline.kill import KillCheck
from gatehold.pipeline.output_bounds import OutputBounds
from gatehold.pipeline.redact import Redact
from gatehold.pipeline.validate import Validate
from gatehold.policy.flow import FlowStore
from gatehold.policy.grants import Grants
from gatehold.policy.labels import Labeller
from gatehold.policy.schema import SchemaCache
from gatehold.state.revocations import RevocationStore, open_revocations
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
    url_elicitation: bool = False  # the client declared URL-mode elicitation (2025-11-25)
    session_id: str | None = None  # the MCP session (legacy HTTP) or the stdio connection


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


_GATEWAY_ROUND_TRIP_KEYS = ("requestState", "inputResponses")


def upstream_params(params: dict[str, Any], **replace: Any) -> dict[str, Any]:
    """The client's params for the upstream: names mapped back, the client's protocol envelope dropped.

    A 2026 client's ``requestState``/``inputResponses`` answer the gateway's own approval round trip
    and are never passed on (upstream round trips are not relayed; see ``plain_result``).
    """
    kept = {k: v for k, v in params.items() if k not in _GATEWAY_ROUND_TRIP_KEYS}
    return _drop_envelope({**kept, **replace})


def plain_result(result: dict[str, Any]) -> dict[str, Any]:
    """An upstream result without era-specific envelope fields (each front adds its own)."""
    if result.get("resultType", "complete") != "complete":
        # Multi round-trip upstream results are not relayed yet: refuse rather than pass half a protocol.
        raise UpstreamFailed(f"upstream resultType {result.get('resultType')!r}", code="upstream.protocol")
    return _drop_envelope({k: v for k, v in result.items() if k not in _MODERN_RESULT_KEYS})


def default_base_url(config: Any) -> str:
    """The gateway's own URL from its listen address, for approval links when no public_url is set."""
    scheme = "https" if config.gateway.tls is not None else "http"
    host = config.gateway.host
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{config.gateway.port}"


class Gateway:
    def __init__(self, loaded: LoadedConfig, auditor: Auditor, clients: dict[str, UpstreamClient],
                 identity_http: IdentityHttp | None = None, *, revocations: RevocationStore | None = None,
                 state_key: bytes | None = None):
        self.loaded = loaded
        self.config = config = loaded.config
        self.auditor = auditor
        self.clients = clients
        self.catalog = Catalog({n: config.prefix_of(n) for n in clients}, config.gateway.namespace_separator)
        oauth = config.auth.oauth
        self.grants = Grants(config.roles, config.scopes, oauth.scope_mode if oauth else "roles")
        # The revocation list: credentials (HTTP front) and kill-switch targets (every front).
        self.revocations = revocations or open_revocations(
            config.state, loaded.path(config.auth.revocations),
            check_seconds=config.auth.revocation_check_ms / 1000)
        self.approvals = Approvals(ApprovalStore(expiry_seconds=config.approvals.expiry_seconds), auditor,
                                   base_url=config.approvals.public_url or default_base_url(config))
        self.sealer = StateSealer(state_key)
        self.kills = KillSwitch(self.revocations, auditor, self.approvals.store)
        output = config.output
        self.detector = InjectionDetector(threshold=output.injection.threshold or DEFAULT_THRESHOLD)
        self.sanitiser = Sanitiser(output.allowed_link_hosts)
        self.redactor = SecretRedactor(auditor.known_values, patterns=output.redact_secrets)
        self.screen = MetadataScreen(output, self.detector)
        self.quarantine: dict[str, dict[str, Flag]] = {}  # upstream -> exposed name -> why it is withheld
        schemas = SchemaCache()
        self.flow = Flow(config.flows, config.flow,
                         Labeller(config.labels, annotations=config.flow.annotations == "explicit"),
                         FlowStore(config.flow), self._annotations)
        # One ordered list: calls run it top-down, results come back bottom-up. FlowMemory first
        # remembers every value the upstream returned (even those the agent will not see);
        # OutputBounds then caps the size, so later checks read a bounded result; CheckOutput
        # sanitises before Redact looks for secrets, so hidden characters cannot split a secret.
        self.pipeline = Pipeline(
            [KillCheck(self.kills), Authorise(self.grants), Validate(self.grants, schemas), self.flow,
             Approve(self.grants, config.approvals, self.approvals, policy_version=loaded.policy_version,
                     annotations=self._annotations, redact=auditor.redacted, flow_need=self.flow.need),
             Redact(self.redactor),
             CheckOutput(output, self.grants, schemas, self.detector, definition=self._definition,
                         quarantined=self._quarantined, labels=self.flow.labels,
                         suspect=self.flow.suspect),
             OutputBounds(self.grants, config.gateway), FlowMemory(self.flow)],
            auditor,
        )
        self.list_changed_listeners: list[Callable[[str], Awaitable[None]]] = []
        self._background: set[asyncio.Task[None]] = set()  # background work, cancelled on stop
        self.closers: list[Callable[[], Awaitable[None]]] = []  # shared clients and stores, closed last
        # The one client for JWKS, metadata, introspection and token endpoints.
        self.identity_http = identity_http or IdentityHttp()
        self.closers.append(self.identity_http.aclose)
        self.closers.append(self.revocations.aclose)

    # -- lifecycle ---------------------------------------------------------------------------

    def _annotations(self, exposed: str) -> dict[str, Any] | None:
        entry = self.catalog.tools.get(exposed)
        found = entry.definition.get("annotations") if entry is not None else None
        return found if isinstance(found, dict) else None

    def _definition(self, call: ToolCall) -> dict[str, Any] | None:
        entry = self.catalog.tools.get(call.target.exposed) if call.target.kind == "tool" else None
        return entry.definition if entry is not None else None

    def _quarantined(self, call: ToolCall) -> str | None:
        flag = self.quarantine.get(call.target.upstream, {}).get(call.target.exposed)
        return flag.reason if flag is not None else None

    def _redact_text(self, text: str) -> str:
        return self.redactor.text(text).text

    def _clean_text(self, text: str) -> str:
        return self._redact_text(self.sanitiser.clean(text).text)

    def clean_error(self, error: dict[str, Any]) -> dict[str, Any]:
        """An upstream's JSON-RPC error as a client may see it: hidden content, secrets and injections removed."""
        message = error.get("message")
        if not isinstance(message, str):
            return {"code": error.get("code"), "message": "upstream error"}
        text = self._clean_text(message[:2000])
        if self.detector.scan(text).flagged:
            text = "upstream error (message withheld: it looks like a prompt injection)"
        return {"code": error.get("code"), "message": text}

    async def start(self) -> None:
        self.in_background(self.kills.watch())
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
        items = {kind: getattr(listing, kind) for kind in LIST_METHODS}
        screening = self.screen.screen(items, lambda kind, raw: self._exposed(name, kind, raw))
        for kind, definitions in items.items():
            # Metadata is client-visible text too: no held secret or known secret format is listed.
            setattr(listing, kind, [rewrite_json(d, self._redact_text) for d in definitions])
        self.quarantine[name] = {f.exposed: f for f in screening.flagged}
        for flag in screening.flagged:
            self.auditor.lifecycle(f"definition flagged: {flag.exposed}", {
                "upstream": name, "kind": flag.kind, "exposed": flag.exposed, "digest": flag.digest,
                "reason": flag.reason, "action": self.config.output.injection.metadata})
        collisions = self.catalog.update(name, listing)
        if collisions:
            self.auditor.lifecycle("name collision", {"collisions": collisions})

    def _exposed(self, upstream: str, kind: str, raw: str) -> str:
        return self.catalog.exposed(upstream, raw) if kind in ("tools", "prompts") else f"{upstream}.{raw}"

    def quarantined_entry(self, method: str, name: str) -> Target | None:
        """The target of a withheld tool or prompt, so its calls are refused by name (``output.quarantined``)."""
        kind = "tools" if method == "tools/call" else "prompts"
        for upstream, flags in self.quarantine.items():
            flag = flags.get(name)
            if flag is not None and flag.kind == kind:
                return Target("tool" if kind == "tools" else "prompt", name, upstream, flag.name)
        return None

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
                return ToolCall(ex.caller, method, target, {}, ex.correlation_id, params, session=ex.session_id)
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
        target = found.target if found else self.quarantined_entry(method, name) or Target(kind, name, "", name)
        try:
            approval = self._approval_context(target, args, params, ex)
        except GateholdError as exc:
            self.auditor.request(correlation_id=ex.correlation_id, caller=ex.caller, method=method,
                                 decision="deny", reason=exc.detail, code=exc.code, server=target.upstream or None,
                                 tool=name)
            raise
        return ToolCall(ex.caller, method, target, args, ex.correlation_id, params, approval,
                        session=ex.session_id)

    def _approval_context(self, target: Target, args: dict[str, Any], params: dict[str, Any],
                          ex: Exchange) -> ApprovalContext:
        """How this call's client can be told to wait for a human, and any approval its retry carries."""
        store, settings = self.approvals.store, self.config.approvals
        if not ex.modern:
            if ex.url_elicitation and ex.client_request is not None:
                return ApprovalContext(UrlElicitation(store, ex.client_request, ex.emit))
            return ApprovalContext(HoldOpen(store, settings.hold_seconds))
        channel = InputRequiredChannel(store, self.sealer, principal=ex.caller.principal, server=target.upstream,
                                       tool=target.exposed, arguments=args,
                                       retry_wait_seconds=settings.retry_wait_seconds)
        if "requestState" not in params:
            return ApprovalContext(channel)
        # Forged, altered, replayed, expired or foreign states raise RequestStateInvalid (audited).
        digest = call_digest(target.upstream, target.exposed, args)
        sealed = self.sealer.open(params["requestState"], principal=ex.caller.principal, digest=digest)
        responses = params.get("inputResponses")
        answer = responses.get(ELICITATION_KEY) if isinstance(responses, dict) else None
        action = answer.get("action") if isinstance(answer, dict) else None
        return ApprovalContext(channel, ticket=sealed.approval_id, declined=action in ("decline", "cancel"))

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

        request = asyncio.ensure_future(client.request(call.method, params, timeout=timeout,
                                                       on_server_request=ex.client_request,
                                                       on_notification=relay, caller=call.caller))
        with self.kills.tracking(request, call) as tracked:
            try:
                reply = await request
            except asyncio.CancelledError:
                if tracked.killed_by is None:
                    raise  # the client went away or cancelled
                # The kill switch cancelled the upstream request (which told the upstream); the
                # client gets a clear error instead of a silent cancellation.
                hit = tracked.killed_by
                raise CallKilled(f"in-flight call stopped: {hit.kind} {hit.value} killed ({hit.reason})",
                                 rule_id=f"kill.{hit.kind}") from None
        if "error" in reply:
            raise UpstreamRpcError(self.clean_error(reply["error"]) if isinstance(reply["error"], dict) else {})
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
            raise UpstreamRpcError(self.clean_error(reply["error"]) if isinstance(reply["error"], dict) else {})
        # Completions are upstream text a client shows: hidden content and secrets go, as in results.
        return rewrite_result(plain_result(reply.get("result") or {}), self._clean_text)
