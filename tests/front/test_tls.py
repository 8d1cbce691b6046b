"""TLS termination: ssl_options from gateway.tls, and the TLS extension our uvicorn protocols add to the scope.

The PKI (two CAs, a server certificate for 127.0.0.1, client certificates) and the TLS server helper
here are also used by tests/auth/test_mtls.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gatehold.config import TlsSettings
from gatehold.errors import AuthenticationFailed, ConfigError
from gatehold.front.tls import (
    MINIMUM_VERSION,
    TlsH11Protocol,
    TlsHttpToolsProtocol,
    ssl_options,
    uvicorn_protocol_kwargs,
)

WAIT = 20.0
NOW = dt.datetime.now(dt.UTC)


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    certfile: Path
    keyfile: Path

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def _name(**attrs: str) -> x509.Name:
    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME}
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in attrs.items()])


def _write(folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    certfile, keyfile = folder / f"{stem}.crt", folder / f"{stem}.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


def make_ca(folder: Path, stem: str, common_name: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(CN=common_name, O="Gatehold Tests")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(cert, key, *_write(folder, stem, cert, key))


def issue(folder: Path, stem: str, ca: Issued, subject: x509.Name, *, sans: list[x509.GeneralName] | None = None,
          server: bool = False, not_before: dt.datetime | None = None,
          not_after: dt.datetime | None = None) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - dt.timedelta(hours=1))
               .not_valid_after(not_after or NOW + dt.timedelta(days=7))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                              critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    return Issued(cert, key, *_write(folder, stem, cert, key))


@dataclass
class Pki:
    folder: Path
    ca: Issued
    other_ca: Issued
    server: Issued
    clients: dict[str, Issued] = field(default_factory=dict)

    def settings(self, client_certs: str = "none") -> TlsSettings:
        # relative names: ssl_options resolves them against the folder, as LoadedConfig.path does
        return TlsSettings(cert=self.server.certfile.name, key=self.server.keyfile.name,
                           client_ca=None if client_certs == "none" else self.ca.certfile.name,
                           client_certs=client_certs)  # type: ignore[arg-type]

    def resolve(self, value: str) -> Path:
        return self.folder / value

    def client_context(self, who: str | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca.certfile))
        if who is not None:
            ctx.load_cert_chain(self.clients[who].certfile, self.clients[who].keyfile)
        return ctx


def build_pki(folder: Path) -> Pki:
    ca = make_ca(folder, "ca", "Gatehold Test CA")
    other = make_ca(folder, "other-ca", "Unrelated CA")
    server = issue(folder, "server", ca, _name(CN="127.0.0.1"), server=True,
                   sans=[x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")])
    pki = Pki(folder, ca, other, server)
    pki.clients["mapped"] = issue(folder, "mapped", ca, _name(O="Acme", OU="Agents", CN="agent-1"))
    pki.clients["spiffe"] = issue(folder, "spiffe", ca, _name(O="Acme", CN="workload"),
                                  sans=[x509.UniformResourceIdentifier("spiffe://example.org/ns/a/sa/b")])
    pki.clients["spiffe_evil"] = issue(folder, "spiffe-evil", ca, _name(CN="workload"),
                                       sans=[x509.UniformResourceIdentifier("spiffe://example.org/ns/a/sa/b/evil")])
    pki.clients["dns"] = issue(folder, "dns", ca, _name(CN="svc"), sans=[x509.DNSName("Agent.Example.ORG")])
    pki.clients["unmapped"] = issue(folder, "unmapped", ca, _name(O="Acme", CN="stranger"))
    pki.clients["wrong_ca"] = issue(folder, "wrong-ca", other, _name(O="Acme", OU="Agents", CN="agent-1"))
    pki.clients["expired"] = issue(folder, "expired", ca, _name(O="Acme", OU="Agents", CN="agent-1"),
                                   not_before=NOW - dt.timedelta(days=10), not_after=NOW - dt.timedelta(days=1))
    return pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return build_pki(tmp_path_factory.mktemp("pki"))


class EchoApp:
    """ASGI app answering with what the protocol put in scope["extensions"]["tls"] (and who that is)."""

    def __init__(self, authenticate: Callable[[Any], Any] | None = None):
        self.authenticate = authenticate
        self.hits = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.hits += 1
        extensions = scope.get("extensions") or {}
        tls = extensions.get("tls")
        body: dict[str, Any] = {"has_tls": "tls" in extensions, "scheme": scope["scheme"]}
        if tls is not None:
            body.update(client_cert=tls["client_cert"], has_der=tls["client_cert_der"] is not None,
                        tls_version=tls["tls_version"], cipher=tls["cipher"])
        status = 200
        if self.authenticate is not None:
            try:
                caller = self.authenticate(tls)
                body.update(principal=caller.principal, roles=list(caller.roles),
                            credential_id=caller.credential_id, subject=caller.subject)
            except AuthenticationFailed as exc:
                status = exc.http_status
                body.update(code=exc.code, detail=exc.detail)
        payload = orjson.dumps(body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})


@asynccontextmanager
async def serve_tls(app: Any, options: dict[str, Any], **protocol: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1:<free port> with the given ssl options; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(app, log_level="critical", lifespan="off", access_log=False,
                            **options, **(protocol or uvicorn_protocol_kwargs()))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(WAIT):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    scheme = "https" if options else "http"
    try:
        yield f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def fetch(url: str, ctx: ssl.SSLContext | bool) -> httpx.Response:
    async with httpx.AsyncClient(verify=ctx, timeout=WAIT, trust_env=False) as client:
        return await client.get(f"{url}/echo")


# ---- ssl_options -------------------------------------------------------------------------------------


def test_ssl_options_resolve_paths_and_map_client_certs(pki: Pki) -> None:
    none = ssl_options(pki.settings("none"), pki.resolve)
    assert none["ssl_certfile"] == str(pki.server.certfile)
    assert none["ssl_keyfile"] == str(pki.server.keyfile)
    assert none["ssl_cert_reqs"] == ssl.CERT_NONE
    assert none["ssl_ca_certs"] is None
    assert none["ssl_version"] == ssl.PROTOCOL_TLS_SERVER
    assert ssl_options(pki.settings("optional"), pki.resolve)["ssl_cert_reqs"] == ssl.CERT_OPTIONAL
    required = ssl_options(pki.settings("required"), pki.resolve)
    assert required["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert required["ssl_ca_certs"] == str(pki.ca.certfile)


def test_the_server_context_has_a_tls12_floor_and_verifies_clients(pki: Pki) -> None:
    config = uvicorn.Config(EchoApp(), **ssl_options(pki.settings("required"), pki.resolve),
                            **uvicorn_protocol_kwargs())
    config.load()
    assert config.ssl is not None
    assert config.ssl.minimum_version >= MINIMUM_VERSION == ssl.TLSVersion.TLSv1_2
    assert config.ssl.verify_mode == ssl.CERT_REQUIRED
    tls12 = [c["name"] for c in config.ssl.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    assert all("GCM" in c or "CHACHA20" in c for c in tls12)
    assert all(c.startswith(("ECDHE-", "DHE-")) for c in tls12)


@pytest.mark.parametrize("field_name", ["cert", "key", "client_ca"])
def test_a_missing_file_is_a_config_error_naming_the_field(pki: Pki, field_name: str) -> None:
    values = {"cert": pki.server.certfile.name, "key": pki.server.keyfile.name, "client_ca": pki.ca.certfile.name,
              field_name: "does-not-exist.pem"}
    tls = TlsSettings(**values, client_certs="required")  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as info:
        ssl_options(tls, pki.resolve)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"gateway.tls.{field_name}: cannot read ")
    assert "does-not-exist.pem" in info.value.problems[0]


def test_unusable_files_are_config_errors(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    (tmp_path / "empty.pem").write_bytes(b"")
    encrypted = pki.clients["mapped"].key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"))
    (tmp_path / "encrypted.key").write_bytes(encrypted)
    resolve: Callable[[str], Path] = lambda v: Path(v) if Path(v).is_absolute() else tmp_path / v  # noqa: E731
    cert, key = str(pki.server.certfile), str(pki.server.keyfile)
    cases = [
        (TlsSettings(cert="garbage.pem", key=key), "gateway.tls.cert/gateway.tls.key: "),
        (TlsSettings(cert=cert, key="garbage.pem"), "gateway.tls.cert/gateway.tls.key: "),
        (TlsSettings(cert=cert, key=str(pki.clients["mapped"].keyfile)), "gateway.tls.cert/gateway.tls.key: "),
        (TlsSettings(cert=cert, key="encrypted.key"), "gateway.tls.cert/gateway.tls.key: "),  # never prompts
        (TlsSettings(cert="empty.pem", key=key), "gateway.tls.cert: "),
        (TlsSettings(cert=cert, key=key, client_ca="garbage.pem", client_certs="optional"), "gateway.tls.client_ca: "),
    ]
    for tls, prefix in cases:
        with pytest.raises(ConfigError) as info:
            ssl_options(tls, resolve)
        assert info.value.problems[0].startswith(prefix), (tls, info.value.problems)


# ---- the TLS extension in the scope ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_plain_tls_serves_a_verifying_client_and_reports_no_client_cert(pki: Pki) -> None:
    app = EchoApp()
    async with serve_tls(app, ssl_options(pki.settings("none"), pki.resolve)) as url:
        body = (await fetch(url, pki.client_context())).json()
        # a client certificate offered to a server that never asks for one is not sent, not reported
        with_cert = (await fetch(url, pki.client_context("mapped"))).json()
    assert body["has_tls"]
    assert body["scheme"] == "https"
    assert body["client_cert"] is None
    assert body["has_der"] is False
    assert body["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert body["cipher"]
    assert with_cert["client_cert"] is None
    assert with_cert["has_der"] is False


@pytest.mark.anyio
async def test_a_client_that_does_not_trust_the_server_cert_is_refused(pki: Pki) -> None:
    app = EchoApp()
    async with serve_tls(app, ssl_options(pki.settings("none"), pki.resolve)) as url:
        with pytest.raises(httpx.ConnectError):
            await fetch(url, ssl.create_default_context(cafile=str(pki.other_ca.certfile)))
    assert app.hits == 0


@pytest.mark.anyio
async def test_tls12_is_negotiated_with_an_aead_suite(pki: Pki) -> None:
    ctx = pki.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    async with serve_tls(EchoApp(), ssl_options(pki.settings("none"), pki.resolve)) as url:
        body = (await fetch(url, ctx)).json()
    assert body["tls_version"] == "TLSv1.2"
    assert body["cipher"].startswith("ECDHE-")
    assert ("GCM" in body["cipher"] or "CHACHA20" in body["cipher"])


def _legacy_context(pki: Pki, side: ssl._SSLMethod) -> ssl.SSLContext:
    ctx = pki.client_context() if side == ssl.PROTOCOL_TLS_CLIENT else ssl.SSLContext(side)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 allows TLS 1.0/1.1 only at security level 0
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    if side == ssl.PROTOCOL_TLS_CLIENT:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


@pytest.mark.anyio
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
async def test_tls_below_12_is_refused_by_the_server(pki: Pki) -> None:
    def lax(_config: Any, _default: Any) -> ssl.SSLContext:
        ctx = _legacy_context(pki, ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.server.certfile, pki.server.keyfile)
        return ctx

    # control: this client does get TLS 1.1 from a server that allows it, so the refusal below is the server's
    async with serve_tls(EchoApp(), {"ssl_certfile": str(pki.server.certfile), "ssl_context_factory": lax}) as url:
        assert (await fetch(url, _legacy_context(pki, ssl.PROTOCOL_TLS_CLIENT))).json()["tls_version"] == "TLSv1.1"
    app = EchoApp()
    async with serve_tls(app, ssl_options(pki.settings("none"), pki.resolve)) as url:
        with pytest.raises(httpx.ConnectError):
            await fetch(url, _legacy_context(pki, ssl.PROTOCOL_TLS_CLIENT))
    assert app.hits == 0


@pytest.mark.anyio
async def test_the_h11_protocol_reports_the_client_cert_too(pki: Pki) -> None:
    options = ssl_options(pki.settings("required"), pki.resolve)
    async with serve_tls(EchoApp(), options, http=TlsH11Protocol) as url:
        body = (await fetch(url, pki.client_context("mapped"))).json()
    assert body["has_der"] is True
    assert [["commonName", "agent-1"]] in body["client_cert"]["subject"]  # getpeercert()'s RDN tuples, as JSON


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", [TlsHttpToolsProtocol, TlsH11Protocol])
async def test_plain_http_has_no_tls_extension(protocol: type) -> None:
    async with serve_tls(EchoApp(), {}, http=protocol) as url:
        body = (await fetch(url, False)).json()
    assert body == {"has_tls": False, "scheme": "http"}


@pytest.mark.anyio
async def test_every_request_on_a_keepalive_connection_gets_its_own_extension(pki: Pki) -> None:
    client = httpx.AsyncClient(verify=pki.client_context("mapped"), timeout=WAIT, trust_env=False)
    async with serve_tls(EchoApp(), ssl_options(pki.settings("required"), pki.resolve)) as url, client:
        first = (await client.get(f"{url}/a")).json()
        second = (await client.get(f"{url}/b")).json()
    assert first == second
    assert first["has_der"] is True
