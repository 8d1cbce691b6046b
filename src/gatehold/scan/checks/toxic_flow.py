"""Toxic flows: one agent can read attacker text, read the user's data, and send data out.

When an agent reaches a tool that returns content third parties wrote (``untrusted``), a tool that
returns the user's own data (``private``) and a tool that sends data outside (``external_sink``), a
prompt injection in the untrusted content can make the agent read the private data and send it away.
No single tool is at fault; the combination is (the "lethal trifecta"). One tool may carry several
roles (an email tool reads attacker mail and the user's mailbox) and the roles may sit in different
servers. Roles come from :mod:`gatehold.scan.checks.capabilities`: policy labels, then annotations,
then heuristics on names and descriptions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gatehold.scan.checks.capabilities import URL_CHANNEL, explain
from gatehold.scan.checks.shadowing import Agent, agents
from gatehold.scan.model import CheckInfo, Finding, ScanInput, ServerSnapshot

__all__ = ["CHECKS", "run"]

_CONTROLS = (
    "Put the agent's servers behind Gatehold and label the tools (labels: {server.tool: [untrusted]}, "
    "[private], [external_sink]); then add flow rules so that after untrusted content an external sink "
    "needs a human's approval and private data never reaches one: flows: "
    "[{from: [untrusted], to: [external_sink], effect: ask}, "
    "{from: [private], to: [external_sink], effect: deny}]. Or split the tools across agents so that no "
    "agent holds all three."
)
TOXIC_FLOW = CheckInfo(
    id="toxic-flow",
    title="One agent reaches untrusted content, private data and an external sink",
    severity="high",
    rationale=(
        "An instruction hidden in content a third party wrote (a web page, an email, an issue) can make "
        "the agent read the user's private data with one tool and send it out with another. The agent "
        "cannot be relied on to notice; every server may be honest and the data still leaks."
    ),
    remediation=_CONTROLS,
)
TOXIC_FLOW_PARTIAL = CheckInfo(
    id="toxic-flow-partial",
    title="One agent reaches untrusted content and an external sink",
    severity="low",
    rationale=(
        "An instruction hidden in content a third party wrote can make the agent act outside on the "
        "attacker's behalf: send messages, post, transfer money or grant access. No private-data source "
        "was recognised, so the data at risk is what the conversation itself holds."
    ),
    remediation=_CONTROLS,
)
CHECKS: tuple[CheckInfo, ...] = (TOXIC_FLOW, TOXIC_FLOW_PARTIAL)

_ROLE_TEXT = {"untrusted": "untrusted content", "private": "private data", "external_sink": "an external sink"}


@dataclass(frozen=True, slots=True)
class _Holder:
    server: ServerSnapshot
    tool: str
    reason: str

    @property
    def qualified(self) -> str:
        return f"{self.server.name}.{self.tool}" if self.server.name is not None else self.tool


def run(scan: ScanInput) -> Iterable[Finding]:
    out: list[Finding] = []
    for agent in agents(scan):
        finding = _agent_finding(agent)
        if finding is not None:
            out.append(finding)
    return out


def _roles(agent: Agent) -> dict[str, list[_Holder]]:
    holders: dict[str, list[_Holder]] = {"untrusted": [], "private": [], "external_sink": []}
    for server in agent.servers:
        if not server.listed:
            continue
        for tool in server.tools:
            name = tool.get("name")
            if not isinstance(name, str) or not name:
                continue
            for role, reason in explain(tool, server.labels.get(name, ())).items():
                holders[role].append(_Holder(server, name, reason))
    for found in holders.values():
        found.sort(key=_rank)
    return holders


def _rank(holder: _Holder) -> int:
    """The example named for a role: an operator's label, a server's annotation, a guess, a side channel."""
    if holder.reason.startswith("policy"):
        return 0
    if holder.reason.startswith("annotation"):
        return 1
    return 3 if holder.reason.endswith(URL_CHANNEL) else 2


def _agent_finding(agent: Agent) -> Finding | None:
    holders = _roles(agent)
    if not holders["untrusted"] or not holders["external_sink"]:
        return None
    info = TOXIC_FLOW if holders["private"] else TOXIC_FLOW_PARTIAL
    roles = [r for r in ("untrusted", "private", "external_sink") if holders[r]]
    sink = holders["external_sink"][0]
    parts = []
    for role in roles:
        count = len(holders[role])
        example = holders[role][0].qualified
        parts.append(f"{_ROLE_TEXT[role]} ({f'{count} tools, e.g. {example}' if count > 1 else f'1 tool: {example}'})")
    reach = ", ".join(parts[:-1]) + " and " + parts[-1]
    if info is TOXIC_FLOW:
        consequence = ("an injection in the untrusted content can make the agent send the private data out "
                       f"through {sink.qualified}")
    else:
        consequence = f"an injection in the untrusted content can make the agent act outside through {sink.qualified}"
    evidence = "; ".join(f"{role}: {holders[role][0].qualified} ({holders[role][0].reason})" for role in roles)
    return Finding(check=info.id, severity=info.severity,
                   message=f"{agent.label} reaches {reach}: {consequence}",
                   location=sink.server.at("tool", sink.tool), evidence=evidence)
