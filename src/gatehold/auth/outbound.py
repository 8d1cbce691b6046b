"""The one HTTP client for identity fetches: JWKS, authorization-server metadata, introspection, tokens.

Every fetch has a timeout and a response size cap; plain ``http://`` is refused unless the host
is loopback; redirects are followed only to the same scheme, host and port (and only a few). Any
breach raises ``OutboundFailed`` and the caller of this module fails closed.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import orjson

from gatehold.errors import OutboundFailed

DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_MAX_BYTES = 512 * 1024
MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """Refuse anything but https, or http to a loopback host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundFailed(f"not an http(s) URL: {url!r}", code="outbound.url")
    if parts.username or parts.password:
        raise OutboundFailed(f"credentials in URL refused: {parts.hostname}", code="outbound.url")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise OutboundFailed(f"plain http to {parts.hostname} refused; HTTPS is required outside loopback",
                             code="outbound.https_required")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


class IdentityHttp:
    """Fetch small JSON documents from identity providers, within limits."""

    def __init__(self, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
                 max_response_bytes: int = DEFAULT_MAX_BYTES, verify: Any = True):
        self._max = max_response_bytes
        self._client = httpx.AsyncClient(
            follow_redirects=False, timeout=httpx.Timeout(timeout_seconds), verify=verify,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=5), trust_env=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def get_json(self, url: str, *, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        return await self._send("GET", url, headers=headers)

    async def post_form(self, url: str, form: dict[str, str], *, auth: tuple[str, str] | None = None,
                        headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        """POST ``application/x-www-form-urlencoded``; ``auth`` is (client_id, secret) for HTTP Basic,
        each already form-encoded by the caller as RFC 6749 section 2.3.1 asks."""
        return await self._send("POST", url, form=form, auth=auth, headers=headers)

    async def _send(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                    form: dict[str, str] | None = None,
                    auth: tuple[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        check_url(url)
        start = _origin(url)
        request_headers = {"Accept": "application/json", **(headers or {})}
        for _ in range(MAX_REDIRECTS + 1):
            try:
                async with self._client.stream(method, url, headers=request_headers, data=form,
                                               auth=httpx.BasicAuth(*auth) if auth else None) as response:
                    if response.status_code in _REDIRECTS:
                        location = response.headers.get("location", "")
                        target = urljoin(url, location)
                        if not location or _origin(target) != start:
                            raise OutboundFailed(f"redirect from {start[1]} to another origin refused",
                                                 code="outbound.redirect")
                        url = target
                        check_url(url)
                        if response.status_code == 303:
                            method, form = "GET", None
                        continue
                    body = await self._read(response)
                    status = response.status_code
            except httpx.HTTPError as exc:
                raise OutboundFailed(f"{method} {start[1]}: {type(exc).__name__}: {exc}") from None
            try:
                data = orjson.loads(body) if body else None
            except orjson.JSONDecodeError:
                raise OutboundFailed(f"{start[1]} answered HTTP {status} with a body that is not JSON",
                                     code="outbound.body") from None
            if not isinstance(data, dict):
                raise OutboundFailed(f"{start[1]} answered HTTP {status} without a JSON object",
                                     code="outbound.body")
            return status, data
        raise OutboundFailed(f"more than {MAX_REDIRECTS} redirects from {start[1]}", code="outbound.redirect")

    async def _read(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max:
            raise OutboundFailed(f"response of {declared} bytes over the {self._max}-byte cap",
                                 code="outbound.too_large")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max:
                raise OutboundFailed(f"response over the {self._max}-byte cap", code="outbound.too_large")
            chunks.append(chunk)
        return b"".join(chunks)
