"""Client certificates (mTLS) -> principals, by the ``auth.mtls.mappings`` table.

The input is the TLS extension ``gatehold.front.tls`` puts in the ASGI scope; only a certificate
the TLS layer verified against ``gateway.tls.client_ca`` ever reaches it. The DER is parsed with
``cryptography`` and the first mapping, in config order, that matches wins:

* ``subject``: the certificate's subject against an RFC 4514 string. Both are reduced to a list of
  RDNs in RFC 4514 order (most specific first, as ``rfc4514_string()`` prints them, e.g.
  ``CN=agent-1,O=Acme``); each RDN is a set of (attribute type, value). Attribute types compare
  case-insensitively, by OID (``CN`` = ``cn`` = ``2.5.4.3``; ``E``/``emailAddress`` are aliases);
  unescaped spaces around ``=``, ``,`` and ``+`` are insignificant; escapes (``\\,``, ``\\2C``) are
  decoded; values compare exactly (case-sensitive); RDN order is significant, the order of
  attributes inside a multi-valued RDN is not. Every RDN must match: no prefix or suffix match.
* ``san_uri``: a URI SAN, compared as an exact string (SPIFFE IDs: no prefix match, no case
  folding, no normalisation of the path).
* ``san_dns``: a DNS SAN, compared exactly but case-insensitively (DNS names are); a wildcard
  SAN only matches the identical wildcard string.

The result (or the refusal) is cached by the certificate's SHA-256 fingerprint; the validity
period is re-checked on every call, so a cached certificate on a long-lived connection still
stops working when it expires.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from gatehold.call import Caller
from gatehold.config import CertMapping, MtlsSettings
from gatehold.errors import AuthenticationFailed, ConfigError

_CACHE_MAX = 4096

Rdn = frozenset[tuple[str, str]]

# Attribute type names (lower case) -> OID, besides dotted OIDs themselves.
ATTRIBUTE_OIDS = {
    "cn": "2.5.4.3", "commonname": "2.5.4.3",
    "sn": "2.5.4.4", "surname": "2.5.4.4",
    "serialnumber": "2.5.4.5",
    "c": "2.5.4.6", "countryname": "2.5.4.6",
    "l": "2.5.4.7", "localityname": "2.5.4.7",
    "st": "2.5.4.8", "s": "2.5.4.8", "stateorprovincename": "2.5.4.8",
    "street": "2.5.4.9", "streetaddress": "2.5.4.9",
    "o": "2.5.4.10", "organizationname": "2.5.4.10",
    "ou": "2.5.4.11", "organizationalunitname": "2.5.4.11",
    "title": "2.5.4.12",
    "gn": "2.5.4.42", "givenname": "2.5.4.42",
    "initials": "2.5.4.43",
    "generationqualifier": "2.5.4.44",
    "dnqualifier": "2.5.4.46",
    "pseudonym": "2.5.4.65",
    "organizationidentifier": "2.5.4.97",
    "uid": "0.9.2342.19200300.100.1.1", "userid": "0.9.2342.19200300.100.1.1",
    "dc": "0.9.2342.19200300.100.1.25", "domaincomponent": "0.9.2342.19200300.100.1.25",
    "e": "1.2.840.113549.1.9.1", "email": "1.2.840.113549.1.9.1", "emailaddress": "1.2.840.113549.1.9.1",
}
_SPECIAL = set(',+"\\<>;=# ')


def _attribute_oid(name: str) -> str:
    key = name.strip().lower()
    if key.startswith("oid."):
        key = key[4:]
    if key and all(part.isdigit() for part in key.split(".")) and "." in key:
        return key
    oid = ATTRIBUTE_OIDS.get(key)
    if oid is None:
        raise ValueError(f"unknown attribute type {name.strip()!r}")
    return oid


def _split_dn(text: str) -> list[list[tuple[str, list[tuple[str, bool]]]]]:
    """RDNs -> attributes -> (type, [(char, escaped)]) with RFC 4514 escapes decoded."""
    rdns: list[list[tuple[str, list[tuple[str, bool]]]]] = []
    attrs: list[tuple[str, list[tuple[str, bool]]]] = []
    attr_type: str | None = None
    chars: list[tuple[str, bool]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            nxt = text[i + 1:i + 3]
            if len(nxt) == 2 and all(c in "0123456789abcdefABCDEF" for c in nxt):
                raw = bytearray([int(nxt, 16)])
                i += 3
                while text[i:i + 1] == "\\" and len(text[i + 1:i + 3]) == 2 and all(
                        c in "0123456789abcdefABCDEF" for c in text[i + 1:i + 3]):
                    raw.append(int(text[i + 1:i + 3], 16))
                    i += 3
                chars += [(c, True) for c in raw.decode("utf-8")]
                continue
            if nxt[:1] in _SPECIAL:
                chars.append((nxt[0], True))
                i += 2
                continue
            raise ValueError(f"bad escape at position {i}")
        if ch == "=" and attr_type is None:
            attr_type = "".join(c for c, _ in chars)
            chars = []
        elif ch in ",+":
            if attr_type is None:
                raise ValueError(f"attribute without '=' before position {i}")
            attrs.append((attr_type, chars))
            attr_type, chars = None, []
            if ch == ",":
                rdns.append(attrs)
                attrs = []
        else:
            chars.append((ch, False))
        i += 1
    if attr_type is None:
        raise ValueError("attribute without '=' at the end")
    attrs.append((attr_type, chars))
    rdns.append(attrs)
    return rdns


def _value(chars: list[tuple[str, bool]]) -> str:
    start, end = 0, len(chars)
    while start < end and chars[start] == (" ", False):
        start += 1
    while end > start and chars[end - 1] == (" ", False):
        end -= 1
    return "".join(c for c, _ in chars[start:end])


def parse_subject(text: str) -> tuple[Rdn, ...]:
    """The normalised form of an RFC 4514 subject string (``ValueError`` if it is not one)."""
    if not text.strip():
        raise ValueError("empty subject")
    return tuple(frozenset((_attribute_oid(t), _value(v)) for t, v in rdn) for rdn in _split_dn(text))


def name_key(name: x509.Name) -> tuple[Rdn, ...]:
    """The normalised form of a certificate's name, in RFC 4514 order (last RDN first)."""
    return tuple(
        frozenset((attr.oid.dotted_string, attr.value if isinstance(attr.value, str) else attr.value.hex())
                  for attr in rdn)
        for rdn in reversed(name.rdns)
    )


@dataclass(frozen=True, slots=True)
class _Seen:
    caller: Caller | None
    detail: str
    not_before: float
    not_after: float


class CertificateAuthenticator:
    def __init__(self, settings: MtlsSettings):
        self._mappings: list[tuple[CertMapping, tuple[Rdn, ...] | None]] = []
        problems: list[str] = []
        for index, mapping in enumerate(settings.mappings):
            subject = None
            if mapping.subject is not None:
                try:
                    subject = parse_subject(mapping.subject)
                except (ValueError, UnicodeDecodeError) as exc:
                    # fail closed: a subject we cannot read would silently match nobody
                    problems.append(f"auth.mtls.mappings[{index}].subject: not an RFC 4514 name: {exc}")
            self._mappings.append((mapping, subject))
        if problems:
            raise ConfigError(problems)
        self._seen: OrderedDict[bytes, _Seen] = OrderedDict()

    def authenticate(self, tls: Mapping[str, Any] | None) -> Caller:
        """The caller the verified client certificate maps to, or ``AuthenticationFailed`` (401)."""
        if not tls or not tls.get("client_cert") or not tls.get("client_cert_der"):
            # fail closed: no TLS, no certificate, or one the TLS layer did not verify
            raise AuthenticationFailed("no verified client certificate", code="auth.missing")
        der = tls["client_cert_der"]
        if not isinstance(der, bytes | bytearray):
            raise AuthenticationFailed("client certificate is not DER bytes", code="auth.invalid")  # fail closed
        digest = hashlib.sha256(der).digest()
        seen = self._seen.get(digest)
        if seen is None:
            seen = self._resolve(bytes(der), digest.hex())
            self._seen[digest] = seen
            if len(self._seen) > _CACHE_MAX:
                self._seen.popitem(last=False)
        now = time.time()
        if not seen.not_before <= now <= seen.not_after:
            # fail closed: outside its validity period (e.g. expired during a long-lived connection)
            raise AuthenticationFailed(f"client certificate not valid now ({seen.detail})", code="auth.expired")
        if seen.caller is None:
            raise AuthenticationFailed(f"client certificate maps to no principal: {seen.detail}",
                                       code="auth.unmapped_cert")
        return seen.caller

    def _resolve(self, der: bytes, fingerprint: str) -> _Seen:
        try:
            cert = x509.load_der_x509_certificate(der)
            subject = cert.subject.rfc4514_string()
            key = name_key(cert.subject)
            uris, dns = _sans(cert)
        except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
            # fail closed: a certificate we cannot parse identifies nobody
            raise AuthenticationFailed(f"client certificate unreadable: {exc}", code="auth.invalid") from None
        detail = f"subject {subject!r}, URI SANs {uris}, DNS SANs {dns}"
        not_before = cert.not_valid_before_utc.timestamp()
        not_after = cert.not_valid_after_utc.timestamp()
        dns_folded = {name.lower() for name in dns}
        for mapping, wanted in self._mappings:
            if ((wanted is not None and wanted == key)
                    or (mapping.san_uri is not None and mapping.san_uri in uris)
                    or (mapping.san_dns is not None and mapping.san_dns.lower() in dns_folded)):
                caller = Caller(principal=mapping.principal, roles=mapping.roles,
                                credential_id=f"cert:{fingerprint}", scopes=None, subject=subject,
                                expires_at=not_after)
                return _Seen(caller, detail, not_before, not_after)
        return _Seen(None, detail, not_before, not_after)


def _sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return ext.get_values_for_type(x509.UniformResourceIdentifier), ext.get_values_for_type(x509.DNSName)
