"""Claim paths, scopes, roles and the Caller built from verified claims."""

from __future__ import annotations

from typing import Any

import pytest

from gatehold.auth.claims import caller_from_claims, claim_at, roles_of, scopes_of
from gatehold.config import OAuthSettings
from gatehold.errors import AuthenticationFailed

ISSUER = "https://issuer.example.test"


def settings(**overrides: Any) -> OAuthSettings:
    return OAuthSettings(issuer=ISSUER, **overrides)


def test_claim_at_walks_dotted_paths() -> None:
    claims = {"realm_access": {"roles": ["admin"]}, "sub": "alice"}
    assert claim_at(claims, "realm_access.roles") == ["admin"]
    assert claim_at(claims, "sub") == "alice"
    assert claim_at(claims, "realm_access.missing") is None
    assert claim_at(claims, "sub.deeper") is None
    assert claim_at(claims, "absent") is None


def test_claim_at_prefers_a_literal_key_with_dots() -> None:
    claims = {"https://example.com/roles": ["ops"], "https://example": {"com/roles": ["wrong"]}}
    assert claim_at(claims, "https://example.com/roles") == ["ops"]


@pytest.mark.parametrize(("value", "expected"), [
    ("read write", {"read", "write"}),
    ("  read   write ", {"read", "write"}),
    (["read", "write"], {"read", "write"}),
    (["read", 7, None, "", "write"], {"read", "write"}),
    ("", set()),
    (None, set()),
    (42, set()),
    ({"read": True}, set()),
])
def test_scopes_of(value: Any, expected: set[str]) -> None:
    assert scopes_of(value) == frozenset(expected)


@pytest.mark.parametrize(("value", "expected"), [
    (["b", "a", "b"], ("b", "a")),
    ("a b a", ("a", "b")),
    ([1, "a"], ("a",)),
    (None, ()),
    ({"a": 1}, ()),
])
def test_roles_of(value: Any, expected: tuple[str, ...]) -> None:
    assert roles_of(value) == expected


def test_caller_from_full_claims() -> None:
    claims = {"sub": "alice", "roles": ["reader", "ops"], "scope": "tools.read tools.write",
              "client_id": "agent-1", "jti": "abc", "exp": 2_000_000_000}
    caller = caller_from_claims(claims, settings(default_roles=("ops", "base")), token="secret-token-value", kind="jwt")
    assert caller.principal == "alice"
    assert caller.subject == "alice"
    assert caller.roles == ("reader", "ops", "base")
    assert caller.scopes == frozenset({"tools.read", "tools.write"})
    assert caller.client_id == "agent-1"
    assert caller.token_id == "abc"
    assert caller.expires_at == 2_000_000_000.0
    assert caller.credential_id == "jwt:jti:abc"
    assert caller.token == "secret-token-value"
    assert "secret-token-value" not in repr(caller)


def test_caller_fallbacks_scp_azp_and_sub_credential_id() -> None:
    claims = {"sub": "svc", "scp": ["a", "b"], "azp": "client-x"}
    caller = caller_from_claims(claims, settings(), token="t", kind="introspection")
    assert caller.scopes == frozenset({"a", "b"})
    assert caller.client_id == "client-x"
    assert caller.token_id is None
    assert caller.expires_at is None
    assert caller.credential_id == "introspection:sub:svc"
    assert caller.roles == ()


def test_configured_scope_claim_wins_over_scp() -> None:
    claims = {"sub": "svc", "scope": "", "scp": ["admin"]}
    caller = caller_from_claims(claims, settings(), token="t", kind="jwt")
    assert caller.scopes == frozenset()


def test_custom_claim_paths() -> None:
    claims = {"email": "a@example.test", "sub": "1234", "realm_access": {"roles": ["ops"]},
              "https://example.com/scopes": ["x"], "cid": "c"}
    caller = caller_from_claims(
        claims,
        settings(subject_claim="email", roles_claim="realm_access.roles", scope_claim="https://example.com/scopes",
                 client_id_claim="cid"),
        token="t", kind="jwt")
    assert caller.principal == "a@example.test"
    assert caller.subject == "1234"
    assert caller.credential_id == "jwt:sub:1234"
    assert caller.roles == ("ops",)
    assert caller.scopes == frozenset({"x"})
    assert caller.client_id == "c"


def test_roles_claim_disabled_leaves_default_roles() -> None:
    claims = {"sub": "alice", "roles": ["admin"]}
    caller = caller_from_claims(claims, settings(roles_claim=None, default_roles=("reader",)), token="t", kind="jwt")
    assert caller.roles == ("reader",)


@pytest.mark.parametrize("sub", [None, "", 12, ["alice"], {"id": "alice"}])
def test_unusable_subject_is_refused(sub: Any) -> None:
    claims: dict[str, Any] = {"scope": "x"} if sub is None else {"sub": sub}
    with pytest.raises(AuthenticationFailed) as info:
        caller_from_claims(claims, settings(), token="t", kind="jwt")
    assert info.value.code == "auth.invalid"


def test_boolean_exp_is_not_an_expiry() -> None:
    caller = caller_from_claims({"sub": "a", "exp": True}, settings(), token="t", kind="jwt")
    assert caller.expires_at is None
