"""Flow: what this session has read decides whether this call may go, must ask a human, or is refused.

``on_call`` labels the call's tool (policy globs, tightened by stated annotations), asks
``policy.flow.decide`` with the session's memory, and then records the call's own labels as read
(pessimistic: a call taints its session from the moment it is sent, whether or not it succeeds).
``deny`` refuses here; ``ask`` is handed to the Approve stage, which runs next and makes the call
wait for a human like any other approval. ``FlowMemory`` remembers the values in the output
(``policy.provenance``) with the tool's labels, so a later call that copies them can be caught.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gatehold.call import ToolCall
from gatehold.config import FlowRule, FlowSettings
from gatehold.errors import FlowDenied
from gatehold.output.walk import texts
from gatehold.pipeline.approve import Need
from gatehold.pipeline.outcome import Allow, CallDecision, Deny, Keep, ResultDecision
from gatehold.policy.flow import SUSPECT, FlowStore, decide
from gatehold.policy.labels import Labeller, Labels
from gatehold.policy.provenance import extract, values_in

_RAW = 64  # raw results waiting for their score


class Flow:
    name = "flow"

    def __init__(self, rules: Sequence[FlowRule], settings: FlowSettings, labeller: Labeller, store: FlowStore,
                 annotations: Callable[[str], Mapping[str, Any] | None]):
        self._rules = tuple(rules)
        self.settings = settings
        self._labeller = labeller
        self.store = store
        self._annotations = annotations
        self._asks: dict[str, Need] = {}  # correlation id -> the ask the Approve stage takes next
        self.enabled = bool(self._rules) or settings.provenance != "off"
        # Suspicion is kept only when a rule can act on it: otherwise the values it adds to a session
        # would change what FlowMemory records, and so what counts as trusted, for no rule.
        self.uses_suspect = settings.suspect_score is not None and any(SUSPECT in r.sources for r in self._rules)
        # correlation id -> the raw result FlowMemory saw, until the output check has scored it. Stages
        # do not yield between the two, so one entry is live at a time; a result refused in between
        # (by the size cap) leaves its entry behind until it is pushed out.
        self._raw: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def labels(self, call: ToolCall) -> Labels:
        annotations = self._annotations(call.target.exposed) if call.target.kind == "tool" else None
        return self._labeller.labels(call.target.exposed, annotations)

    async def on_call(self, call: ToolCall) -> CallDecision:
        if not self.enabled:
            return Allow()
        labels = self.labels(call)
        session = self.store.session(call.flow_key)
        if session is None:
            if not labels:
                return Allow("", "unlabelled tool")
            # Fail closed: with no room to remember this session's reads, labelled calls are refused.
            return Deny(FlowDenied("flow state is full (flow.max_sessions)", rule_id="flow.capacity",
                                   code="flow.unavailable", public="data-flow state unavailable; try later"))
        verdict = decide(self._rules, self.settings, labels, call.caller,
                         values_in(call.arguments) if session.values else (), session)
        detail = verdict.audit(labels) if labels else None
        if verdict.effect == "deny":
            error = FlowDenied(verdict.reason, rule_id=verdict.rule_id)
            error.audit = verdict.audit(labels)
            return Deny(error)
        if labels:
            session.record_read(labels, call.target.exposed, call.correlation_id, self.store.now())
        if verdict.effect == "ask":
            # Approve runs next in the same request and takes this at once, so the table stays tiny.
            self._asks[call.correlation_id] = Need(verdict.rule_id, verdict.reason)
        return Allow(verdict.rule_id, verdict.reason, detail)

    def need(self, call: ToolCall) -> Need | None:
        """The approval this stage asked for on ``call`` (taken once; the Approve stage calls this)."""
        return self._asks.pop(call.correlation_id, None)

    async def on_result(self, call: ToolCall, result: dict[str, Any]) -> ResultDecision:
        self._raw.pop(call.correlation_id, None)  # the output check has had it, if it ran
        return Keep()  # FlowMemory, at the bottom of the list, reads the result as the upstream sent it

    def keep_raw(self, call: ToolCall, result: dict[str, Any]) -> None:
        """The result as the upstream returned it, for ``suspect`` to read every value of."""
        if self.uses_suspect:
            self._raw[call.correlation_id] = result
            while len(self._raw) > _RAW:
                self._raw.popitem(last=False)

    def suspect(self, call: ToolCall, result: dict[str, Any], score: float, flagged: bool) -> bool:
        """The output check scored ``result`` at ``score``. A flagged result, or one scored at
        ``flow.suspect_score`` or more, gives the session ``suspect``, and every value of the raw
        result carries it. Whether it did; raises ``FlowDenied`` when it should but cannot."""
        raw = self._raw.pop(call.correlation_id, None)
        threshold = self.settings.suspect_score
        if not self.uses_suspect or threshold is None or not (flagged or score >= threshold):
            return False
        session = self.store.session(call.flow_key)
        if session is None:
            # Fail closed: a suspicion that cannot be remembered would let this session act freely
            # later (an unlabelled call is allowed with the store full), so the result is refused.
            raise FlowDenied("flow state is full (flow.max_sessions)", rule_id="flow.capacity",
                             code="flow.unavailable", public="data-flow state unavailable; try later")
        values: set[str] = set()
        for text in texts(raw if raw is not None else result):  # raw: before OutputBounds cut it
            values.update(extract(text))
        session.mark_suspect(values, call.target.exposed, call.correlation_id, self.store.now(),
                             self.settings.remember_values)
        return True


class FlowMemory:
    """Remembers the values in a result as the upstream returned it, before anything is cut.

    It sits last in the stage list so that its ``on_result`` runs first: a value that sanitising,
    quarantine or redaction keeps from the agent is still remembered as tainted (the agent may
    have learnt it another way, and a replayed or guessed value must not pass as clean).
    """

    name = "flow_memory"

    def __init__(self, flow: Flow):
        self._flow = flow

    async def on_call(self, call: ToolCall) -> CallDecision:
        return Allow()

    async def on_result(self, call: ToolCall, result: dict[str, Any]) -> ResultDecision:
        flow = self._flow
        flow.keep_raw(call, result)
        if not flow.enabled:
            return Keep()
        session = flow.store.session(call.flow_key, create=False)
        labels = flow.labels(call)
        if session is None or not (labels or session.values):
            # Values from an unlabelled tool only matter as "also seen in trusted output"; before any
            # labelled value exists, skipping them can only make a later match stricter.
            return Keep()
        values: set[str] = set()
        for text in texts(result):
            values.update(extract(text))
        if values:
            session.record_values(values, labels, call.target.exposed, call.correlation_id,
                                  flow.settings.remember_values)
        return Keep({"values_remembered": len(values)} if values else None)
