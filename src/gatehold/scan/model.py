"""What the scanner reads and what it reports: server snapshots in, findings out.

A scan gathers :class:`ServerSnapshot` objects from its targets (a saved ``tools/list``, a client
configuration, a ``gatehold.yaml``, a live stdio or HTTP server), then runs every check over one
:class:`ScanInput`. A check is a module in :mod:`gatehold.scan.checks` that declares its
:class:`CheckInfo` entries and a ``run(scan) -> Iterable[Finding]`` function. Checks never connect
anywhere: whatever they need from the network (transport probes) the target loaders gathered first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "low", "medium", "high", "critical")
ItemKind = Literal["tool", "prompt", "resource", "template", "server", "config"]


def severity_rank(severity: Severity) -> int:
    return SEVERITIES.index(severity)


@dataclass(frozen=True, slots=True)
class CheckInfo:
    """One rule a check module reports under: a stable id (the SARIF ``ruleId``) and its texts."""

    id: str  # e.g. "tool-poisoning"; stable, lower-case, hyphenated
    title: str  # one line
    severity: Severity  # the default severity of its findings
    rationale: str  # why this matters, a few sentences
    remediation: str  # what to do about it


@dataclass(frozen=True, slots=True)
class Location:
    """Where a finding is: an item of a server, a server as a whole, or a place in a config file."""

    kind: ItemKind
    server: str | None = None  # the server's name (config key, --name, or None for a bare tools dump)
    name: str | None = None  # tool/prompt name, resource URI or template; None for server/config
    field: str | None = None  # e.g. "description", "inputSchema.properties.path", "env.API_KEY"
    file: str | None = None  # the config or dump file the item came from, as the user named it
    line: int | None = None  # 1-based line in ``file``, when known

    @property
    def qualified_name(self) -> str:
        """``server.tool``, or ``tool`` without a server, or the server or file alone."""
        if self.name is not None:
            return f"{self.server}.{self.name}" if self.server else self.name
        if self.server is not None:
            return self.server
        return self.file or "<scan>"


@dataclass(frozen=True, slots=True)
class Finding:
    check: str  # CheckInfo.id
    severity: Severity
    message: str  # specific to this finding; never carries a secret's value
    location: Location
    evidence: str = ""  # a short excerpt (sanitised, secrets redacted) that shows the problem

    @property
    def fingerprint(self) -> str:
        """Stable across runs while the problem is the same; baselines refer to findings by it."""
        parts = (self.check, self.location.kind, self.location.qualified_name, self.location.field or "",
                 self.location.file or "" if self.location.kind == "config" else "", self.evidence)
        return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Launch:
    """How a client configuration starts or reaches a server, as written (values may be secrets)."""

    command: tuple[str, ...] = ()  # argv for a stdio server; empty for a remote one
    env: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None


@dataclass(frozen=True, slots=True)
class TransportProbe:
    """What connecting to a remote server showed. ``None`` means not probed (or not applicable)."""

    url: str
    tls: bool  # the URL is https
    loopback: bool  # the host is a loopback address or ``localhost``
    unauthenticated_list: bool | None = None  # tools/list succeeded with no credential
    auth_challenge: bool | None = None  # a 401 with WWW-Authenticate was returned
    resource_metadata: bool | None = None  # RFC 9728 metadata was served
    origin_rejected: bool | None = None  # a foreign Origin got 403
    protocol_version: str | None = None


@dataclass(frozen=True, slots=True)
class ServerSnapshot:
    """One MCP server as the scan saw it: its definitions (if listed), how it is started, probes."""

    name: str | None
    source: str  # "tools-json", "client-config", "gatehold-config", "stdio", "http"
    tools: tuple[Mapping[str, Any], ...] = ()
    prompts: tuple[Mapping[str, Any], ...] = ()
    resources: tuple[Mapping[str, Any], ...] = ()
    templates: tuple[Mapping[str, Any], ...] = ()
    listed: bool = False  # the definitions above were actually obtained
    launch: Launch | None = None
    transport: TransportProbe | None = None
    file: str | None = None  # the file this server was declared in
    line: int | None = None  # its line in that file, when known
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # policy labels by tool name

    def items(self) -> list[tuple[ItemKind, str, Mapping[str, Any]]]:
        """Every definition with its kind and name (URI for resources, uriTemplate for templates)."""
        out: list[tuple[ItemKind, str, Mapping[str, Any]]] = []
        for kind, key, defs in (("tool", "name", self.tools), ("prompt", "name", self.prompts),
                                ("resource", "uri", self.resources), ("template", "uriTemplate", self.templates)):
            for definition in defs:
                out.append((kind, str(definition.get(key, "")), definition))  # type: ignore[arg-type]
        return out

    def at(self, kind: ItemKind, name: str | None = None, field: str | None = None) -> Location:
        return Location(kind=kind, server=self.name, name=name, field=field, file=self.file, line=self.line)


@dataclass(frozen=True, slots=True)
class ConfigText:
    """A configuration file the scan read, kept whole for checks that look at raw values."""

    path: str
    kind: Literal["client", "gatehold"]
    text: str


@dataclass(frozen=True, slots=True)
class PinnedServer:
    command: tuple[str, ...] | None
    url: str | None
    definitions: Mapping[str, str]  # "tool:NAME" / "prompt:NAME" / "resource:URI" / "template:T" -> digest


@dataclass(frozen=True, slots=True)
class Lockfile:
    path: str
    servers: Mapping[str, PinnedServer]


@dataclass(frozen=True, slots=True)
class ScanInput:
    servers: tuple[ServerSnapshot, ...]
    configs: tuple[ConfigText, ...] = ()
    lockfile: Lockfile | None = None
    agents: tuple[tuple[str, tuple[str | None, ...]], ...] = ()
    """Which servers one agent reaches together: (agent name, server names). A client config is one
    agent; with none given, all servers of the scan count as one agent."""


@dataclass(frozen=True, slots=True)
class Suppressed:
    finding: Finding
    reason: str  # the baseline's reason for accepting it


@dataclass(frozen=True, slots=True)
class ScanReport:
    """Everything a report format renders, and what the exit code is computed from."""

    findings: tuple[Finding, ...]  # active findings, most severe first
    suppressed: tuple[Suppressed, ...]
    checks: tuple[CheckInfo, ...]  # every check that ran
    targets: tuple[str, ...]  # what was scanned, as the user named it
    errors: tuple[str, ...] = ()  # targets or checks that could not be scanned; any error fails the scan
