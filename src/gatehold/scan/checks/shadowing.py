"""Cross-server checks: one agent reaches several servers, and one server can pose as another.

A client that connects to several MCP servers shows the model every server's tools side by side, often
under their bare names. A server can then capture calls meant for another one: by offering a tool of
the same name (``tool-shadowing``), a name that reads the same (``lookalike-name``), a description that
tells the model how to use another server's tool (``cross-tool-reference``), or a copy of another tool's
description under a new name (``duplicate-description``).

Which servers one agent reaches comes from :attr:`ScanInput.agents`; with none given, every server of
the scan counts as one agent. Servers that no agent names form one agent of their own. Only definitions
of servers that were listed are compared; two entries with the same server name are one server.

A collision has two sides, and without more context the scanner cannot tell the impostor from the
original, so both are reported. A lockfile is that context: a tool whose definition is pinned in it,
unchanged, was reviewed when it was pinned. When one side of a shadowing, a look-alike or a duplicated
description is pinned and the other is not, only the side that is not pinned is reported (it arrived
later, or changed since), and the message names the pinned original. When both sides or neither are
pinned, both are reported as before.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gatehold.output.normalise import normalise
from gatehold.output.screen import definition_digest
from gatehold.output.secrets import SecretRedactor
from gatehold.scan.model import CheckInfo, Finding, Lockfile, ScanInput, ServerSnapshot

__all__ = ["CHECKS", "Agent", "agents", "name_tokens", "run"]

SHADOWING = CheckInfo(
    id="tool-shadowing",
    title="Two servers of one agent offer a tool of the same name",
    severity="high",
    rationale=(
        "A client that flattens tool names into one list cannot tell which server a call goes to, so "
        "the server listed later can receive calls meant for the other one, with the arguments the user "
        "meant for it. Even a client that prefixes names leaves the model to pick between two tools that "
        "claim the same job."
    ),
    remediation=(
        "Remove one of the servers from the agent, or put Gatehold in front of them: it namespaces every "
        "upstream's tools (server.tool) and its policy allows each qualified name separately."
    ),
)
LOOKALIKE = CheckInfo(
    id="lookalike-name",
    title="A tool or server name imitates another one the same agent reaches",
    severity="medium",
    rationale=(
        "A name that differs from another only by case, separators, look-alike characters, a version or "
        "'official' suffix, filler words or one character reads as the same name to a model and to a "
        "person approving calls. Squatting on a trusted name is how an impostor server gets picked "
        "instead of the real one."
    ),
    remediation=(
        "Check where the imitating server comes from and remove it unless it is genuinely a separate "
        "tool; then rename one of them so that the names are clearly distinct, and allow only the "
        "intended qualified names in Gatehold's policy."
    ),
)
CROSS_REFERENCE = CheckInfo(
    id="cross-tool-reference",
    title="A description names a tool of another server",
    severity="medium",
    rationale=(
        "A tool's description has no honest reason to tell the model how or when to use another "
        "server's tool. Text such as 'before calling send_email, call this tool' or 'use this instead of "
        "X' is how one server intercepts, reorders or replaces the calls of another without ever being "
        "called for its own job."
    ),
    remediation=(
        "Read the description; if it steers another server's tool, remove the server or rewrite the "
        "description. Gatehold's metadata screening (output.injection.metadata: quarantine) withholds "
        "descriptions that carry instructions until a human accepts them."
    ),
)
DUPLICATE = CheckInfo(
    id="duplicate-description",
    title="Two tools of different servers have the same description under different names",
    severity="low",
    rationale=(
        "An identical description under another name in another server may be a copy made to be "
        "picked instead of the original. Without a lockfile the scanner cannot tell which of the two is "
        "the copy, so both are reported; with one, only the side that is not pinned is."
    ),
    remediation=(
        "Confirm that both servers are the ones you meant to install; if one is a copy, remove it. "
        "Otherwise accept the finding in the baseline."
    ),
)
CHECKS: tuple[CheckInfo, ...] = (SHADOWING, LOOKALIKE, CROSS_REFERENCE, DUPLICATE)

_MIN_REFERENCE: Final = 4  # shorter tool names are too often ordinary words or fragments
_MIN_DUPLICATE: Final = 40  # shorter descriptions are too often generic ("Get the balance.")
_MIN_EDIT: Final = 6  # names this long that are one character apart are look-alikes, not different words
_MIN_CORE: Final = 3  # a decoration is only removed when this much of the name remains
_DECORATION_WORDS: Final = frozenset({"new", "latest", "official", "pro", "plus", "beta", "updated", "improved",
                                      "original", "real", "secure", "verified", "fixed", "copy", "alt"})
_FILLER_WORDS: Final = frozenset({"a", "an", "the"})
_SEPARATORS: Final = "-_. "
_MAX_SCHEMA_DEPTH: Final = 16
_UNNAMED: Final = "<unnamed>"
_REDACTOR: Final = SecretRedactor()


@dataclass(frozen=True, slots=True)
class Agent:
    """Servers one agent reaches together. ``name`` is None for the scan as a whole."""

    name: str | None
    servers: tuple[ServerSnapshot, ...]

    @property
    def label(self) -> str:
        return f"agent {self.name!r}" if self.name is not None else "one agent with the scanned servers"


def agents(scan: ScanInput) -> tuple[Agent, ...]:
    """The agents of ``scan``, each with its servers (one snapshot per server name, listed ones first)."""
    if not scan.agents:
        return (Agent(None, _one_per_name(scan.servers)),)
    out: list[Agent] = []
    claimed: set[str | None] = set()
    for agent_name, server_names in scan.agents:
        wanted = set(server_names)
        claimed |= wanted
        out.append(Agent(agent_name, _one_per_name([s for s in scan.servers if s.name in wanted])))
    rest = [s for s in scan.servers if s.name not in claimed]
    if rest:
        out.append(Agent(None, _one_per_name(rest)))
    return tuple(out)


def _one_per_name(servers: Iterable[ServerSnapshot]) -> tuple[ServerSnapshot, ...]:
    chosen: dict[str | None, ServerSnapshot] = {}
    for server in servers:
        if server.name not in chosen or (server.listed and not chosen[server.name].listed):
            chosen[server.name] = server
    return tuple(chosen.values())


def run(scan: ScanInput) -> Iterable[Finding]:
    seen: dict[tuple[str, str], Finding] = {}
    pins = _Pins(scan.lockfile)
    for agent in agents(scan):
        listed = [s for s in agent.servers if s.listed]
        for finding in (*_shadowing(listed, pins), *_lookalikes(agent.servers, listed, pins),
                        *_references(listed), *_duplicates(listed, pins)):
            seen.setdefault((finding.fingerprint, finding.message), finding)
    return list(seen.values())


class _Pins:
    """Which tools and servers the lockfile vouches for: pinned, and unchanged since.

    Without a lockfile nothing is pinned, so every collision is reported on both sides.
    """

    def __init__(self, lockfile: Lockfile | None):
        self._servers = lockfile.servers if lockfile is not None else {}
        self._digests: dict[tuple[int, str], str] = {}

    def tool(self, server: ServerSnapshot, name: str) -> bool:
        pinned = self._servers.get(server.name) if server.name is not None else None
        if pinned is None:
            return False
        want = pinned.definitions.get(f"tool:{name}")
        if want is None:
            return False
        key = (id(server), name)
        if key not in self._digests:
            definition = next((t for n, t in _tools(server) if n == name), None)
            self._digests[key] = definition_digest(dict(definition)) if definition is not None else ""
        return self._digests[key] == want

    def server(self, server: ServerSnapshot) -> bool:
        return server.name is not None and server.name in self._servers


def _unpinned_side(sides: Sequence[tuple[ServerSnapshot, bool]]) -> list[ServerSnapshot]:
    """The servers of a collision to report: the ones not pinned when some side is pinned, else all."""
    if any(pinned for _, pinned in sides) and not all(pinned for _, pinned in sides):
        return [server for server, pinned in sides if not pinned]
    return [server for server, _ in sides]


def _server_label(server: ServerSnapshot) -> str:
    return server.name if server.name is not None else _UNNAMED


def _tools(server: ServerSnapshot) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for tool in server.tools:
        name = tool.get("name")
        if isinstance(name, str) and name:
            yield name, tool


# ---------------------------------------------------------------------------------------------- shadowing


def _shadowing(servers: Sequence[ServerSnapshot], pins: _Pins) -> Iterator[Finding]:
    offered: dict[str, list[ServerSnapshot]] = defaultdict(list)
    for server in servers:
        for name in dict.fromkeys(name for name, _ in _tools(server)):
            offered[name].append(server)
    for name, owners in offered.items():
        if len(owners) < 2:
            continue
        everyone = ", ".join(sorted(_server_label(s) for s in owners))
        pinned = {id(s) for s in owners if pins.tool(s, name)}
        for server in _unpinned_side([(s, id(s) in pinned) for s in owners]):
            others = ", ".join(sorted(_server_label(s) + (" (pinned in the lockfile)" if id(s) in pinned else "")
                                      for s in owners if s is not server))
            yield Finding(
                check=SHADOWING.id, severity=SHADOWING.severity,
                message=(f"tool {name!r} of server {_server_label(server)!r} is also offered by {others}: a "
                         f"client that flattens tool names cannot tell which server a call reaches"),
                location=server.at("tool", name, "name"), evidence=f"{name}: {everyone}")


# ---------------------------------------------------------------------------------------------- look-alikes


@dataclass(frozen=True, slots=True)
class _Name:
    raw: str
    flat: str  # normalised words joined: case, separators and look-alike characters gone
    core: str  # the same with decorations and filler words removed
    decorated: bool
    plain: bool  # ASCII: no look-alike characters

    @classmethod
    def of(cls, raw: str) -> _Name:
        tokens = name_tokens(raw)
        core_tokens = _undecorated(tokens)
        edged = raw[:1] in _SEPARATORS or raw[-1:] in _SEPARATORS
        return cls(raw, "".join(tokens), "".join(core_tokens), edged or core_tokens != tokens, raw.isascii())


def name_tokens(name: str) -> list[str]:
    """The words of an identifier, lower-case and without look-alike characters.

    Split at separators, at lower-to-upper case changes (``getUser``), before the last capital of a
    capital run (``HTTPRequest``) and between letters and digits (``search2``).
    """
    out: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            word = normalise("".join(current)).text.strip()
            if word:
                out.append(word)
            current.clear()

    for i, ch in enumerate(name):
        if ch in _SEPARATORS or ch.isspace():
            flush()
            continue
        if current:
            prev = current[-1]
            nxt = name[i + 1] if i + 1 < len(name) else ""
            if ((prev.islower() and ch.isupper()) or (prev.isdigit() != ch.isdigit())
                    or (prev.isupper() and ch.isupper() and nxt.islower())):
                flush()
        current.append(ch)
    flush()
    return out


def _undecorated(tokens: Sequence[str]) -> list[str]:
    """``tokens`` without filler words and trailing decorations (``v2``, ``2``, ``new``, ``official`` ...)."""
    words = [t for t in tokens if t not in _FILLER_WORDS] or list(tokens)
    while len(words) > 1:
        last = words[-1]
        if last.isdigit() or last in _DECORATION_WORDS:
            cut = words[:-1]
            if last.isdigit() and len(cut) > 1 and cut[-1] == "v":
                cut = cut[:-1]  # "v" "2"
        else:
            break
        if len("".join(cut)) < _MIN_CORE:
            break
        words = cut
    return words


def _one_apart(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are exactly one insertion, deletion or substitution apart."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    return short[i:] == long[i + 1:]


def _near_keys(flat: str) -> set[str]:
    """Keys two strings one edit apart always share: the string and each one-deletion of it."""
    return {flat, *(flat[:i] + flat[i + 1:] for i in range(len(flat)))}


@dataclass(frozen=True, slots=True)
class _Entry:
    server: ServerSnapshot
    name: _Name


def _imitations(entries: Sequence[_Entry]) -> Iterator[tuple[_Entry, _Entry, str]]:
    """(imitator, original, how) for entries of different servers whose names read the same."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, entry in enumerate(entries):
        groups[("core", entry.name.core)].append(i)
        if len(entry.name.flat) >= _MIN_EDIT:
            for key in _near_keys(entry.name.flat):
                groups[("near", key)].append(i)
    pairs = sorted({(i, j) for members in groups.values() for i in members for j in members if i < j})
    for i, j in pairs:
        a, b = entries[i], entries[j]
        if a.server.name == b.server.name or a.name.raw == b.name.raw:
            continue  # the same server, or the same name (tool-shadowing reports that)
        yield from _judge(a, b)


def _judge(a: _Entry, b: _Entry) -> Iterator[tuple[_Entry, _Entry, str]]:
    x, y = a.name, b.name
    if x.core == y.core:
        if x.decorated != y.decorated:
            imitator, original = (a, b) if x.decorated else (b, a)
            yield imitator, original, "the same name with a decoration added"
        elif not x.decorated:  # equal words: only case, separators or look-alike characters differ
            how = "the same name but for case, separators or look-alike characters"
            if x.plain != y.plain:
                yield (b, a, how) if x.plain else (a, b, how)
            else:
                yield a, b, how
                yield b, a, how
        # Both decorated (tool_v1, tool_v2): neither is the original, nothing to imitate.
        return
    if min(len(x.flat), len(y.flat)) >= _MIN_EDIT and _one_apart(x.flat, y.flat):
        how = "one character apart"
        yield a, b, how
        yield b, a, how


def _pinned_first(pairs: Iterable[tuple[_Entry, _Entry, str]], pinned: Callable[[_Entry], bool]
                  ) -> Iterator[tuple[_Entry, _Entry, str]]:
    """The judged (imitator, original) pairs, with the lockfile's word taken over the names' shape.

    When exactly one side of a pair is pinned, the other side is the imitator, whichever way the names
    alone were judged; the pair is reported once, on that side.
    """
    done: set[tuple[int, int]] = set()
    for imitator, original, how in pairs:
        a, b = pinned(imitator), pinned(original)
        if a == b:
            yield imitator, original, how
            continue
        newcomer, reviewed = (original, imitator) if a else (imitator, original)
        key = (id(newcomer), id(reviewed))
        if key not in done:
            done.add(key)
            yield newcomer, reviewed, how + "; the original is pinned in the lockfile"


def _lookalikes(servers: Sequence[ServerSnapshot], listed: Sequence[ServerSnapshot], pins: _Pins
                ) -> Iterator[Finding]:
    tools = [_Entry(s, _Name.of(name)) for s in listed for name in dict.fromkeys(n for n, _ in _tools(s))]
    for imitator, original, how in _pinned_first(_imitations(tools), lambda e: pins.tool(e.server, e.name.raw)):
        yield Finding(
            check=LOOKALIKE.id, severity=LOOKALIKE.severity,
            message=(f"tool {imitator.name.raw!r} of server {_server_label(imitator.server)!r} imitates tool "
                     f"{original.name.raw!r} of server {_server_label(original.server)!r} ({how})"),
            location=imitator.server.at("tool", imitator.name.raw, "name"),
            evidence=f"{imitator.name.raw} ~ {_server_label(original.server)}.{original.name.raw}")
    named = [_Entry(s, _Name.of(s.name)) for s in servers if s.name]
    for imitator, original, how in _pinned_first(_imitations(named), lambda e: pins.server(e.server)):
        yield Finding(
            check=LOOKALIKE.id, severity=LOOKALIKE.severity,
            message=f"server name {imitator.name.raw!r} imitates server {original.name.raw!r} ({how})",
            location=imitator.server.at("server", None, "name"),
            evidence=f"{imitator.name.raw} ~ {original.name.raw}")


# ---------------------------------------------------------------------------------------------- references


def _is_single_word(name: str) -> bool:
    """A name that is one ordinary word (``search``, ``Check``, ``HTTP``): in prose it is usually the word.

    ``sendEmail`` is not: a change from lower to upper case inside a name joins two words.
    """
    return name.isalpha() and not any(a.islower() and b.isupper() for a, b in itertools.pairwise(name))


_IDENTIFIER: Final = re.compile(r"\w+(?:[.-]\w+)*")
_MARKED_BEFORE: Final = re.compile(r"(?:[`'\"]|\b(?:tool|function|command|method)\s+[`'\"]?)\Z", re.IGNORECASE)
_MARKED_AFTER: Final = re.compile(r"(?:[`'\"(]|\s+(?:tool|function|command|method|endpoint)\b)", re.IGNORECASE)
_MARK_WINDOW: Final = 16


def _mentions(text: str, names: Mapping[str, str]) -> Iterator[tuple[str, int, int]]:
    """(name, start, end) for each tool name of ``names`` (lower-case -> as declared) that ``text`` mentions.

    A mention is a whole identifier (or one dot-separated part of one: ``mail.send_email``). A name that
    is one ordinary word counts only where the text marks it as a name: quoted, called with ``(``, or
    next to "tool" / "function" / "command" ("after using check tool").
    """
    for m in _IDENTIFIER.finditer(text):
        token = m.group(0)
        candidates = [(token, m.start())]
        if "." in token:
            offset = m.start()
            for piece in token.split("."):
                candidates.append((piece, offset))
                offset += len(piece) + 1
        for candidate, start in candidates:
            name = names.get(candidate.lower())
            if name is None:
                continue
            end = start + len(candidate)
            if _is_single_word(name) and not (
                    _MARKED_BEFORE.search(text, max(0, start - _MARK_WINDOW), start)
                    or _MARKED_AFTER.match(text, end, end + _MARK_WINDOW)):
                continue
            yield name, start, end


def _descriptions(tool: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, text) for the tool's description and every parameter description in its input schema."""
    text = tool.get("description")
    if isinstance(text, str):
        yield "description", text
    yield from _schema_descriptions(tool.get("inputSchema"), "inputSchema", 0)


def _schema_descriptions(schema: Any, path: str, depth: int) -> Iterator[tuple[str, str]]:
    if not isinstance(schema, Mapping) or depth > _MAX_SCHEMA_DEPTH:
        return
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for key, sub in properties.items():
            where = f"{path}.properties.{key}"
            if isinstance(sub, Mapping) and isinstance(sub.get("description"), str):
                yield f"{where}.description", sub["description"]
            yield from _schema_descriptions(sub, where, depth + 1)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from _schema_descriptions(items, f"{path}.items", depth + 1)


def _excerpt(text: str, start: int, end: int, width: int = 50) -> str:
    left, right = max(0, start - width), min(len(text), end + width)
    piece = " ".join(text[left:right].split())
    piece = ("..." if left else "") + piece + ("..." if right < len(text) else "")
    return _REDACTOR.text(piece).text


def _references(servers: Sequence[ServerSnapshot]) -> Iterator[Finding]:
    owners: dict[str, list[ServerSnapshot]] = defaultdict(list)
    for server in servers:
        for name in dict.fromkeys(n for n, _ in _tools(server)):
            owners[name].append(server)
    for server in servers:
        own = {n.lower() for n, _ in _tools(server)}
        foreign = {n.lower(): n for n, ss in owners.items()
                   if len(n) >= _MIN_REFERENCE and n.lower() not in own and any(s is not server for s in ss)}
        if not foreign:
            continue
        for tool_name, tool in _tools(server):
            for field, text in _descriptions(tool):
                named: dict[str, tuple[int, int]] = {}
                for ref, start, end in _mentions(text, foreign):
                    named.setdefault(ref, (start, end))
                for ref, (start, end) in named.items():
                    where = ", ".join(sorted(f"{_server_label(s)}.{ref}" for s in owners[ref] if s is not server))
                    yield Finding(
                        check=CROSS_REFERENCE.id, severity=CROSS_REFERENCE.severity,
                        message=(f"the {field} of {_server_label(server)}.{tool_name} names {where}, a tool of "
                                 f"another server: it can steer how that tool is used"),
                        location=server.at("tool", tool_name, field), evidence=_excerpt(text, start, end))


# ---------------------------------------------------------------------------------------------- duplicates


def _duplicates(servers: Sequence[ServerSnapshot], pins: _Pins) -> Iterator[Finding]:
    by_text: dict[str, list[tuple[ServerSnapshot, str]]] = defaultdict(list)
    for server in servers:
        for name, tool in _tools(server):
            text = tool.get("description")
            if isinstance(text, str):
                flat = " ".join(text.split())
                if len(flat) >= _MIN_DUPLICATE:
                    by_text[flat].append((server, name))
    for flat, holders in by_text.items():
        pinned = {(id(s), n) for s, n in holders if pins.tool(s, n)}
        for server, name in holders:
            rivals = [(s, n) for s, n in holders if s.name != server.name and n != name]
            if not rivals:
                continue
            if (id(server), name) in pinned and any((id(s), n) not in pinned for s, n in rivals):
                continue  # the reviewed original of a copy that is not pinned: the copy is reported
            others = sorted({f"{_server_label(s)}.{n}" for s, n in rivals})
            marked = sorted({f"{_server_label(s)}.{n}" + (" (pinned in the lockfile)" if (id(s), n) in pinned else "")
                             for s, n in rivals})
            yield Finding(
                check=DUPLICATE.id, severity=DUPLICATE.severity,
                message=(f"tool {_server_label(server)}.{name} has the same description as {', '.join(marked)} "
                         f"under a different name"),
                location=server.at("tool", name, "description"),
                evidence=_excerpt(flat, 0, 0, width=60) + " = " + ", ".join(others))  # the same with or without pins
