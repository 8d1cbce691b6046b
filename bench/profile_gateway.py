"""Where the gateway's CPU goes: cProfile of a real ``gatehold serve`` process under the benchmark's load.

The gateway runs in a child process (this script with ``--serve``) under cProfile: its main thread
(the event loop: HTTP front, pipeline, upstream client) and, separately, its audit writer thread
(each batch write). Profiling covers only the measured calls: the parent sends SIGUSR1 after the
warm-up and SIGUSR2 after the last call, then prints the top functions by own time and by
cumulative time. cProfile slows Python code down (roughly 1.5-2x) and exaggerates call-heavy code;
read the ranking, not the absolute numbers.

    python bench/profile_gateway.py --upstream stdio|http [--calls 2000] [--concurrency 1]
                                    [--http-client raw|httpx] [--shipped] [--top 25] [--out DIR]

By default the gateway gets the TCP_NODELAY fix of ``bench/serve_nodelay.py`` so that runs are not
stretched by 40 ms stalls; ``--shipped`` profiles it unpatched (same code paths, but every call
then runs after a 40 ms idle gap, on cold caches).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from clients import HttpClient, RawHttpClient, concurrent, sequential
from proc import cpu_seconds
from run import ARGS, BENCH, process, write_config

from gatehold.auth.apikeys import new_api_key

DUMP_TIMEOUT = 30.0


# -- the child: a gateway under cProfile ------------------------------------------------------------

def serve_profiled(config: str, out: Path, nodelay: bool) -> None:
    if nodelay:
        import serve_nodelay  # noqa: F401 - patches gatehold.cli._bind on import
    from gatehold import cli
    from gatehold.audit.log import AuditLog

    # The main thread on cProfile's own (wall) clock: a Python timer such as time.thread_time triples
    # its overhead there and distorts the ranking more; idle epoll waits are left out of the totals.
    # The writer thread on its own CPU clock: on the wall clock it would be charged for the time it
    # waits for the GIL while the event loop runs, and it makes few calls, so the overhead is small.
    main_prof, writer_prof = cProfile.Profile(), cProfile.Profile(time.thread_time)
    active = threading.Event()
    shipped_write = AuditLog._write

    def profiled_write(self: AuditLog, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if active.is_set():
            return writer_prof.runcall(shipped_write, self, batch)
        return shipped_write(self, batch)

    AuditLog._write = profiled_write  # type: ignore[method-assign]

    def start(_sig: int, _frame: Any) -> None:
        active.set()
        main_prof.enable()

    def stop(_sig: int, _frame: Any) -> None:
        main_prof.disable()
        active.clear()
        main_prof.dump_stats(out / "main.prof")
        writer_prof.dump_stats(out / "writer.prof")
        (out / "done").write_text("ok")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    cli.main(["serve", "--config", config, "--port", "0"], prog_name="gatehold")


# -- micro: gatehold's own code in-process, without sockets, HTTP server or upstream transport -------

TOOL = {"name": "read_file", "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}},
                                             "required": ["path"]}}
RESULT = {"content": [{"type": "text", "text": "Welcome to the Gatehold demo.\n"}], "isError": False}


class StubUpstream:
    """An upstream client answering at once: what is timed is the gateway's own work."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.protocol_version = "2025-11-25"
        self.server_info: dict[str, Any] = {}
        self.capabilities: dict[str, Any] = {"tools": {}}

    async def start(self) -> None:
        return None

    async def request(self, method: str, params: dict[str, Any] | None, **_: Any) -> dict[str, Any]:
        return {"result": {"tools": [TOOL]}} if method == "tools/list" else {"result": dict(RESULT)}

    async def aclose(self) -> None:
        return None


async def micro(calls: int, warmup: int) -> list[tuple[str, float]]:
    """Main-thread CPU per call (microseconds) of the in-process app and of its parts."""
    import orjson

    from gatehold.auditor import Auditor
    from gatehold.auth.apikeys import ApiKeyAuthenticator
    from gatehold.call import ToolCall
    from gatehold.config import load_config
    from gatehold.front.dispatch import reply_to
    from gatehold.front.http import build_app
    from gatehold.front.jsonrpc import parse_message
    from gatehold.gateway import Exchange, Gateway
    from gatehold.policy.constraints import check_arguments
    from gatehold.policy.schema import SchemaCache
    from gatehold.runtime import build_authenticator, open_audit

    key, key_hash = new_api_key("bench")
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="gatehold-micro-") as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "files"
        root.mkdir()
        (root / "README.txt").write_text("hello\n", encoding="utf-8")
        loaded = load_config(write_config(tmp, "micro", {"command": ["unused"]}, root, key_hash))
        gateway = Gateway(loaded, Auditor(open_audit(loaded)), {"bench": StubUpstream("bench")})  # type: ignore[dict-item]
        await gateway.start()
        auth = ApiKeyAuthenticator(loaded.config.auth.api_keys)
        app = build_app(gateway, build_authenticator(loaded, gateway), loaded.config)
        endpoint = app.state.endpoint
        body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "bench.read_file", "arguments": ARGS,
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}}}})
        headers = [(b"host", b"127.0.0.1:8765"), (b"content-type", b"application/json"),
                   (b"accept", b"application/json, text/event-stream"), (b"content-length", str(len(body)).encode()),
                   (b"mcp-protocol-version", b"2026-07-28"), (b"mcp-method", b"tools/call"),
                   (b"mcp-name", b"bench.read_file"), (b"authorization", f"Bearer {key}".encode())]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/mcp", "raw_path": b"/mcp", "root_path": "", "query_string": b"",
                 "headers": headers, "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8765)}
        never = asyncio.Event()
        sent: list[dict[str, Any]] = []

        def receiver() -> Any:
            first = True

            async def receive() -> dict[str, Any]:
                nonlocal first
                if first:
                    first = False
                    return {"type": "http.request", "body": body, "more_body": False}
                await never.wait()  # no disconnect: the endpoint's watcher is cancelled
                return {"type": "http.disconnect"}
            return receive

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def full_app() -> None:
            await app(dict(scope), receiver(), send)

        async def raw_endpoint() -> None:
            await endpoint(dict(scope), receiver(), send)

        caller = auth.authenticate(f"Bearer {key}")
        params = orjson.loads(body)["params"]

        async def handle() -> None:
            await gateway.handle("tools/call", params, Exchange(caller, "c0ffee", modern=True))

        request = parse_message(body, max_depth=64)

        async def dispatch() -> None:
            await reply_to(gateway, request, Exchange(caller, "c0ffee", modern=True))  # type: ignore[arg-type]

        grants = gateway.grants.for_tool(caller.roles, "bench.read_file")
        constraints = grants[0].tool.args
        schemas = SchemaCache()
        compiled = schemas.compile(TOOL["inputSchema"], strict=True)
        target = gateway.catalog.tools["bench.read_file"].target
        call = ToolCall(caller, "tools/call", target, dict(ARGS), "c0ffee", params)

        async def timed(label: str, fn: Any, is_async: bool) -> None:
            for _ in range(warmup):
                await fn() if is_async else fn()
            gateway.auditor.log.flush()
            start = time.thread_time()
            for _ in range(calls):
                await fn() if is_async else fn()
            rows.append((label, (time.thread_time() - start) * 1e6 / calls))
            gateway.auditor.log.flush()
            sent.clear()

        await timed("Starlette app, whole call (what uvicorn calls)", full_app, True)
        await timed("McpEndpoint alone (no Starlette routing or middleware)", raw_endpoint, True)
        await timed("reply_to: Gateway.handle + the 2026-07-28 result envelope", dispatch, True)
        await timed("Gateway.handle: pipeline + forward (stub) + audit record", handle, True)
        await timed("↳ ApiKeyAuthenticator.authenticate (cached key)", lambda: auth.authenticate(f"Bearer {key}"),
                    False)
        await timed("↳ parse_message (orjson + depth check)", lambda: parse_message(body, max_depth=64), False)
        await timed("↳ SchemaCache.compile, cache hit (orjson sort + sha256 key)",
                    lambda: schemas.compile(TOOL["inputSchema"], strict=True), False)
        await timed("↳ CompiledSchema.errors (jsonschema iter_errors)", lambda: compiled.errors(ARGS), False)
        await timed("↳ check_arguments: path_within (realpath x2)", lambda: check_arguments(ARGS, constraints),
                    False)
        await timed("↳ Auditor.call: event, redaction, to_dict, enqueue", lambda: gateway.auditor.call(
            call, decision="allow", reason="all stages allowed", rule_id="r", outcome="ok", code=None,
            latency_ms=1.0, stages=[["authorise", "allow", "r"]]), False)
        await timed("↳ new_correlation_id (uuid4)", lambda: __import__("gatehold.gateway").gateway.new_correlation_id(),
                    False)
        await gateway.stop()
        gateway.auditor.log.close()
    return rows


# -- the parent: load and report -------------------------------------------------------------------

AREAS = [  # (substring of the source path, area); first match wins
    ("/h11/", "h11: HTTP/1.1 state machine (uvicorn's server unless httptools; httpx's client)"),
    ("/uvicorn/", "uvicorn: ASGI server glue"),
    ("/httptools/", "uvicorn: ASGI server glue"),
    ("/starlette/", "starlette: app, middleware, routing"),
    ("/httpx/", "httpx + httpcore + anyio: upstream HTTP client"),
    ("/httpcore/", "httpx + httpcore + anyio: upstream HTTP client"),
    ("/anyio/", "httpx + httpcore + anyio: upstream HTTP client"),
    ("/h2/", "httpx + httpcore + anyio: upstream HTTP client"),
    ("/sniffio/", "httpx + httpcore + anyio: upstream HTTP client"),
    ("/jsonschema/", "jsonschema: argument validation"),
    ("/referencing/", "jsonschema: argument validation"),
    ("/rpds", "jsonschema: argument validation"),
    ("/gatehold/front/", "gatehold front (HTTP endpoint, JSON-RPC)"),
    ("/gatehold/audit/", "gatehold audit (records, chain, sinks)"),
    ("/gatehold/auditor.py", "gatehold audit (records, chain, sinks)"),
    ("/gatehold/upstream/", "gatehold upstream clients"),
    ("/gatehold/policy/constraints.py", "gatehold argument constraints"),
    ("/gatehold/", "gatehold gateway, pipeline, policy"),
    ("<frozen importlib", "import machinery: httpcore's `import sniffio`, failing on every call"),
    ("asyncio/", "asyncio event loop, tasks"),
    ("/uvloop/", "asyncio event loop, tasks"),
    ("selectors.py", "asyncio event loop, tasks"),
    ("sqlite3", "gatehold audit (records, chain, sinks)"),
]
OTHER = "other"


IDLE = {"<method 'poll' of 'select.epoll' objects>"}  # waiting for I/O, not work


def _area(filename: str) -> str:
    return next((area for key, area in AREAS if key in filename), OTHER)


def areas(stats: pstats.Stats) -> dict[str, float]:
    """Own time by area, idle epoll waits left out.

    Built-ins and other unclassified functions (the standard library's helpers: contextlib,
    posixpath, ipaddress, uuid...) are charged to the areas of their callers, up to three levels up,
    in proportion to the time each caller spent in them.
    """
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}

    def charge(func: Any, seconds: float, levels: int) -> None:
        area = OTHER if func[0] == "~" else _area(func[0])
        callers = raw.get(func, (0, 0, 0.0, 0.0, {}))[4]
        if area != OTHER or levels == 0 or not callers:
            totals[area] = totals.get(area, 0.0) + seconds
            return
        edge_total = sum(edge[2] for edge in callers.values())
        if edge_total <= 0:
            totals[area] = totals.get(area, 0.0) + seconds
            return
        for caller, edge in callers.items():
            charge(caller, seconds * edge[2] / edge_total, levels - 1)

    for func, (_cc, _nc, tottime, _ct, _callers) in raw.items():
        if func[2] not in IDLE:
            charge(func, tottime, 3)
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def report(path: Path, title: str, top: int, calls: int) -> str:
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    if not stats.total_calls:  # type: ignore[attr-defined]
        return f"## {title}: no samples\n"
    by_area = areas(stats)
    total = sum(by_area.values()) or 1.0
    buf.write(f"## {title}: CPU by area (profiled; {total * 1000 / calls:.3f} ms/call in all)\n")
    for area, seconds in by_area.items():
        buf.write(f"  {seconds / total * 100:5.1f} %  {seconds * 1000 / calls:6.3f} ms/call  {area}\n")
    buf.write("\n")
    stats.strip_dirs()
    buf.write(f"## {title}: by own time (tottime)\n")
    stats.sort_stats("tottime").print_stats(top)
    buf.write(f"## {title}: by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


async def drive(opts: argparse.Namespace, out: Path) -> float:
    key, key_hash = new_api_key("bench")
    with tempfile.TemporaryDirectory(prefix="gatehold-profile-") as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "files"
        root.mkdir()
        (root / "README.txt").write_text("Welcome to the Gatehold demo. Files here are readable by the agent.\n",
                                         encoding="utf-8")
        async with contextlib.AsyncExitStack() as stack:
            if opts.upstream == "stdio":
                upstream: dict[str, Any] = {
                    "command": [sys.executable, "-m", "gatehold.demo.server", "--root", str(root)],
                    "cwd": str(root)}
            else:
                _up, port = await stack.enter_async_context(
                    process([sys.executable, str(BENCH / "http_upstream.py")], "PORT: ", tmp / "upstream.stderr"))
                upstream = {"url": f"http://127.0.0.1:{port}/mcp"}
            config = write_config(tmp, "profile", upstream, root, key_hash)
            argv = [sys.executable, str(Path(__file__).resolve()), "--serve", str(config), "--out", str(out)]
            if opts.shipped:
                argv.append("--shipped")
            gw, url = await stack.enter_async_context(process(argv, "URL: ", tmp / "gateway.stderr", cwd=str(tmp)))
            client_cls = RawHttpClient if opts.http_client == "raw" else HttpClient
            client = client_cls(url, "bench.read_file", ARGS, key=key, pool=opts.concurrency + 4)
            try:
                await sequential(client.call, opts.warmup)
                if opts.concurrency > 1:
                    await concurrent(client.call, opts.concurrency * 8, opts.concurrency)
                before = cpu_seconds(gw.pid)
                os.kill(gw.pid, signal.SIGUSR1)
                await asyncio.sleep(0.2)  # let the handler run before the first measured call
                if opts.concurrency > 1:
                    await concurrent(client.call, opts.calls, opts.concurrency)
                else:
                    await sequential(client.call, opts.calls)
                os.kill(gw.pid, signal.SIGUSR2)
                async with asyncio.timeout(DUMP_TIMEOUT):
                    while not (out / "done").exists():
                        await asyncio.sleep(0.05)
                return (cpu_seconds(gw.pid) - before) * 1000 / opts.calls
            finally:
                await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=1, help="1: sequential calls (default)")
    parser.add_argument("--http-client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--shipped", action="store_true", help="without the TCP_NODELAY fix")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", help="keep main.prof and writer.prof in this folder")
    parser.add_argument("--micro", action="store_true",
                        help="time gatehold's own code in-process (no sockets, no HTTP server, stub upstream)")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)  # the child's entry
    opts = parser.parse_args()
    if opts.serve:
        serve_profiled(opts.serve, Path(opts.out), nodelay=not opts.shipped)
        return
    if opts.micro:
        print(f"# gatehold in-process, main-thread CPU per call ({opts.calls} calls after {opts.warmup})\n")
        print("| part | µs/call |\n|---|---:|")
        for label, micros in asyncio.run(micro(opts.calls, opts.warmup)):
            print(f"| {label} | {micros:.1f} |")
        return
    with contextlib.ExitStack() as stack:
        out = Path(opts.out) if opts.out else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        out.mkdir(parents=True, exist_ok=True)
        (out / "done").unlink(missing_ok=True)
        per_call = asyncio.run(drive(opts, out))
        print(f"# gateway profile: {opts.upstream} upstream, {opts.calls} calls, concurrency {opts.concurrency}, "
              f"{opts.http_client} client; gateway CPU under cProfile {per_call:.3f} ms/call\n")
        print(report(out / "main.prof", "main thread (event loop)", opts.top, opts.calls))
        print(report(out / "writer.prof", "audit writer thread (batch writes)", opts.top, opts.calls))


if __name__ == "__main__":
    main()
