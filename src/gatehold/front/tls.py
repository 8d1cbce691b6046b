"""TLS terminated by Gatehold itself, and the verified client certificate handed to the app.

``ssl_options`` turns ``gateway.tls`` into keyword arguments for ``uvicorn.Config``. Every file is
read and a trial server context is built before uvicorn sees them, so a missing, unreadable or
mismatched cert, key or CA bundle is a ``ConfigError`` that names the field, not a crash later.

The context (built by our ``ssl_context_factory``, never uvicorn's default) is
``PROTOCOL_TLS_SERVER`` with ``minimum_version`` pinned to TLS 1.2 and, for TLS 1.2, forward-secret
AEAD suites only (TLS 1.3 suites are OpenSSL's, all AEAD). uvicorn's ``Config`` has no
minimum-version setting and its ``ssl_version`` only picks the protocol constant; the factory is
the hook that lets us set the floor explicitly rather than trusting the runtime's default. An
encrypted private key is refused: there is no passphrase setting, and OpenSSL would otherwise
prompt on the terminal.

uvicorn does not put the peer certificate into the ASGI scope. ``TlsHttpToolsProtocol`` and
``TlsH11Protocol`` read it once per connection in ``connection_made`` (asyncio and uvloop call it
only after the handshake, including client-certificate verification, has completed) and add
``scope["extensions"]["tls"]`` to every HTTP request on a TLS connection::

    {"client_cert": dict | None, "client_cert_der": bytes | None, "tls_version": str, "cipher": str}

Only a certificate that passed verification is ever reported: with ``client_certs: none`` the
server never asks for one and both fields are None; with ``optional`` or ``required`` OpenSSL
aborts the handshake when a presented certificate fails verification (``optional`` only tolerates
*no* certificate), and ``getpeercert()`` returns an empty dict for an unverified one, which we
report as None. WebSocket upgrades are served by uvicorn's own WebSocket protocol and carry no TLS
extension, so certificate authentication refuses them.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gatehold.config import TlsSettings
from gatehold.errors import ConfigError

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
# Mozilla "intermediate" TLS 1.2 suites: ECDHE/DHE key exchange, AEAD ciphers only.
TLS12_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
])
CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
FIELD = "gateway.tls"


def _no_passphrase() -> bytes:
    return b""  # fail closed: an encrypted key fails to load instead of prompting on the terminal


def server_context(certfile: str, keyfile: str | None, ca_certs: str | None, cert_reqs: int) -> ssl.SSLContext:
    """The server-side SSLContext Gatehold serves with (raises ``ssl.SSLError``/``OSError`` on bad files)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = max(ctx.minimum_version, MINIMUM_VERSION)
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(certfile, keyfile, _no_passphrase)
    if ca_certs:
        ctx.load_verify_locations(cafile=ca_certs)
    ctx.verify_mode = ssl.VerifyMode(cert_reqs)
    return ctx


def _context_factory(config: Any, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's ``ssl_context_factory``: our hardened context from the same Config fields."""
    key, ca = config.ssl_keyfile, config.ssl_ca_certs
    return server_context(str(config.ssl_certfile), str(key) if key else None, str(ca) if ca else None,
                          int(config.ssl_cert_reqs))


def _readable(field: str, value: str, resolve: Callable[[str], Path], problems: list[str]) -> str:
    path = resolve(value)
    try:
        with path.open("rb") as handle:
            if not handle.read(1):
                problems.append(f"{FIELD}.{field}: {path} is empty")  # fail closed: nothing to serve with
    except OSError as exc:
        problems.append(f"{FIELD}.{field}: cannot read {path} ({exc.strerror or exc})")  # fail closed: no file
    return str(path)


def ssl_options(tls: TlsSettings, resolve: Callable[[str], Path]) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config`` serving ``tls``; ``ConfigError`` if a file is unusable."""
    problems: list[str] = []
    cert = _readable("cert", tls.cert, resolve, problems)
    key = _readable("key", tls.key, resolve, problems)
    ca = _readable("client_ca", tls.client_ca, resolve, problems) if tls.client_ca else None
    if tls.client_certs != "none" and ca is None:
        problems.append(f"{FIELD}.client_ca: required when client_certs is {tls.client_certs!r}")  # fail closed
    if problems:
        raise ConfigError(problems)
    reqs = CERT_REQS[tls.client_certs]
    ca_used = ca if reqs != ssl.CERT_NONE else None  # with client_certs none no certificate is requested
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key, _no_passphrase)
    except (ssl.SSLError, OSError) as exc:
        # fail closed: a cert that is not PEM, a key that does not match it, or an encrypted key
        raise ConfigError([f"{FIELD}.cert/{FIELD}.key: cannot load the certificate chain and key "
                           f"({cert}, {key}): {exc}"]) from None
    if ca is not None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=ca)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError([f"{FIELD}.client_ca: not a PEM CA bundle ({ca}): {exc}"]) from None  # fail closed
    return {
        "ssl_certfile": cert,
        "ssl_keyfile": key,
        "ssl_ca_certs": ca_used,
        "ssl_cert_reqs": reqs,
        "ssl_version": ssl.PROTOCOL_TLS_SERVER,
        "ssl_ciphers": TLS12_CIPHERS,
        "ssl_context_factory": _context_factory,
    }


def tls_info(transport: Any) -> dict[str, Any] | None:
    """The TLS extension for a connection, or None when the transport is not TLS."""
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    cert: dict[str, Any] | None = None
    der: bytes | None = None
    if ssl_object.context.verify_mode != ssl.CERT_NONE:
        peer = ssl_object.getpeercert()
        if peer:  # fail closed: {} means a certificate that was not verified; None means none was sent
            cert = dict(peer)
            der = ssl_object.getpeercert(binary_form=True)
            if not der:
                cert = None  # fail closed: no DER, nothing an authenticator could check
    cipher = ssl_object.cipher()
    return {"client_cert": cert, "client_cert_der": der, "tls_version": ssl_object.version(),
            "cipher": cipher[0] if cipher else None}


class _TlsScope:
    """Mixin (first in the bases): capture the connection's TLS facts once, add them to each request's scope."""

    app: Any
    _tls: dict[str, Any] | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tls = None
        self._inner_app = self.app
        self.app = self._app_with_tls

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._tls = tls_info(transport)

    async def _app_with_tls(self, scope: Any, receive: Any, send: Any) -> None:
        if self._tls is not None and scope.get("type") == "http":
            scope["extensions"] = {**(scope.get("extensions") or {}), "tls": dict(self._tls)}
        await self._inner_app(scope, receive, send)


class TlsH11Protocol(_TlsScope, H11Protocol):
    """uvicorn's h11 protocol, with ``scope["extensions"]["tls"]`` on TLS connections."""


class TlsHttpToolsProtocol(_TlsScope, HttpToolsProtocol):
    """uvicorn's httptools protocol (its default), with ``scope["extensions"]["tls"]`` on TLS connections."""


def uvicorn_protocol_kwargs() -> dict[str, Any]:
    """``{"http": TlsHttpToolsProtocol}`` for ``uvicorn.Config`` (``TlsH11Protocol`` works the same way)."""
    return {"http": TlsHttpToolsProtocol}
