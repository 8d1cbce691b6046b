"""Benchmark: a client calling an MCP tool directly vs through Gatehold with its full pipeline on.

Pipeline in the gateway runs: API key auth, authorise, strict JSON Schema validation, a
``path_within`` argument constraint, output bounds, and the hash-chained audit trail written to
SQLite by the group-commit writer. Two upstreams: the bundled stdio demo server (a child of the
gateway) and a minimal Streamable HTTP server (``bench/http_upstream.py``).

For each upstream and each path (direct, via Gatehold) the run makes, after a warm-up:
``--calls`` sequential calls (latency p50/p99, CPU per call of each process from /proc), then
``--calls`` calls from ``--concurrency`` concurrent clients (throughput). The gateway runs as its
own process, so its CPU per call is (utime+stime delta) / calls of that process alone, its audit
writer thread included and its stdio child excluded.

Two gateway variants (``--variant``, default both): as shipped (``python -m gatehold serve``), and
the same with one fix, TCP_NODELAY on accepted connections (``bench/serve_nodelay.py``; see there
and BENCHMARKS.md). The HTTP client is httpx.AsyncClient (default) or, with ``--http-client raw``,
a minimal HTTP/1.1 client that costs the client far less CPU.

    python bench/run.py [--calls 2000] [--concurrency 16] [--warmup 200] [--variant both|shipped|nodelay]
                        [--http-client httpx|raw] [--only stdio|http] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import yaml
from clients import BenchError, Call, HttpClient, RawHttpClient, StdioClient, concurrent, sequential
from proc import children, cpu_seconds, peak_rss_mib, thread_cpu_seconds

from gatehold.auth.apikeys import new_api_key

BENCH = Path(__file__).resolve().parent
TARGETS_MS = {"stdio": 1.0, "http": 2.0}  # gateway CPU per call, audit on
START_TIMEOUT = 60.0
ARGS = {"path": "README.txt"}


# -- processes ------------------------------------------------------------------------------------

async def _read_prefixed(proc: asyncio.subprocess.Process, prefix: str, stderr: Path) -> str:
    """The rest of the first stdout line starting with ``prefix``; bounded in time and lines."""
    assert proc.stdout is not None
    async with asyncio.timeout(START_TIMEOUT):
        for _ in range(200):
            line = await proc.stdout.readline()
            if not line:
                break
            text = line.decode(errors="replace").strip()
            if text.startswith(prefix):
                return text[len(prefix):].strip()
    await proc.wait()
    raise BenchError(f"process exited (status {proc.returncode}) before printing {prefix!r}:\n"
                     f"{stderr.read_text(errors='replace')[-3000:]}")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 15.0)
    except TimeoutError:
        proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def process(argv: list[str], prefix: str, stderr: Path,
                  cwd: str | None = None) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """Start ``argv``, wait for its ``prefix`` line, yield (process, rest of line); always stop it."""
    with stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=err)
        try:
            yield proc, await _read_prefixed(proc, prefix, stderr)
        finally:
            await _stop(proc)


VARIANTS = {
    "gateway": "Gatehold as shipped (`python -m gatehold serve`)",
    "gateway_nodelay": "Gatehold + TCP_NODELAY fix (`bench/serve_nodelay.py serve`)",
}


def gateway_argv(config: Path, variant: str) -> list[str]:
    entry = ["-m", "gatehold"] if variant == "gateway" else [str(BENCH / "serve_nodelay.py")]
    return [sys.executable, *entry, "serve", "--config", str(config), "--port", "0"]


def write_config(tmp: Path, name: str, upstream: dict[str, Any], root: Path, key_hash: str) -> Path:
    data = {
        "gateway": {"listen": "127.0.0.1:0"},
        "audit": {"sqlite": str(tmp / f"{name}-audit.db")},
        "auth": {"api_keys": [{"id": "bench", "hash": key_hash, "principal": "bench", "roles": ["bench"]}]},
        "upstreams": {"bench": upstream},
        "roles": {"bench": {"tools": {"bench.read_file": {
            "args": {"path": {"path_within": str(root)}},
            "strict": True,
            "max_result_bytes": 65536,
            "on_oversize": "truncate",
        }}}},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def audit_rows(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM audit").fetchone()[0])


# -- measuring ------------------------------------------------------------------------------------

def _snapshot(gateway: int | None, upstream: int | None) -> dict[str, float | None]:
    snap: dict[str, float | None] = {
        "wall": time.perf_counter(), "client": time.process_time(),
        "gateway": cpu_seconds(gateway) if gateway else None,
        "upstream": cpu_seconds(upstream) if upstream else None,
        "gateway_main_thread": None, "gateway_other_threads": None}
    if gateway:
        threads = thread_cpu_seconds(gateway)
        snap["gateway_main_thread"] = threads.pop(gateway, 0.0)
        snap["gateway_other_threads"] = sum(threads.values())  # the audit writer, executor threads
    return snap


def _per_call_ms(before: dict[str, float | None], after: dict[str, float | None], key: str,
                 n: int) -> float | None:
    a, b = before[key], after[key]
    return None if a is None or b is None else (b - a) * 1000 / n


def _percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[max(0, math.ceil(p * len(sorted_values)) - 1)]


async def measure(call: Call, *, calls: int, warmup: int, concurrency: int,
                  gateway: int | None, upstream: int | None) -> dict[str, Any]:
    await sequential(call, warmup)
    s0 = _snapshot(gateway, upstream)
    latencies = sorted(await sequential(call, calls))
    s1 = _snapshot(gateway, upstream)
    await concurrent(call, concurrency * 8, concurrency)  # open the pooled connections
    s2 = _snapshot(gateway, upstream)
    wall = await concurrent(call, calls, concurrency)
    s3 = _snapshot(gateway, upstream)
    out: dict[str, Any] = {
        "latency_p50_ms": _percentile(latencies, 0.50) * 1000,
        "latency_p99_ms": _percentile(latencies, 0.99) * 1000,
        "latency_mean_ms": sum(latencies) / len(latencies) * 1000,
        "throughput_calls_per_s": calls / wall,
    }
    for key in ("gateway", "gateway_main_thread", "gateway_other_threads", "upstream", "client"):
        out[f"{key}_cpu_ms_per_call_sequential"] = _per_call_ms(s0, s1, key, calls)
        out[f"{key}_cpu_ms_per_call_concurrent"] = _per_call_ms(s2, s3, key, calls)
        # busy share of one core while 16 clients ran: 1.0 means a whole core
        per_call = out[f"{key}_cpu_ms_per_call_concurrent"]
        out[f"{key}_cores_busy_concurrent"] = None if per_call is None else per_call * calls / 1000 / wall
    if gateway:
        out["gateway_peak_rss_mib"] = peak_rss_mib(gateway)
    return out


async def through_gateway(tmp: Path, name: str, variant: str, upstream: dict[str, Any], root: Path,
                          key: str, key_hash: str, opts: argparse.Namespace,
                          upstream_pid: int | None = None) -> dict[str, Any]:
    """Measure one gateway process in front of ``upstream`` (its stdio child found when not given)."""
    tag = f"{name}-{variant}"
    config = write_config(tmp, tag, upstream, root, key_hash)
    async with process(gateway_argv(config, variant), "URL: ", tmp / f"{tag}.stderr", cwd=str(tmp)) as (gw, url):
        if upstream_pid is None:
            kids = children(gw.pid)
            upstream_pid = kids[0] if len(kids) == 1 else None
        client = opts.http_client(url, "bench.read_file", ARGS, key=key, pool=opts.concurrency + 4)
        try:
            out = await measure(client.call, calls=opts.calls, warmup=opts.warmup, concurrency=opts.concurrency,
                                gateway=gw.pid, upstream=upstream_pid)
        finally:
            await client.aclose()
    out["audit_records"] = audit_rows(tmp / f"{tag}-audit.db")  # written by the gateway's group commit
    return out


async def bench_stdio(tmp: Path, root: Path, key: str, key_hash: str, opts: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    server = [sys.executable, "-m", "gatehold.demo.server", "--root", str(root)]
    direct = await StdioClient.start(server, "read_file", ARGS, cwd=str(root))
    try:
        results["direct"] = await measure(direct.call, calls=opts.calls, warmup=opts.warmup,
                                          concurrency=opts.concurrency, gateway=None, upstream=direct.pid)
    finally:
        await direct.aclose()
    for variant in opts.variants:
        results[variant] = await through_gateway(tmp, "stdio", variant, {"command": server, "cwd": str(root)},
                                                 root, key, key_hash, opts)
    return results


async def bench_http(tmp: Path, root: Path, key: str, key_hash: str, opts: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    upstream_argv = [sys.executable, str(BENCH / "http_upstream.py")]
    async with process(upstream_argv, "PORT: ", tmp / "http-upstream.stderr") as (up, port):
        upstream_url = f"http://127.0.0.1:{port}/mcp"
        direct = opts.http_client(upstream_url, "read_file", ARGS, key=None, pool=opts.concurrency + 4)
        try:
            results["direct"] = await measure(direct.call, calls=opts.calls, warmup=opts.warmup,
                                              concurrency=opts.concurrency, gateway=None, upstream=up.pid)
        finally:
            await direct.aclose()
        for variant in opts.variants:
            results[variant] = await through_gateway(tmp, "http", variant, {"url": upstream_url}, root, key,
                                                     key_hash, opts, upstream_pid=up.pid)
    return results


# -- reporting ------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "cpu_model": model,
            "python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform(), "clock_ticks_per_s": os.sysconf("SC_CLK_TCK")}


def _f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def table(results: dict[str, Any]) -> str:
    variants = [v for v in VARIANTS if any(v in results.get(k, {}) for k in ("stdio", "http"))]
    head = "| upstream | metric | direct |"
    rule = "|---|---|---:|"
    for variant in variants:
        head += f" {'Gatehold' if variant == 'gateway' else 'Gatehold + NODELAY fix'} | added |"
        rule += "---:|---:|"
    rows = [head, rule]
    clients = results["settings"]["concurrency"]
    for kind in ("stdio", "http"):
        if kind not in results:
            continue
        direct = results[kind]["direct"]
        label = "stdio" if kind == "stdio" else "HTTP"

        def row(metric: str, key: str, digits: int, added: str = "",
                direct: dict[str, Any] = direct, kind: str = kind, label: str = label) -> None:
            line = f"| {label} | {metric} | {_f(direct.get(key), digits)} |"
            for variant in variants:
                got = results[kind][variant].get(key)
                diff = ""
                if added == "+" and got is not None:
                    diff = f"+{got - direct[key]:.2f} ms"
                elif added == "%" and got is not None:
                    diff = f"{got / direct[key] * 100:.0f} % of direct"
                line += f" {_f(got, digits)} | {diff} |"
            rows.append(line)

        row("**gateway CPU / call, 1 client (ms)**", "gateway_cpu_ms_per_call_sequential", 3)
        row("gateway CPU / call, 1 client: threads besides the event loop (ms)",
            "gateway_other_threads_cpu_ms_per_call_sequential", 3)
        row(f"gateway CPU / call, {clients} clients (ms)", "gateway_cpu_ms_per_call_concurrent", 3)
        row("latency p50, 1 client (ms)", "latency_p50_ms", 2, "+")
        row("latency p99, 1 client (ms)", "latency_p99_ms", 2, "+")
        row(f"throughput, {clients} clients (calls/s)", "throughput_calls_per_s", 0, "%")
        row("upstream CPU / call, 1 client (ms)", "upstream_cpu_ms_per_call_sequential", 3)
        row("client CPU / call, 1 client (ms)", "client_cpu_ms_per_call_sequential", 3)
        row("gateway peak RSS, VmHWM (MiB)", "gateway_peak_rss_mib", 1)
    return "\n".join(rows)


def verdicts(results: dict[str, Any]) -> list[str]:
    lines = []
    for kind, target in TARGETS_MS.items():
        for variant, title in VARIANTS.items():
            if variant not in results.get(kind, {}):
                continue
            got = results[kind][variant]["gateway_cpu_ms_per_call_sequential"]
            ok = got <= target
            results[kind][variant]["target_ms"] = target
            results[kind][variant]["target_met"] = ok
            lines.append(f"- {kind} upstream, {title}: gateway CPU {got:.3f} ms/call, target <= {target:.1f} ms: "
                         f"{'MET' if ok else 'MISSED'}")
    return lines


async def main_async(opts: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"settings": {"calls": opts.calls, "concurrency": opts.concurrency,
                                            "warmup": opts.warmup, "only": opts.only,
                                            "variant": opts.variant,
                                            "http_client": opts.http_client_name},
                               "machine": machine()}
    key, key_hash = new_api_key("bench")
    with tempfile.TemporaryDirectory(prefix="gatehold-bench-") as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "files"
        root.mkdir()
        (root / "README.txt").write_text("Welcome to the Gatehold demo. Files here are readable by the agent.\n",
                                         encoding="utf-8")
        if opts.only in (None, "stdio"):
            print("stdio upstream ...", file=sys.stderr, flush=True)
            results["stdio"] = await bench_stdio(tmp, root, key, key_hash, opts)
        if opts.only in (None, "http"):
            print("Streamable HTTP upstream ...", file=sys.stderr, flush=True)
            results["http"] = await bench_http(tmp, root, key, key_hash, opts)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="calls per measurement (default 2000)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured calls first (default 200)")
    parser.add_argument("--only", choices=["stdio", "http"], help="run one upstream kind only")
    parser.add_argument("--variant", choices=["shipped", "nodelay", "both"], default="both",
                        help="gateway as shipped, with the TCP_NODELAY fix (bench/serve_nodelay.py), or both")
    parser.add_argument("--http-client", dest="http_client_name", choices=["httpx", "raw"], default="httpx",
                        help="httpx.AsyncClient (default) or a minimal hand-written HTTP/1.1 client")
    parser.add_argument("--json", dest="json_out", help="also write the numbers to this file")
    opts = parser.parse_args()
    if opts.calls < 1 or opts.concurrency < 1 or opts.warmup < 1:
        parser.error("--calls, --concurrency and --warmup must be positive")
    opts.http_client = HttpClient if opts.http_client_name == "httpx" else RawHttpClient
    opts.variants = {"shipped": ["gateway"], "nodelay": ["gateway_nodelay"], "both": list(VARIANTS)}[opts.variant]
    started = time.perf_counter()
    results = asyncio.run(main_async(opts))
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    print(table(results))
    print()
    print("\n".join(verdicts(results)))
    m = results["machine"]
    print(f"\n{opts.calls} calls per measurement, {opts.concurrency} concurrent clients, {opts.warmup} warm-up, "
          f"HTTP client {opts.http_client_name}; "
          f"{m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}; {results['elapsed_s']} s")
    if opts.json_out:
        Path(opts.json_out).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
