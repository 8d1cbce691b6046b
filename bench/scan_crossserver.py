"""What the scanner's cross-server checks flag on the labelled tool-description corpus.

    python -m bench.scan_crossserver [--corpora DIR]

The checks measured are ``tool-shadowing``, ``lookalike-name``, ``cross-tool-reference`` and
``duplicate-description`` (module ``gatehold.scan.checks.shadowing``). They compare servers, so the
corpus rows are regrouped into servers first:

* ``measure_grouped``: every (server, attack) group of rows is one server snapshot, named ``<server>``
  for the benign rows and ``<server>-<attack>`` for an attack variant (MSB's variants were separate
  server files in the benchmark), and all snapshots of one ``source`` form one agent. Every variant
  therefore sits next to the clean server *and* next to the other variants of it.
* ``measure_one_variant``: each attack variant is put in an agent with the clean servers of its source
  and no other variant, as a user who installed the originals and one impostor would have it; a benign
  row counts as flagged if any of these agents flags it.
* ``measure_clean``: only the benign servers of each source, as one agent. In the two views above a
  benign row is also flagged when it is the original an impostor collides with (a shadowing or a
  duplicated description is reported on both sides, since the scanner cannot know which is the copy);
  this view shows what the checks flag when no impostor is present.
* ``--pinned``: the two first views again, with a lockfile that pins the clean servers of each source
  as they are listed. This is the setting of a user who reviewed and pinned the servers they installed
  and then added another: the lockfile tells the scanner which side of a collision is the original.
  The pinned set is an input of the measurement, taken from the corpus labels (the benign rows), so
  these figures say what the checks do once a lockfile exists, not how well they guess without one.
* ``--with-text``: the text checks of one definition (``tool-poisoning``, ``suspicious-parameter``,
  module ``gatehold.scan.checks.poisoning``) run in the same scans, so the figures are those of the
  scanner's poisoning-class checks together.

A row is flagged when a finding of one of the checks points at its tool (or, for a server-name
finding, at its server). Figures are per source and attack: caught / malicious rows, and benign rows
flagged / benign rows.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gatehold.scan.checks import poisoning, shadowing
from gatehold.scan.lockfile import definitions_of
from gatehold.scan.model import Finding, Lockfile, PinnedServer, ScanInput, ServerSnapshot

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPORA = ROOT.parent / "shared" / "corpora"
CHECK_IDS = tuple(info.id for info in shadowing.CHECKS)

Row = Mapping[str, Any]


def load(corpora: Path) -> list[Row]:
    with (corpora / "tool_descriptions.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def snapshot_name(row: Row) -> str:
    return str(row["server"]) if row["attack"] is None else f"{row['server']}-{row['attack']}"


def snapshots(rows: Iterable[Row]) -> dict[str, ServerSnapshot]:
    """One listed server per snapshot name, its tools in corpus order."""
    tools: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        tool: dict[str, Any] = {"name": row["name"], "description": row["description"]}
        if row["input_schema"] is not None:
            tool["inputSchema"] = row["input_schema"]
        tools[snapshot_name(row)].append(tool)
    return {name: ServerSnapshot(name=name, source="tools-json", tools=tuple(ts), listed=True)
            for name, ts in tools.items()}


def flagged_rows(rows: Sequence[Row], findings: Iterable[Finding]) -> dict[str, set[str]]:
    """Row id -> the check ids that flagged it."""
    by_tool: dict[tuple[str, str], list[str]] = defaultdict(list)
    by_server: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_tool[(snapshot_name(row), row["name"])].append(row["id"])
        by_server[snapshot_name(row)].append(row["id"])
    out: dict[str, set[str]] = defaultdict(set)
    for finding in findings:
        loc = finding.location
        if loc.server is None:
            continue
        ids = by_tool.get((loc.server, loc.name or ""), []) if loc.kind == "tool" else by_server.get(loc.server, [])
        for row_id in ids:
            out[row_id].add(finding.check)
    return out


def pin(servers: Iterable[ServerSnapshot]) -> Lockfile:
    """A lockfile that pins ``servers`` exactly as they are listed."""
    return Lockfile(path="<corpus>", servers={
        s.name: PinnedServer(command=None, url=None, definitions=definitions_of(s)) for s in servers if s.name})


def run_agent(servers: Sequence[ServerSnapshot], lockfile: Lockfile | None = None, with_text: bool = False
              ) -> list[Finding]:
    """The cross-server checks' findings for one agent, and the text checks' too when ``with_text``."""
    scan = ScanInput(servers=tuple(servers), lockfile=lockfile)
    found = list(shadowing.run(scan))
    if with_text:
        found.extend(poisoning.run(scan))
    return found


def clean_servers(rows: Iterable[Row], servers: Mapping[str, ServerSnapshot]) -> list[ServerSnapshot]:
    return [servers[n] for n in dict.fromkeys(snapshot_name(r) for r in rows if r["attack"] is None)]


def report(title: str, rows: Sequence[Row], flagged: Mapping[str, set[str]]) -> dict[str, Any]:
    """Print caught/total per (source, attack) and benign flagged/total per source, with the checks."""
    totals: Counter[tuple[str, str]] = Counter()
    hits: Counter[tuple[str, str]] = Counter()
    checks: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for row in rows:
        key = (row["source"], row["attack"] or "benign")
        totals[key] += 1
        found = flagged.get(row["id"], set())
        if found:
            hits[key] += 1
            checks[key].update(found)
    print(title)
    figures: dict[str, Any] = {}
    for key in sorted(totals, key=lambda k: (k[0], k[1] == "benign", k[1])):
        what = "benign flagged" if key[1] == "benign" else "caught"
        by_check = ", ".join(f"{c} {n}" for c, n in sorted(checks[key].items()))
        print(f"  {key[0]:<13} {key[1]:<48} {what:>14} {hits[key]:>3}/{totals[key]:<3}"
              + (f"  ({by_check})" if by_check else ""))
        figures[f"{key[0]}/{key[1]}"] = {"flagged": hits[key], "total": totals[key], "checks": dict(checks[key])}
    malicious = [r for r in rows if r["label"] == "malicious"]
    benign = [r for r in rows if r["label"] == "benign"]
    caught = sum(1 for r in malicious if flagged.get(r["id"]))
    false = sum(1 for r in benign if flagged.get(r["id"]))
    print(f"  all: malicious caught {caught}/{len(malicious)}, benign flagged {false}/{len(benign)}")
    return figures


def measure_grouped(corpora: Path = DEFAULT_CORPORA, pinned: bool = False, with_text: bool = False
                    ) -> dict[str, Any]:
    """Each (server, attack) group is a server; all servers of one source are one agent."""
    rows = load(corpora)
    flagged: dict[str, set[str]] = defaultdict(set)
    for source in sorted({r["source"] for r in rows}):
        mine = [r for r in rows if r["source"] == source]
        servers = snapshots(mine)
        lockfile = pin(clean_servers(mine, servers)) if pinned else None
        for row_id, checks in flagged_rows(mine, run_agent(list(servers.values()), lockfile, with_text)).items():
            flagged[row_id] |= checks
    return report("grouped: one agent per source" + (", clean servers pinned" if pinned else ""), rows, flagged)


def measure_one_variant(corpora: Path = DEFAULT_CORPORA, pinned: bool = False, with_text: bool = False
                        ) -> dict[str, Any]:
    """Each attack variant in an agent with the clean servers of its source, and no other variant."""
    rows = load(corpora)
    flagged: dict[str, set[str]] = defaultdict(set)
    for source in sorted({r["source"] for r in rows}):
        mine = [r for r in rows if r["source"] == source]
        servers = snapshots(mine)
        clean = clean_servers(mine, servers)
        lockfile = pin(clean) if pinned else None
        variants = [s for name, s in servers.items() if all(c.name != name for c in clean)]
        for agent in [[*clean, v] for v in variants] or [clean]:
            names = {s.name for s in agent}
            group = [r for r in mine if snapshot_name(r) in names]
            for row_id, checks in flagged_rows(group, run_agent(agent, lockfile, with_text)).items():
                flagged[row_id] |= checks
    title = "one variant at a time: the clean servers of a source plus one attack variant"
    return report(title + (", clean servers pinned" if pinned else ""), rows, flagged)


def measure_clean(corpora: Path = DEFAULT_CORPORA, with_text: bool = False) -> dict[str, Any]:
    """Only the benign servers of each source, as one agent: what the checks flag with no impostor present."""
    rows = [r for r in load(corpora) if r["label"] == "benign"]
    flagged: dict[str, set[str]] = defaultdict(set)
    for source in sorted({r["source"] for r in rows}):
        mine = [r for r in rows if r["source"] == source]
        found = run_agent(list(snapshots(mine).values()), with_text=with_text)
        for row_id, checks in flagged_rows(mine, found).items():
            flagged[row_id] |= checks
    return report("clean: the benign servers of each source only", rows, flagged)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    parser.add_argument("--pinned", action="store_true",
                        help="also measure with a lockfile that pins the clean servers of each source")
    parser.add_argument("--with-text", action="store_true",
                        help="run the text checks (tool-poisoning, suspicious-parameter) in the same scans")
    args = parser.parse_args(argv)
    text = args.with_text
    measure_grouped(args.corpora, with_text=text)
    print()
    measure_one_variant(args.corpora, with_text=text)
    print()
    measure_clean(args.corpora, with_text=text)
    if args.pinned:
        print()
        measure_grouped(args.corpora, pinned=True, with_text=text)
        print()
        measure_one_variant(args.corpora, pinned=True, with_text=text)


if __name__ == "__main__":
    main()
