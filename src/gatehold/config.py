"""Configuration: one YAML file, validated once into frozen models.

Every model forbids unknown keys, so a typo is an error rather than a control silently
switched off. ``load_config`` turns every problem into one line that names the field, the
value given and what was expected.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from gatehold.errors import ConfigError

SECRET_REF = re.compile(r"^(env|file):.+$")
NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SecretRef = Annotated[
    str,
    Field(pattern=SECRET_REF.pattern, description="a secret reference: env:NAME or file:PATH, never a value"),
]


class TlsSettings(Frozen):
    """TLS terminated by Gatehold itself; with ``client_certs`` it asks for (or requires) client certificates."""

    cert: str = Field(description="PEM certificate chain file")
    key: str = Field(description="PEM private key file")
    client_ca: str | None = Field(None, description="PEM bundle of CAs that sign client certificates")
    client_certs: Literal["none", "optional", "required"] = Field(
        "none", description="'required' refuses the TLS handshake without a certificate the CA signed")

    @model_validator(mode="after")
    def _ca_for_clients(self) -> TlsSettings:
        if self.client_certs != "none" and not self.client_ca:
            raise ValueError("client_certs needs client_ca: the CA bundle client certificates must chain to")
        return self


class GatewaySettings(Frozen):
    listen: str = Field("127.0.0.1:8765", description="host:port to bind; loopback by default")
    resource: str | None = Field(None, description="this gateway's resource identifier (token audience)")
    allowed_origins: tuple[str, ...] = Field((), description="browser origins allowed besides loopback")
    max_body_bytes: int = Field(1_048_576, gt=0, le=64 * 1_048_576)
    max_json_depth: int = Field(64, gt=1, le=512)
    namespace_separator: str = Field(".", min_length=1, max_length=3)
    call_timeout_seconds: float = Field(60.0, gt=0, le=3600)
    max_result_bytes: int = Field(1_048_576, gt=0, description="default result size cap per call")
    on_oversize: Literal["truncate", "deny"] = "truncate"
    session_idle_seconds: float = Field(3600.0, gt=0)
    max_sessions: int = Field(10_000, gt=0)
    tls: TlsSettings | None = Field(None, description="terminate TLS (and mTLS) in the gateway")

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str | None) -> str | None:
        if value is not None and (not re.match(r"^https?://[^/?#]+", value) or "#" in value):
            raise ValueError("expected an absolute http(s) URL without a fragment (RFC 8707)")
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("expected host:port, e.g. 127.0.0.1:8765")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class ApiKey(Frozen):
    id: str = Field(pattern=NAME.pattern, description="key id, written to the audit log")
    hash: str = Field(pattern=r"^scrypt\$", description="scrypt hash from `gatehold hash-key`")
    principal: str = Field(min_length=1)
    roles: tuple[str, ...] = ()


class StdioIdentity(Frozen):
    principal: str = Field(min_length=1)
    roles: tuple[str, ...] = ()


HTTP_URL = r"^https?://[^/?#]+"
Algorithm = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]


class IntrospectionSettings(Frozen):
    """RFC 7662 introspection for opaque tokens; Gatehold authenticates to the endpoint as a client."""

    endpoint: str = Field(pattern=HTTP_URL)
    client_id: str = Field(min_length=1)
    client_secret: str = Field(description="name of a secret in `secrets:`")
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    cache_seconds: float = Field(60.0, ge=0, le=3600, description="cap on caching an active answer")


class OAuthSettings(Frozen):
    """OAuth 2.1 resource server: bearer JWTs checked against the issuer's keys, or introspected."""

    issuer: str = Field(pattern=HTTP_URL, description="exact `iss` value; also where metadata is discovered")
    jwks_uri: str | None = Field(None, pattern=HTTP_URL, description="else discovered (RFC 8414, then OIDC)")
    audience: str | None = Field(None, description="required `aud` member; default gateway.resource")
    algorithms: tuple[Algorithm, ...] = Field(("RS256", "ES256"), min_length=1,
                                              description="accepted signature algorithms; never none or HMAC")
    leeway_seconds: float = Field(30.0, ge=0, le=300, description="clock skew allowed on exp, nbf and iat")
    max_lifetime_seconds: float | None = Field(86400.0, gt=0, description="reject tokens whose exp - iat is longer")
    required_claims: tuple[str, ...] = Field(("iat", "sub"), description="claims besides iss, aud and exp")
    subject_claim: str = Field("sub", min_length=1, description="claim path of the principal")
    roles_claim: str | None = Field("roles", description="claim path of role names (list or space-separated)")
    client_id_claim: str = Field("client_id", min_length=1)
    scope_claim: str = Field("scope", min_length=1, description="space-separated string or list of scopes")
    default_roles: tuple[str, ...] = Field((), description="roles every OAuth caller has besides its claims")
    scope_mode: Literal["both", "scopes", "roles"] = Field(
        "both", description="both: a tool call needs a role grant and a scope; scopes or roles: that one alone")
    initial_scopes: tuple[str, ...] = Field((), description="scopes named in a 401 challenge")
    introspection: IntrospectionSettings | None = None
    jwks_refetch_seconds: float = Field(30.0, ge=0, le=3600,
                                        description="least time between refetches for an unknown kid")
    jwks_max_age_seconds: float = Field(3600.0, gt=0, le=86400)
    token_cache_size: int = Field(10_000, gt=0)


class CertMapping(Frozen):
    """One verified client certificate -> principal. Exactly one of subject, san_uri, san_dns."""

    subject: str | None = Field(None, description="RFC 4514 subject, e.g. 'CN=agent-1,O=Acme'")
    san_uri: str | None = Field(None, description="URI SAN, e.g. a SPIFFE ID 'spiffe://example.org/agent'")
    san_dns: str | None = None
    principal: str = Field(min_length=1)
    roles: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _one_selector(self) -> CertMapping:
        if sum(x is not None for x in (self.subject, self.san_uri, self.san_dns)) != 1:
            raise ValueError("give exactly one of subject, san_uri, san_dns")
        return self


class MtlsSettings(Frozen):
    mappings: tuple[CertMapping, ...] = Field(min_length=1)


class AuthSettings(Frozen):
    api_keys: tuple[ApiKey, ...] = ()
    stdio: StdioIdentity | None = Field(None, description="the principal of `gatehold stdio`'s one client")
    oauth: OAuthSettings | None = None
    mtls: MtlsSettings | None = None
    revocations: str = Field("gatehold-revocations.db",
                             description="SQLite file of revoked credentials, used when state is memory")
    revocation_check_ms: int = Field(
        50, ge=0, le=1000,
        description="how stale the revocation list may be: revocations made in another process or "
                    "gateway take effect within this many milliseconds; 0 checks on every request")

    @model_validator(mode="after")
    def _unique_ids(self) -> AuthSettings:
        ids = [key.id for key in self.api_keys]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"api key ids must be unique; repeated: {', '.join(dupes)}")
        return self


class AuditSettings(Frozen):
    sqlite: str | None = Field("gatehold-audit.db", description="embedded audit store (hash-chained)")
    jsonl: str | None = Field(None, description="optional append-only JSON Lines mirror")

    @model_validator(mode="after")
    def _some_sink(self) -> AuditSettings:
        # Fail closed: a gateway with nowhere to write its audit trail does not start.
        if not self.sqlite and not self.jsonl:
            raise ValueError("at least one audit sink (sqlite or jsonl) is required")
        return self


class TokenGrant(Frozen):
    token_endpoint: str = Field(pattern=HTTP_URL)
    client_id: str = Field(min_length=1)
    client_secret: str = Field(description="name of a secret in `secrets:`")
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    scope: str | None = None
    resource: str | None = Field(None, description="RFC 8707 resource; default the upstream's url")
    audience: str | None = None


class ClientCredentialsGrant(TokenGrant):
    """The gateway's own token for this upstream (OAuth client credentials), cached and refreshed."""


class TokenExchangeGrant(TokenGrant):
    """RFC 8693: the caller's token is exchanged for one scoped to this upstream; never forwarded."""


class Credential(Frozen):
    """Exactly one way for the gateway to authenticate to an upstream."""

    bearer: str | None = Field(None, description="name of a secret in `secrets:` sent as a bearer token")
    client_credentials: ClientCredentialsGrant | None = None
    token_exchange: TokenExchangeGrant | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Credential:
        if sum(x is not None for x in (self.bearer, self.client_credentials, self.token_exchange)) != 1:
            raise ValueError("give exactly one of bearer, client_credentials, token_exchange")
        return self

    def secret_names(self) -> set[str]:
        grant = self.client_credentials or self.token_exchange
        return {self.bearer} if self.bearer else {grant.client_secret} if grant else set()


class UpstreamBase(Frozen):
    prefix: str | None = Field(
        None, description="namespace for this upstream's tools and prompts; default its name, '' for none"
    )
    timeout_seconds: float | None = Field(None, gt=0, le=3600)


class StdioUpstream(UpstreamBase):
    command: tuple[str, ...] = Field(min_length=1)
    env: dict[str, str] = Field(
        default_factory=dict, description="environment variable -> name of a secret in `secrets:`"
    )
    env_allow: tuple[str, ...] = Field((), description="further variables passed from the gateway's env")
    cwd: str | None = None
    restart_max_backoff_seconds: float = Field(30.0, gt=0, le=3600)


class HttpUpstream(UpstreamBase):
    url: str = Field(pattern=r"^https?://")
    credential: Credential | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="static, non-secret request headers")
    protocol: Literal["auto", "2026-07-28", "2025-11-25", "2025-06-18"] = "auto"

    @field_validator("headers")
    @classmethod
    def _no_auth_header(cls, value: dict[str, str]) -> dict[str, str]:
        if any(k.lower() in {"authorization", "cookie", "proxy-authorization"} for k in value):
            raise ValueError("credentials go in `credential:` as a secret reference, not in headers")
        return value


def _upstream_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        if "command" in value:
            return "stdio"
        if "url" in value:
            return "http"
        return None
    return "stdio" if isinstance(value, StdioUpstream) else "http" if isinstance(value, HttpUpstream) else None


Upstream = Annotated[
    Annotated[StdioUpstream, Tag("stdio")] | Annotated[HttpUpstream, Tag("http")],
    Discriminator(
        _upstream_kind,
        custom_error_type="upstream_kind",
        custom_error_message="an upstream needs either `command: [...]` (stdio) or `url: ...` (HTTP)",
    ),
]


def _compiles(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from exc
    return value


Regex = Annotated[str, AfterValidator(_compiles)]


class ArgConstraint(Frozen):
    """Least-privilege limits on one argument, checked after schema validation."""

    path_within: str | None = Field(None, description="absolute root the (canonicalised) path must stay in")
    url_hosts: tuple[str, ...] | None = Field(None, description="allowed hosts; '*.example.com' for subdomains")
    enum: tuple[Any, ...] | None = None
    pattern: Regex | None = Field(None, description="regular expression the whole string must match")
    max_length: int | None = Field(None, ge=0)
    min: float | None = None
    max: float | None = None
    max_items: int | None = Field(None, ge=0)

    @field_validator("path_within")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_absolute():
            raise ValueError("path_within must be an absolute path")
        return value


class ApprovalMatch(Frozen):
    """An argument pattern that makes a call need approval: any one condition that holds is enough."""

    pattern: Regex | None = Field(None, description="regular expression found anywhere in the string value")
    equals: tuple[Any, ...] | None = Field(None, description="values that need approval")
    min: float | None = Field(None, description="numbers at or above this need approval")
    max: float | None = Field(None, description="numbers at or below this need approval")

    @model_validator(mode="after")
    def _one_condition(self) -> ApprovalMatch:
        if all(x is None for x in (self.pattern, self.equals, self.min, self.max)):
            raise ValueError("give at least one of pattern, equals, min, max")
        return self


InjectionAction = Literal["annotate", "redact", "quarantine", "deny"]


class ToolGrant(Frozen):
    args: dict[str, ArgConstraint] = Field(default_factory=dict)
    strict: bool = Field(True, description="reject arguments the input schema does not declare")
    max_result_bytes: int | None = Field(None, gt=0)
    on_oversize: Literal["truncate", "deny"] | None = None
    approval: Literal["required", "none"] = Field(
        "none", description="required: every call waits for a human approver")
    approval_when: dict[str, ApprovalMatch] = Field(
        default_factory=dict, description="argument name -> pattern; a call whose argument matches needs approval")
    on_injection: InjectionAction | None = Field(
        None, description="what a result flagged as injection becomes for this tool; strictest of this and "
                          "output.injection.action wins")


class Role(Frozen):
    tools: dict[str, ToolGrant] = Field(
        default_factory=dict, description="exposed tool name or glob -> grant (default deny)"
    )
    prompts: tuple[str, ...] = Field((), description="exposed prompt names or globs")
    resources: tuple[str, ...] = Field((), description="'<upstream>.<uri>' globs")


class Operator(Frozen):
    """A human who approves calls or throws the kill switch: the approval page, the admin API, the CLI.

    Operator keys are a separate table from ``auth.api_keys``: an agent's key never opens the page.
    """

    id: str = Field(pattern=NAME.pattern, description="key id, written to the audit log")
    hash: str = Field(pattern=r"^scrypt\$", description="scrypt hash from `gatehold key new`")
    principal: str = Field(min_length=1, description="who this is; an approver never approves their own call")
    can: tuple[Literal["approve", "kill"], ...] = Field(min_length=1)


class WebhookSettings(Frozen):
    url: str = Field(pattern=HTTP_URL, description="receives a POST for every new approval request")
    secret: str = Field(description="name in secrets: the HMAC-SHA256 key that signs each delivery")
    format: Literal["gatehold", "slack"] = Field("gatehold", description="slack: Slack-compatible {text, blocks}")
    retries: int = Field(3, ge=0, le=10)
    timeout_seconds: float = Field(5.0, gt=0, le=60)


class ApprovalSettings(Frozen):
    destructive: Literal["required", "none"] = Field(
        "none", description="required: tools annotated destructiveHint: true need approval (annotations only "
                            "ever add approval)")
    expiry_seconds: float = Field(900.0, gt=0, le=86_400, description="how long a request waits for a human")
    hold_seconds: float = Field(
        120.0, gt=0, le=3600,
        description="how long a call from a client without URL elicitation is held open waiting")
    retry_wait_seconds: float = Field(
        20.0, ge=0, le=120, description="2026 clients: how long a retry waits for the decision before asking again")
    public_url: str | None = Field(
        None, pattern=HTTP_URL, description="base URL of this gateway for approval links; default from listen")
    webhook: WebhookSettings | None = None
    state_key: str | None = Field(
        None, description="name in secrets: the key that seals requestState (32+ bytes); default: random per "
                          "process")


LABELS = ("untrusted", "private", "external_sink", "destructive")
Label = Literal["untrusted", "private", "external_sink", "destructive"]
# What a rule's ``from`` may name: a tool label, or ``suspect``, which no tool carries: a session reads
# it when the injection detector scores a result at ``flow.suspect_score`` or more.
SourceLabel = Literal["untrusted", "private", "external_sink", "destructive", "suspect"]
Effect = Literal["allow", "ask", "deny"]


class FlowRule(Frozen):
    """After a session read output labelled ``from``, a call to a tool labelled ``to`` gets ``effect``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str | None = Field(None, pattern=NAME.pattern, description="rule id in decisions; default flows[i]")
    sources: tuple[SourceLabel, ...] = Field(
        alias="from", min_length=1, description="labels the session has read; suspect: output the injection "
                                                "detector scored at flow.suspect_score or more")
    sinks: tuple[Label, ...] = Field(alias="to", min_length=1, description="labels of the tool being called")
    effect: Effect
    match: Literal["session", "arguments"] = Field(
        "session", description="session: once anything labelled `from` was read; arguments: only when an "
                               "argument carries a value remembered from such output")
    principals: tuple[str, ...] = Field(("*",), min_length=1, description="principal globs the rule applies to")
    roles: tuple[str, ...] = Field((), description="roles the rule applies to; empty means every caller")


class FlowSettings(Frozen):
    provenance: Literal["ask", "deny", "off"] = Field(
        "ask", description="least effect for an external_sink call whose arguments carry a value seen only in "
                           "untrusted output, even when no rule fires")
    annotations: Literal["explicit", "off"] = Field(
        "explicit", description="derive labels from tool annotations the upstream states (they only add labels)")
    suspect_score: float | None = Field(
        0.3, gt=0, le=1, description="detector score from which a result gives its session the suspect label, "
                                     "flagged or not (null: never)")
    remember_values: int = Field(5000, gt=0, le=1_000_000, description="values remembered per session")
    idle_seconds: float = Field(86_400.0, gt=0, description="a session's flow state is forgotten after this idle")
    max_sessions: int = Field(100_000, gt=0)


class InjectionSettings(Frozen):
    action: InjectionAction = Field("quarantine", description="what a result flagged as injection becomes")
    threshold: float | None = Field(None, gt=0, le=1, description="detector score that flags; default the "
                                                                   "detector's own")
    metadata: Literal["quarantine", "annotate", "off"] = Field(
        "quarantine", description="a listed tool/prompt/resource whose metadata is flagged is hidden until accepted")


class OutputSettings(Frozen):
    sanitise: bool = Field(True, description="strip hidden content from results and metadata")
    allowed_link_hosts: tuple[str, ...] = Field(
        (), description="hosts whose markdown/HTML links and images survive ('*.example.com' for subdomains)")
    injection: InjectionSettings = Field(default_factory=InjectionSettings)
    redact_secrets: bool = Field(True, description="redact known secret formats in results and errors")
    spotlight: Literal["off", "untrusted", "all"] = Field(
        "off", description="wrap tool text in delimiters naming it data from server/tool (spotlighting)")
    accepted: dict[str, str] = Field(
        default_factory=dict, description="exposed name -> sha256 of a flagged definition a human accepted")


class Config(Frozen):
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    state: str = Field("memory", pattern=r"^(memory|rediss?://.+)$",
                       description="shared state backend: memory, or a redis:// URL")
    audit: AuditSettings = Field(default_factory=AuditSettings)
    secrets: dict[str, SecretRef] = Field(default_factory=dict)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    upstreams: dict[str, Upstream] = Field(default_factory=dict)
    roles: dict[str, Role] = Field(default_factory=dict)
    scopes: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="OAuth scope -> exposed tool names or globs it grants")
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)
    operators: tuple[Operator, ...] = Field((), description="approvers and kill-switch operators")
    labels: dict[str, tuple[Label, ...]] = Field(
        default_factory=dict, description="exposed tool name or glob -> data-flow labels")
    flows: tuple[FlowRule, ...] = Field((), description="data-flow rules; strictest firing rule wins")
    flow: FlowSettings = Field(default_factory=FlowSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems: list[str] = self._identity_problems()
        for name in self.upstreams:
            if not NAME.match(name):
                problems.append(f"upstreams.{name}: names use letters, digits, '_' and '-'")
        for key in self.auth.api_keys:
            problems += [
                f"auth.api_keys[{key.id}].roles: role {r!r} is not defined in roles"
                for r in key.roles
                if r not in self.roles
            ]
        if self.auth.stdio:
            problems += [
                f"auth.stdio.roles: role {r!r} is not defined in roles"
                for r in self.auth.stdio.roles
                if r not in self.roles
            ]
        for name, up in self.upstreams.items():
            if isinstance(up, StdioUpstream):
                problems += [
                    f"upstreams.{name}.env.{var}: secret {ref!r} is not defined in secrets"
                    for var, ref in up.env.items()
                    if ref not in self.secrets
                ]
            elif up.credential:
                problems += [
                    f"upstreams.{name}.credential: secret {ref!r} is not defined in secrets"
                    for ref in sorted(up.credential.secret_names())
                    if ref not in self.secrets
                ]
        problems += self._approval_problems()
        problems += self._flow_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _approval_problems(self) -> list[str]:
        problems: list[str] = []
        ids = [op.id for op in self.operators]
        problems += [f"operators: id {i!r} is repeated" for i in sorted({i for i in ids if ids.count(i) > 1})]
        clash = sorted(set(ids) & {key.id for key in self.auth.api_keys})
        problems += [f"operators.{i}: id is also an agent API key id; use distinct ids" for i in clash]
        hook = self.approvals.webhook
        if hook is not None and hook.secret not in self.secrets:
            problems.append(f"approvals.webhook.secret: secret {hook.secret!r} is not defined in secrets")
        key = self.approvals.state_key
        if key is not None and key not in self.secrets:
            problems.append(f"approvals.state_key: secret {key!r} is not defined in secrets")
        return problems

    def _flow_problems(self) -> list[str]:
        problems: list[str] = []
        ids = [rule.id for rule in self.flows if rule.id]
        problems += [f"flows: id {i!r} is repeated" for i in sorted({i for i in ids if ids.count(i) > 1})]
        for i, rule in enumerate(self.flows):
            problems += [f"flows[{i}].roles: role {r!r} is not defined in roles" for r in rule.roles
                         if r not in self.roles]
        for name, labels in self.labels.items():
            if not name:
                problems.append("labels: an empty tool name")
            if len(set(labels)) != len(labels):
                problems.append(f"labels.{name}: a label is repeated")
        return problems

    def _identity_problems(self) -> list[str]:
        problems: list[str] = []
        oauth, tls = self.auth.oauth, self.gateway.tls
        if oauth is not None:
            if not self.gateway.resource:
                problems.append("gateway.resource: required with auth.oauth (RFC 9728 metadata names it)")
            if oauth.scope_mode != "roles" and not self.scopes:
                # Fail closed and say so: with no scope map every OAuth tool call would be refused.
                problems.append(f"scopes: required when auth.oauth.scope_mode is {oauth.scope_mode!r} "
                                "(or set scope_mode: roles)")
            problems += [f"auth.oauth.default_roles: role {r!r} is not defined in roles"
                         for r in oauth.default_roles if r not in self.roles]
            if oauth.introspection and oauth.introspection.client_secret not in self.secrets:
                problems.append(f"auth.oauth.introspection.client_secret: secret "
                                f"{oauth.introspection.client_secret!r} is not defined in secrets")
        if self.auth.mtls is not None:
            if tls is None or tls.client_certs == "none":
                problems.append("auth.mtls: needs gateway.tls with client_certs optional or required")
            for i, mapping in enumerate(self.auth.mtls.mappings):
                problems += [f"auth.mtls.mappings[{i}].roles: role {r!r} is not defined in roles"
                             for r in mapping.roles if r not in self.roles]
        for scope, patterns in self.scopes.items():
            if not scope or any(ch in scope for ch in ' "\\'):
                problems.append(f"scopes.{scope}: a scope is a non-empty token without spaces or quotes")
            if not patterns:
                problems.append(f"scopes.{scope}: lists no tools")
        return problems

    def prefix_of(self, upstream: str) -> str:
        prefix = self.upstreams[upstream].prefix
        return upstream if prefix is None else prefix


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration plus where it came from."""

    config: Config
    base_dir: Path
    policy_version: str  # sha256 of the canonical configuration: binds decisions to a policy

    def path(self, value: str) -> Path:
        """A path from the config, relative ones taken from the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p


def _format(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors(include_url=False):
        loc = ".".join(str(part) for part in item["loc"] if not str(part).startswith("function-after"))
        loc = re.sub(r"\.(stdio|http)(\.|$)", r"\2", loc) or "(top level)"
        given = item.get("input")
        shown = repr(given) if not isinstance(given, dict) else "{...}"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see examples/gatehold.schema.json)"
        lines.append(f"{loc}: {msg} (given: {shown})")
    return lines


def parse_config(data: Any, *, base_dir: Path) -> LoadedConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"(top level): expected a mapping, given {type(data).__name__}"])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc)) from None
    canonical = orjson.dumps(config.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return LoadedConfig(config, base_dir, hashlib.sha256(canonical).hexdigest()[:16])


def load_config(path: str | Path) -> LoadedConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read ({exc.strerror})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{p}: not valid YAML: {exc}"]) from None
    return parse_config(data, base_dir=p.resolve().parent)


def config_json_schema() -> dict[str, Any]:
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Gatehold configuration"
    return schema
