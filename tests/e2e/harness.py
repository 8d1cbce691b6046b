"""Run a real gateway (uvicorn on 127.0.0.1:0) in the test's event loop, in front of real upstreams."""

from __future__ import annotations

import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import httpx2
import orjson
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from gatehold.auth.apikeys import new_api_key
from gatehold.config import parse_config
from gatehold.front.http import build_app
from gatehold.gateway import Gateway
from gatehold.runtime import build_authenticator, build_gateway
from tests.serving import serve_asgi

REPO = Path(__file__).resolve().parents[2]
WAIT = 20.0


@cache
def key_pair(key_id: str) -> tuple[str, str]:
    return new_api_key(key_id)


def stdio_sdk_upstream(**extra: Any) -> dict[str, Any]:
    return {"command": [sys.executable, "-m", "tests.servers.sdk_server"], "cwd": str(REPO), **extra}


@asynccontextmanager
async def sdk_http_upstream() -> AsyncIterator[str]:
    """The SDK test server over Streamable HTTP; yields its /mcp URL."""
    from tests.servers.sdk_server import server

    async with serve_asgi(server.streamable_http_app()) as base:
        yield f"{base}/mcp"


@dataclass
class Running:
    url: str
    gateway: Gateway
    tmp: Path

    def key(self, key_id: str = "alice") -> str:
        return key_pair(key_id)[0]

    def headers(self, key_id: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key(key_id)}"}

    def records(self) -> list[dict[str, Any]]:
        self.gateway.auditor.log.flush()
        lines = (self.tmp / "audit.jsonl").read_bytes().splitlines()
        return [orjson.loads(line) for line in lines if line.strip()]

    def client(self, mode: str, key_id: str = "alice", **kwargs: Any) -> Client:
        http = httpx2.AsyncClient(headers=self.headers(key_id), timeout=WAIT)
        return Client(streamable_http_client(self.url, http_client=http), mode=mode, **kwargs)

    def raw(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=WAIT)


def config_data(tmp: Path, upstreams: dict[str, Any], roles: dict[str, Any], **sections: Any) -> dict[str, Any]:
    keys = [
        {"id": "alice", "hash": key_pair("alice")[1], "principal": "alice", "roles": ["reader"]},
        {"id": "bob", "hash": key_pair("bob")[1], "principal": "bob", "roles": []},
    ]
    data: dict[str, Any] = {
        "gateway": {"listen": "127.0.0.1:0", **sections.pop("gateway", {})},
        "audit": {"sqlite": str(tmp / "audit.db"), "jsonl": str(tmp / "audit.jsonl")},
        "auth": {"api_keys": keys, **sections.pop("auth", {})},
        "upstreams": upstreams,
        "roles": {"reader": {"tools": {}}, **roles},
    }
    data.update(sections)
    return data


@asynccontextmanager
async def running_gateway(tmp: Path, upstreams: dict[str, Any], roles: dict[str, Any],
                          sock: socket.socket | None = None, serve_options: dict[str, Any] | None = None,
                          **sections: Any) -> AsyncIterator[Running]:
    loaded = parse_config(config_data(tmp, upstreams, roles, **sections), base_dir=tmp)
    gateway = build_gateway(loaded)
    await gateway.start()
    app = build_app(gateway, build_authenticator(loaded, gateway), loaded.config)
    options = dict(serve_options or {})
    try:
        async with serve_asgi(app, lifespan="off", sock=sock, **options) as base:
            if loaded.config.approvals.public_url is None:
                gateway.approvals.base_url = base  # as `gatehold serve` does once the port is bound
            yield Running(f"{base}/mcp", gateway, tmp)
    finally:
        await gateway.stop()
        gateway.auditor.log.close()


def modern_headers(method: str, name: str | None = None, key: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def modern_body(method: str, params: dict[str, Any] | None = None, rid: int = 1) -> dict[str, Any]:
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": {**(params or {}), "_meta": meta}}
