"""The values that flow through the pipeline: who calls, what they call, what came back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Kind = Literal["tool", "prompt", "resource", "completion"]


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated principal. ``credential_id`` names the key or token, never its value.

    ``scopes`` is None for credentials that carry no OAuth scopes (API keys, certificates, stdio);
    scope rules apply only to callers whose credential has them. ``token`` is the bearer token
    the caller presented, kept only for RFC 8693 exchange with an upstream's token endpoint: it is
    never forwarded to an upstream, never printed (``repr=False``) and never audited.
    """

    principal: str
    roles: tuple[str, ...]
    credential_id: str
    transport: Literal["http", "stdio"] = "http"
    scopes: frozenset[str] | None = None
    subject: str | None = None
    client_id: str | None = None
    token_id: str | None = None  # the JWT ``jti``, when there is one
    expires_at: float | None = None  # epoch seconds the credential stops being valid
    token: str | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Target:
    """What the gateway exposes: the client-facing name and the upstream that serves it."""

    kind: Kind
    exposed: str  # the name the client sees (namespaced), or '<upstream>.<uri>' for resources
    upstream: str
    name: str  # the upstream's own name (or URI)
    schema: dict[str, Any] | None = None  # inputSchema of a tool, as listed by the upstream


class ApprovalChannel(Protocol):
    """How one call's client learns that a human must decide, and how the call waits (per era)."""

    async def wait(self, approval_id: str, url: str, message: str, *, retry: bool) -> None:
        """Return once the approval may have been decided; or raise ``InputRequired`` (2026 clients)."""


@dataclass(frozen=True, slots=True)
class ApprovalContext:
    channel: ApprovalChannel
    ticket: str | None = None  # approval id from a verified requestState (a 2026 client's retry)
    declined: bool = False  # the client answered the approval elicitation with decline or cancel


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One request on its way through the pipeline. Immutable: stages return decisions, not edits."""

    caller: Caller
    method: str
    target: Target
    arguments: dict[str, Any]
    correlation_id: str
    params: dict[str, Any] = field(default_factory=dict)  # the original params, forwarded after checks
    approval: ApprovalContext | None = field(default=None, compare=False)  # None: nobody can be asked
    session: str | None = None  # the client's MCP session (None in the sessionless 2026 era)

    @property
    def flow_key(self) -> str:
        """Whose data-flow memory this call reads and adds to: the principal and its session or credential."""
        return f"{self.caller.principal}\x00{self.session or 'credential:' + self.caller.credential_id}"


def new_correlation_id() -> str:
    """A short random id joining every record of one request."""
    return uuid.uuid4().hex[:16]
