"""Data-flow policy: what a session has read decides what it may send.

Each session (a principal and its MCP session, or, in the sessionless 2026 era, a principal and
its credential) keeps the labels it has read, which call read them, and the values (see
``provenance``) that appeared in labelled output. ``decide`` is pure: the rules, the called tool's
labels, the caller, the values in the arguments and the session's memory give a ``FlowVerdict``
whose effect is the strictest of every rule that fires (``deny`` > ``ask`` > ``allow``), with the
earlier calls that tainted the session, so a decision can always be explained.

A value counts as untrusted only while it has been seen in untrusted output alone: a value the
session also read from a tool without the ``untrusted`` label (the user's own address from
their profile, say) is trusted. Every other label a value carries accumulates.
"""

from __future__ import annotations

import fnmatch
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gatehold.call import Caller
from gatehold.config import Effect, FlowRule, FlowSettings
from gatehold.policy.labels import Labels

_RANK = {"allow": 0, "ask": 1, "deny": 2}
_HISTORY = 32  # reads remembered per session for explanations
_SOURCES = 4  # source calls remembered per value
SUSPECT = "suspect"  # the label a session reads from output the injection detector found suspicious


@dataclass(frozen=True, slots=True)
class Read:
    """One call whose output carried ``label`` into the session."""

    label: str
    tool: str
    correlation_id: str
    at: float

    def as_dict(self) -> dict[str, str]:
        return {"label": self.label, "tool": self.tool, "correlation_id": self.correlation_id}


@dataclass(slots=True)
class ValueOrigin:
    labels: set[str]
    trusted: bool
    sources: list[tuple[str, str]]  # (tool, correlation id), first few
    suspect_source: tuple[str, str] | None = None  # the first suspicious call the value was seen in

    def effective(self) -> set[str]:
        return self.labels - {"untrusted"} if self.trusted else self.labels


@dataclass(slots=True)
class FlowSession:
    reads: dict[str, Read] = field(default_factory=dict)  # first read per label
    history: list[Read] = field(default_factory=list)
    values: OrderedDict[str, ValueOrigin] = field(default_factory=OrderedDict)
    last_used: float = 0.0

    def record_read(self, labels: Iterable[str], tool: str, correlation_id: str, now: float) -> None:
        for label in labels:
            read = Read(label, tool, correlation_id, now)
            self.reads.setdefault(label, read)
            self.history.append(read)
        del self.history[:-_HISTORY]

    def record_values(self, values: Iterable[str], labels: Labels, tool: str, correlation_id: str,
                      limit: int) -> None:
        trusted = "untrusted" not in labels
        for value in values:
            origin = self.values.get(value)
            if origin is None:
                origin = self.values[value] = ValueOrigin(set(labels), trusted, [])
            else:
                origin.labels |= labels
                origin.trusted = origin.trusted or trusted
                self.values.move_to_end(value)
            if len(origin.sources) < _SOURCES:
                origin.sources.append((tool, correlation_id))
        self._trim(limit)

    def mark_suspect(self, values: Iterable[str], tool: str, correlation_id: str, now: float, limit: int) -> None:
        """The detector found an injection likely in this call's output: the session has read ``suspect``,
        and every value in that output carries the label, however else the session came to know it."""
        self.record_read((SUSPECT,), tool, correlation_id, now)
        for value in values:
            origin = self.values.get(value)
            if origin is None:
                # Not "trusted": suspicion never vouches for a value (record_values decides that).
                origin = self.values[value] = ValueOrigin({SUSPECT}, False, [(tool, correlation_id)])
            else:
                origin.labels.add(SUSPECT)
                self.values.move_to_end(value)
            if origin.suspect_source is None:
                origin.suspect_source = (tool, correlation_id)
        self._trim(limit)

    def _trim(self, limit: int) -> None:
        while len(self.values) > limit:
            # Oldest values go first; the session's labels (``reads``) are never forgotten.
            self.values.popitem(last=False)


@dataclass(frozen=True, slots=True)
class FlowVerdict:
    effect: Effect
    rule_id: str
    reason: str
    tainted_by: tuple[Read, ...] = ()
    values: tuple[tuple[str, str, str], ...] = ()  # (value, tool, correlation id) that carried taint

    def audit(self, labels: Labels) -> dict[str, object]:
        return {"labels": sorted(labels), "effect": self.effect, "rule": self.rule_id, "reason": self.reason,
                "tainted_by": [r.as_dict() for r in self.tainted_by],
                "values": [{"value": v[:80], "tool": t, "correlation_id": c} for v, t, c in self.values]}


ALLOW = FlowVerdict("allow", "", "no data-flow rule applies")


def rule_id(rule: FlowRule, index: int) -> str:
    return f"flow.{rule.id or f'flows[{index}]'}"


def applies(rule: FlowRule, caller: Caller) -> bool:
    if rule.roles and not set(rule.roles) & set(caller.roles):
        return False
    return any(fnmatch.fnmatchcase(caller.principal, p) for p in rule.principals)


def decide(rules: Sequence[FlowRule], settings: FlowSettings, labels: Labels, caller: Caller,
           argument_values: Iterable[str], session: FlowSession | None) -> FlowVerdict:
    """The strictest effect of every rule that fires for this call, and why. Pure."""
    if session is None or not labels:
        return ALLOW
    carried = _carried(argument_values, session)
    best = ALLOW
    for index, rule in enumerate(rules):
        if not labels & set(rule.sinks) or not applies(rule, caller):
            continue
        verdict = _fire(rule, rule_id(rule, index), labels, session, carried)
        if verdict is not None and _RANK[verdict.effect] > _RANK[best.effect]:
            best = verdict
    if settings.provenance != "off" and "external_sink" in labels:
        hits = [(v, o) for v, o in carried if "untrusted" in o.effective()]
        if hits and _RANK[settings.provenance] > _RANK[best.effect]:
            best = FlowVerdict(settings.provenance, "flow.provenance",
                               f"an argument carries {_show(hits[0][0])}, seen only in untrusted output",
                               _reads_of(hits, session, {"untrusted"}), _values(hits, {"untrusted"}))
    return best


def _carried(argument_values: Iterable[str], session: FlowSession) -> list[tuple[str, ValueOrigin]]:
    found = []
    for value in argument_values:
        origin = session.values.get(value)
        if origin is not None:
            found.append((value, origin))
    return found


def _fire(rule: FlowRule, rid: str, labels: Labels, session: FlowSession,
          carried: list[tuple[str, ValueOrigin]]) -> FlowVerdict | None:
    sources: set[str] = set(rule.sources)
    sinks = ", ".join(sorted(labels & set(rule.sinks)))
    if rule.match == "session":
        reads = tuple(session.reads[s] for s in rule.sources if s in session.reads)
        if not reads:
            return None
        first = reads[0]
        return FlowVerdict(rule.effect, rid, f"the session read {first.label} output from {first.tool} "
                                             f"(call {first.correlation_id}); this tool is {sinks}", reads)
    hits = [(v, o) for v, o in carried if o.effective() & sources]
    if not hits:
        return None
    value, origin = hits[0]
    tool, cid = _source(origin, sources)
    return FlowVerdict(rule.effect, rid, f"an argument carries {_show(value)} from "
                                         f"{'/'.join(sorted(origin.effective() & sources))} output of {tool} "
                                         f"(call {cid}); this tool is {sinks}",
                       _reads_of(hits, session, sources), _values(hits, sources))


def _source(origin: ValueOrigin, labels: set[str]) -> tuple[str, str]:
    """The call to name for a value: the suspicious one when only ``suspect`` matched, else the first."""
    if origin.suspect_source is not None and not (origin.effective() & labels) - {SUSPECT}:
        return origin.suspect_source
    return origin.sources[0] if origin.sources else ("?", "?")


def _reads_of(hits: list[tuple[str, ValueOrigin]], session: FlowSession, labels: Iterable[str]) -> tuple[Read, ...]:
    wanted = set(labels)
    seen: dict[str, Read] = {}
    for _, origin in hits:
        matched = origin.effective() & wanted
        if SUSPECT in matched and origin.suspect_source is not None:
            tool, cid = origin.suspect_source
            seen.setdefault(cid, Read(SUSPECT, tool, cid, 0.0))
        # Tool labels: every source may have carried them (sources do not keep labels apart), and a
        # suspect label is named only on the suspicious call.
        for label in sorted(matched - {SUSPECT}):
            for tool, cid in origin.sources:
                seen.setdefault(cid, Read(label, tool, cid, 0.0))
    return tuple(seen.values())


def _values(hits: list[tuple[str, ValueOrigin]], labels: set[str]) -> tuple[tuple[str, str, str], ...]:
    out = []
    for value, origin in hits[:8]:
        tool, cid = _source(origin, labels)
        out.append((value, tool, cid))
    return tuple(out)


def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


class FlowStore:
    """Flow state of every live session, in process. Idle sessions are forgotten after ``idle_seconds``.

    At ``max_sessions`` a new session gets no state and ``session()`` returns None: the Flow stage
    then refuses its labelled calls (fail closed) rather than evict another session's taint.
    """

    def __init__(self, settings: FlowSettings, clock: object = time.monotonic):
        self._settings = settings
        self._clock = clock
        self._sessions: OrderedDict[str, FlowSession] = OrderedDict()

    def now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def session(self, key: str, *, create: bool = True) -> FlowSession | None:
        now = self.now()
        self._sweep(now)
        found = self._sessions.get(key)
        if found is None:
            if not create or len(self._sessions) >= self._settings.max_sessions:
                return None
            found = self._sessions[key] = FlowSession()
        self._sessions.move_to_end(key)
        found.last_used = now
        return found

    def _sweep(self, now: float) -> None:
        idle = self._settings.idle_seconds
        while self._sessions:
            key, oldest = next(iter(self._sessions.items()))
            if now - oldest.last_used <= idle:
                return
            del self._sessions[key]

    def __len__(self) -> int:
        return len(self._sessions)
