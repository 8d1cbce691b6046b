"""Assemble a running gateway from a loaded configuration."""

from __future__ import annotations

import os
from typing import Any

from gatehold.audit import AuditLog, JsonlSink, SqliteSink
from gatehold.audit.sinks import AuditSink
from gatehold.auditor import Auditor
from gatehold.config import HttpUpstream, LoadedConfig, StdioUpstream
from gatehold.gateway import Gateway
from gatehold.secrets import resolve_all
from gatehold.upstream.base import UpstreamClient
from gatehold.upstream.http import HttpUpstreamClient
from gatehold.upstream.stdio import StdioUpstreamClient, scrubbed_env


def needed_secrets(loaded: LoadedConfig) -> set[str]:
    names: set[str] = set()
    for up in loaded.config.upstreams.values():
        if isinstance(up, StdioUpstream):
            names.update(up.env.values())
        elif up.credential is not None:
            names.add(up.credential.bearer)
    return names


def open_audit(loaded: LoadedConfig) -> AuditLog:
    sinks: list[AuditSink] = []
    if loaded.config.audit.sqlite:
        sinks.append(SqliteSink(loaded.path(loaded.config.audit.sqlite)))
    if loaded.config.audit.jsonl:
        sinks.append(JsonlSink(loaded.path(loaded.config.audit.jsonl)))
    return AuditLog(sinks)


def build_gateway(loaded: LoadedConfig, *, audit: AuditLog | None = None) -> Gateway:
    """Resolve secrets (all or nothing), open the audit log and create the upstream clients."""
    config = loaded.config
    secrets = resolve_all(config.secrets, base_dir=loaded.base_dir, needed=needed_secrets(loaded))
    auditor = Auditor(audit or open_audit(loaded), secrets.values())
    clients: dict[str, UpstreamClient] = {}
    holder: dict[str, Gateway] = {}

    def events(name: str) -> Any:
        async def on_event(method: str, params: dict[str, Any] | None) -> None:
            gateway = holder.get("gateway")
            if gateway is not None:
                await gateway.on_upstream_event(name, method, params)
        return on_event

    for name, up in config.upstreams.items():
        if isinstance(up, StdioUpstream):
            env = scrubbed_env(up, secrets, os.environ)
            cwd = str(loaded.path(up.cwd)) if up.cwd else None
            clients[name] = StdioUpstreamClient(name, up, env=env, on_event=events(name), cwd=cwd)
        elif isinstance(up, HttpUpstream):
            bearer = secrets[up.credential.bearer] if up.credential else None
            clients[name] = HttpUpstreamClient(name, up, bearer=bearer, on_event=events(name))
    gateway = Gateway(loaded, auditor, clients)
    holder["gateway"] = gateway
    auditor.lifecycle("gateway configured", {"policy_version": loaded.policy_version,
                                             "upstreams": sorted(clients)})
    return gateway
