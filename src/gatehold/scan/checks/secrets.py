"""Secrets where they do not belong: in tool metadata, and written literally into client configurations.

``metadata-secret``: a credential in a definition a model reads (descriptions, titles, schema
``default``/``examples``/``enum``/``const`` values, resource URIs), found by the gateway's own
:class:`gatehold.output.secrets.SecretRedactor` (18 formats, and high-entropy values after a
credential-like key).

``config-secret``: a literal secret in how a client configuration starts or reaches a server:

* ``env`` values under a credential-like name (``GITHUB_TOKEN``, ``DB_PASSWORD``, ``OPENAI_API_KEY``,
  ``DSN``...) that are literal values, not references (``${VAR}``, ``$VAR``, ``${env:VAR}``,
  ``${input:id}``, ``{{...}}``, ``%VAR%``, ``env:NAME``, ``file:PATH``, ``op://``, keychain and vault
  references), placeholders (``<your-token>``, ``YOUR_API_KEY``, ``xxxx``), booleans, numbers or file
  paths; and any env value the redactor recognises;
* command-line arguments: ``--token=VALUE``, ``--api-key VALUE``, ``NAME=VALUE`` (as ``docker -e``
  takes them), and any argument the redactor recognises;
* URLs (``url``, env values, arguments) with a password in their userinfo or a credential-like query
  parameter (``api_key``, ``token``, ``access_token``, ``key``, ``sig``...);
* an ``Authorization`` header with a literal credential, and other credential-like headers
  (``X-API-Key``, ``Cookie``...).

The env values of a ``gatehold.yaml`` upstream are names of secrets, not secrets, and are skipped.
Finally every raw configuration text is read line by line with the redactor, to catch secrets in
places the configuration loaders do not model; a secret already reported for a server is not
reported again.

Findings never carry a secret: evidence is a masked form (at most the first four characters, fewer for
short values, then ``…`` and the length).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gatehold.output.secrets import SecretRedactor
from gatehold.scan.checks.fields import text_fields, visible
from gatehold.scan.model import CheckInfo, Finding, ItemKind, Location, ScanInput, ServerSnapshot

__all__ = ["CHECKS", "CONFIG_SECRET", "METADATA_SECRET", "credential_like", "is_reference", "mask", "run",
           "secret_spans"]

METADATA_SECRET = CheckInfo(
    id="metadata-secret",
    title="Credential in tool, prompt or resource metadata",
    severity="high",
    rationale=(
        "Tool definitions are sent to every client and every model that connects, and end up in logs, "
        "transcripts and screenshots. A key, token or password in a description, an example or a default "
        "value is disclosed to all of them, and a model may use it."),
    remediation=(
        "Revoke the credential now and issue a new one. Remove it from the server's metadata; a server needs "
        "its credentials server-side (environment, secret store), never in what it lists."),
)

CONFIG_SECRET = CheckInfo(
    id="config-secret",
    title="Literal secret in a client configuration",
    severity="high",
    rationale=(
        "Client configuration files (mcp.json, claude_desktop_config.json, settings.json...) are copied "
        "between machines, committed to repositories, shared in issues and read by any process of the user. "
        "A token written into one is as exposed as the file; a credential in a URL also lands in proxy and "
        "server logs."),
    remediation=(
        "Revoke and rotate the credential, then reference it instead of writing it: an environment variable "
        "(`${VAR}`), the client's input prompt, or a secret store; behind Gatehold, upstream credentials live "
        "in the gateway's `secrets:` as `env:NAME` or `file:PATH` references."),
)

CHECKS: tuple[CheckInfo, ...] = (METADATA_SECRET, CONFIG_SECRET)

_REDACTOR = SecretRedactor()
_MARKER = re.compile(r"\[REDACTED(?::([a-z_]+))?\]")
_LABELS = {
    "private_key": "private key", "jwt": "JWT", "anthropic_key": "Anthropic API key", "openai_key": "OpenAI API key",
    "stripe_key": "Stripe key", "github_token": "GitHub token", "gitlab_token": "GitLab token",
    "slack_token": "Slack token", "slack_webhook": "Slack webhook", "gcp_api_key": "Google API key",
    "google_oauth": "Google OAuth token", "npm_token": "npm token", "aws_access_key": "AWS access key id",
    "aws_secret_key": "AWS secret access key", "azure_storage": "Azure storage key",
    "connection_string": "connection-string password", "bearer": "bearer credential", "generic_secret": "secret",
    "known": "secret", "literal": "secret", "userinfo": "URL password", "query": "credential URL parameter",
}

# --------------------------------------------------------------------------------------------------
# what is a credential name, a reference, a placeholder

_CREDENTIAL_WORDS = frozenset({"TOKEN", "TOKENS", "SECRET", "SECRETS", "KEY", "APIKEY", "PASSWORD", "PASSWD",
                               "PASS", "PWD", "AUTH", "CREDENTIAL", "CREDENTIALS", "CREDS", "PRIVATE", "DSN",
                               "PASSPHRASE", "COOKIE", "PAT", "ACCESSKEY", "SECRETKEY", "AUTHKEY"})
# A last word that describes the secret rather than holds it.
_DESCRIPTIVE = frozenset({"FILE", "PATH", "DIR", "URL", "URI", "ENDPOINT", "HOST", "SERVER", "DOMAIN", "REALM",
                          "TYPE", "MODE", "NAME", "ID", "HEADER", "ENABLED", "REQUIRED", "METHOD", "PROVIDER",
                          "ALGORITHM", "ALG", "TTL", "EXPIRY", "EXPIRES", "LENGTH", "HINT", "FORMAT", "VERSION",
                          "PORT", "USER", "USERNAME", "SCOPE", "SCOPES", "REGION", "ISSUER", "AUDIENCE", "FIELD",
                          "PREFIX", "LOCATION", "HASH", "FINGERPRINT", "ENV", "VAR", "VARIABLE", "COMMAND", "CMD",
                          "HELPER", "STORE", "LIMIT", "TIMEOUT", "RETRIES"})
# KEY after one of these is a database or cache key, not a credential.
_NOT_SECRET_KEY = frozenset({"SORT", "PARTITION", "PRIMARY", "FOREIGN", "CACHE", "ROUTING", "SHORTCUT", "HOT",
                             "IDEMPOTENCY", "LOOKUP", "INDEX", "MAP", "HASH", "ROW", "GROUP", "DEDUP", "RANGE",
                             "JSON", "OBJECT", "BUCKET", "PUBLIC", "SSH_PUBLIC"})
_QUERY_NAMES = frozenset({"key", "sig", "signature", "sas", "x-amz-signature", "x-amz-security-token",
                          "x-goog-signature", "access_token", "id_token", "refresh_token", "token", "auth", "apikey",
                          "api_key", "api-key", "password", "pass", "pwd", "secret", "client_secret", "code_verifier"})
# Names that also name settings ("--auth oauth", "PRIVATE=true", "?key=users"): a value under them counts
# only when it looks like a secret (see _secretish).
_AMBIGUOUS_WORDS = frozenset({"AUTH", "PRIVATE"})
_WEAK_QUERY_NAMES = frozenset({"key", "sig", "signature", "auth", "token"})
_AUTH_HEADERS = frozenset({"authorization", "proxy-authorization"})

_REFERENCE = re.compile(
    r"""\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\{\{.*?\}\}|%[A-Za-z_][A-Za-z0-9_]*%|<%=.*?%>
      |^(?:env|file|vault|secret|secrets|keychain|keyring|op|pass|bw|ssm|sm|gcpsm|azkv|awssm|cmd|exec):""",
    re.X | re.I)
_PLACEHOLDER = re.compile(
    r"""^(?:<[^<>]*>|\[[^\[\]]*\]|\(.*\)|[x*._#-]{3,}|.*(?:x{5,}|\*{5,}|\.{3}|…|0{8,}).*
      |.*\b(?:your|my|the)[-_ ]?(?:[a-z]+[-_ ])?(?:api[-_ ]?)?(?:key|token|secret|password|pat|credentials?)\b.*
      |.*(?:[-_ ]here|_goes_here)|change[-_ ]?me.*|replace[-_ ]?me.*|.*placeholder.*|todo|tbd|none|null|nil
      |undefined|redacted|dummy|example|test|secret|password|token|api[-_ ]?key|<redacted>)$""", re.X | re.I)
_PLAIN_VALUE = re.compile(r"^(?:true|false|yes|no|on|off|enabled|disabled|-?\d+(?:\.\d+)?)$", re.I)
_PATH_VALUE = re.compile(r"^(?:/|~[/\\]|\.{1,2}[/\\]|[A-Za-z]:[/\\]|\\\\)")
_OPTION = re.compile(r"^(?P<dashes>-{1,2})(?P<name>[A-Za-z][\w.-]*)(?:=(?P<value>.*))?$", re.S)
_ASSIGNMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$", re.S)


def _words(name: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.upper()) if w]


def credential_like(name: str) -> bool:
    """Whether a variable, option, header or parameter name says it holds a credential."""
    words = _words(name)
    if not words or words[-1] in _DESCRIPTIVE or "PUBLIC" in words:
        return False
    joined = "_".join(words)
    if "CONNECTION_STRING" in joined or "CONN_STR" in joined or "API_KEY" in joined:
        return True
    for i, word in enumerate(words):
        if word == "KEY" and i and words[i - 1] in _NOT_SECRET_KEY:
            continue
        if word in _CREDENTIAL_WORDS:
            return True
    return False


def _ambiguous(name: str) -> bool:
    """A credential-like name whose only credential word also names settings (``AUTH``, ``PRIVATE``)."""
    words = set(_words(name))
    return bool(words & _AMBIGUOUS_WORDS) and not (words & (_CREDENTIAL_WORDS - _AMBIGUOUS_WORDS))


def _secretish(value: str) -> bool:
    """Long enough and mixed enough to be a credential rather than a word or a name: 8+ characters with
    a digit or both letter cases."""
    text = value.strip()
    return len(text) >= 8 and (any(c.isdigit() for c in text) or (text.lower() != text and text.upper() != text))


def _named_literal(name: str, value: str) -> bool:
    """A literal secret under a credential-like name."""
    return credential_like(name) and _literal(value) and (not _ambiguous(name) or _secretish(value))


def is_reference(value: str) -> bool:
    """Whether ``value`` refers to a secret kept elsewhere (or only stands in for one) instead of being one."""
    text = value.strip().strip("\"'")
    return (not text or _REFERENCE.search(text) is not None or _PLACEHOLDER.match(text) is not None
            or text.lower().startswith(("op://", "keychain", "vault:", "secretsmanager:")))


def _literal(value: str) -> bool:
    """A value that is a secret as written: not a reference, placeholder, flag, number or file path."""
    text = value.strip()
    return not (is_reference(text) or _PLAIN_VALUE.match(text) or _PATH_VALUE.match(text))


def mask(value: str) -> str:
    """At most the first four characters (a quarter of a short value), then ``…`` and the length."""
    shown = min(4, len(value) // 4)
    return f"{visible(value[:shown], 16)}… ({len(value)} chars)"


def secret_spans(original: str, redacted: str) -> list[tuple[str, str]] | None:
    """``(kind, value)`` of each marker the redactor put into ``redacted``, aligned back onto ``original``.

    None when the two cannot be aligned (then only the kinds are known). Adjacent markers are one span.
    """
    parts = _MARKER.split(redacted)
    literals, kinds = parts[0::2], [k or "known" for k in parts[1::2]]
    if not original.startswith(literals[0]) or not original.endswith(literals[-1]):
        return None
    spans: list[tuple[str, str]] = []
    pos = len(literals[0])
    limit = len(original) - len(literals[-1])
    pending = ""
    for i, kind in enumerate(kinds):
        after = literals[i + 1]
        pending = pending or kind
        if i == len(kinds) - 1:
            end = limit
        elif not after:
            continue  # the next marker follows at once: one span
        else:
            end = original.find(after, pos + 1, limit)
            if end < 0:
                return None
        if end < pos:
            return None
        spans.append((pending, original[pos:end]))
        pos = end + len(after)
        pending = ""
    return spans


@dataclass(frozen=True, slots=True)
class _Hit:
    kind: str  # a redactor kind, or "literal", "userinfo", "query"
    value: str
    detail: str = ""  # e.g. the query parameter's name


def _recognised(value: str) -> list[_Hit]:
    """Secrets the redactor recognises in ``value``, references and placeholders left out."""
    redaction = _REDACTOR.text(value)
    if not redaction.found:
        return []
    if "error" in redaction.found:
        return [_Hit("error", "")]
    spans = secret_spans(value, redaction.text)
    if spans is None:
        return [_Hit(kind, "") for kind in redaction.found]
    return [_Hit(kind, secret) for kind, secret in spans if secret and not is_reference(secret)]


def _url_hits(url: str) -> list[_Hit]:
    """A password in the userinfo, and credential-like query parameters with literal values."""
    if "://" not in url:
        return []
    try:
        parts = urlsplit(url.strip())
        password = parts.password
    except ValueError:  # not a URL after all (bad port, brackets): the redactor still reads it as text
        return []
    hits: list[_Hit] = []
    if password and _literal(password):
        hits.append(_Hit("userinfo", password))
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        weak = name.lower() in _WEAK_QUERY_NAMES
        if (name.lower() in _QUERY_NAMES or _named_literal(name, value)) and _literal(value) and (
                not weak or _secretish(value)):
            hits.append(_Hit("query", value, name))
    return hits


# --------------------------------------------------------------------------------------------------
# the checks


def run(scan: ScanInput) -> Iterator[Finding]:
    reported = _Reported()
    for server in scan.servers:
        for kind, name, definition in server.items():
            yield from _metadata(server, kind, name, definition)
        if server.launch is not None:
            yield from _launch(server, reported)
    references = {value for server in scan.servers if server.source == "gatehold-config" and server.launch
                  for value in server.launch.env.values()}
    for config in scan.configs:
        yield from _raw(config.path, config.text, reported, references)


def _metadata(server: ServerSnapshot, kind: ItemKind, name: str, definition: Mapping[str, Any]) -> Iterator[Finding]:
    for text_field in text_fields(definition):
        if text_field.kind == "name" and text_field.path not in ("uri", "uriTemplate"):
            continue
        hits = _recognised(text_field.value) + _url_hits(text_field.value)
        hits = _unique(hits)
        if not hits:
            continue
        where = server.at(kind, name, visible(text_field.path, 200))
        if any(h.kind == "error" for h in hits):
            yield Finding(METADATA_SECRET.id, METADATA_SECRET.severity,
                          f"{kind} {visible(name, 60)!r}: {text_field.path} could not be checked for secrets", where)
            continue
        labels = sorted({_label(h) for h in hits})
        yield Finding(METADATA_SECRET.id, METADATA_SECRET.severity,
                      f"{kind} {visible(name, 60)!r}: {', '.join(labels)} in {visible(text_field.path, 80)}", where,
                      _evidence(hits))


@dataclass
class _Reported:
    """Secret values already reported for a server (kept in memory only, to dedupe the raw-text pass)."""

    values: set[str] = field(default_factory=set)

    def add(self, hits: list[_Hit]) -> None:
        self.values.update(h.value for h in hits if h.value)

    def covers(self, value: str) -> bool:
        return any(value == v or (len(value) >= 6 and value in v) or (len(v) >= 6 and v in value)
                   for v in self.values)


def _launch(server: ServerSnapshot, reported: _Reported) -> Iterator[Finding]:
    launch = server.launch
    if launch is None:
        return
    places: list[tuple[str, list[_Hit]]] = []
    if server.source != "gatehold-config":
        for var, value in launch.env.items():
            places.append((f"env.{var}", _named_value(var, value)))
    args = launch.command
    for i, arg in enumerate(args):
        hits = _recognised(arg) + _url_hits(arg)
        option = _OPTION.match(arg) or _ASSIGNMENT.match(arg)
        if option is not None and option["value"] is not None and credential_like(option["name"]):
            hits += _named_value(option["name"], option["value"])
        previous = _OPTION.match(args[i - 1]) if i else None
        if (previous is not None and previous["value"] is None and not arg.startswith("-")
                and _named_literal(previous["name"], arg)):
            hits.append(_Hit("literal", arg, previous["name"]))
        places.append((f"args[{i}]", hits))
    if launch.url:
        places.append(("url", _recognised(launch.url) + _url_hits(launch.url)))
    for header, value in launch.headers.items():
        places.append((f"headers.{header}", _header(header, value)))
    for where, found in places:
        hits = _unique(found)
        if not hits:
            continue
        reported.add(hits)
        location = Location(kind="config", server=server.name, field=visible(where, 200), file=server.file,
                            line=server.line)
        if any(h.kind == "error" for h in hits):
            yield Finding(CONFIG_SECRET.id, CONFIG_SECRET.severity, f"{where} could not be checked for secrets",
                          location)
            continue
        labels = sorted({_label(h) for h in hits})
        yield Finding(CONFIG_SECRET.id, CONFIG_SECRET.severity,
                      f"literal {', '.join(labels)} in {visible(where, 80)}", location, _evidence(hits))


def _named_value(name: str, value: str) -> list[_Hit]:
    """A value under a variable or option name: recognised formats, URL credentials, or a literal under a
    credential-like name (URLs are judged by their parts only: a DSN without a password is no secret)."""
    hits = _recognised(value) + _url_hits(value)
    if not hits and "://" not in value and _named_literal(name, value):
        hits.append(_Hit("literal", value))
    return hits


def _header(name: str, value: str) -> list[_Hit]:
    hits = _recognised(value)
    if name.lower() in _AUTH_HEADERS:
        scheme, _, credential = value.strip().partition(" ")
        credential = credential.strip() if credential else scheme
        if credential and _literal(credential) and not is_reference(value):
            hits.append(_Hit("literal", credential, "Authorization"))
    elif _named_literal(name, value):
        hits.append(_Hit("literal", value.strip()))
    return hits


def _raw(path: str, text: str, reported: _Reported, references: set[str]) -> Iterator[Finding]:
    for number, line in enumerate(text.splitlines(), 1):
        hits = [h for h in _recognised(line) if not (h.value and (reported.covers(h.value) or h.value in references))]
        if not hits:
            continue
        location = Location(kind="config", file=path, line=number)
        if any(h.kind == "error" for h in hits):
            yield Finding(CONFIG_SECRET.id, CONFIG_SECRET.severity, f"{path} line {number} could not be checked "
                          "for secrets", location)
            continue
        reported.add(hits)
        labels = sorted({_label(h) for h in hits})
        yield Finding(CONFIG_SECRET.id, CONFIG_SECRET.severity, f"literal {', '.join(labels)} in {path} line {number}",
                      location, _evidence(hits))


_RANK = {"literal": 0, "generic_secret": 1, "known": 1, "query": 2, "userinfo": 2}  # formats rank 3


def _unique(hits: list[_Hit]) -> list[_Hit]:
    """One hit per value, the most specific kind kept; an error replaces everything."""
    out: dict[str, _Hit] = {}
    for hit in hits:
        if hit.kind == "error":
            return [hit]
        key = hit.value or hit.kind
        known = out.get(key)
        if known is None or _RANK.get(hit.kind, 3) > _RANK.get(known.kind, 3):
            out[key] = hit
    return list(out.values())


def _label(hit: _Hit) -> str:
    label = _LABELS.get(hit.kind, hit.kind.replace("_", " "))
    return f"{label} ({hit.detail})" if hit.kind == "query" and hit.detail else label


def _evidence(hits: list[_Hit]) -> str:
    return "; ".join(f"{_label(h)}: {mask(h.value)}" if h.value else _label(h) for h in hits[:4])
