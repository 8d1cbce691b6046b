"""RFC 9728 protected resource metadata and the ``WWW-Authenticate`` challenges that point to it.

A 401 names the metadata document (``resource_metadata``) so an MCP client can find the
authorization server, and the scopes to ask for; a 403 ``insufficient_scope`` names every scope
that would grant the refused call, so the client can step up and retry.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gatehold.config import Config

WELL_KNOWN = "/.well-known/oauth-protected-resource"

_DESCRIPTIONS = {
    "auth.expired": "the access token expired",
    "auth.not_yet_valid": "the access token is not valid yet",
    "auth.revoked": "the credential was revoked",
    "auth.unmapped_cert": "the client certificate is not mapped to a principal",
}


def metadata_path(resource: str) -> str:
    """Where RFC 9728 puts the metadata of ``resource``: the well-known prefix, then the resource's path."""
    path = urlsplit(resource).path.rstrip("/")
    return WELL_KNOWN + path


def metadata_url(resource: str) -> str:
    parts = urlsplit(resource)
    return urlunsplit((parts.scheme, parts.netloc, metadata_path(resource), "", ""))


def protected_resource_metadata(config: Config) -> dict[str, Any] | None:
    """The RFC 9728 document, or None when the gateway accepts no OAuth tokens."""
    oauth, resource = config.auth.oauth, config.gateway.resource
    if oauth is None or resource is None:
        return None
    document: dict[str, Any] = {
        "resource": resource,
        "authorization_servers": [oauth.issuer],
        "scopes_supported": sorted(config.scopes),
        "bearer_methods_supported": ["header"],
        "resource_name": "Gatehold MCP gateway",
    }
    return document


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(*, resource: str | None, scopes: tuple[str, ...] = (), error: str | None = None,
              code: str | None = None) -> str:
    """A ``Bearer`` challenge. ``error`` is an RFC 6750 code; ``code`` picks a short description."""
    parts = ['realm="gatehold"']
    if resource is not None:
        parts.append(f"resource_metadata={_quoted(metadata_url(resource))}")
    if scopes:
        parts.append(f"scope={_quoted(' '.join(scopes))}")
    if error is not None:
        parts.append(f"error={_quoted(error)}")
        description = _DESCRIPTIONS.get(code or "")
        if error == "invalid_token":
            parts.append(f"error_description={_quoted(description or 'the access token is not valid')}")
        elif error == "insufficient_scope":
            parts.append(f"error_description={_quoted('the call needs another scope')}")
    return "Bearer " + ", ".join(parts)
