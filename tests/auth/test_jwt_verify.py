"""JwtVerifier against the real in-test authorization server, including the classic JWT attacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from gatehold.auth.jwks import JwksCache
from gatehold.auth.jwt_verify import JwtVerifier, looks_like_jwt
from gatehold.auth.outbound import IdentityHttp
from gatehold.config import OAuthSettings
from gatehold.errors import AuthenticationFailed, AuthUnavailable
from tests.authserver import AuthServer, FakeClock, SigningKey, running_auth_server

pytestmark = pytest.mark.anyio

ALGORITHMS = ("RS256", "ES256", "EdDSA", "PS256")


@dataclass
class Env:
    auth: AuthServer
    http: IdentityHttp
    clock: FakeClock
    kids: dict[str, str]

    def verifier(self, **overrides: Any) -> JwtVerifier:
        settings = OAuthSettings(**{"issuer": self.auth.issuer, "algorithms": ALGORITHMS, **overrides})
        jwks = JwksCache(self.http, issuer=self.auth.issuer, jwks_uri=None,
                         refetch_seconds=settings.jwks_refetch_seconds,
                         max_age_seconds=settings.jwks_max_age_seconds, clock=self.clock)
        return JwtVerifier(settings, audience=self.auth.default_audience, jwks=jwks, clock=self.clock)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope: one authorization server serves every test here


@pytest.fixture(scope="module")
async def shared() -> AsyncIterator[tuple[AuthServer, dict[str, SigningKey]]]:
    async with running_auth_server() as auth:
        for kind in ("EdDSA", "ES256", "PS256", "RS256"):
            auth.add_key(kind)
        yield auth, dict(auth.keys)


@pytest.fixture
async def env(shared: tuple[AuthServer, dict[str, SigningKey]]) -> AsyncIterator[Env]:
    auth, keys = shared
    auth.reset()
    auth.keys = dict(keys)
    auth.clock = clock = FakeClock(float(int(time.time())))
    http = IdentityHttp(timeout_seconds=5.0)
    yield Env(auth, http, clock, {key.alg: kid for kid, key in keys.items()})
    await http.aclose()


def b64(data: bytes | dict[str, Any] | list[Any]) -> str:
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def segments(token: str) -> list[str]:
    return token.split(".")


async def rejected(verifier: JwtVerifier, token: str, code: str = "auth.invalid") -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as info:
        await verifier.verify(token)
    assert info.value.code == code, info.value.detail
    if token:
        assert token not in str(info.value)
        assert token not in info.value.detail
    return info.value


# -- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALGORITHMS)
async def test_valid_tokens_of_each_algorithm(env: Env, kind: str) -> None:
    token = env.auth.issue(kid=env.kids[kind], scope="tools.read")
    claims = await env.verifier().verify(token)
    assert (claims["sub"], claims["scope"], claims["iss"]) == ("alice", "tools.read", env.auth.issuer)


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt"])
async def test_access_token_types_are_accepted(env: Env, typ: str | None) -> None:
    await env.verifier().verify(env.auth.issue(headers={"typ": typ}))


async def test_audience_list_containing_this_resource(env: Env) -> None:
    token = env.auth.issue(aud=["https://other.example.test", env.auth.default_audience])
    assert (await env.verifier().verify(token))["sub"] == "alice"


async def test_expired_within_leeway_is_accepted(env: Env) -> None:
    token = env.auth.issue(lifetime=60)
    env.clock.advance(80)
    await env.verifier(leeway_seconds=30).verify(token)


# -- algorithm and key attacks ----------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
async def test_unsigned_tokens_are_refused(env: Env, alg: str) -> None:
    header = {"alg": alg, "typ": "JWT", "kid": env.kids["RS256"]}
    body = b64(env.auth.claims())
    verifier = env.verifier()
    await rejected(verifier, f"{b64(header)}.{body}.")
    await rejected(verifier, f"{b64(header)}.{body}.{b64(b'x')}")


async def test_hmac_with_the_public_key_as_secret_is_refused(env: Env) -> None:
    """Algorithm confusion: HS256 keyed with the issuer's RSA public key PEM."""
    pem = env.auth.keys[env.kids["RS256"]].public.public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
        signing_input = f"{b64({'alg': alg, 'typ': 'JWT', 'kid': env.kids['RS256']})}.{b64(env.auth.claims())}"
        signature = hmac.new(pem, signing_input.encode(), digest).digest()
        await rejected(env.verifier(), f"{signing_input}.{b64(signature)}")


async def test_algorithm_outside_the_allow_list_is_refused(env: Env) -> None:
    verifier = env.verifier(algorithms=("RS256",))
    await rejected(verifier, env.auth.issue(kid=env.kids["ES256"]))
    await rejected(verifier, env.auth.issue(kid=env.kids["EdDSA"]))
    await verifier.verify(env.auth.issue(kid=env.kids["RS256"]))


async def test_algorithm_must_fit_the_key_type(env: Env) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(env.auth.claims(), attacker, algorithm="ES256", headers={"kid": env.kids["RS256"]})
    await rejected(env.verifier(), forged)
    # the RSA key is published for RS256 only: a PS256 signature by that very key is still refused
    rs_key = env.auth.keys[env.kids["RS256"]].private
    other_rsa_alg = jwt.encode(env.auth.claims(), rs_key, algorithm="PS256", headers={"kid": env.kids["RS256"]})
    await rejected(env.verifier(), other_rsa_alg)


async def test_ec_key_with_another_curve_is_refused(env: Env) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    forged = jwt.encode(env.auth.claims(), p384, algorithm="ES384", headers={"kid": env.kids["ES256"]})
    await rejected(env.verifier(algorithms=("ES256", "ES384")), forged)


async def test_unknown_kid_is_refused(env: Env) -> None:
    await rejected(env.verifier(), env.auth.issue(headers={"kid": "no-such-key"}))


async def test_a_flood_of_unknown_kids_refetches_at_most_once(env: Env) -> None:
    verifier = env.verifier(jwks_refetch_seconds=30)
    await verifier.verify(env.auth.issue())
    env.clock.advance(31)
    for n in range(100):
        await rejected(verifier, env.auth.issue(headers={"kid": f"random-{n}"}))
    assert env.auth.count("/jwks") == 2


@pytest.mark.parametrize("kid", ["../../../../etc/passwd", "' OR '1'='1", "1; DROP TABLE keys --",
                                 "http://127.0.0.1:1/evil", "%2e%2e%2f", "kid\r\nX-Injected: 1", "*"])
async def test_kid_with_injection_text_is_only_a_failed_lookup(env: Env, kid: str) -> None:
    await rejected(env.verifier(), env.auth.issue(headers={"kid": kid}))
    assert {path for _, path in env.auth.requests} == {"/.well-known/oauth-authorization-server", "/jwks"}


async def test_non_string_kid_is_refused(env: Env) -> None:
    signing_input = f"{b64({'alg': 'RS256', 'kid': 7})}.{b64(env.auth.claims())}"
    await rejected(env.verifier(), f"{signing_input}.{b64(b'sig')}")


async def test_embedded_jwk_header_is_ignored(env: Env) -> None:
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker_jwk = RSAAlgorithm.to_jwk(attacker.public_key(), as_dict=True)
    for headers in ({"kid": env.kids["RS256"], "jwk": attacker_jwk}, {"jwk": attacker_jwk}):
        forged = jwt.encode(env.auth.claims(), attacker, algorithm="RS256", headers=headers)
        await rejected(env.verifier(), forged)


async def test_jku_and_x5u_are_never_fetched(env: Env) -> None:
    async with running_auth_server() as evil:
        evil_kid = evil.add_key("RS256")
        evil_key = evil.keys[evil_kid].private
        pointers = {"jku": evil.jwks_uri, "x5u": f"{evil.base}/cert.pem"}
        for kid in (evil_kid, env.kids["RS256"]):
            forged = jwt.encode(env.auth.claims(), evil_key, algorithm="RS256", headers={"kid": kid, **pointers})
            await rejected(env.verifier(), forged)
        x5c = jwt.encode(env.auth.claims(), evil_key, algorithm="RS256",
                         headers={"kid": env.kids["RS256"], "x5c": ["MIIBIjANBgkq"]})
        await rejected(env.verifier(), x5c)
        assert evil.requests == []


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_rsa_key_below_2048_bits_is_refused(env: Env) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    env.auth.extra_jwks.append({**RSAAlgorithm.to_jwk(weak.public_key(), as_dict=True), "kid": "weak"})
    token = jwt.encode(env.auth.claims(), weak, algorithm="RS256", headers={"kid": "weak"})
    await rejected(env.verifier(), token)


@pytest.mark.parametrize("typ", ["id_token", "JOSE", "dpop+jwt", "secevent+jwt", 1])
async def test_other_token_types_are_refused(env: Env, typ: Any) -> None:
    if isinstance(typ, str):
        token = env.auth.issue(headers={"typ": typ})
    else:
        token = f"{b64({'alg': 'RS256', 'typ': typ, 'kid': env.kids['RS256']})}.{b64(env.auth.claims())}.{b64(b's')}"
    await rejected(env.verifier(), token)


async def test_critical_header_extensions_are_refused(env: Env) -> None:
    await rejected(env.verifier(), env.auth.issue(headers={"crit": ["exp"], "exp": 1}))


# -- structure and signature ------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "a..c", "!!!.@@@.###", f"{b64([1])}.e30.c2ln",
                                   f"{b64({'typ': 'JWT'})}.e30.c2ln", f"{b64(b'not json')}.e30.c2ln",
                                   "x" * 40_000, "ab\u00e9.cd.ef", "\ud800.a.b"])
async def test_malformed_tokens(env: Env, token: str) -> None:
    await rejected(env.verifier(), token)


async def test_tampered_payload_is_refused(env: Env) -> None:
    head, _, sig = segments(env.auth.issue(sub="bob"))
    await rejected(env.verifier(), f"{head}.{b64(env.auth.claims(sub='admin'))}.{sig}")


async def test_truncated_or_altered_signature_is_refused(env: Env) -> None:
    for kind in ALGORITHMS:
        token = env.auth.issue(kid=env.kids[kind])
        await rejected(env.verifier(), token[:-6])
        head, body, sig = segments(token)
        flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
        await rejected(env.verifier(), f"{head}.{body}.{flipped}")


async def test_payload_that_is_not_an_object_is_refused(env: Env) -> None:
    key = env.auth.keys[env.kids["RS256"]].private
    token = jwt.api_jws.encode(b"[1, 2]", key, algorithm="RS256", headers={"kid": env.kids["RS256"]})
    await rejected(env.verifier(), token)


# -- claims -----------------------------------------------------------------------------------


async def test_wrong_issuer(env: Env) -> None:
    await rejected(env.verifier(), env.auth.issue(extra={"iss": env.auth.issuer + "/"}))
    await rejected(env.verifier(), env.auth.issue(extra={"iss": "https://evil.example"}))
    await rejected(env.verifier(), env.auth.issue(omit=["iss"]))


@pytest.mark.parametrize("aud", ["https://other.example.test/mcp", "https://mcp.example.test/mcp/admin",
                                 "https://mcp.example.test/mcp-sibling", "https://mcp.example.test/",
                                 ["https://a.example", "https://b.example"], [], None])
async def test_wrong_or_missing_audience(env: Env, aud: Any) -> None:
    await rejected(env.verifier(), env.auth.issue(aud=aud))


async def test_audience_of_wrong_type(env: Env) -> None:
    await rejected(env.verifier(), env.auth.issue(extra={"aud": {"uri": env.auth.default_audience}}))


async def test_expired(env: Env) -> None:
    token = env.auth.issue(lifetime=60)
    env.clock.advance(91)
    await rejected(env.verifier(leeway_seconds=30), token, "auth.expired")


async def test_missing_or_non_numeric_exp(env: Env) -> None:
    await rejected(env.verifier(), env.auth.issue(omit=["exp"]))
    await rejected(env.verifier(), env.auth.issue(extra={"exp": "tomorrow"}))
    await rejected(env.verifier(), env.auth.issue(extra={"exp": True}))


async def test_not_yet_valid(env: Env) -> None:
    token = env.auth.issue(extra={"nbf": int(env.clock()) + 120})
    verifier = env.verifier(leeway_seconds=30)
    await rejected(verifier, token, "auth.not_yet_valid")
    env.clock.advance(100)  # rejections of tokens that may become valid are never remembered
    await verifier.verify(token)


async def test_iat_far_in_the_future(env: Env) -> None:
    now = int(env.clock())
    await rejected(env.verifier(), env.auth.issue(extra={"iat": now + 3600, "exp": now + 3900}))


async def test_lifetime_over_the_cap(env: Env) -> None:
    verifier = env.verifier(max_lifetime_seconds=3600)
    await rejected(verifier, env.auth.issue(lifetime=7200))
    await verifier.verify(env.auth.issue(lifetime=3600))


async def test_lifetime_cap_without_iat_counts_from_now(env: Env) -> None:
    verifier = env.verifier(max_lifetime_seconds=3600, required_claims=("sub",))
    await rejected(verifier, env.auth.issue(lifetime=7200, omit=["iat"]))
    await verifier.verify(env.auth.issue(lifetime=600, omit=["iat"]))


async def test_missing_required_claims(env: Env) -> None:
    await rejected(env.verifier(), env.auth.issue(omit=["sub"]))
    await rejected(env.verifier(), env.auth.issue(omit=["iat"]))
    verifier = env.verifier(required_claims=("sub", "tenant"))
    await rejected(verifier, env.auth.issue())
    await verifier.verify(env.auth.issue(extra={"tenant": "acme"}))


# -- rotation, caching, availability ----------------------------------------------------------


async def test_key_rotation_refetches_once(env: Env) -> None:
    verifier = env.verifier(jwks_refetch_seconds=30)
    await verifier.verify(env.auth.issue())
    assert env.auth.count("/jwks") == 1
    env.clock.advance(31)
    new_kid = env.auth.add_key("ES256", kid="rotated-2")
    env.auth.remove_key(env.kids["RS256"])
    for _ in range(3):
        assert (await verifier.verify(env.auth.issue(kid=new_kid)))["sub"] == "alice"
    assert env.auth.count("/jwks") == 2


async def test_cached_token_is_fast_and_same_claims(env: Env) -> None:
    verifier = env.verifier()
    token = env.auth.issue()
    first = await verifier.verify(token)
    fetches = len(env.auth.requests)
    started = time.perf_counter()
    for _ in range(2000):
        assert await verifier.verify(token) is first
    per_call = (time.perf_counter() - started) / 2000
    assert per_call < 200e-6, f"{per_call * 1e6:.1f} us per cached verification"
    assert len(env.auth.requests) == fetches


async def test_cached_token_is_refused_once_expired(env: Env) -> None:
    verifier = env.verifier(leeway_seconds=10)
    token = env.auth.issue(lifetime=60)
    await verifier.verify(token)
    env.clock.advance(65)
    await verifier.verify(token)
    env.clock.advance(10)
    await rejected(verifier, token, "auth.expired")
    await rejected(verifier, token, "auth.expired")


async def test_cache_is_bounded(env: Env) -> None:
    verifier = env.verifier(token_cache_size=2)
    tokens = [env.auth.issue() for _ in range(3)]
    for token in tokens:
        await verifier.verify(token)
    assert len(verifier._verified) == 2


async def test_rejections_are_remembered_briefly_without_refusing_valid_tokens(env: Env) -> None:
    verifier = env.verifier()
    bad = env.auth.issue(aud="https://other.example.test")
    await rejected(verifier, bad)
    await rejected(verifier, bad)
    good = env.auth.issue()
    await verifier.verify(good)
    env.clock.advance(10)
    await rejected(verifier, bad)


async def test_unknown_kid_rejection_is_not_remembered(env: Env) -> None:
    verifier = env.verifier(jwks_refetch_seconds=30)
    await verifier.verify(env.auth.issue())
    env.auth.add_key("RS256", kid="soon")
    token = env.auth.issue(kid="soon")
    await rejected(verifier, token)  # the refetch limit holds: not yet
    env.clock.advance(31)
    await verifier.verify(token)


async def test_jwks_endpoint_down_is_unavailable(env: Env) -> None:
    env.auth.fail["jwks"] = 500
    with pytest.raises(AuthUnavailable) as info:
        await env.verifier().verify(env.auth.issue())
    assert info.value.code == "auth.unavailable"
    assert info.value.http_status == 503


async def test_metadata_down_is_unavailable(env: Env) -> None:
    env.auth.fail["metadata"] = env.auth.fail["oidc"] = 500
    with pytest.raises(AuthUnavailable):
        await env.verifier().verify(env.auth.issue())


def test_looks_like_jwt() -> None:
    header = b64({"alg": "RS256", "typ": "JWT"})
    assert looks_like_jwt(f"{header}.{b64({'sub': 'a'})}.c2ln")
    assert not looks_like_jwt("opq_abcdef")
    assert not looks_like_jwt("ghk_alice.secret")
    assert not looks_like_jwt("a.b.c")
    assert not looks_like_jwt(f"{b64({'typ': 'JWT'})}.e30.c2ln")
    assert not looks_like_jwt(f"{header}.e30")
    assert not looks_like_jwt(f"{header}.e30.c2ln.extra")
    assert not looks_like_jwt(f"{header}.e30.")
    assert not looks_like_jwt(f"{header}.e+30.c2ln")


# -- tokens minted at the authorization server's endpoints ------------------------------------


async def token_call(env: Env, form: dict[str, str], auth: tuple[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(env.auth.token_endpoint, data=form,
                                 auth=httpx.BasicAuth(*auth) if auth else httpx.USE_CLIENT_DEFAULT)


async def test_client_credentials_token_verifies(env: Env) -> None:
    env.auth.register_client("svc", "pw")
    answer = await token_call(env, {"grant_type": "client_credentials", "scope": "tools.read",
                                    "resource": env.auth.default_audience}, auth=("svc", "pw"))
    claims = await env.verifier().verify(answer.json()["access_token"])
    assert (claims["sub"], claims["client_id"], claims["scope"]) == ("svc", "svc", "tools.read")
    assert env.auth.token_requests == [{"grant_type": "client_credentials", "scope": "tools.read",
                                        "resource": env.auth.default_audience}]
    assert env.auth.token_auth == [("svc", "client_secret_basic")]


async def test_token_exchange_token_verifies_and_names_the_actor(env: Env) -> None:
    env.auth.register_client("gateway", "pw")
    subject = env.auth.issue(aud="https://gateway.example.test/mcp", sub="bob")
    answer = await token_call(env, {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                                    "subject_token": subject,
                                    "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
                                    "resource": env.auth.default_audience,
                                    "client_id": "gateway", "client_secret": "pw"})
    body = answer.json()
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    claims = await env.verifier().verify(body["access_token"])
    assert (claims["sub"], claims["act"]) == ("bob", {"sub": "gateway"})
    assert "client_secret" not in env.auth.token_requests[0]
    bad = await token_call(env, {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                                 "subject_token": subject + "x",
                                 "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"},
                           auth=("gateway", "pw"))
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_grant")


async def authorize(env: Env, client: httpx.AsyncClient, client_id: str, redirect: str,
                    challenge: str) -> dict[str, str]:
    approved = await client.get(env.auth.authorization_endpoint, params={
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect, "code_challenge": challenge,
        "code_challenge_method": "S256", "state": "st-1", "scope": "tools.read",
        "resource": env.auth.default_audience})
    assert approved.status_code == 302
    query = parse_qs(urlsplit(approved.headers["location"]).query)
    assert query["state"] == ["st-1"]
    return {"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": redirect,
            "client_id": client_id}


async def test_authorization_code_with_pkce_token_verifies(env: Env) -> None:
    redirect = "http://127.0.0.1:9/callback"
    verifier = secrets.token_urlsafe(48)
    challenge = b64(hashlib.sha256(verifier.encode()).digest())
    async with httpx.AsyncClient() as client:
        registered = (await client.post(env.auth.registration_endpoint, json={
            "redirect_uris": [redirect], "token_endpoint_auth_method": "none"})).json()
        assert "client_secret" not in registered
        client_id = registered["client_id"]
        form = await authorize(env, client, client_id, redirect, challenge)
        wrong = await client.post(env.auth.token_endpoint, data={**form, "code_verifier": "x" * 43})
        assert wrong.status_code == 400
        spent = await client.post(env.auth.token_endpoint, data={**form, "code_verifier": verifier})
        assert spent.status_code == 400  # a code is single use, even after a failed attempt
        form = await authorize(env, client, client_id, redirect, challenge)
        answer = await client.post(env.auth.token_endpoint, data={**form, "code_verifier": verifier})
        assert answer.status_code == 200
        refreshed = await client.post(env.auth.token_endpoint, data={
            "grant_type": "refresh_token", "refresh_token": answer.json()["refresh_token"], "client_id": client_id})
    for body in (answer.json(), refreshed.json()):
        claims = await env.verifier().verify(body["access_token"])
        assert (claims["sub"], claims["scope"], claims["client_id"]) == ("alice", "tools.read", client_id)
