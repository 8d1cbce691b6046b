"""The scanner's lockfile: each server's exact launch command or URL and a digest of every definition.

::

    {"version": 1,
     "servers": {"files": {"command": ["npx", "-y", "@x/server@1.2.3"], "url": null,
                           "definitions": {"tool:read_file": "sha256:...", "prompt:summary": "sha256:...",
                                           "resource:file:///a": "sha256:..."}}}}

Digests are :func:`gatehold.output.screen.definition_digest` of the definition as the server listed
it, the same digest the gateway pins. This module only reads and writes the file; comparing a scan
against it is a check's work. A lockfile is committed, so a command or URL that carries a secret
is refused rather than written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from gatehold.output.screen import definition_digest
from gatehold.output.secrets import SecretRedactor
from gatehold.scan.files import replace_atomically
from gatehold.scan.model import Lockfile, PinnedServer, ServerSnapshot

VERSION = 1
_TOP_KEYS = frozenset({"version", "servers"})
_SERVER_KEYS = frozenset({"command", "url", "definitions"})
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_DEFINITION_KEY = re.compile(r"(tool|prompt|resource|template):.+", re.DOTALL)


class LockfileError(Exception):
    """The lockfile cannot be read or written; the message names the file and the place."""


def definition_key(kind: str, name: str) -> str:
    """``tool:NAME``, ``prompt:NAME``, ``resource:URI`` or ``template:URI_TEMPLATE``."""
    return f"{kind}:{name}"


def definitions_of(server: ServerSnapshot) -> dict[str, str]:
    """Definition key -> digest for a listed server; two different definitions under one key is an error."""
    out: dict[str, str] = {}
    for kind, name, definition in server.items():
        key = definition_key(kind, name)
        digest = definition_digest(dict(definition))
        if out.get(key, digest) != digest:
            raise LockfileError(f"server {server.name!r} lists two different definitions as {key!r}; "
                                "cannot pin an ambiguous name")
        out[key] = digest
    return out


def load(path: str | Path) -> Lockfile:
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise LockfileError(f"lockfile {name}: cannot read: {exc.__class__.__name__}: {exc}") from None
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise LockfileError(f"lockfile {name}: not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise LockfileError(f"lockfile {name}: expected a JSON object with 'version' and 'servers'")
    unknown = sorted(k for k in document if k not in _TOP_KEYS)
    if unknown:
        raise LockfileError(f"lockfile {name}: unknown key(s) {', '.join(unknown)}; expected version and servers")
    version = document.get("version")
    if version != VERSION or isinstance(version, bool):
        raise LockfileError(f"lockfile {name}: unsupported version {_show(version)}; expected {VERSION}")
    servers = document.get("servers")
    if not isinstance(servers, dict):
        raise LockfileError(f"lockfile {name}: 'servers' must be an object of server name -> pin")
    if any(not server for server in servers):
        raise LockfileError(f"lockfile {name}: a server name must not be empty")
    pinned = {server: _server(f"lockfile {name}: servers.{server}", raw) for server, raw in servers.items()}
    return Lockfile(path=name, servers=pinned)


def pin(servers: Sequence[ServerSnapshot], *, keep: Lockfile | None = None) -> dict[str, Any]:
    """The lockfile document for ``servers`` (those with a name).

    A server of ``keep`` absent from ``servers`` keeps its entry. So does a server present but not
    listed in this scan (not started for want of ``--yes``, not contacted with ``--offline``, or it
    failed): a pin says "reviewed as it was listed", and a pinned command is started without asking
    later, so nothing the scan did not run and list is pinned, neither its definitions nor its command.
    """
    entries: dict[str, dict[str, Any]] = {}
    if keep is not None:
        entries.update({name: _document(p) for name, p in keep.servers.items()})
    fresh: dict[str, dict[str, Any]] = {}
    for server in servers:
        if not server.name:
            continue
        if not server.listed:
            continue  # its old entry, if any, stays as it was (see above)
        entry = _snapshot(server)
        if server.name in fresh and fresh[server.name] != entry:
            raise LockfileError(f"two servers named {server.name!r} differ in this scan; "
                                "give them distinct names before pinning")
        fresh[server.name] = entry
    entries.update(fresh)
    return {"version": VERSION, "servers": {name: entries[name] for name in sorted(entries)}}


def write(path: str | Path, servers: Sequence[ServerSnapshot], *, keep: Lockfile | None = None) -> None:
    """Write :func:`pin`'s document to ``path`` (keys sorted, indented), replacing the file atomically."""
    document = pin(servers, keep=keep)
    text = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    replace_atomically(Path(path), text)


def is_pinned_command(lock: Lockfile | None, server: str | None, command: Sequence[str]) -> bool:
    """True when ``lock`` pins exactly this argv for ``server``."""
    if lock is None or not server or not command:
        return False
    entry = lock.servers.get(server)
    return entry is not None and entry.command is not None and entry.command == tuple(command)


def _snapshot(server: ServerSnapshot) -> dict[str, Any]:
    launch = server.launch
    command = list(launch.command) if launch is not None and launch.command else None
    url = (launch.url if launch is not None else None) or (server.transport.url if server.transport else None)
    for index, value in enumerate([*(command or ()), *([url] if url else [])]):
        found = SecretRedactor().text(value).found
        if found:
            what = f"argument {index}" if command and index < len(command) else "its URL"
            raise LockfileError(f"server {server.name!r}: {what} looks like it carries a secret "
                                f"({', '.join(sorted(found))}); a lockfile is committed, so pass the secret "
                                "through the environment instead")
    definitions = definitions_of(server) if server.listed else {}
    return {"command": command, "url": url, "definitions": definitions}


def _document(pinned: PinnedServer) -> dict[str, Any]:
    return {"command": list(pinned.command) if pinned.command is not None else None, "url": pinned.url,
            "definitions": dict(pinned.definitions)}


def _server(where: str, raw: object) -> PinnedServer:
    if not isinstance(raw, dict):
        raise LockfileError(f"{where}: expected an object with command, url and definitions")
    unknown = sorted(k for k in raw if k not in _SERVER_KEYS)
    if unknown:
        raise LockfileError(f"{where}: unknown key(s) {', '.join(unknown)}; expected command, url, definitions")
    missing = sorted(k for k in _SERVER_KEYS if k not in raw)
    if missing:
        raise LockfileError(f"{where}: missing key(s) {', '.join(missing)}")
    command = raw["command"]
    if command is not None and (not isinstance(command, list) or not command
                                or not all(isinstance(a, str) for a in command)):
        raise LockfileError(f"{where}.command: expected null or a non-empty list of strings, got {_show(command)}")
    url = raw["url"]
    if url is not None and (not isinstance(url, str) or not url):
        raise LockfileError(f"{where}.url: expected null or a URL string, got {_show(url)}")
    definitions = raw["definitions"]
    if not isinstance(definitions, dict):
        raise LockfileError(f"{where}.definitions: expected an object of definition key -> digest")
    for key, digest in definitions.items():
        if not _DEFINITION_KEY.fullmatch(key):
            raise LockfileError(f"{where}.definitions: key {_show(key)} must start with tool:, prompt:, "
                                "resource: or template:")
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise LockfileError(f"{where}.definitions[{_show(key)}]: expected 'sha256:' and 64 hex digits, "
                                f"got {_show(digest)}")
    return PinnedServer(command=tuple(command) if command is not None else None, url=url,
                        definitions=MappingProxyType(dict(definitions)))


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
