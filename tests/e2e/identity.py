"""A gateway in front of the SDK test server that accepts OAuth tokens from a real in-test authorization server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson

from gatehold.config import AuthSettings
from tests.authserver import AuthServer, running_auth_server
from tests.e2e.harness import (
    WAIT,
    Running,
    modern_body,
    modern_headers,
    running_gateway,
    stdio_sdk_upstream,
)
from tests.serving import listening_socket

SCOPES = {"tools:basic": ["sdk.echo"], "tools:math": ["sdk.add"], "tools:all": ["sdk.*"]}
ROLES = {"agent": {"tools": {"sdk.echo": {}, "sdk.add": {}}}, "nobody": {"tools": {}}}
LIFETIME_CAP = 3600
# How long a revocation made by another process may go unseen by a gateway on the defaults.
REVOCATION_WINDOW = AuthSettings().revocation_check_ms / 1000


async def after_revocation_window() -> None:
    """Wait until a revocation change made elsewhere must be in force (``auth.revocation_check_ms``)."""
    await anyio.sleep(REVOCATION_WINDOW + 0.01)


@dataclass
class Setup:
    gw: Running
    auth: AuthServer
    resource: str

    def token(self, **kwargs: Any) -> str:
        extra = {"roles": ["agent"], "client_id": "agent-app", **kwargs.pop("extra", {})}
        kwargs.setdefault("scope", "tools:basic tools:math")
        return self.auth.issue(extra=extra, **kwargs)

    async def call(self, token: str | None, tool: str = "sdk.echo", *, query: str = "",
                   arguments: dict[str, Any] | None = None) -> httpx.Response:
        args = arguments if arguments is not None else ({"text": "hi"} if tool == "sdk.echo" else {"a": 1, "b": 2})
        async with httpx.AsyncClient(timeout=WAIT) as http:
            return await http.post(self.gw.url + query, headers=modern_headers("tools/call", tool, token),
                                   content=orjson.dumps(modern_body("tools/call", {"name": tool, "arguments": args})))

    def last_record(self) -> dict[str, Any]:
        return self.gw.records()[-1]


@asynccontextmanager
async def identity_gateway(tmp: Path, *, upstreams: dict[str, Any] | None = None, roles: dict[str, Any] | None = None,
                           sections: dict[str, Any] | None = None, **oauth: Any) -> AsyncIterator[Setup]:
    async with running_auth_server() as auth:
        auth.add_key("RS256")
        auth.add_key("ES256")
        sock = listening_socket()
        resource = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
        auth.default_audience = resource
        settings = {"issuer": auth.issuer, "max_lifetime_seconds": LIFETIME_CAP, "leeway_seconds": 5,
                    "required_claims": ["iat", "sub", "jti"], "initial_scopes": ["tools:basic"], **oauth}
        extra = dict(sections or {})
        async with running_gateway(tmp, upstreams or {"sdk": stdio_sdk_upstream()}, roles or ROLES, sock=sock,
                                   gateway={"resource": resource, **extra.pop("gateway", {})}, scopes=SCOPES,
                                   auth={"oauth": settings, **extra.pop("auth", {})}, **extra) as gw:
            yield Setup(gw, auth, resource)
