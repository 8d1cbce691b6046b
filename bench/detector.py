"""Recall and false positives of the prompt-injection detector on the labelled corpora.

    python -m bench.detector [--corpora DIR] [--json] [--show dev|holdout|all]

DIR defaults to ``../shared/corpora`` relative to the repository root and holds
``tool_outputs.jsonl`` and ``tool_descriptions.jsonl`` (see that folder's README).

Each corpus is split into a dev half and a holdout half by group, deterministically: a row's group
key is hashed with SHA-256 and the first byte's parity picks the half. Groups keep variants of one
upstream template or tool on one side:

* outputs: AgentDojo injections by (suite, injection task), so the goal wording of one injection task
  never appears on both sides (the six attack templates do); BIPIA injections by attack category
  (the plain and the base64 form of an attack stay together); MSB by attack family (false_error,
  simulated_user), by server for tool_transfer, and by document for retrieval_injection together
  with the clean document; MCPSecBench as one group; benign AgentDojo and BIPIA rows one per group.
* descriptions: by (source family, server, base tool name), where MSB-template rows count as MSB
  (they are the clean MSB tools with a template appended), the ``_v1`` suffix and trailing ``_`` are
  dropped from names and servers, so a clean tool, its name-overlap twin and its templated variants
  stay together.

Description rows whose attack has no textual signal (``name_overlap``, ``tool_transfer``,
``name_squatting``) are reported separately: a text detector cannot see them, so recall is given both
over all malicious rows and over the rows in scope for text rules.

Rules were developed looking only at the dev half; the holdout half is for reporting.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gatehold.output.detect import Finding, InjectionDetector

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPORA = ROOT.parent / "shared" / "corpora"
HALVES = ("dev", "holdout", "all")
OUT_OF_SCOPE = frozenset({"name_overlap", "tool_transfer", "name_squatting"})


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def output_group(row: dict[str, Any]) -> str:
    rid, source = row["id"], row["source"]
    if source == "AgentDojo":
        m = re.match(r"agentdojo-(\w+?)-.+-(injection_task_\d+)$", rid)
        return f"AgentDojo|{m[1]}|{m[2]}" if m else f"AgentDojo|{rid}"
    if source == "BIPIA":
        m = re.match(r"bipia-(?:test|train)-([a-z_]+?)-\d", rid)
        return f"BIPIA|{m[1]}" if m else f"BIPIA|{rid}"
    if source == "MSB":
        for pattern, fmt in ((r"msb-(false_error|simulated_user)-", "MSB|{}"),
                             (r"msb-tool_transfer-([^-]+)-", "MSB|tool_transfer|{}"),
                             (r"msb-(?:retrieval_injection|document)-([^-]+)-", "MSB|document|{}")):
            m = re.match(pattern, rid)
            if m:
                return fmt.format(m[1])
        return f"MSB|{rid}"
    return str(source)


def description_group(row: dict[str, Any]) -> str:
    source = "MSB" if str(row["source"]).startswith("MSB") else str(row["source"])
    server = str(row["server"]).rstrip("_")
    name = re.sub(r"_v1$", "", str(row["name"])).rstrip("_")
    return f"{source}|{server}|{name}"


def half(key: str) -> str:
    return "dev" if hashlib.sha256(key.encode()).digest()[0] % 2 == 0 else "holdout"


def as_definition(row: dict[str, Any]) -> dict[str, Any]:
    """A corpus row as an MCP tool definition (``tools/list`` shape)."""
    definition: dict[str, Any] = {"name": row["name"], "description": row.get("description") or ""}
    definition["inputSchema"] = row.get("input_schema") or {"type": "object", "properties": {}}
    return definition


def _stats(rows: Iterable[tuple[dict[str, Any], Finding]], positive: str) -> dict[str, Any]:
    caught = total = fp = benign = 0
    for row, finding in rows:
        if row["label"] == positive:
            total += 1
            caught += finding.flagged
        else:
            benign += 1
            fp += finding.flagged
    return {"caught": caught, "total": total, "recall": caught / total if total else None,
            "false_positives": fp, "benign": benign, "fp_rate": fp / benign if benign else None}


def _report(scored: list[tuple[dict[str, Any], Finding, str]], positive: str,
            in_scope: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for which in HALVES:
        rows = [(r, f) for r, f, h in scored if which in ("all", h)]
        entry: dict[str, Any] = {"overall": _stats(rows, positive), "by_source": {}, "by_attack": {}}
        for source in sorted({r["source"] for r, _ in rows}):
            entry["by_source"][source] = _stats([(r, f) for r, f in rows if r["source"] == source], positive)
        for attack in sorted({str(r["attack"]) for r, _ in rows if r["label"] == positive}):
            entry["by_attack"][attack] = _stats([(r, f) for r, f in rows if str(r["attack"]) == attack], positive)
        if in_scope is not None:
            entry["in_scope"] = _stats([(r, f) for r, f in rows if in_scope(r)], positive)
            skipped: dict[str, dict[str, int]] = {}
            for r, f in rows:
                if not in_scope(r):
                    slot = skipped.setdefault(r["attack"], {"caught": 0, "total": 0})
                    slot["total"] += 1
                    slot["caught"] += f.flagged
            entry["out_of_scope"] = skipped
        out[which] = entry
    return out


def _timed(scan: Callable[[Any], Finding], items: list[Any]) -> tuple[list[Finding], float]:
    """Findings, and the mean CPU time per scan in µs (``time.process_time``: other processes on the machine
    do not inflate it)."""
    for item in items[:50]:
        scan(item)  # warm up caches
    start = time.process_time()
    findings = [scan(item) for item in items]
    return findings, (time.process_time() - start) / max(1, len(items)) * 1e6


Scored = list[tuple[dict[str, Any], Finding, str]]  # (row, finding, half)


def score(corpora: Path, detector: InjectionDetector) -> tuple[Scored, Scored, dict[str, Any]]:
    """Every row of both corpora with its finding and its half, and the timing figures."""
    outputs = load(corpora / "tool_outputs.jsonl")
    descriptions = load(corpora / "tool_descriptions.jsonl")

    out_findings, out_us = _timed(lambda r: detector.scan(r["text"]), outputs)
    desc_findings, desc_us = _timed(lambda r: detector.scan_metadata(as_definition(r)), descriptions)

    # 10 KB texts cut from the benign outputs laid end to end (e-mails, documents, web pages)
    benign_text = "\n\n".join(r["text"] for r in outputs if r["label"] == "benign")
    ten_kb = [benign_text[i:i + 10_000] for i in range(0, len(benign_text) - 10_000, 10_000)]
    _, ten_kb_us = _timed(detector.scan, ten_kb * 5)

    out_scored = [(r, f, half(output_group(r))) for r, f in zip(outputs, out_findings, strict=True)]
    desc_scored = [(r, f, half(description_group(r))) for r, f in zip(descriptions, desc_findings, strict=True)]
    timing = {"outputs_mean_us": out_us, "descriptions_mean_us": desc_us, "benign_10kb_mean_us": ten_kb_us,
              "benign_10kb_samples": len(ten_kb)}
    return out_scored, desc_scored, timing


def measure(corpora: Path, detector: InjectionDetector | None = None) -> dict[str, Any]:
    """Run the detector over both corpora; return recall/false-positive figures and timing.

    ``{"threshold", "outputs": {half: {"overall", "by_source", "by_attack"}}, "descriptions": {half:
    {"overall", "by_source", "by_attack", "in_scope", "out_of_scope"}}, "timing", "rows"}`` where half is
    dev, holdout or all and each figure is ``{"caught", "total", "recall", "false_positives", "benign",
    "fp_rate"}`` (by_attack: malicious rows of that attack only). Timing is mean CPU µs per scan.
    """
    detector = detector or InjectionDetector()
    out_scored, desc_scored, timing = score(corpora, detector)
    return _summarise(detector, out_scored, desc_scored, timing)


def _summarise(detector: InjectionDetector, out_scored: Scored, desc_scored: Scored,
               timing: dict[str, Any]) -> dict[str, Any]:
    return {
        "threshold": detector.threshold,
        "outputs": _report(out_scored, "injection"),
        "descriptions": _report(desc_scored, "malicious", in_scope=lambda r: r["attack"] not in OUT_OF_SCOPE),
        "timing": timing,
        "rows": {"outputs": {h: sum(1 for *_, x in out_scored if x == h) for h in HALVES[:2]},
                 "descriptions": {h: sum(1 for *_, x in desc_scored if x == h) for h in HALVES[:2]}},
    }


def _fmt(stats: dict[str, Any]) -> str:
    recall = f"{stats['caught']}/{stats['total']}"
    if stats["total"]:
        recall += f" ({stats['recall']:.1%})"
    fp = f"{stats['false_positives']}/{stats['benign']}"
    if stats["benign"]:
        fp += f" ({stats['fp_rate']:.1%})"
    return f"caught {recall:<18} FP {fp}"


def _print(results: dict[str, Any]) -> None:
    print(f"threshold {results['threshold']}")
    for corpus in ("outputs", "descriptions"):
        print(f"\n== {corpus} (rows: dev {results['rows'][corpus]['dev']}, "
              f"holdout {results['rows'][corpus]['holdout']})")
        for which in HALVES:
            entry = results[corpus][which]
            print(f"  [{which}] overall          {_fmt(entry['overall'])}")
            for source, stats in entry["by_source"].items():
                print(f"  [{which}]   {source:<14} {_fmt(stats)}")
            if "in_scope" in entry:
                print(f"  [{which}] in scope for text {_fmt(entry['in_scope'])}")
                skipped = ", ".join(f"{attack} {v['caught']}/{v['total']}"
                                    for attack, v in sorted(entry["out_of_scope"].items()))
                print(f"  [{which}] out of scope (no textual signal; caught/total): {skipped}")
    t = results["timing"]
    print(f"\nmean CPU µs per scan: outputs {t['outputs_mean_us']:.0f}, descriptions "
          f"{t['descriptions_mean_us']:.0f}, 10 KB benign text {t['benign_10kb_mean_us']:.0f} "
          f"({t['benign_10kb_samples']} texts)")


def _show(scored: dict[str, Scored], which: str) -> None:
    """Misses and false positives of one half, with the detector's explanation."""
    for corpus, positive in (("outputs", "injection"), ("descriptions", "malicious")):
        print(f"\n== {corpus}: {which} misses and false positives")
        for row, finding, h in scored[corpus]:
            if which not in ("all", h) or (row["label"] == positive) == finding.flagged:
                continue
            if corpus == "descriptions" and row["attack"] in OUT_OF_SCOPE:
                continue
            kind = "MISS" if row["label"] == positive else "FP"
            print(f"{kind:<4} {row['id']}: {finding.explain()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--show", choices=HALVES, help="list misses and false positives of this half")
    opts = parser.parse_args()
    detector = InjectionDetector()
    out_scored, desc_scored, timing = score(opts.corpora, detector)
    if opts.show:
        _show({"outputs": out_scored, "descriptions": desc_scored}, opts.show)
    results = _summarise(detector, out_scored, desc_scored, timing)
    if opts.json:
        print(json.dumps(results, indent=2))
    else:
        _print(results)


if __name__ == "__main__":
    main()
