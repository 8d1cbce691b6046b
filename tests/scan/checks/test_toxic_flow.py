from typing import Any

from gatehold.scan.checks.toxic_flow import CHECKS, run
from gatehold.scan.model import Finding, ScanInput, ServerSnapshot


def server(name: str | None, *tools: dict[str, Any], listed: bool = True,
           labels: dict[str, tuple[str, ...]] | None = None) -> ServerSnapshot:
    return ServerSnapshot(name=name, source="tools-json", tools=tools, listed=listed, labels=labels or {})


def tool(name: str, description: str = "", **params: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "description": description}
    if params:
        out["inputSchema"] = {"type": "object", "properties": {k: {"type": "string"} for k in params}}
    return out


WEB = server("web", tool("fetch", "Fetches a URL from the internet.", url="u"))
FILES = server("files", tool("read_file", "Read a file."), tool("list_files", "List files."))
MAIL = server("mail", tool("send_email", "Sends an email.", recipients="r", body="b"))
CALC = server("calc", tool("add_numbers", "Add two numbers."), tool("get_current_time", "Current time."))


def scan(*servers: ServerSnapshot, agents: tuple[tuple[str, tuple[str | None, ...]], ...] = ()) -> list[Finding]:
    return list(run(ScanInput(servers=servers, agents=agents)))


def test_checks_are_declared() -> None:
    assert [(c.id, c.severity) for c in CHECKS] == [("toxic-flow", "high"), ("toxic-flow-partial", "low")]
    assert all("effect: ask" in c.remediation and "effect: deny" in c.remediation for c in CHECKS)


def test_the_trifecta_across_servers() -> None:
    (finding,) = scan(WEB, FILES, MAIL, CALC)
    assert finding.check == "toxic-flow"
    assert finding.severity == "high"
    # Located at a sink: send_email rather than fetch, whose URL is only a side channel.
    assert finding.location.kind == "tool"
    assert finding.location.qualified_name == "mail.send_email"
    assert "web.fetch" in finding.message
    assert "untrusted content (1 tool: web.fetch)" in finding.message
    assert "private data (2 tools, e.g. files.read_file)" in finding.message
    assert "external sink (2 tools, e.g. mail.send_email)" in finding.message
    assert "untrusted:" in finding.evidence
    assert "private:" in finding.evidence
    assert "external_sink:" in finding.evidence


def test_the_sink_example_prefers_an_operator_label() -> None:
    labelled = server("mail", tool("send_email", "Sends an email."), labels={"send_email": ("external_sink",)})
    (finding,) = scan(WEB, FILES, labelled)
    assert finding.location.qualified_name == "mail.send_email"
    assert "policy label external_sink" in finding.evidence


def test_one_tool_can_carry_several_roles() -> None:
    inbox = server("mail", tool("read_email", "Read an email."), tool("send_email", "Sends an email."))
    (finding,) = scan(inbox)
    assert finding.check == "toxic-flow"
    assert finding.location.qualified_name == "mail.send_email"


def test_untrusted_and_sink_without_private_is_partial() -> None:
    (finding,) = scan(WEB, CALC)
    assert finding.check == "toxic-flow-partial"
    assert finding.severity == "low"
    assert "private" not in finding.evidence


def test_no_finding_without_untrusted_or_without_sink() -> None:
    assert scan(FILES, MAIL, CALC) == []  # nothing reads attacker text
    assert scan(server("news", tool("read_news", "Read the latest news articles.")), FILES, CALC) == []
    assert scan(CALC) == []


def test_each_agent_separately() -> None:
    split = (("reader", ("web", "files")), ("sender", ("mail",)))
    found = scan(WEB, FILES, MAIL, agents=split)
    # web.fetch is itself a sink, so the reader agent holds all three roles; the sender holds only one.
    assert [(f.check, "reader" in f.message) for f in found] == [("toxic-flow", True)]
    apart = (("a", ("files", "mail")), ("b", ("calc",)))
    assert scan(FILES, MAIL, CALC, agents=apart) == []


def test_labels_and_annotations_count() -> None:
    quiet = server("x", tool("alpha"), tool("beta"), tool("gamma"),
                   labels={"alpha": ("untrusted",), "beta": ("private",), "gamma": ("external_sink",)})
    (finding,) = scan(quiet)
    assert finding.check == "toxic-flow"
    assert finding.location.qualified_name == "x.gamma"
    hinted = server("y", {"name": "lookup", "annotations": {"openWorldHint": True}})
    (partial,) = scan(hinted)
    assert partial.check == "toxic-flow-partial"
    assert "annotation openWorldHint" in partial.evidence


def test_unlisted_servers_contribute_nothing() -> None:
    assert scan(server("web", tool("fetch", url="u"), listed=False), FILES, MAIL) == []
