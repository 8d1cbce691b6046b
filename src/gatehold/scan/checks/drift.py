"""Drift against the lockfile: definitions and launch commands that changed since they were pinned.

The lockfile pins, per server name, the digest of every definition (``tool:NAME``, ``prompt:NAME``,
``resource:URI``, ``template:URITEMPLATE``; the digest is the gateway's own
:func:`gatehold.output.screen.definition_digest`) and the exact command or URL the server is started
with. A server that changes its tool descriptions after it was reviewed (a "rug pull") or whose launch
command now fetches something else is reported here. Without a lockfile these checks report nothing.
Definitions are compared only for servers that were listed; commands for every named server the
configuration says how to start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from gatehold.output.screen import definition_digest
from gatehold.output.secrets import SecretRedactor
from gatehold.scan.checks.transport import shown_url
from gatehold.scan.model import CheckInfo, Finding, ItemKind, PinnedServer, ScanInput, ServerSnapshot

__all__ = ["CHECKS", "definition_key", "run", "shown_argv"]

DRIFT = CheckInfo(
    id="definition-drift",
    title="A definition changed since it was pinned",
    severity="high",
    rationale=(
        "A server can show a harmless description when it is reviewed and change it later (a rug pull); "
        "the model follows whatever the description says now. Any change to a name, description, schema "
        "or annotation needs a human to look at it again."
    ),
    remediation="Review the difference; if it is intended, update the lockfile (gatehold scan --lockfile FILE "
                "--update-lockfile), otherwise remove the server.",
)
ADDED = CheckInfo(
    id="definition-added",
    title="A definition is not in the lockfile",
    severity="medium",
    rationale="A tool, prompt or resource that appeared after the server was pinned has never been reviewed.",
    remediation="Review the new definition and pin it (gatehold scan --lockfile FILE --update-lockfile), or "
                "remove the server.",
)
REMOVED = CheckInfo(
    id="definition-removed",
    title="A pinned definition is no longer listed",
    severity="low",
    rationale=(
        "A definition that disappeared may have been renamed (check the new name is not an imitation) or "
        "the server may have changed more than its version suggests."
    ),
    remediation="Confirm the removal is intended and update the lockfile (gatehold scan --lockfile FILE "
                "--update-lockfile).",
)
UNPINNED = CheckInfo(
    id="server-unpinned",
    title="A server is not in the lockfile",
    severity="low",
    rationale="A server without pinned definitions can change its tool descriptions at any time unnoticed.",
    remediation="Pin the server's definitions and launch command (gatehold scan --lockfile FILE --update-lockfile).",
)
COMMAND = CheckInfo(
    id="command-changed",
    title="A server's launch command or URL changed since it was pinned",
    severity="high",
    rationale=(
        "The command decides which code runs with the user's privileges, and the URL which host receives "
        "the tool calls. A changed package, version, argument or host means a different server than the "
        "one that was reviewed."
    ),
    remediation="Review the new command or URL; if it is intended, update the lockfile (gatehold scan --lockfile FILE "
                "--update-lockfile).",
)
CHECKS: tuple[CheckInfo, ...] = (DRIFT, ADDED, REMOVED, UNPINNED, COMMAND)

_KINDS: Final[tuple[ItemKind, ...]] = ("tool", "prompt", "resource", "template")
_DIGEST_SHOWN: Final = 12
_MAX_ARGV_SHOWN: Final = 200
# Flags whose value is a credential: the value is masked in evidence whatever it looks like.
_SECRET_FLAG: Final = re.compile(r"(?:token|secret|password|passwd|pass|key|auth|credential|pat)s?$",
                                 re.IGNORECASE)
_REDACTOR: Final = SecretRedactor()


def definition_key(kind: ItemKind, name: str) -> str:
    """The lockfile key of a definition: ``tool:NAME``, ``prompt:NAME``, ``resource:URI``, ``template:T``."""
    return f"{kind}:{name}"


def run(scan: ScanInput) -> Iterable[Finding]:
    lockfile = scan.lockfile
    if lockfile is None:
        return []
    out: list[Finding] = []
    for server in scan.servers:
        if server.name is None:
            continue
        pinned = lockfile.servers.get(server.name)
        if pinned is None:
            if server.listed:
                out.append(Finding(
                    check=UNPINNED.id, severity=UNPINNED.severity,
                    message=f"server {server.name!r} is not in the lockfile {lockfile.path}",
                    location=server.at("server"), evidence=server.name))
            continue
        out.extend(_command(server, pinned))
        if server.listed:
            out.extend(_definitions(server, pinned))
    return out


def _short(digest: str) -> str:
    algorithm, _, value = digest.partition(":")
    return f"{algorithm}:{value[:_DIGEST_SHOWN]}" if value else digest[:_DIGEST_SHOWN]


def _definitions(server: ServerSnapshot, pinned: PinnedServer) -> Iterator[Finding]:
    listed: set[str] = set()
    for kind, name, definition in server.items():
        key = definition_key(kind, name)
        if key in listed:
            continue  # listed twice: the first one counts, as it does for a client
        listed.add(key)
        digest = definition_digest(dict(definition))
        old = pinned.definitions.get(key)
        if old is None:
            yield Finding(check=ADDED.id, severity=ADDED.severity,
                          message=f"{kind} {name!r} of server {server.name!r} is not pinned in the lockfile",
                          location=server.at(kind, name), evidence=_short(digest))
        elif old != digest:
            yield Finding(check=DRIFT.id, severity=DRIFT.severity,
                          message=f"{kind} {name!r} of server {server.name!r} changed since it was pinned",
                          location=server.at(kind, name), evidence=f"{_short(old)} -> {_short(digest)}")
    for key, old in pinned.definitions.items():
        if key in listed:
            continue
        kind_text, _, name = key.partition(":")
        gone: ItemKind = next((k for k in _KINDS if k == kind_text), "tool")
        shown_kind = gone if gone == kind_text else f"definition {key!r} of unknown kind"
        yield Finding(check=REMOVED.id, severity=REMOVED.severity,
                      message=f"pinned {shown_kind} {name!r} is no longer listed by server {server.name!r}",
                      location=server.at(gone, name), evidence=f"{key} {_short(old)}")


def _command(server: ServerSnapshot, pinned: PinnedServer) -> Iterator[Finding]:
    launch = server.launch
    if launch is None or (pinned.command is None and pinned.url is None):
        return  # nothing to compare: the scan does not know how it is started, or nothing was pinned
    now_command = tuple(launch.command) or None
    if now_command != pinned.command:
        yield Finding(check=COMMAND.id, severity=COMMAND.severity,
                      message=f"the launch command of server {server.name!r} changed since it was pinned",
                      location=server.at("server", None, "command"),
                      evidence=f"{shown_argv(pinned.command)} -> {shown_argv(now_command)}")
    if launch.url != pinned.url:
        yield Finding(check=COMMAND.id, severity=COMMAND.severity,
                      message=f"the URL of server {server.name!r} changed since it was pinned",
                      location=server.at("server", None, "url"),
                      evidence=f"{_shown_url(pinned.url)} -> {_shown_url(launch.url)}")


def _shown_url(url: str | None) -> str:
    return "(none)" if url is None else shown_url(url)


def shown_argv(argv: Sequence[str] | None) -> str:
    """``argv`` fit for a report: credential flag values masked, known secret shapes redacted, capped."""
    if argv is None:
        return "(none)"
    shown: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next:
            shown.append(_mask(arg))
            mask_next = False
            continue
        key, eq, value = arg.partition("=")
        if _SECRET_FLAG.search(key.lstrip("-")) and (eq or key.startswith("-")):
            if eq:  # --token=VALUE, or API_KEY=VALUE (an environment assignment: env, docker -e)
                shown.append(f"{key}={_mask(value)}")
            else:  # --token VALUE
                shown.append(arg)
                mask_next = True
            continue
        shown.append(arg)
    text = _REDACTOR.text(" ".join(_quoted(a) for a in shown)).text
    return text if len(text) <= _MAX_ARGV_SHOWN else text[:_MAX_ARGV_SHOWN - 3] + "..."


def _mask(value: str) -> str:
    return "***" if len(value) < 8 else value[:2] + "***"


def _quoted(arg: str) -> str:
    return arg if arg and not any(c.isspace() or c in "'\"" for c in arg) else repr(arg)
