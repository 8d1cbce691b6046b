"""Assemble a running gateway from a loaded configuration."""

from __future__ import annotations

import os
from typing import Any

from gatehold.approval.webhook import WebhookNotifier
from gatehold.audit import AuditLog, JsonlSink, SqliteSink
from gatehold.audit.sinks import AuditSink
from gatehold.auditor import Auditor
from gatehold.auth.apikeys import ApiKeyAuthenticator
from gatehold.auth.authenticator import Authenticator
from gatehold.auth.introspection import Introspector
from gatehold.auth.jwks import JwksCache
from gatehold.auth.jwt_verify import JwtVerifier
from gatehold.auth.mtls import CertificateAuthenticator
from gatehold.auth.outbound import IdentityHttp
from gatehold.config import HttpUpstream, LoadedConfig, StdioUpstream
from gatehold.errors import ConfigError
from gatehold.gateway import Gateway
from gatehold.secrets import resolve_all, resolve_secret
from gatehold.upstream.base import UpstreamClient
from gatehold.upstream.credentials import build_credential
from gatehold.upstream.http import HttpUpstreamClient
from gatehold.upstream.stdio import StdioUpstreamClient, scrubbed_env


def needed_secrets(loaded: LoadedConfig) -> set[str]:
    names: set[str] = set()
    for up in loaded.config.upstreams.values():
        if isinstance(up, StdioUpstream):
            names.update(up.env.values())
        elif up.credential is not None:
            names.update(up.credential.secret_names())
    oauth = loaded.config.auth.oauth
    if oauth is not None and oauth.introspection is not None:
        names.add(oauth.introspection.client_secret)
    approvals = loaded.config.approvals
    if approvals.webhook is not None:
        names.add(approvals.webhook.secret)
    if approvals.state_key is not None:
        names.add(approvals.state_key)
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

    identity_http = IdentityHttp()  # one outbound client for every identity fetch, closed with the gateway
    for name, up in config.upstreams.items():
        if isinstance(up, StdioUpstream):
            env = scrubbed_env(up, secrets, os.environ)
            cwd = str(loaded.path(up.cwd)) if up.cwd else None
            clients[name] = StdioUpstreamClient(name, up, env=env, on_event=events(name), cwd=cwd)
        elif isinstance(up, HttpUpstream):
            credential = build_credential(up.credential, secrets, http=identity_http,
                                          default_resource=up.url) if up.credential else None
            if credential is not None:
                auditor.add_secret_source(credential.secrets)
            clients[name] = HttpUpstreamClient(name, up, credential=credential, on_event=events(name))
    state_key = secrets[config.approvals.state_key].encode() if config.approvals.state_key else None
    if state_key is not None and len(state_key) < 32:
        raise ConfigError([f"approvals.state_key: secret {config.approvals.state_key!r} is shorter than 32 bytes"])
    gateway = Gateway(loaded, auditor, clients, identity_http=identity_http, state_key=state_key)
    hook = config.approvals.webhook
    if hook is not None:
        notifier = WebhookNotifier(hook, secrets[hook.secret], page_url=gateway.approvals.page_url, auditor=auditor)
        gateway.approvals.store.listeners.append(notifier.listener)
        gateway.closers.append(notifier.aclose)
    holder["gateway"] = gateway
    auditor.lifecycle("gateway configured", {"policy_version": loaded.policy_version,
                                             "upstreams": sorted(clients)})
    return gateway


def build_authenticator(loaded: LoadedConfig, gateway: Gateway) -> Authenticator:
    """The HTTP front's authenticator: API keys, OAuth (JWT and introspection), certificates, revocations.

    Its outbound fetches share the gateway's one identity client; its stores close with the gateway.
    """
    config = loaded.config
    revocations = gateway.revocations  # one list for credentials and kill-switch targets
    oauth = config.auth.oauth
    jwt: JwtVerifier | None = None
    introspector: Introspector | None = None
    if oauth is not None:
        audience = oauth.audience or config.gateway.resource
        assert audience is not None  # the config model requires gateway.resource with auth.oauth
        jwks = JwksCache(gateway.identity_http, issuer=oauth.issuer, jwks_uri=oauth.jwks_uri,
                         refetch_seconds=oauth.jwks_refetch_seconds, max_age_seconds=oauth.jwks_max_age_seconds)
        jwt = JwtVerifier(oauth, audience=audience, jwks=jwks)
        if oauth.introspection is not None:
            name = oauth.introspection.client_secret
            secret = resolve_secret(name, config.secrets[name], base_dir=loaded.base_dir)
            introspector = Introspector(oauth.introspection, secret, http=gateway.identity_http,
                                        audience=audience, issuer=oauth.issuer)
    certificates = CertificateAuthenticator(config.auth.mtls) if config.auth.mtls is not None else None
    return Authenticator(api_keys=ApiKeyAuthenticator(config.auth.api_keys), revocations=revocations,
                         oauth=oauth, jwt=jwt, introspector=introspector, certificates=certificates)
