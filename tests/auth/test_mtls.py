"""Client certificates -> principals: subject normalisation, exact SAN matching, and real mTLS handshakes."""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from gatehold.auth.mtls import CertificateAuthenticator, name_key, parse_subject
from gatehold.config import CertMapping, MtlsSettings
from gatehold.errors import AuthenticationFailed, ConfigError
from gatehold.front.tls import ssl_options
from tests.front.test_tls import NOW, EchoApp, Issued, Pki, build_pki, fetch, issue, serve_tls


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return build_pki(tmp_path_factory.mktemp("mtls-pki"))


MAPPINGS = MtlsSettings(mappings=(
    CertMapping(subject="CN=agent-1, OU=Agents, O=Acme", principal="agent-1", roles=("reader",)),
    CertMapping(san_uri="spiffe://example.org/ns/a/sa/b", principal="workload-b", roles=("writer",)),
    CertMapping(san_dns="agent.example.org", principal="svc"),
))


def tls_of(issued: Issued) -> dict[str, object]:
    """The TLS extension as front.tls builds it for a verified certificate."""
    return {"client_cert": {"subject": ((("commonName", "x"),),)}, "client_cert_der": issued.der,
            "tls_version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"}


# ---- subject normalisation -----------------------------------------------------------------------------


def test_subjects_normalise_spaces_type_case_aliases_and_escapes() -> None:
    canonical = parse_subject("CN=agent-1,OU=Agents,O=Acme")
    for same in ["cn=agent-1,ou=Agents,o=Acme", " CN = agent-1 , OU=Agents ,O= Acme ",
                 "2.5.4.3=agent-1,OU=Agents,O=Acme", "OID.2.5.4.3=agent-1,OU=Agents,O=Acme",
                 "commonName=agent-1,organizationalUnitName=Agents,organizationName=Acme"]:
        assert parse_subject(same) == canonical, same
    assert parse_subject(r"CN=a\,b,O=Acme") == parse_subject(r"CN=a\2Cb,O=Acme")
    assert parse_subject(r"CN=caf\C3\A9") == parse_subject("CN=café")
    assert parse_subject(r"CN=\ padded\ ") != parse_subject("CN=padded")  # escaped spaces are significant
    assert parse_subject("CN=a+UID=7,O=Acme") == parse_subject("UID=7+CN=a,O=Acme")  # inside one RDN: a set
    assert parse_subject("E=a@example.org") == parse_subject("emailAddress=a@example.org")


def test_subjects_are_order_value_case_and_length_sensitive() -> None:
    canonical = parse_subject("CN=agent-1,OU=Agents,O=Acme")
    for different in ["O=Acme,OU=Agents,CN=agent-1", "CN=Agent-1,OU=Agents,O=Acme", "CN=agent-1,OU=Agents",
                      "CN=agent-1,OU=Agents,O=Acme,C=US", "CN=agent-1+OU=Agents,O=Acme"]:
        assert parse_subject(different) != canonical, different


@pytest.mark.parametrize("bad", ["", "   ", "CN", "CN=a,O", "XX=1", "CN=a\\", "CN=a\\zz", "=a"])
def test_unreadable_subjects_raise(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_subject(bad)


def test_a_bad_mapping_subject_stops_the_authenticator_naming_the_field() -> None:
    settings = MtlsSettings(mappings=(CertMapping(san_dns="a.example", principal="a"),
                                      CertMapping(subject="XX=1", principal="b")))
    with pytest.raises(ConfigError) as info:
        CertificateAuthenticator(settings)
    assert info.value.problems[0].startswith("auth.mtls.mappings[1].subject: ")


def test_a_certificate_name_matches_its_rfc4514_string(pki: Pki) -> None:
    for issued in pki.clients.values():
        assert name_key(issued.cert.subject) == parse_subject(issued.cert.subject.rfc4514_string())
    odd = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme, Inc."),
                     x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ops@acme.example"),
                     x509.NameAttribute(NameOID.COMMON_NAME, " leading + trailing ")])
    assert name_key(odd) == parse_subject(odd.rfc4514_string())
    assert name_key(odd) == parse_subject(r"CN=\ leading \+ trailing\ ,E=ops@acme.example,O=Acme\, Inc.")


# ---- the authenticator, fed the TLS extension directly ---------------------------------------------------------


def test_a_mapped_subject_gives_its_principal(pki: Pki) -> None:
    auth = CertificateAuthenticator(MAPPINGS)
    mapped = pki.clients["mapped"]
    caller = auth.authenticate(tls_of(mapped))
    assert (caller.principal, caller.roles, caller.scopes) == ("agent-1", ("reader",), None)
    assert caller.credential_id == f"cert:{hashlib.sha256(mapped.der).hexdigest()}"
    assert caller.subject == "CN=agent-1,OU=Agents,O=Acme"
    assert caller.expires_at == mapped.cert.not_valid_after_utc.timestamp()
    assert auth.authenticate(tls_of(mapped)) is caller  # cached by fingerprint


def test_spiffe_ids_match_exactly(pki: Pki, tmp_path: Path) -> None:
    auth = CertificateAuthenticator(MtlsSettings(mappings=(
        CertMapping(san_uri="spiffe://example.org/agent", principal="agent"),)))

    def with_uri(uri: str) -> Issued:
        return issue(tmp_path, "u", pki.ca, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "w")]),
                     sans=[x509.UniformResourceIdentifier(uri)])

    assert auth.authenticate(tls_of(with_uri("spiffe://example.org/agent"))).principal == "agent"
    for near in ["spiffe://example.org/agent/evil", "spiffe://example.org/Agent", "spiffe://example.org/agent/",
                 "spiffe://example.org/agen", "spiffe://example.org.evil/agent", "SPIFFE://example.org/agent"]:
        with pytest.raises(AuthenticationFailed) as info:
            auth.authenticate(tls_of(with_uri(near)))
        assert info.value.code == "auth.unmapped_cert", near
        assert near in info.value.detail


def test_the_first_mapping_in_config_order_wins(pki: Pki) -> None:
    spiffe = pki.clients["spiffe"]  # subject CN=workload,O=Acme and the SPIFFE URI SAN
    by_uri = CertMapping(san_uri="spiffe://example.org/ns/a/sa/b", principal="by-uri")
    by_subject = CertMapping(subject="CN=workload,O=Acme", principal="by-subject")
    assert CertificateAuthenticator(MtlsSettings(mappings=(by_uri, by_subject))).authenticate(
        tls_of(spiffe)).principal == "by-uri"
    assert CertificateAuthenticator(MtlsSettings(mappings=(by_subject, by_uri))).authenticate(
        tls_of(spiffe)).principal == "by-subject"


def test_dns_sans_match_case_insensitively_but_exactly(pki: Pki) -> None:
    auth = CertificateAuthenticator(MAPPINGS)
    assert auth.authenticate(tls_of(pki.clients["dns"])).principal == "svc"  # SAN is Agent.Example.ORG
    other = CertificateAuthenticator(MtlsSettings(mappings=(CertMapping(san_dns="example.org", principal="x"),)))
    with pytest.raises(AuthenticationFailed) as info:
        other.authenticate(tls_of(pki.clients["dns"]))
    assert info.value.code == "auth.unmapped_cert"


def test_an_unmapped_certificate_is_refused_naming_its_subject_and_sans(pki: Pki) -> None:
    auth = CertificateAuthenticator(MAPPINGS)
    for _ in range(2):  # the refusal is cached too, and still refuses
        with pytest.raises(AuthenticationFailed) as info:
            auth.authenticate(tls_of(pki.clients["unmapped"]))
        assert info.value.code == "auth.unmapped_cert"
        assert info.value.http_status == 401
        assert "CN=stranger,O=Acme" in info.value.detail


@pytest.mark.parametrize("tls", [None, {}, {"client_cert": None, "client_cert_der": None},
                                 {"client_cert": {}, "client_cert_der": b"\x30\x00"},
                                 {"client_cert": {"subject": ()}, "client_cert_der": None}])
def test_no_verified_certificate_is_auth_missing(tls: dict[str, object] | None) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        CertificateAuthenticator(MAPPINGS).authenticate(tls)
    assert info.value.code == "auth.missing"


def test_garbage_der_is_auth_invalid() -> None:
    with pytest.raises(AuthenticationFailed) as info:
        CertificateAuthenticator(MAPPINGS).authenticate({"client_cert": {"subject": ()}, "client_cert_der": b"junk"})
    assert info.value.code == "auth.invalid"


def test_a_certificate_outside_its_validity_period_is_refused_even_when_mapped(pki: Pki, tmp_path: Path) -> None:
    auth = CertificateAuthenticator(MAPPINGS)
    with pytest.raises(AuthenticationFailed) as info:
        auth.authenticate(tls_of(pki.clients["expired"]))
    assert info.value.code == "auth.expired"
    future = issue(tmp_path, "future", pki.ca, pki.clients["mapped"].cert.subject,
                   not_before=NOW + dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=2))
    with pytest.raises(AuthenticationFailed) as info:
        auth.authenticate(tls_of(future))
    assert info.value.code == "auth.expired"


# ---- real mTLS: uvicorn with ssl_options + our protocol, a real httpx client ------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
@pytest.mark.parametrize("who", [None, "wrong_ca", "expired"])
async def test_required_refuses_the_handshake_without_a_good_certificate(pki: Pki, who: str | None,
                                                                         tls12: bool) -> None:
    app = EchoApp(CertificateAuthenticator(MAPPINGS).authenticate)
    ctx = pki.client_context(who)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    async with serve_tls(app, ssl_options(pki.settings("required"), pki.resolve)) as url:
        # TLS 1.2: the handshake itself fails. TLS 1.3: the client's handshake completes before the server
        # has checked the certificate, so the server's alert arrives as the request is read (ReadError).
        with pytest.raises(httpx.ConnectError if tls12 else httpx.TransportError):
            await fetch(url, ctx)
        ok = await fetch(url, pki.client_context("mapped"))  # the server is up and serving good certificates
    assert ok.status_code == 200
    assert app.hits == 1  # the refused connection never reached the app


@pytest.mark.anyio
@pytest.mark.parametrize(("who", "principal", "roles"), [("mapped", "agent-1", ["reader"]),
                                                         ("spiffe", "workload-b", ["writer"]),
                                                         ("dns", "svc", [])])
async def test_required_maps_a_verified_certificate_to_its_principal(pki: Pki, who: str, principal: str,
                                                                     roles: list[str]) -> None:
    app = EchoApp(CertificateAuthenticator(MAPPINGS).authenticate)
    async with serve_tls(app, ssl_options(pki.settings("required"), pki.resolve)) as url:
        response = await fetch(url, pki.client_context(who))
    body = response.json()
    assert response.status_code == 200, body
    assert (body["principal"], body["roles"]) == (principal, roles)
    assert body["subject"] == pki.clients[who].cert.subject.rfc4514_string()
    assert body["credential_id"] == f"cert:{hashlib.sha256(pki.clients[who].der).hexdigest()}"
    assert body["has_der"] is True
    common_name = pki.clients[who].cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert [["commonName", common_name]] in body["client_cert"]["subject"]  # getpeercert()'s dict, as JSON


@pytest.mark.anyio
async def test_required_with_an_unmapped_certificate_is_401_from_the_authenticator(pki: Pki) -> None:
    app = EchoApp(CertificateAuthenticator(MAPPINGS).authenticate)
    async with serve_tls(app, ssl_options(pki.settings("required"), pki.resolve)) as url:
        response = await fetch(url, pki.client_context("unmapped"))
    assert response.status_code == 401
    assert response.json()["code"] == "auth.unmapped_cert"
    assert "CN=stranger,O=Acme" in response.json()["detail"]


@pytest.mark.anyio
async def test_a_spiffe_id_with_an_extra_path_segment_is_not_mapped_over_tls(pki: Pki) -> None:
    app = EchoApp(CertificateAuthenticator(MAPPINGS).authenticate)
    async with serve_tls(app, ssl_options(pki.settings("required"), pki.resolve)) as url:
        response = await fetch(url, pki.client_context("spiffe_evil"))
    assert response.status_code == 401
    assert response.json()["code"] == "auth.unmapped_cert"


@pytest.mark.anyio
async def test_optional_lets_a_certless_client_in_unauthenticated_and_maps_a_good_one(pki: Pki) -> None:
    app = EchoApp(CertificateAuthenticator(MAPPINGS).authenticate)
    async with serve_tls(app, ssl_options(pki.settings("optional"), pki.resolve)) as url:
        anonymous = await fetch(url, pki.client_context())
        known = await fetch(url, pki.client_context("mapped"))
        # optional tolerates *no* certificate; one that fails verification still aborts the handshake
        for bad in ("wrong_ca", "expired"):
            with pytest.raises(httpx.TransportError):
                await fetch(url, pki.client_context(bad))
    assert anonymous.status_code == 401
    assert anonymous.json()["client_cert"] is None
    assert anonymous.json()["code"] == "auth.missing"
    assert known.status_code == 200
    assert known.json()["principal"] == "agent-1"
    assert app.hits == 2
