from hypothesis import given
from hypothesis import strategies as st

from gatehold.call import Caller
from gatehold.config import FlowRule, FlowSettings
from gatehold.policy.flow import FlowSession, FlowStore, decide

ALICE = Caller("alice", ("agent",), "apikey:a")
SETTINGS = FlowSettings()
UNTRUSTED_SINK_ASK = FlowRule.model_validate({"id": "ask-send", "from": ["untrusted"], "to": ["external_sink"],
                                              "effect": "ask"})
PRIVATE_SINK_DENY = FlowRule.model_validate({"id": "no-leak", "from": ["private"], "to": ["external_sink"],
                                             "effect": "deny", "match": "arguments"})
ARGS_ASK = FlowRule.model_validate({"id": "copied", "from": ["untrusted"], "to": ["external_sink"], "effect": "ask",
                                    "match": "arguments"})


def session_after(*reads: tuple[str, frozenset[str], set[str]]) -> FlowSession:
    session = FlowSession()
    for i, (tool, labels, values) in enumerate(reads):
        session.record_read(labels, tool, f"c{i}", float(i))
        session.record_values(values, labels, tool, f"c{i}", 100)
    return session


def test_nothing_read_nothing_fires() -> None:
    verdict = decide([UNTRUSTED_SINK_ASK], SETTINGS, frozenset({"external_sink"}), ALICE, (), FlowSession())
    assert verdict.effect == "allow"


def test_session_rule_fires_after_an_untrusted_read_and_names_the_call() -> None:
    session = session_after(("web.fetch", frozenset({"untrusted"}), set()))
    verdict = decide([UNTRUSTED_SINK_ASK], SETTINGS, frozenset({"external_sink"}), ALICE, (), session)
    assert (verdict.effect, verdict.rule_id) == ("ask", "flow.ask-send")
    assert [r.correlation_id for r in verdict.tainted_by] == ["c0"]
    assert "web.fetch" in verdict.reason


def test_a_tool_without_sink_labels_is_not_touched() -> None:
    session = session_after(("web.fetch", frozenset({"untrusted"}), set()))
    assert decide([UNTRUSTED_SINK_ASK], SETTINGS, frozenset({"untrusted"}), ALICE, (), session).effect == "allow"


def test_strictest_rule_wins() -> None:
    session = session_after(("web.fetch", frozenset({"untrusted"}), set()),
                            ("crm.contact", frozenset({"private"}), {"+15551234567"}))
    verdict = decide([UNTRUSTED_SINK_ASK, PRIVATE_SINK_DENY], SETTINGS, frozenset({"external_sink"}), ALICE,
                     {"+15551234567"}, session)
    assert (verdict.effect, verdict.rule_id) == ("deny", "flow.no-leak")
    assert verdict.values[0][:2] == ("+15551234567", "crm.contact")


def test_argument_rule_fires_only_on_copied_values() -> None:
    session = session_after(("mail.inbox", frozenset({"untrusted"}), {"evil@attacker.example"}))
    sink = frozenset({"external_sink"})
    assert decide([ARGS_ASK], SETTINGS, sink, ALICE, {"bob@corp.example"}, session).effect == "allow"
    hit = decide([ARGS_ASK], SETTINGS, sink, ALICE, {"evil@attacker.example"}, session)
    assert (hit.effect, hit.rule_id) == ("ask", "flow.copied")
    assert hit.tainted_by[0].tool == "mail.inbox"


def test_a_value_also_read_from_a_trusted_tool_is_trusted() -> None:
    session = session_after(("mail.inbox", frozenset({"untrusted"}), {"me@corp.example"}),
                            ("me.profile", frozenset({"private"}), {"me@corp.example"}))
    off = FlowSettings(provenance="off")
    assert decide([ARGS_ASK], off, frozenset({"external_sink"}), ALICE, {"me@corp.example"}, session).effect == "allow"
    # ...but it still carries the private label.
    assert decide([PRIVATE_SINK_DENY], off, frozenset({"external_sink"}), ALICE, {"me@corp.example"},
                  session).effect == "deny"


def test_provenance_escalates_even_when_no_rule_fires() -> None:
    session = session_after(("mail.inbox", frozenset({"untrusted"}), {"evil@attacker.example"}))
    verdict = decide([], SETTINGS, frozenset({"external_sink"}), ALICE, {"evil@attacker.example"}, session)
    assert (verdict.effect, verdict.rule_id) == ("ask", "flow.provenance")
    deny = decide([], FlowSettings(provenance="deny"), frozenset({"external_sink"}), ALICE,
                  {"evil@attacker.example"}, session)
    assert deny.effect == "deny"
    off = decide([], FlowSettings(provenance="off"), frozenset({"external_sink"}), ALICE,
                 {"evil@attacker.example"}, session)
    assert off.effect == "allow"


def test_rules_are_scoped_by_principal_and_role() -> None:
    session = session_after(("web.fetch", frozenset({"untrusted"}), set()))
    scoped = FlowRule.model_validate({"from": ["untrusted"], "to": ["external_sink"], "effect": "deny",
                                      "principals": ["bot-*"], "roles": ["agent"]})
    sink = frozenset({"external_sink"})
    assert decide([scoped], SETTINGS, sink, ALICE, (), session).effect == "allow"
    assert decide([scoped], SETTINGS, sink, Caller("bot-1", ("agent",), "k"), (), session).effect == "deny"
    assert decide([scoped], SETTINGS, sink, Caller("bot-1", ("reader",), "k"), (), session).effect == "allow"


def test_values_are_bounded_but_reads_are_not_forgotten() -> None:
    session = FlowSession()
    session.record_read({"untrusted"}, "web.fetch", "c0", 0.0)
    session.record_values({f"{i:06d}" for i in range(50)}, frozenset({"untrusted"}), "web.fetch", "c0", 10)
    assert len(session.values) == 10
    assert "untrusted" in session.reads


def test_store_forgets_idle_sessions_and_refuses_beyond_capacity() -> None:
    now = [0.0]
    store = FlowStore(FlowSettings(idle_seconds=10, max_sessions=2), clock=lambda: now[0])
    a = store.session("a")
    assert a is not None
    assert store.session("b") is not None
    assert store.session("c") is None  # full: no state rather than evicting someone's taint
    assert store.session("a") is a
    now[0] = 20.0
    assert store.session("c") is not None  # the idle ones went
    assert len(store) == 1


@given(st.lists(st.sampled_from(["untrusted", "private", "external_sink", "destructive"]), max_size=4),
       st.lists(st.sampled_from(["untrusted", "private", "external_sink", "destructive"]), min_size=1, max_size=4))
def test_more_reads_never_loosen_a_decision(first: list[str], later: list[str]) -> None:
    rules = [UNTRUSTED_SINK_ASK, FlowRule.model_validate({"from": ["private"], "to": ["external_sink", "destructive"],
                                                          "effect": "deny"})]
    rank = {"allow": 0, "ask": 1, "deny": 2}
    session = FlowSession()
    session.record_read(first, "t1", "c1", 0.0)
    for labels in (frozenset({"external_sink"}), frozenset({"destructive"})):
        before = decide(rules, SETTINGS, labels, ALICE, (), session).effect
        bigger = FlowSession()
        bigger.record_read(first, "t1", "c1", 0.0)
        bigger.record_read(later, "t2", "c2", 1.0)
        assert rank[decide(rules, SETTINGS, labels, ALICE, (), bigger).effect] >= rank[before]


SUSPECT_ASK = FlowRule.model_validate({"id": "suspect-then-act", "from": ["suspect"],
                                       "to": ["external_sink", "destructive"], "effect": "ask"})
SUSPECT_VALUES_DENY = FlowRule.model_validate({"id": "suspect-values-out", "from": ["suspect"],
                                               "to": ["external_sink"], "effect": "deny", "match": "arguments"})


def test_a_suspect_read_taints_the_session_and_its_values() -> None:
    session = session_after(("mail.inbox", frozenset({"untrusted"}), {"evil@attacker.example"}),
                            ("crm.contact", frozenset({"private"}), {"bob@corp.example"}))
    sink = frozenset({"external_sink"})
    rules = [SUSPECT_ASK, SUSPECT_VALUES_DENY]
    assert decide(rules, SETTINGS, sink, ALICE, {"bob@corp.example"}, session).effect == "allow"
    session.mark_suspect({"evil@attacker.example"}, "mail.inbox", "c9", 9.0, 100)
    asked = decide(rules, SETTINGS, sink, ALICE, {"bob@corp.example"}, session)
    assert (asked.effect, asked.rule_id, asked.tainted_by[0].correlation_id) == ("ask", "flow.suspect-then-act", "c9")
    denied = decide(rules, SETTINGS, sink, ALICE, {"evil@attacker.example"}, session)
    assert (denied.effect, denied.rule_id) == ("deny", "flow.suspect-values-out")
    assert denied.values[0] == ("evil@attacker.example", "mail.inbox", "c9")  # the suspicious call, first


def test_suspicion_never_makes_an_untrusted_value_trusted() -> None:
    session = session_after(("mail.inbox", frozenset({"untrusted"}), {"evil@attacker.example"}))
    session.mark_suspect({"evil@attacker.example", "new@attacker.example"}, "mail.inbox", "c1", 1.0, 100)
    for value in ("evil@attacker.example", "new@attacker.example"):
        assert not session.values[value].trusted
    copied = decide([ARGS_ASK], SETTINGS, frozenset({"external_sink"}), ALICE, {"evil@attacker.example"}, session)
    assert (copied.effect, copied.rule_id) == ("ask", "flow.copied")


def test_suspect_is_a_source_only() -> None:
    import pytest
    from pydantic import ValidationError

    from gatehold.config import Config
    with pytest.raises(ValidationError):
        FlowRule.model_validate({"from": ["untrusted"], "to": ["suspect"], "effect": "ask"})
    with pytest.raises(ValidationError):
        Config.model_validate({"labels": {"web.fetch": ["suspect"]}})


def test_explanations_name_the_call_that_carried_the_matched_label() -> None:
    session = session_after(("crm.contact", frozenset({"private"}), {"+15551234567"}),
                            ("web.fetch", frozenset({"untrusted"}), {"+15551234567"}))
    session.mark_suspect({"+15551234567"}, "web.fetch", "c1", 1.0, 100)
    sink = frozenset({"external_sink"})
    private = decide([PRIVATE_SINK_DENY], SETTINGS, sink, ALICE, {"+15551234567"}, session)
    assert "crm.contact (call c0)" in private.reason
    assert private.values[0][1:] == ("crm.contact", "c0")
    suspect = decide([SUSPECT_VALUES_DENY], SETTINGS, sink, ALICE, {"+15551234567"}, session)
    assert "web.fetch (call c1)" in suspect.reason
    assert [(r.label, r.tool) for r in suspect.tainted_by] == [("suspect", "web.fetch")]  # not the CRM read
