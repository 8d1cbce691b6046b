"""Authenticator: the remembered caller of a verified JWT, and what still applies to it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gatehold.auth.apikeys import ApiKeyAuthenticator
from gatehold.auth.authenticator import Authenticator
from gatehold.auth.jwks import JwksCache
from gatehold.auth.jwt_verify import JwtVerifier
from gatehold.auth.outbound import IdentityHttp
from gatehold.config import OAuthSettings
from gatehold.errors import AuthenticationFailed, CredentialRevoked
from gatehold.state import Revocation, SqliteRevocations
from tests.authserver import AuthServer, FakeClock, running_auth_server

pytestmark = pytest.mark.anyio


@dataclass
class Env:
    auth: AuthServer
    clock: FakeClock
    store: SqliteRevocations
    authenticator: Authenticator


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with running_auth_server() as auth:
        auth.add_key("ES256")
        auth.clock = clock = FakeClock(float(int(time.time())))
        settings = OAuthSettings(issuer=auth.issuer, algorithms=("ES256",), leeway_seconds=10)
        http = IdentityHttp(timeout_seconds=5.0)
        jwks = JwksCache(http, issuer=auth.issuer, jwks_uri=None, refetch_seconds=settings.jwks_refetch_seconds,
                         max_age_seconds=settings.jwks_max_age_seconds, clock=clock)
        verifier = JwtVerifier(settings, audience=auth.default_audience, jwks=jwks, clock=clock)
        store = SqliteRevocations(tmp_path / "revocations.db")
        authenticator = Authenticator(api_keys=ApiKeyAuthenticator(()), revocations=store, oauth=settings,
                                      jwt=verifier, clock=clock)
        try:
            yield Env(auth, clock, store, authenticator)
        finally:
            await store.aclose()
            await http.aclose()


async def test_a_repeated_token_gets_the_same_caller_without_fetching_keys_again(env: Env) -> None:
    token = env.auth.issue(sub="alice", scope="crm:read", lifetime=60)
    first = await env.authenticator.authenticate(f"Bearer {token}")
    fetches = len(env.auth.requests)
    second = await env.authenticator.authenticate(f"Bearer {token}")
    assert second is first
    assert (first.principal, first.scopes) == ("alice", frozenset({"crm:read"}))
    assert len(env.auth.requests) == fetches


async def test_a_remembered_token_is_refused_once_it_expires(env: Env) -> None:
    token = env.auth.issue(lifetime=60)
    await env.authenticator.authenticate(f"Bearer {token}")
    env.clock.advance(60 + 10)  # exp plus leeway: still accepted
    await env.authenticator.authenticate(f"Bearer {token}")
    env.clock.advance(1)
    with pytest.raises(AuthenticationFailed) as info:
        await env.authenticator.authenticate(f"Bearer {token}")
    assert info.value.code == "auth.expired"


async def test_a_remembered_token_is_still_checked_against_revocations(env: Env) -> None:
    token = env.auth.issue(sub="alice", extra={"jti": "jti-7"})
    await env.authenticator.authenticate(f"Bearer {token}")
    await env.store.revoke(Revocation("jti", "jti-7", "leaked", time.time(), "tester"))
    with pytest.raises(CredentialRevoked):
        await env.authenticator.authenticate(f"Bearer {token}")


async def test_a_tampered_copy_of_a_remembered_token_is_not_taken_for_it(env: Env) -> None:
    token = env.auth.issue(sub="alice")
    await env.authenticator.authenticate(f"Bearer {token}")
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}"
    with pytest.raises(AuthenticationFailed):
        await env.authenticator.authenticate(f"Bearer {forged}")
