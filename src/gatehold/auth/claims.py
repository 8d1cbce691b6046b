"""Reading verified token claims: dotted claim paths, scopes, roles, and the resulting ``Caller``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gatehold.call import Caller
from gatehold.config import OAuthSettings
from gatehold.errors import AuthenticationFailed


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at ``path`` ("realm_access.roles"); a literal key containing dots wins. None when absent."""
    if path in claims:
        return claims[path]
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _words(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        # fail closed: members that are not non-empty strings grant nothing
        return [item for item in value if isinstance(item, str) and item and not item.isspace()]
    return []


def scopes_of(value: Any) -> frozenset[str]:
    """Scopes from a space-separated string or a list of strings; anything else is no scopes."""
    return frozenset(_words(value))


def roles_of(value: Any) -> tuple[str, ...]:
    """Role names from a list of strings or a space-separated string, in order, without repeats."""
    return tuple(dict.fromkeys(_words(value)))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def caller_from_claims(claims: Mapping[str, Any], settings: OAuthSettings, *, token: str, kind: str) -> Caller:
    """Build the ``Caller`` for verified claims; ``kind`` is "jwt" or "introspection"."""
    principal = _text(claim_at(claims, settings.subject_claim))
    if principal is None:
        # fail closed: no usable subject, no identity
        raise AuthenticationFailed(f"subject claim {settings.subject_claim!r} missing or not a string",
                                   code="auth.invalid")
    claimed = roles_of(claim_at(claims, settings.roles_claim)) if settings.roles_claim else ()
    roles = tuple(dict.fromkeys((*claimed, *settings.default_roles)))
    scope_value = claim_at(claims, settings.scope_claim)
    if scope_value is None:
        scope_value = claims.get("scp")
    client_id = _text(claim_at(claims, settings.client_id_claim)) or _text(claims.get("azp"))
    subject = _text(claims.get("sub")) or principal
    token_id = _text(claims.get("jti"))
    exp = claims.get("exp")
    expires_at = float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
    credential_id = f"{kind}:jti:{token_id}" if token_id else f"{kind}:sub:{subject}"
    return Caller(
        principal=principal,
        roles=roles,
        credential_id=credential_id,
        transport="http",
        scopes=scopes_of(scope_value),
        subject=subject,
        client_id=client_id,
        token_id=token_id,
        expires_at=expires_at,
        token=token,
    )
