"""JwksCache against the real in-test authorization server: discovery, caching, refetch limits, bad keys."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gatehold.auth.jwks import JwksCache, discovery_urls, fits
from gatehold.auth.outbound import IdentityHttp
from gatehold.errors import AuthenticationFailed, AuthUnavailable
from tests.authserver import AuthServer, FakeClock, running_auth_server

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http() -> AsyncIterator[IdentityHttp]:
    client = IdentityHttp(timeout_seconds=5.0)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope: one authorization server serves most tests here


@pytest.fixture(scope="module")
async def shared_auth() -> AsyncIterator[AuthServer]:
    async with running_auth_server() as server:
        yield server


@pytest.fixture
def auth(shared_auth: AuthServer) -> AuthServer:
    shared_auth.reset()
    shared_auth.keys.clear()
    return shared_auth


def cache_for(auth: AuthServer, http: IdentityHttp, clock: FakeClock | None = None, *, jwks_uri: str | None = None,
              refetch: float = 30.0, max_age: float = 3600.0) -> JwksCache:
    return JwksCache(http, issuer=auth.issuer, jwks_uri=jwks_uri, refetch_seconds=refetch, max_age_seconds=max_age,
                     clock=clock or FakeClock())


def rsa_jwk(kid: str, *, private: bool = False, **extra: Any) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key if private else key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, **extra}


# -- pure helpers -----------------------------------------------------------------------------


def test_discovery_urls_put_the_well_known_segment_before_the_path() -> None:
    assert discovery_urls("https://as.example") == [
        "https://as.example/.well-known/oauth-authorization-server",
        "https://as.example/.well-known/openid-configuration",
    ]
    assert discovery_urls("https://as.example/tenant/a") == [
        "https://as.example/.well-known/oauth-authorization-server/tenant/a",
        "https://as.example/tenant/a/.well-known/openid-configuration",
    ]
    assert discovery_urls("https://as.example/tenant/")[0] == (
        "https://as.example/.well-known/oauth-authorization-server/tenant")


@pytest.mark.parametrize(("jwk", "alg", "ok"), [
    ({"kty": "RSA"}, "RS256", True),
    ({"kty": "RSA"}, "PS512", True),
    ({"kty": "RSA"}, "ES256", False),
    ({"kty": "RSA", "alg": "RS256"}, "PS256", False),
    ({"kty": "EC", "crv": "P-256"}, "ES256", True),
    ({"kty": "EC", "crv": "P-256"}, "ES384", False),
    ({"kty": "EC", "crv": "P-521"}, "ES512", True),
    ({"kty": "EC", "crv": "P-256"}, "RS256", False),
    ({"kty": "OKP", "crv": "Ed25519"}, "EdDSA", True),
    ({"kty": "OKP", "crv": "X25519"}, "EdDSA", False),
    ({"kty": "oct"}, "HS256", False),
    ({"kty": "RSA"}, "none", False),
    ({"kty": "RSA"}, "HS256", False),
])
def test_fits(jwk: dict[str, Any], alg: str, ok: bool) -> None:
    assert fits(jwk, alg) is ok


# -- discovery --------------------------------------------------------------------------------


async def test_discovers_rfc8414_metadata_then_fetches_the_jwks_once(auth: AuthServer, http: IdentityHttp) -> None:
    kid = auth.add_key("RS256")
    cache = cache_for(auth, http)
    for _ in range(5):
        assert (await cache.key_for(kid, "RS256")).key_id == kid
    assert auth.requests == [("GET", "/.well-known/oauth-authorization-server"), ("GET", "/jwks")]
    metadata = await cache.metadata()
    assert metadata is not None
    assert metadata["issuer"] == auth.issuer


async def test_issuer_with_a_path(http: IdentityHttp) -> None:
    async with running_auth_server(path="/tenant") as auth:
        kid = auth.add_key("ES256")
        await cache_for(auth, http).key_for(kid, "ES256")
        assert auth.requests == [("GET", "/.well-known/oauth-authorization-server/tenant"), ("GET", "/tenant/jwks")]


@pytest.mark.parametrize("path", ["", "/tenant"])
async def test_falls_back_to_openid_configuration(http: IdentityHttp, path: str) -> None:
    async with running_auth_server(path=path) as auth:
        auth.fail["metadata"] = 404
        kid = auth.add_key("RS256")
        await cache_for(auth, http).key_for(kid, "RS256")
        assert auth.requests[1:] == [("GET", f"{path}/.well-known/openid-configuration"), ("GET", f"{path}/jwks")]


@pytest.mark.parametrize("override", [{"issuer": "https://evil.example"}, {"issuer": None}, {"jwks_uri": None},
                                      {"jwks_uri": 7}])
async def test_bad_metadata_is_never_used(auth: AuthServer, http: IdentityHttp, override: dict[str, Any]) -> None:
    auth.metadata_overrides.update(override)
    kid = auth.add_key("RS256")
    with pytest.raises(AuthUnavailable):
        await cache_for(auth, http).key_for(kid, "RS256")
    assert ("GET", "/jwks") not in auth.requests


async def test_metadata_for_another_issuer_with_a_trailing_slash_is_refused(auth: AuthServer,
                                                                           http: IdentityHttp) -> None:
    auth.metadata_overrides["issuer"] = auth.issuer + "/"
    with pytest.raises(AuthUnavailable):
        await cache_for(auth, http).key_for(auth.add_key("RS256"), "RS256")


async def test_configured_jwks_uri_skips_discovery(auth: AuthServer, http: IdentityHttp) -> None:
    kid = auth.add_key("EdDSA")
    await cache_for(auth, http, jwks_uri=auth.jwks_uri).key_for(kid, "EdDSA")
    assert auth.requests == [("GET", "/jwks")]


# -- caching and refetching -------------------------------------------------------------------


async def test_keys_are_refetched_after_max_age(auth: AuthServer, http: IdentityHttp) -> None:
    clock = FakeClock()
    kid = auth.add_key("RS256")
    cache = cache_for(auth, http, clock, jwks_uri=auth.jwks_uri, max_age=600)
    await cache.key_for(kid, "RS256")
    clock.advance(599)
    await cache.key_for(kid, "RS256")
    assert auth.count("/jwks") == 1
    clock.advance(2)
    await cache.key_for(kid, "RS256")
    assert auth.count("/jwks") == 2


async def test_unknown_kids_refetch_at_most_once_per_interval(auth: AuthServer, http: IdentityHttp) -> None:
    clock = FakeClock()
    kid = auth.add_key("RS256")
    cache = cache_for(auth, http, clock, jwks_uri=auth.jwks_uri, refetch=30)
    await cache.key_for(kid, "RS256")
    clock.advance(31)
    for n in range(50):
        with pytest.raises(AuthenticationFailed) as info:
            await cache.key_for(f"random-{n}", "RS256")
        assert info.value.code == "auth.invalid"
    assert auth.count("/jwks") == 2
    clock.advance(31)
    with pytest.raises(AuthenticationFailed):
        await cache.key_for("random-again", "RS256")
    assert auth.count("/jwks") == 3


async def test_concurrent_misses_share_one_fetch(auth: AuthServer, http: IdentityHttp) -> None:
    clock = FakeClock()
    auth.add_key("RS256")
    cache = cache_for(auth, http, clock, jwks_uri=auth.jwks_uri)
    await cache.key_for(None, "RS256")
    new = auth.add_key("ES256")
    clock.advance(60)
    keys = await asyncio.gather(*(cache.key_for(new, "ES256") for _ in range(20)))
    assert {key.key_id for key in keys} == {new}
    assert auth.count("/jwks") == 2


async def test_first_fetches_share_one_request(auth: AuthServer, http: IdentityHttp) -> None:
    kid = auth.add_key("RS256")
    cache = cache_for(auth, http)
    await asyncio.gather(*(cache.key_for(kid, "RS256") for _ in range(10)))
    assert auth.count("/jwks") == 1
    assert auth.count("/.well-known/oauth-authorization-server") == 1


async def test_kid_is_only_a_lookup_key(auth: AuthServer, http: IdentityHttp) -> None:
    auth.add_key("RS256")
    cache = cache_for(auth, http, jwks_uri=auth.jwks_uri)
    for kid in ("../../etc/passwd", "' OR 1=1 --", "https://evil.example/jwks", "?x=1&y=2", "\x00"):
        with pytest.raises(AuthenticationFailed):
            await cache.key_for(kid, "RS256")
    assert {path for _, path in auth.requests} == {"/jwks"}


# -- which key answers ------------------------------------------------------------------------


async def test_key_must_fit_the_algorithm(auth: AuthServer, http: IdentityHttp) -> None:
    rsa_kid, ec_kid = auth.add_key("RS256"), auth.add_key("ES256")
    cache = cache_for(auth, http, jwks_uri=auth.jwks_uri)
    for kid, alg in ((rsa_kid, "ES256"), (rsa_kid, "PS256"), (ec_kid, "ES384"), (ec_kid, "RS256"),
                     (ec_kid, "EdDSA")):
        with pytest.raises(AuthenticationFailed) as info:
            await cache.key_for(kid, alg)
        assert info.value.code == "auth.invalid"


async def test_no_kid_needs_exactly_one_usable_key(auth: AuthServer, http: IdentityHttp) -> None:
    rsa_kid = auth.add_key("RS256")
    ec_kid = auth.add_key("ES256")
    cache = cache_for(auth, http, jwks_uri=auth.jwks_uri)
    assert (await cache.key_for(None, "RS256")).key_id == rsa_kid
    assert (await cache.key_for(None, "ES256")).key_id == ec_kid
    auth.add_key("RS256")
    cache = cache_for(auth, http, jwks_uri=auth.jwks_uri)
    with pytest.raises(AuthenticationFailed) as info:
        await cache.key_for(None, "RS256")
    assert info.value.code == "auth.invalid"


async def test_unusable_entries_are_skipped(auth: AuthServer, http: IdentityHttp,
                                            caplog: pytest.LogCaptureFixture) -> None:
    good = auth.add_key("RS256")
    ec_other = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256K1()).public_key(), as_dict=True)
    auth.extra_jwks.extend([
        rsa_jwk("leaky", private=True),
        rsa_jwk("encryption", use="enc"),
        rsa_jwk("wrap-only", key_ops=["wrapKey"]),
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {**ec_other, "kid": "k1-curve"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        {"kty": "RSA", "kid": 42, "n": "AQAB", "e": "AQAB"},
        "not an object",
    ])
    cache = cache_for(auth, http, jwks_uri=auth.jwks_uri)
    with caplog.at_level(logging.WARNING, logger="gatehold.auth.jwks"):
        assert (await cache.key_for(good, "RS256")).key_id == good
    for kid, alg in (("leaky", "RS256"), ("encryption", "RS256"), ("wrap-only", "RS256"), ("hmac", "HS256"),
                     ("k1-curve", "ES256"), ("broken", "RS256")):
        with pytest.raises(AuthenticationFailed):
            await cache.key_for(kid, alg)
    assert any("private key" in record.getMessage() for record in caplog.records)
    # the single good RSA key is still the only one a kid-less token may use
    assert (await cache.key_for(None, "RS256")).key_id == good


async def test_sig_use_and_verify_ops_are_accepted(auth: AuthServer, http: IdentityHttp) -> None:
    auth.extra_jwks.append(rsa_jwk("ops", key_ops=["verify"], use="sig"))
    cache = cache_for(auth, http, jwks_uri=auth.jwks_uri)
    assert (await cache.key_for("ops", "PS384")).key_id == "ops"


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 404, 429])
async def test_jwks_down_is_unavailable(auth: AuthServer, http: IdentityHttp, status: int) -> None:
    auth.fail["jwks"] = status
    kid = auth.add_key("RS256")
    with pytest.raises(AuthUnavailable) as info:
        await cache_for(auth, http, jwks_uri=auth.jwks_uri).key_for(kid, "RS256")
    assert info.value.code == "auth.unavailable"


async def test_unreachable_issuer_is_unavailable(http: IdentityHttp) -> None:
    async with running_auth_server() as auth:
        kid = auth.add_key("RS256")
    with pytest.raises(AuthUnavailable):
        await cache_for(auth, http).key_for(kid, "RS256")


@pytest.mark.parametrize("body_keys", [[], "nope", None])
async def test_jwks_without_usable_keys_is_unavailable(auth: AuthServer, http: IdentityHttp, body_keys: Any) -> None:
    cache = cache_for(auth, http, jwks_uri=f"{auth.issuer}/.well-known/openid-configuration")
    if body_keys is not None:
        auth.metadata_overrides["keys"] = body_keys
    with pytest.raises(AuthUnavailable):
        await cache.key_for("any", "RS256")


async def test_cached_key_answers_while_the_issuer_is_down(auth: AuthServer, http: IdentityHttp) -> None:
    clock = FakeClock()
    kid = auth.add_key("RS256")
    cache = cache_for(auth, http, clock, jwks_uri=auth.jwks_uri, max_age=600, refetch=30)
    await cache.key_for(kid, "RS256")
    auth.fail["jwks"] = 503
    clock.advance(601)
    assert (await cache.key_for(kid, "RS256")).key_id == kid
    assert auth.count("/jwks") == 2
    with pytest.raises(AuthUnavailable):
        await cache.key_for("unknown", "RS256")
    assert auth.count("/jwks") == 2  # failed refetches back off


async def test_recovers_after_a_failed_first_fetch(auth: AuthServer, http: IdentityHttp) -> None:
    clock = FakeClock()
    kid = auth.add_key("RS256")
    cache = cache_for(auth, http, clock, jwks_uri=auth.jwks_uri, refetch=30)
    auth.fail["jwks"] = 500
    with pytest.raises(AuthUnavailable):
        await cache.key_for(kid, "RS256")
    with pytest.raises(AuthUnavailable):
        await cache.key_for(kid, "RS256")
    assert auth.count("/jwks") == 1
    del auth.fail["jwks"]
    clock.advance(6)
    assert (await cache.key_for(kid, "RS256")).key_id == kid


async def test_metadata_is_none_when_discovery_fails(auth: AuthServer, http: IdentityHttp) -> None:
    auth.fail["metadata"] = auth.fail["oidc"] = 500
    assert await cache_for(auth, http, jwks_uri=auth.jwks_uri).metadata() is None
