"""The values that flow through the pipeline: who calls, what they call, what came back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

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


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One request on its way through the pipeline. Immutable: stages return decisions, not edits."""

    caller: Caller
    method: str
    target: Target
    arguments: dict[str, Any]
    correlation_id: str
    params: dict[str, Any] = field(default_factory=dict)  # the original params, forwarded after checks
