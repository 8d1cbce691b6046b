"""Transport checks for remote servers: TLS, authentication, discovery metadata and Origin validation.

They read the URL a client configuration names (``Launch.url``) and what the target loaders found when
they probed the server (:class:`TransportProbe`). A probe field that is ``None`` was not probed and
gives no finding. A loopback host (``localhost``, ``127.0.0.0/8``, ``::1``, or the unspecified address,
which a client connecting to reaches on this host) never leaves the machine, so plain HTTP to it is not
reported.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from typing import Final
from urllib.parse import urlsplit

from gatehold.output.secrets import SecretRedactor
from gatehold.scan.model import CheckInfo, Finding, ScanInput, ServerSnapshot, TransportProbe

__all__ = ["CHECKS", "is_loopback_url", "run", "shown_url"]

NO_TLS = CheckInfo(
    id="remote-no-tls",
    title="A remote server is reached over plain HTTP",
    severity="high",
    rationale=(
        "Without TLS, anyone on the network path can read the tool calls and results and the credentials "
        "sent with them, and can change the tool definitions the client receives, injecting "
        "instructions into them."
    ),
    remediation="Use an https:// URL; if the server cannot serve TLS, put a TLS-terminating proxy such as "
                "Gatehold in front of it.",
)
NO_AUTH = CheckInfo(
    id="remote-no-auth",
    title="A server lists its tools to a caller with no credential",
    severity="high",
    rationale=(
        "Anyone who can reach the server can call its tools. On a loopback address that still includes "
        "every local process and, through DNS rebinding, any web page the user opens."
    ),
    remediation="Require authentication (OAuth 2.1 bearer tokens or API keys), for example by serving the "
                "tools only through Gatehold with auth configured.",
)
NO_METADATA = CheckInfo(
    id="no-resource-metadata",
    title="A server asks for authorisation but serves no protected-resource metadata",
    severity="low",
    rationale=(
        "MCP clients discover which authorisation server to use from the RFC 9728 protected-resource "
        "metadata the 401 response points to. Without it clients fall back to guesses or to "
        "credentials pasted into configuration files."
    ),
    remediation="Serve /.well-known/oauth-protected-resource and name it in the resource_metadata "
                "parameter of the WWW-Authenticate challenge (Gatehold does both).",
)
ORIGIN = CheckInfo(
    id="origin-not-validated",
    title="A server accepts requests from a foreign Origin",
    severity="medium",
    rationale=(
        "A web page the user visits can send requests to an HTTP server the browser can reach, and DNS "
        "rebinding lets it read the answers; the MCP specification requires servers to validate Origin "
        "for this reason. Without authentication the page can call every tool."
    ),
    remediation="Reject requests whose Origin header is not an allowed origin with 403 (Gatehold's "
                "gateway.allowed_origins), and bind local servers to loopback only.",
)
CHECKS: tuple[CheckInfo, ...] = (NO_TLS, NO_AUTH, NO_METADATA, ORIGIN)

_PLAIN_SCHEMES: Final = ("http", "ws")
_REDACTOR: Final = SecretRedactor()


def is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is loopback (or unspecified, which reaches this host); False if unparsable."""
    try:
        host = urlsplit(url).hostname
    except ValueError:  # an unparsable URL is not known to stay on this host
        return False
    if not host:
        return False
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a name other than localhost: it may resolve anywhere
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def shown_url(url: str, *, query: bool = False) -> str:
    """``url`` fit to show: scheme, host, port and path, never user info; secrets redacted.

    Reports, server names and lockfile evidence use it as is (no query or fragment, which often carry
    session ids or tokens). Messages to the operator pass ``query=True`` to keep the query, redacted, so
    that they can tell two targets apart; an unparsable URL is then shown as typed, redacted and
    cut short, since it is the operator's own input.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # not a URL we can take apart: in a report, show only that it was one
        if query:
            return _printable(_REDACTOR.text(url).text)
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    shown = f"{parts.scheme}://{host}{f':{port}' if port is not None else ''}{parts.path}"
    if query and parts.query:
        shown += f"?{parts.query}"
    return _printable(_REDACTOR.text(shown).text)


_MAX_SHOWN: Final = 500


def _printable(text: str) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 3] + "..."


def _scheme(url: str) -> str:
    try:
        return urlsplit(url).scheme.lower()
    except ValueError:  # treat as no scheme: nothing to say about TLS
        return ""


def run(scan: ScanInput) -> Iterable[Finding]:
    out: list[Finding] = []
    for server in scan.servers:
        out.extend(_tls(server))
        if server.transport is not None:
            out.extend(_probe(server, server.transport))
    return out


def _tls(server: ServerSnapshot) -> Iterator[Finding]:
    urls: dict[str, bool] = {}  # url -> loopback
    if server.launch is not None and server.launch.url:
        urls[server.launch.url] = is_loopback_url(server.launch.url)
    probe = server.transport
    if probe is not None and not probe.tls:
        urls[probe.url] = probe.loopback or is_loopback_url(probe.url)
    for url, loopback in urls.items():
        if loopback or _scheme(url) not in _PLAIN_SCHEMES:
            continue
        shown = shown_url(url)
        yield Finding(check=NO_TLS.id, severity=NO_TLS.severity,
                      message=f"server {_label(server)} is reached over plain HTTP at {shown}",
                      location=server.at("server", None, "url"), evidence=shown)


def _probe(server: ServerSnapshot, probe: TransportProbe) -> Iterator[Finding]:
    loopback = probe.loopback or is_loopback_url(probe.url)
    shown = shown_url(probe.url)
    where = server.at("server", None, "url")
    if probe.unauthenticated_list is True:
        if loopback:
            message = (f"server {_label(server)} at {shown} listed its tools without a credential: any local "
                       f"process, or a web page through DNS rebinding, can call them")
        else:
            message = f"server {_label(server)} at {shown} listed its tools without a credential: anyone can call them"
        yield Finding(check=NO_AUTH.id, severity="medium" if loopback else NO_AUTH.severity, message=message,
                      location=where, evidence=f"tools/list without credentials succeeded at {shown}")
    if probe.auth_challenge is True and probe.resource_metadata is False:
        yield Finding(check=NO_METADATA.id, severity=NO_METADATA.severity,
                      message=(f"server {_label(server)} at {shown} answers 401 but serves no RFC 9728 "
                               f"protected-resource metadata: clients cannot discover its authorisation server"),
                      location=where, evidence=f"401 with WWW-Authenticate, no resource metadata at {shown}")
    if probe.origin_rejected is False:
        open_too = probe.unauthenticated_list is True
        yield Finding(check=ORIGIN.id, severity="high" if open_too else ORIGIN.severity,
                      message=(f"server {_label(server)} at {shown} accepted a request with a foreign Origin"
                               + (" and no credential: a web page the user opens can call its tools"
                                  if open_too else ": it is open to DNS rebinding")),
                      location=where, evidence=f"foreign Origin not rejected with 403 at {shown}")


def _label(server: ServerSnapshot) -> str:
    return repr(server.name) if server.name is not None else "(unnamed)"
