"""Introspector against the real in-test authorization server's RFC 7662 endpoint."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from gatehold.auth.introspection import Introspector
from gatehold.auth.outbound import IdentityHttp
from gatehold.config import IntrospectionSettings
from gatehold.errors import AuthenticationFailed, AuthUnavailable
from tests.authserver import AuthServer, FakeClock, running_auth_server

pytestmark = pytest.mark.anyio

SECRET = "intro-s3cret"


@dataclass
class Env:
    auth: AuthServer
    http: IdentityHttp
    clock: FakeClock

    def introspector(self, *, secret: str = SECRET, client_id: str = "gatehold",
                     method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic",
                     cache_seconds: float = 60.0, endpoint: str | None = None) -> Introspector:
        settings = IntrospectionSettings(endpoint=endpoint or self.auth.introspection_endpoint, client_id=client_id,
                                         client_secret="introspection-secret", auth_method=method,
                                         cache_seconds=cache_seconds)
        return Introspector(settings, secret, http=self.http, audience=self.auth.default_audience,
                            issuer=self.auth.issuer, clock=self.clock)

    def token(self, **claims: Any) -> str:
        base = {"sub": "alice", "aud": self.auth.default_audience, "iss": self.auth.issuer,
                "exp": int(self.clock()) + 300, "scope": "tools.read"}
        return self.auth.opaque({**base, **claims})

    def asked(self) -> int:
        return self.auth.count("/introspect", "POST")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def shared_auth() -> AsyncIterator[AuthServer]:
    async with running_auth_server() as server:
        yield server


@pytest.fixture
async def env(shared_auth: AuthServer) -> AsyncIterator[Env]:
    shared_auth.reset()
    shared_auth.register_client("gatehold", SECRET)
    shared_auth.clock = clock = FakeClock(float(int(time.time())))
    http = IdentityHttp(timeout_seconds=5.0)
    yield Env(shared_auth, http, clock)
    await http.aclose()


async def refused(introspector: Introspector, token: str, code: str = "auth.invalid") -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as info:
        await introspector.introspect(token)
    assert info.value.code == code, info.value.detail
    if token:
        assert token not in info.value.detail
    return info.value


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_active_token_is_accepted_with_either_client_auth(
        env: Env, method: Literal["client_secret_basic", "client_secret_post"]) -> None:
    token = env.token()
    answer = await env.introspector(method=method).introspect(token)
    assert (answer["active"], answer["sub"], answer["scope"]) == (True, "alice", "tools.read")
    sent = env.auth.introspection_requests[-1]
    assert sent == {"token": token, "token_type_hint": "access_token", "_auth": method,
                    **({"client_id": "gatehold"} if method == "client_secret_post" else {})}


async def test_secret_with_reserved_characters_is_form_encoded_for_basic(env: Env) -> None:
    env.auth.register_client("gate:hold", "p@ss:w%rd +x")
    answer = await env.introspector(client_id="gate:hold", secret="p@ss:w%rd +x").introspect(env.token())
    assert answer["active"] is True


async def test_jwt_of_the_server_introspects(env: Env) -> None:
    answer = await env.introspector().introspect(env.auth.issue())
    assert answer["sub"] == "alice"


async def test_active_answer_is_cached(env: Env) -> None:
    introspector, token = env.introspector(), env.token()
    first = await introspector.introspect(token)
    assert await introspector.introspect(token) is first
    assert env.asked() == 1


async def test_cache_ends_at_cache_seconds(env: Env) -> None:
    introspector, token = env.introspector(cache_seconds=60), env.token()
    await introspector.introspect(token)
    env.clock.advance(59)
    await introspector.introspect(token)
    assert env.asked() == 1
    env.clock.advance(2)
    await introspector.introspect(token)
    assert env.asked() == 2


async def test_cache_ends_at_exp(env: Env) -> None:
    introspector = env.introspector(cache_seconds=600)
    token = env.token(exp=int(env.clock()) + 10)
    await introspector.introspect(token)
    env.clock.advance(11)
    await refused(introspector, token, "auth.expired")
    assert env.asked() == 2


async def test_zero_cache_seconds_asks_every_time(env: Env) -> None:
    introspector, token = env.introspector(cache_seconds=0), env.token()
    for _ in range(3):
        await introspector.introspect(token)
    assert env.asked() == 3


async def test_inactive_token_is_refused_and_remembered_only_briefly(env: Env) -> None:
    introspector = env.introspector()
    await refused(introspector, "opq_never_issued")
    await refused(introspector, "opq_never_issued")
    assert env.asked() == 1
    env.clock.advance(4)
    await refused(introspector, "opq_never_issued")
    assert env.asked() == 2


@pytest.mark.parametrize("active", ["true", 1, None, False, "false"])
async def test_active_must_be_exactly_true(env: Env, active: Any) -> None:
    await refused(env.introspector(), env.token(active=active))


async def test_expired_answer_is_refused(env: Env) -> None:
    await refused(env.introspector(), env.token(exp=int(env.clock()) - 1), "auth.expired")


@pytest.mark.parametrize("exp", ["soon", True, [1]])
async def test_exp_must_be_a_number(env: Env, exp: Any) -> None:
    await refused(env.introspector(), env.token(exp=exp))


async def test_answer_without_exp_is_cached_for_cache_seconds(env: Env) -> None:
    token = env.auth.opaque({"sub": "alice", "aud": env.auth.default_audience})
    introspector = env.introspector(cache_seconds=30)
    await introspector.introspect(token)
    env.clock.advance(31)
    await introspector.introspect(token)
    assert env.asked() == 2


@pytest.mark.parametrize("aud", [None, "https://other.example.test/mcp", "https://mcp.example.test/mcp/x", [],
                                 ["https://a.example"], {"aud": "https://mcp.example.test/mcp"}])
async def test_audience_must_name_this_resource(env: Env, aud: Any) -> None:
    claims: dict[str, Any] = {"sub": "alice", "exp": int(env.clock()) + 60}
    if aud is not None:
        claims["aud"] = aud
    await refused(env.introspector(), env.auth.opaque(claims))


async def test_audience_list_containing_this_resource(env: Env) -> None:
    await env.introspector().introspect(env.token(aud=["https://a.example", env.auth.default_audience]))


async def test_issuer_if_present_must_match(env: Env) -> None:
    await refused(env.introspector(), env.token(iss="https://evil.example"))
    answer = await env.introspector().introspect(env.auth.opaque({"sub": "a", "aud": env.auth.default_audience}))
    assert "iss" not in answer


async def test_wrong_client_secret_is_unavailable(env: Env) -> None:
    with pytest.raises(AuthUnavailable):
        await env.introspector(secret="wrong").introspect(env.token())


@pytest.mark.parametrize("status", [500, 503, 404, 400])
async def test_error_status_is_unavailable(env: Env, status: int) -> None:
    env.auth.fail["introspect"] = status
    token = env.token()
    with pytest.raises(AuthUnavailable) as info:
        await env.introspector().introspect(token)
    assert info.value.http_status == 503
    del env.auth.fail["introspect"]
    # failures are never remembered: the next call asks again and succeeds
    await env.introspector().introspect(token)


async def test_unreachable_endpoint_is_unavailable(env: Env) -> None:
    async with running_auth_server() as gone:
        endpoint = gone.introspection_endpoint
    with pytest.raises(AuthUnavailable):
        await env.introspector(endpoint=endpoint).introspect(env.token())


async def test_plain_http_to_a_remote_endpoint_is_unavailable(env: Env) -> None:
    with pytest.raises(AuthUnavailable):
        await env.introspector(endpoint="http://introspect.example.test/introspect").introspect(env.token())


@pytest.mark.parametrize("token", ["", "x" * 40_000, "caf\u00e9", "\ud800"])
async def test_unusable_tokens_are_refused_without_asking(env: Env, token: str) -> None:
    await refused(env.introspector(), token)
    assert env.asked() == 0
