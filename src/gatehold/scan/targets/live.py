"""Live targets: start a stdio server or reach an HTTP one, list its definitions, probe its transport.

The gateway's own upstream clients do the talking (both protocol eras over HTTP; ``initialize``
over stdio), so the scanner sees a server exactly as the gateway would.

Stdio: the child's environment is the configured ``env`` over a minimal one taken from the
scanner's own: ``PATH``, ``HOME`` and ``LANG`` (and ``SYSTEMROOT`` on Windows, without which
programs there do not start), nothing else, so a server under scan never sees the scanner's
tokens. Placeholders such as ``${VAR}`` in a configured value are passed as written.

HTTP: one ``httpx.AsyncClient`` that follows no redirects and takes no proxy or other setting from
the environment; it contacts the target's origin only. The sequence is: connect and list with no
credential (the first response shows whether the server challenges: ``auth_challenge``, and
whether anyone may list: ``unauthenticated_list``); then, with ``bearer``, connect and list again
with it (that listing is the one kept); fetch RFC 9728 metadata at
``/.well-known/oauth-protected-resource<path>`` and then without the path; send one handshake with
``Origin: https://scanner-origin-check.invalid`` (a 403 means foreign origins are refused; a server
that accepts them is open to DNS rebinding from a browser).

Every listing method is paged (``nextCursor``, at most ``MAX_PAGES`` pages). A method the server
does not declare in its capabilities is skipped, except ``tools/list``, which is always tried (a
server that lists tools without declaring them still shows them to clients that ask); a listing
method that fails is reported as an error string in :class:`Listed`, not raised, and a server whose
``tools/list`` failed is returned with ``listed=False`` (its tools are not known, not empty). An
HTTP server that refuses an anonymous listing (401/403) without a ``bearer`` is returned unlisted,
with its transport probe and an error saying so. Failing to start,
connect or handshake, or the whole target taking longer than ``timeout``, raises
:class:`TargetError`. Text from the server that ends up in a message is shortened, stripped of
control characters and redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import shlex
import sys
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx
import orjson

from gatehold.catalog import LIST_METHODS
from gatehold.config import HttpUpstream, StdioUpstream
from gatehold.errors import ConfigError, UpstreamFailed
from gatehold.output.secrets import SecretRedactor
from gatehold.scan.checks.transport import is_loopback_url, shown_url
from gatehold.scan.model import Launch, ServerSnapshot, TransportProbe
from gatehold.scan.targets.errors import TargetError
from gatehold.upstream.base import CLIENT_INFO, LATEST_LEGACY_VERSION, MODERN_VERSION, UpstreamClient
from gatehold.upstream.credentials import StaticBearer
from gatehold.upstream.http import (
    JSON_AND_SSE,
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_PROTOCOL_VERSION,
    HttpUpstreamClient,
)
from gatehold.upstream.stdio import StdioUpstreamClient

MAX_PAGES = 100
SAFE_ENV = ("PATH", "HOME", "LANG")
FOREIGN_ORIGIN = "https://scanner-origin-check.invalid"
WELL_KNOWN = "/.well-known/oauth-protected-resource"
PROBE_TIMEOUT_SECONDS = 10.0
CAPABILITY = {"tools": "tools", "prompts": "prompts", "resources": "resources", "templates": "resources"}
SHOWN_CHARS = 300

_redactor = SecretRedactor()
_loggers = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Listed:
    """A live server's snapshot, and the listing methods that failed (each one error string)."""

    snapshot: ServerSnapshot
    errors: tuple[str, ...] = ()


def child_env(env: Mapping[str, str], parent: Mapping[str, str] | None = None,
              platform: str = sys.platform) -> dict[str, str]:
    """A stdio server's environment: ``PATH``, ``HOME``, ``LANG`` from ``parent``, then ``env`` over them."""
    parent = os.environ if parent is None else parent
    keep = (*SAFE_ENV, "SYSTEMROOT") if platform == "win32" else SAFE_ENV
    merged = {key: parent[key] for key in keep if key in parent}
    merged.update(env)
    return merged


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """Server- or user-supplied text made safe to print: redacted, printable, shortened."""
    text = _redactor.text(text).text
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def shown_command(command: Sequence[str]) -> str:
    """The shell-quoted command line, secrets redacted."""
    return shown(shlex.join(command), limit=1000)


# -- stdio -------------------------------------------------------------------------------------


async def list_stdio(name: str | None, command: Sequence[str], env: Mapping[str, str], cwd: str | None,
                     timeout: float) -> Listed:  # noqa: ASYNC109 - the whole target's deadline
    """Start ``command``, list what it serves, stop it."""
    argv = tuple(command)
    if not argv or not argv[0]:
        raise TargetError("an empty command cannot be started")
    what = shown_command(argv)
    with _quiet_logger() as (logger_name, tail):
        client = StdioUpstreamClient(logger_name, StdioUpstream(command=argv), env=child_env(env),
                                     on_event=_ignore, cwd=cwd, handshake_timeout=timeout)
        try:
            async with asyncio.timeout(timeout):
                try:
                    await client.start()
                except UpstreamFailed as exc:
                    raise TargetError(f"cannot start {what}: {_reason(exc.detail)}{tail.suffix()}") from None
                definitions = await _list_all(client, what, timeout)
        except TimeoutError:
            raise TargetError(f"{what}: no complete answer within {timeout:g}s{tail.suffix()}") from None
        finally:
            await client.aclose()
    snapshot = ServerSnapshot(name=name, source="stdio", launch=Launch(command=argv, env=dict(env), cwd=cwd))
    return Listed(_listed(snapshot, definitions), definitions.errors)


# -- HTTP --------------------------------------------------------------------------------------


@dataclass
class _Seen:
    """The responses of the HTTP client, in order: status and whether a challenge came with it."""

    statuses: list[tuple[int, bool]]

    async def __call__(self, response: httpx.Response) -> None:
        self.statuses.append((response.status_code, "www-authenticate" in response.headers))


async def list_http(name: str | None, url: str, *, bearer: str | None,
                    timeout: float) -> Listed:  # noqa: ASYNC109 - the whole target's deadline
    """Connect to ``url`` (with no credential, then with ``bearer`` if given), list, probe."""
    parts = _split(url)
    what = shown_url(url, query=True)
    credential = None
    if bearer is not None:
        try:
            credential = StaticBearer(bearer)
        except ConfigError:
            raise TargetError(f"{what}: the bearer token is not a valid token (printable ASCII, no spaces)") from None
    seen = _Seen([])
    async with httpx.AsyncClient(follow_redirects=False, timeout=httpx.Timeout(timeout), trust_env=False,
                                 event_hooks={"response": [seen]}) as http:
        try:
            async with asyncio.timeout(timeout):
                anonymous = await _http_listing(http, url, None, what, timeout)
        except TimeoutError:
            raise TargetError(f"{what}: no complete answer within {timeout:g}s") from None
        challenged = bool(seen.statuses) and seen.statuses[0] == (401, True)
        refused = any(status in (401, 403) for status, _ in seen.statuses)
        connected = anonymous if isinstance(anonymous, _HttpListing) else None
        listing: _HttpListing | None = None
        errors: list[str] = []
        if credential is not None:
            try:
                async with asyncio.timeout(timeout):
                    authenticated = await _http_listing(http, url, credential, what, timeout)
            except TimeoutError:
                raise TargetError(f"{what}: no complete answer within {timeout:g}s (with the bearer)") from None
            if isinstance(authenticated, str):
                raise TargetError(f"cannot connect to {what} with the bearer token: {authenticated}")
            listing = connected = authenticated
        elif connected is not None and (connected.definitions.complete or not refused):
            listing = connected
        else:
            reason = anonymous if isinstance(anonymous, str) else anonymous.definitions.tools_error
            if not refused:
                raise TargetError(f"cannot connect to {what}: {reason}")
            errors.append(f"{what}: the server requires authentication ({reason}); its tools were not "
                          "listed: pass a token with --bearer-env NAME")
        unauthenticated_list = isinstance(anonymous, _HttpListing) and anonymous.definitions.tools_error is None \
            and "tools" in anonymous.definitions.kinds
        version = connected.protocol_version if connected is not None else None
        metadata = await _resource_metadata(http, parts)
        origin, origin_failure = await _origin_rejected(http, url, version, bearer)
    # Fail closed: a probe that got no answer leaves its check unable to judge, so the scan is
    # incomplete (an error, exit 2) rather than silently clean.
    if metadata is None:
        errors.append(f"{what}: the RFC 9728 metadata probe got no answer; the transport checks are incomplete")
    if origin_failure is not None:
        errors.append(f"{what}: the foreign-Origin probe got no answer ({origin_failure}); the transport checks "
                      "are incomplete")
    probe = TransportProbe(url=url, tls=parts.scheme == "https", loopback=is_loopback_url(url),
                           unauthenticated_list=unauthenticated_list, auth_challenge=challenged,
                           resource_metadata=metadata, origin_rejected=origin, protocol_version=version)
    snapshot = ServerSnapshot(name=name, source="http", launch=Launch(url=url), transport=probe)
    if listing is None:
        return Listed(snapshot, tuple(errors))
    return Listed(_listed(snapshot, listing.definitions), (*errors, *listing.definitions.errors))


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number in range raises here
    except ValueError:
        raise TargetError(f"{shown(url)}: not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError(f"{shown(url)}: not an http(s) URL with a host")
    return parts


@dataclass(frozen=True, slots=True)
class _HttpListing:
    definitions: _Definitions
    protocol_version: str


async def _http_listing(http: httpx.AsyncClient, url: str, credential: StaticBearer | None, what: str,
                        timeout: float) -> _HttpListing | str:  # noqa: ASYNC109
    """A listing, or why the server could not be connected to (a short reason)."""
    with _quiet_logger() as (logger_name, _tail):
        client = HttpUpstreamClient(logger_name, HttpUpstream(url=url, protocol="auto"), credential=credential,
                                    on_event=_ignore, client=http, handshake_timeout=timeout, listen=False)
        try:
            try:
                await client.start()
            except UpstreamFailed as exc:
                return _reason(exc.detail)
            return _HttpListing(await _list_all(client, what, timeout), client.protocol_version)
        finally:
            await client.aclose()


def _reason(detail: str) -> str:
    """An upstream client's failure detail without the client's internal name (``scan-N``)."""
    detail = re.sub(r"^handshake with scan-\d+ failed: ", "", detail)
    if detail.startswith("cannot start "):  # "cannot start 'prog': [Errno 2] ..." -> the OS error
        detail = detail.partition("': ")[2] or detail
    detail = re.sub(r" on scan-\d+", "", detail)
    detail = re.sub(r"(?:upstream )?scan-\d+: ", "", detail)
    return shown(detail)


async def _resource_metadata(http: httpx.AsyncClient, parts: SplitResult) -> bool | None:
    """True when RFC 9728 metadata (a JSON object with ``resource``) is served; None if unreachable."""
    path = parts.path.rstrip("/")
    paths = [WELL_KNOWN + path, WELL_KNOWN] if path else [WELL_KNOWN]
    answered = False
    for candidate in paths:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                response = await http.get(urlunsplit((parts.scheme, parts.netloc, candidate, "", "")),
                                          headers={"Accept": "application/json"})
        except (httpx.HTTPError, TimeoutError):
            continue
        answered = True
        if response.status_code != 200 or len(response.content) > 256 * 1024:
            continue
        try:
            document = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            continue
        if isinstance(document, dict) and isinstance(document.get("resource"), str):
            return True
    return False if answered else None


async def _origin_rejected(http: httpx.AsyncClient, url: str, version: str | None, bearer: str | None
                          ) -> tuple[bool | None, str | None]:
    """Whether a foreign ``Origin`` was refused, and why the probe failed when it got no answer.

    True on a 403, False when the handshake is accepted; None for any other answer (the request was
    refused for another reason, so the probe says nothing about the ``Origin`` check) and for no answer,
    which also gives the reason.
    """
    headers = {"Content-Type": "application/json", "Accept": JSON_AND_SSE, "Origin": FOREIGN_ORIGIN}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    message: dict[str, Any]
    if version == MODERN_VERSION:
        headers.update({"MCP-Protocol-Version": MODERN_VERSION, "Mcp-Method": "server/discover"})
        message = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
            META_PROTOCOL_VERSION: MODERN_VERSION, META_CLIENT_CAPABILITIES: {}, META_CLIENT_INFO: CLIENT_INFO}}}
    else:
        message = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": version or LATEST_LEGACY_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}}
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            async with http.stream("POST", url, content=orjson.dumps(message), headers=headers) as response:
                status, session = response.status_code, response.headers.get("mcp-session-id")
    except TimeoutError:
        return None, f"no answer within {PROBE_TIMEOUT_SECONDS:g}s"
    except httpx.HTTPError as exc:
        return None, shown(type(exc).__name__)
    if session and 200 <= status < 300:  # the probe opened a legacy session: close it again
        del headers["Origin"]
        # Best effort: the verdict is already known (the foreign Origin was accepted); a session left
        # open on a server that ignores Origin changes nothing in the report.
        with contextlib.suppress(httpx.HTTPError, TimeoutError):
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                await http.delete(url, headers={**headers, "Mcp-Session-Id": session})
    if status == 403:
        return True, None
    return (False if 200 <= status < 300 else None), None


# -- listing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Definitions:
    """What the list methods returned, by kind (``templates`` for resource templates)."""

    kinds: dict[str, tuple[Mapping[str, Any], ...]]
    tools_error: str | None  # why tools/list failed, when it did
    complete: bool  # the tools are known: tools/list worked, or failed on a server that declares no tools
    errors: tuple[str, ...]  # one per failed method the server declared


async def _list_all(client: UpstreamClient, what: str, timeout: float) -> _Definitions:  # noqa: ASYNC109
    """Every kind of definition the server declares (tools always tried), and what failed."""
    kinds: dict[str, tuple[Mapping[str, Any], ...]] = {}
    errors: list[str] = []
    tools_error: str | None = None
    complete = True
    for kind, (method, key) in LIST_METHODS.items():
        declared = CAPABILITY[kind] in client.capabilities
        if not declared and kind != "tools":
            continue
        items, error = await _pages(client, method, key, timeout)
        if kind == "tools":
            tools_error = error
            complete = error is None or not declared
        if error is not None and declared:
            errors.append(f"{what}: {method} failed: {error}")
        if error is None or declared:
            kinds[kind] = tuple(items)
    return _Definitions(kinds, tools_error, complete, tuple(errors))


async def _pages(client: UpstreamClient, method: str, key: str,
                 timeout: float) -> tuple[list[Mapping[str, Any]], str | None]:  # noqa: ASYNC109
    items: list[Mapping[str, Any]] = []
    cursors: set[str] = set()
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        try:
            reply = await client.request(method, {"cursor": cursor} if cursor is not None else None, timeout=timeout)
        except UpstreamFailed as exc:
            return items, _reason(exc.detail)
        if "error" in reply:
            error = reply["error"]
            return items, shown(f"error {error.get('code')}: {error.get('message')}")
        result = reply["result"]
        page = result.get(key)
        if not isinstance(page, list):
            return items, f"the result has no {key!r} list"
        objects = [item for item in page if isinstance(item, dict)]
        items += objects
        if len(objects) != len(page):
            return items, f"{len(page) - len(objects)} {key} item(s) are not objects"
        next_cursor = result.get("nextCursor")
        if next_cursor is None:
            return items, None
        if not isinstance(next_cursor, str) or next_cursor in cursors:
            return items, "the server repeated a page cursor (or sent one that is not a string)"
        cursors.add(next_cursor)
        cursor = next_cursor
    return items, f"more than {MAX_PAGES} pages; the rest was not read"


# -- plumbing ----------------------------------------------------------------------------------


def _listed(snapshot: ServerSnapshot, definitions: _Definitions) -> ServerSnapshot:
    kinds = definitions.kinds
    return replace(snapshot, listed=definitions.complete, tools=kinds.get("tools", ()),
                   prompts=kinds.get("prompts", ()), resources=kinds.get("resources", ()),
                   templates=kinds.get("templates", ()))


async def _ignore(method: str, params: dict[str, Any] | None) -> None:
    """Server notifications (list changes, logs) do not matter to a one-off listing."""


class _Tail(logging.Handler):
    """Keeps the last lines a client logged (a stdio server's stderr among them)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=3)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("[stderr] "):
            self.lines.append(message.removeprefix("[stderr] "))

    def suffix(self) -> str:
        return f" (stderr: {shown(' | '.join(self.lines))})" if self.lines else ""


@contextmanager
def _quiet_logger() -> Iterator[tuple[str, _Tail]]:
    """A fresh client name whose log goes to a tail buffer only: the terminal gets the scan's own lines."""
    name = f"scan-{next(_loggers)}"
    logger = logging.getLogger(f"gatehold.upstream.{name}")
    tail = _Tail()
    logger.addHandler(tail)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield name, tail
    finally:
        logger.removeHandler(tail)

