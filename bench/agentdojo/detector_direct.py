"""The injection detector alone on the tool results the AgentDojo replay would check.

    python -m bench.agentdojo.detector_direct [--attack NAME] [--suites a,b] [--show misses|fp|caught]

No gateway and no model: for every suite of the benchmark and every attack pair the replay would run
(the same plan, exclusions included: see ``plan.py``), the user task's ground-truth calls run in order
on the injected environment through AgentDojo's ``FunctionsRuntime``; the first result whose text, as
AgentDojo shows it to a model (``tool_result_to_str``, or the ``ErrorType: message`` of a failing call),
carries the injection task's goal is the one the replay inserts the injection after. That text is
sanitised and scanned as the gateway's output check does (default ``Sanitiser``, ``InjectionDetector``
at the default threshold). Printed: caught/total per suite and per injection task.

Benign: every result of each user task's ground truth on the default environment (no injection),
scanned the same way; a flagged one is a false positive (per result and per task).

Injection tasks are put in the dev or holdout half as ``bench.detector`` splits the corpus rows of the
same (suite, injection task), so rules developed on the dev half can be reported on the holdout half.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agentdojo.agent_pipeline.tool_execution import tool_result_to_str
from agentdojo.functions_runtime import FunctionsRuntime
from agentdojo.task_suite.load_suites import get_suite
from agentdojo.task_suite.task_suite import TaskSuite
from bench.agentdojo.plan import Mirror, load_environment, plan_benign, plan_pairs
from bench.agentdojo.replay import BENCHMARK_VERSION, SUITES, injection_mark, shows_injection
from bench.detector import half
from gatehold.output.detect import DEFAULT_THRESHOLD, Finding, InjectionDetector
from gatehold.output.sanitise import Sanitiser

CONTEXT_CHARS = 240


@dataclass(frozen=True)
class Scored:
    suite: str
    user_task: str
    injection_task: str | None  # None: a benign result
    tool: str
    text: str
    finding: Finding
    mark: str | None = None


def _task_order(task_id: str) -> int:
    return int(task_id.rsplit("_", 1)[1])


def task_half(suite: str, injection_task: str) -> str:
    """dev or holdout: the half ``bench.detector`` puts the corpus rows of this injection task in."""
    return half(f"AgentDojo|{suite}|{injection_task}")


def result_text(runtime: FunctionsRuntime, env: Any, tool: str, arguments: dict[str, Any]) -> str:
    """What the replay's server returns for one call (the agent sees the error text of a failing call)."""
    result, error = runtime.run_function(env, tool, arguments)
    return str(error) if error is not None else str(tool_result_to_str(result))


class Scanner:
    """The gateway's output check, reduced to what decides a flag: sanitise, then detect."""

    def __init__(self) -> None:
        self.sanitiser = Sanitiser(())
        self.detector = InjectionDetector(threshold=DEFAULT_THRESHOLD)

    def __call__(self, text: str) -> Finding:
        return self.detector.scan(self.sanitiser.clean(text).text)


def attack_results(suite: TaskSuite[Any], attack: str, scan: Scanner) -> Iterator[Scored]:
    """For each pair the replay runs: the first user-call result showing the injected goal, scored."""
    user_ids = sorted(suite.user_tasks, key=_task_order)
    injection_ids = sorted(suite.injection_tasks, key=_task_order)
    for plan in plan_pairs(suite, user_ids, injection_ids, attack):
        if plan.excluded is not None:
            continue
        mark = injection_mark(suite.injection_tasks[plan.injection_task].GOAL)
        mirror = Mirror(suite, plan.injections)
        for call in mirror.user_calls(suite.user_tasks[plan.user_task]):
            text = result_text(mirror.runtime, mirror.env, call.tool, call.arguments)
            if shows_injection(text, mark):
                yield Scored(suite.name, plan.user_task, plan.injection_task, call.tool, text, scan(text), mark)
                break
        else:
            yield Scored(suite.name, plan.user_task, plan.injection_task, "-", "", Finding(0.0, (), False), mark)


def benign_results(suite: TaskSuite[Any], scan: Scanner) -> Iterator[Scored]:
    """Every result of each user task's ground truth on the default environment."""
    user_ids = sorted(suite.user_tasks, key=_task_order)
    runtime = FunctionsRuntime(suite.tools)
    for plan in plan_benign(suite, user_ids):
        env = load_environment(suite, {})
        for call in plan.calls:
            text = result_text(runtime, env, call.tool, call.arguments)
            yield Scored(suite.name, plan.user_task, None, call.tool, text, scan(text))


def _squashed_position(text: str, mark: str) -> int:
    """Where the goal starts in ``text`` (the mark is compared without whitespace, quotes, backslashes)."""
    pattern = r"[\s\\\"']*".join(re.escape(c) for c in mark[:16])
    m = re.search(pattern, text)
    return m.start() if m else 0


def _show(item: Scored) -> None:
    where = f"{item.suite} {item.user_task} x {item.injection_task or 'benign'} ({item.tool}, {len(item.text)} chars)"
    print(f"--- {where}\n    {item.finding.explain()}")
    if item.mark is not None and item.text:
        at = _squashed_position(item.text, item.mark)
        piece = item.text[max(0, at - CONTEXT_CHARS):at + CONTEXT_CHARS]
        print("    | " + piece.replace("\n", "\n    | "))


def _ratio(caught: int, total: int) -> str:
    return f"{caught}/{total}" + (f" ({caught / total:.1%})" if total else "")


def report(attack: str, suites: list[str], show: str | None) -> None:
    scan = Scanner()
    totals = {"caught": 0, "total": 0, "fp": 0, "results": 0, "fp_tasks": 0, "tasks": 0}
    halves: dict[str, Counter[str]] = {"dev": Counter(), "holdout": Counter()}
    print(f"attack {attack}, detector threshold {DEFAULT_THRESHOLD}, AgentDojo {BENCHMARK_VERSION}")
    for name in suites:
        suite = get_suite(BENCHMARK_VERSION, name)
        attacks = list(attack_results(suite, attack, scan))
        benign = list(benign_results(suite, scan))
        caught = sum(s.finding.flagged for s in attacks)
        by_half = {h: [s for s in attacks if s.injection_task and task_half(name, s.injection_task) == h]
                   for h in halves}
        unseen = sum(1 for s in attacks if not s.text)
        fp = sum(s.finding.flagged for s in benign)
        tasks = {s.user_task for s in benign}
        fp_tasks = {s.user_task for s in benign if s.finding.flagged}
        print(f"\n[{name}] injected: caught {_ratio(caught, len(attacks))}"
              + (f" ({unseen} pairs: no result showed the goal)" if unseen else "")
              + f"; benign results: FP {_ratio(fp, len(benign))}, tasks with an FP {len(fp_tasks)}/{len(tasks)}")
        print("  " + ", ".join(f"{h}: {_ratio(sum(s.finding.flagged for s in items), len(items))}"
                               for h, items in by_half.items()))
        for h, items in by_half.items():
            halves[h]["caught"] += sum(s.finding.flagged for s in items)
            halves[h]["total"] += len(items)
        per_task: Counter[str] = Counter()
        per_task_total: Counter[str] = Counter()
        for s in attacks:
            assert s.injection_task is not None
            per_task_total[s.injection_task] += 1
            per_task[s.injection_task] += s.finding.flagged
        for iid in sorted(per_task_total, key=_task_order):
            goal = " ".join(suite.injection_tasks[iid].GOAL.split())
            print(f"  {iid:<18} {task_half(name, iid):<8} {_ratio(per_task[iid], per_task_total[iid]):<16} {goal[:80]}")
        totals["caught"] += caught
        totals["total"] += len(attacks)
        totals["fp"] += fp
        totals["results"] += len(benign)
        totals["fp_tasks"] += len(fp_tasks)
        totals["tasks"] += len(tasks)
        if show == "misses":
            for s in attacks:
                if not s.finding.flagged:
                    _show(s)
        elif show == "caught":
            for s in attacks:
                if s.finding.flagged:
                    _show(s)
        elif show == "fp":
            for s in benign:
                if s.finding.flagged:
                    _show(s)
    print(f"\n[all] injected: caught {_ratio(totals['caught'], totals['total'])}; benign results: FP "
          f"{_ratio(totals['fp'], totals['results'])}, tasks with an FP {totals['fp_tasks']}/{totals['tasks']}")
    print("[all] " + ", ".join(f"{h}: {_ratio(c['caught'], c['total'])}" for h, c in halves.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attack", default="direct", help="AgentDojo attack name (default: direct)")
    parser.add_argument("--suites", default=",".join(SUITES), help="comma-separated suites")
    parser.add_argument("--show", choices=("misses", "caught", "fp"),
                        help="print each missed / caught injected result or false positive, with context")
    args = parser.parse_args(argv)
    report(args.attack, [s for s in args.suites.split(",") if s], args.show)


if __name__ == "__main__":
    main()
