"""Per-call cost of authentication: cached and cold bearer JWTs, API keys, and the revocation check.

One run measures, on this machine:

1. **In-process, ``Authenticator.authenticate``** as ``gatehold.runtime.build_authenticator`` assembles
   it from a config (API keys plus OAuth with the issuer's JWKS), against a real in-test authorization
   server (``tests/authserver.py``, on 127.0.0.1:<free port>) that publishes RS256 (2048-bit), ES256
   (P-256) and EdDSA (Ed25519) keys:
   - a **cached** token (verified once, then the verifier's SHA-256-keyed cache answers), per algorithm;
   - a **cold** token (a fresh, never seen token on every call; the JWKS is already cached, so this is
     header parsing, the signature check, the claim checks and the Caller), per algorithm;
   - an API key (cached) for comparison, and the harness alone (no authentication);
   - each with the embedded SQLite revocation store (``state: memory``) and, when Redis answers at
     ``--redis``, with the Redis store (one MGET round trip per request);
   - the parts of the cached path, to see where its time goes.
   Each call is timed with ``time.perf_counter_ns`` (median and p99); CPU per call is
   ``time.process_time`` over the same loop.
2. **In-process, the whole ASGI app** (what uvicorn calls: Starlette, ``McpEndpoint``, the pipeline, a
   stub upstream, the audit record), API key against cached JWTs, and both again with the revocation
   store stubbed out (what the check costs in situ); no sockets. The cases alternate in ``--blocks``
   blocks of ``--app-calls`` calls; CPU per call from ``time.process_time`` (the audit writer thread
   included: each block ends with a flush), compared block by block.
3. **End to end**: real ``python -m gatehold serve`` processes with the core benchmark's pipeline
   (``bench/run.py``'s config plus OAuth). Stdio upstream: one gateway per revocation store (SQLite;
   Redis when it answers; and the store stubbed out, through this script's hidden
   ``--serve-without-revocations`` entry), each called by one raw HTTP client holding an API key and
   one holding a cached JWT. Streamable HTTP upstream: the SQLite store. All cases of a group run in
   ``--blocks`` blocks of ``--calls`` calls, in an order reversed every other block; each gateway's CPU
   per call is read from ``/proc`` as in ``bench/run.py``, and differences are taken block by block.

    python -m bench.auth [--rounds 3] [--cached-calls 20000] [--redis-calls 3000] [--cold-calls 1000]
                         [--blocks 10] [--app-calls 500] [--calls 500] [--redis redis://127.0.0.1:6379]
                         [--only micro|app|e2e] [--json OUT]

Revocations are seeded (``--seed-revocations`` unrelated entries) so the stores are not empty; the
seeded Redis keys are removed again at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
for _path in (BENCH, BENCH.parent):  # bench's sibling modules (as bench/run.py imports them) and tests/
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import orjson  # noqa: E402
import yaml  # noqa: E402
from clients import RawHttpClient, sequential  # noqa: E402
from proc import cpu_seconds, thread_cpu_seconds  # noqa: E402
from profile_gateway import StubUpstream  # noqa: E402
from run import ARGS, gateway_argv, machine, process, write_config  # noqa: E402

from gatehold.auditor import Auditor  # noqa: E402
from gatehold.auth.apikeys import new_api_key  # noqa: E402
from gatehold.auth.authenticator import Authenticator  # noqa: E402
from gatehold.auth.claims import caller_from_claims  # noqa: E402
from gatehold.auth.jwt_verify import _JWS, looks_like_jwt  # noqa: E402
from gatehold.call import Caller  # noqa: E402
from gatehold.config import load_config  # noqa: E402
from gatehold.errors import AuthUnavailable  # noqa: E402
from gatehold.front.http import build_app  # noqa: E402
from gatehold.gateway import Gateway  # noqa: E402
from gatehold.runtime import build_authenticator, open_audit  # noqa: E402
from gatehold.state.revocations import Revocation, open_revocations, revocation_keys  # noqa: E402
from tests.authserver import AuthServer, running_auth_server  # noqa: E402

ALGS = ("RS256", "ES256", "EdDSA")
RESOURCE = "http://127.0.0.1/mcp"  # the gateway's resource identifier: the tokens' audience
SCOPE = "bench:read"
TOKEN_LIFETIME = 3600


# -- configuration --------------------------------------------------------------------------------

def auth_config(tmp: Path, name: str, upstream: dict[str, Any], root: Path, key_hash: str, issuer: str,
                state: str) -> Path:
    """``bench/run.py``'s config (API key, authorise, strict schema, path_within, bounds, SQLite audit)
    plus OAuth: JWTs from ``issuer`` for ``RESOURCE``, roles from the ``roles`` claim, one scope."""
    path = write_config(tmp, name, upstream, root, key_hash)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["gateway"]["resource"] = RESOURCE
    data["state"] = state
    data["auth"]["revocations"] = str(tmp / f"{name}-revocations.db")
    data["auth"]["oauth"] = {"issuer": issuer, "algorithms": list(ALGS), "required_claims": ["iat", "sub", "jti"]}
    data["scopes"] = {SCOPE: ["bench.read_file"]}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def issue(auth: AuthServer, kid: str) -> str:
    return auth.issue(sub="bench-agent", scope=SCOPE, lifetime=TOKEN_LIFETIME, kid=kid,
                      extra={"roles": ["bench"], "client_id": "bench-app"})


async def seed_revocations(state: str, revocations_path: Path, count: int) -> list[tuple[str, str]]:
    """``count`` unrelated live revocations, written the way ``gatehold revoke`` writes them."""
    store = open_revocations(state, revocations_path)
    tag = secrets.token_hex(4)
    keys = [("principal", f"bench-seed-{tag}-{i}") for i in range(count)]
    try:
        for kind, value in keys:
            await store.revoke(Revocation(kind, value, "bench seed", time.time(), "bench/auth.py",
                                          time.time() + 3600))
    finally:
        await store.aclose()
    return keys


async def unseed_revocations(state: str, revocations_path: Path, keys: list[tuple[str, str]]) -> None:
    store = open_revocations(state, revocations_path)
    try:
        for kind, value in keys:
            await store.restore(kind, value)
    finally:
        await store.aclose()


async def redis_reachable(url: str) -> str | None:
    """None when a revocation check against ``url`` works, else why not."""
    store = open_revocations(url, Path("unused"))
    try:
        await store.is_revoked([("principal", "bench-probe")])
    except AuthUnavailable as exc:
        return exc.detail
    finally:
        with contextlib.suppress(Exception):
            await store.aclose()
    return None


# -- timing ---------------------------------------------------------------------------------------

@dataclass
class Row:
    section: str
    label: str
    samples_ns: list[int] = field(default_factory=list)  # every timed call, all rounds
    round_medians_ns: list[float] = field(default_factory=list)
    round_cpu_us: list[float] = field(default_factory=list)  # CPU per call in each round
    cpu_s: float = 0.0
    calls: int = 0
    note: str = ""

    def summary(self) -> dict[str, Any]:
        if not self.calls:
            return {"section": self.section, "label": self.label, "note": self.note}
        ordered = sorted(self.samples_ns)
        return {
            "section": self.section, "label": self.label, "calls": self.calls,
            "median_us": statistics.median(ordered) / 1000,
            "p99_us": ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] / 1000,
            "cpu_us_per_call": self.cpu_s * 1e6 / self.calls,
            "cpu_us_per_call_median_round": statistics.median(self.round_cpu_us),
            "round_cpu_us": self.round_cpu_us,
            "round_medians_us": [m / 1000 for m in self.round_medians_ns],
            "note": self.note,
        }


class Rows:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Row] = {}

    def get(self, section: str, label: str) -> Row:
        return self.rows.setdefault((section, label), Row(section, label))

    def note(self, section: str, label: str, note: str) -> None:
        self.get(section, label).note = note


async def timed(row: Row, fn: Callable[[], Any], calls: int, *, is_async: bool,
                after: Callable[[], None] | None = None) -> None:
    """Time ``calls`` calls of ``fn`` one by one; ``after`` runs inside the CPU window (e.g. an audit flush)."""
    samples = [0] * calls
    clock = time.perf_counter_ns
    gc.collect()
    cpu = time.process_time()
    if is_async:
        for i in range(calls):
            start = clock()
            await fn()
            samples[i] = clock() - start
    else:
        for i in range(calls):
            start = clock()
            fn()
            samples[i] = clock() - start
    if after is not None:
        after()
    spent = time.process_time() - cpu
    row.cpu_s += spent
    row.round_cpu_us.append(spent * 1e6 / calls)
    row.calls += calls
    row.samples_ns += samples
    row.round_medians_ns.append(statistics.median(samples))


async def warm(fn: Callable[[], Any], calls: int, *, is_async: bool) -> None:
    for _ in range(calls):
        if is_async:
            await fn()
        else:
            fn()


# -- 1. Authenticator.authenticate in-process ----------------------------------------------------

async def micro(opts: argparse.Namespace, auth: AuthServer, kids: dict[str, str], tmp: Path, root: Path,
                key: str, key_hash: str, rows: Rows) -> None:
    states = [("SQLite", "memory")]
    unreachable = await redis_reachable(opts.redis) if opts.redis else "no --redis given"
    if unreachable is None:
        states.append(("Redis", opts.redis))
    cached = {alg: issue(auth, kid) for alg, kid in kids.items()}
    caller = Caller(principal="bench", roles=("bench",), credential_id="apikey:bench")

    async def nothing() -> Caller:
        return caller

    for store_label, state in states:
        await micro_store(opts, auth, kids, tmp, root, key, key_hash, rows, store_label, state, cached, nothing)
    if unreachable is not None:
        rows.note("authenticate, Redis store", "all cases", f"skipped: Redis unreachable ({unreachable})")


async def micro_store(opts: argparse.Namespace, auth: AuthServer, kids: dict[str, str], tmp: Path, root: Path,
                      key: str, key_hash: str, rows: Rows, store_label: str, state: str, cached: dict[str, str],
                      nothing: Callable[[], Awaitable[Caller]]) -> None:
    name = f"micro-{store_label.lower()}"
    calls = opts.cached_calls if state == "memory" else opts.redis_calls  # a Redis round trip is 100x slower
    config = auth_config(tmp, name, {"command": ["unused"]}, root, key_hash, auth.issuer, state)
    loaded = load_config(config)
    revocations_path = loaded.path(loaded.config.auth.revocations)
    seeded = await seed_revocations(state, revocations_path, opts.seed_revocations)
    gateway = Gateway(loaded, Auditor(open_audit(loaded)), {"bench": StubUpstream("bench")})  # type: ignore[dict-item]
    authn = build_authenticator(loaded, gateway)
    every = open_revocations(state, revocations_path)  # check_seconds=0: the store read on every call
    try:
        section = f"authenticate, {store_label} store"
        cases: list[tuple[str, Callable[[], Awaitable[Caller]]]] = [
            ("API key (cached)", lambda: authn.authenticate(f"Bearer {key}"))]
        for alg in ALGS:
            header = f"Bearer {cached[alg]}"
            cases.append((f"JWT {alg}, cached", lambda header=header: authn.authenticate(header)))
        if store_label == "SQLite":
            cases.insert(0, ("no authentication (harness only)", nothing))
        for _, fn in cases:  # the first call of a JWT fetches the issuer's metadata and JWKS
            await warm(fn, opts.warmup, is_async=True)

        # Cold: a token never seen before on every call. Signed up front, outside the timing.
        cold: dict[str, list[list[str]]] = {}
        if store_label == "SQLite":
            for alg in ALGS:
                cold[alg] = [[f"Bearer {issue(auth, kids[alg])}" for _ in range(opts.cold_calls)]
                             for _ in range(opts.rounds)]
                for _ in range(opts.warmup // 10):
                    await authn.authenticate(f"Bearer {issue(auth, kids[alg])}")

        # The parts of the cached path (RS256), on the same objects.
        jwt, oauth, store = authn._jwt, authn._oauth, authn._revocations
        assert jwt is not None
        assert oauth is not None
        token = cached["RS256"]
        claims = await jwt.verify(token)
        jwt_caller = caller_from_claims(claims, oauth, token=token, kind="jwt")
        jwt_keys = revocation_keys(jwt_caller)
        api_caller = authn._api_keys.authenticate(f"Bearer {key}")
        window_ms = loaded.config.auth.revocation_check_ms
        parts: list[tuple[str, Callable[[], Any], bool]] = [
            ("Authenticator JWT caller cache hit", lambda: authn._cached_jwt_caller(token, oauth), False),
            ("cold path only: looks_like_jwt (split, base64url check, header decode)",
             lambda: looks_like_jwt(token), False),
            ("cold path only: JwtVerifier.verify, cache hit (sha256 + OrderedDict)", lambda: jwt.verify(token), True),
            ("cold path only: caller_from_claims",
             lambda: caller_from_claims(claims, oauth, token=token, kind="jwt"), False),
            ("revocation_keys (JWT caller: 4 keys)", lambda: revocation_keys(jwt_caller), False),
            (f"{type(store).__name__}.is_revoked within the {window_ms} ms window (JWT caller: 4 keys)",
             lambda: store.is_revoked(jwt_keys), True),
            (f"{type(store).__name__}.is_revoked read every call (JWT caller: 4 keys)",
             lambda: every.is_revoked(jwt_keys), True),
            ("ApiKeyAuthenticator.authenticate (cached)", lambda: authn._api_keys.authenticate(f"Bearer {key}"),
             False),
            (f"{type(store).__name__}.is_revoked within the window (API key caller: 2 keys)",
             lambda: store.is_revoked(revocation_keys(api_caller)), True),
        ]
        signature: list[tuple[str, Callable[[], Any]]] = []
        if store_label == "SQLite":
            for alg in ALGS:
                jwk = await jwt._jwks.key_for(kids[alg], alg)
                signed = cached[alg]
                signature.append((f"{alg}: PyJWS.decode_complete alone (signature check)",
                                  lambda jwk=jwk, signed=signed, alg=alg: _JWS.decode_complete(
                                      signed, key=jwk, algorithms=[alg])))
        for _, fn, is_async in parts:
            await warm(fn, opts.warmup, is_async=is_async)

        for _round in range(opts.rounds):
            for label, fn in cases:
                await timed(rows.get(section, label), fn, calls, is_async=True)
            for alg, batches in cold.items():
                headers = iter(batches[_round])
                await timed(rows.get("authenticate, cold token (SQLite store)", f"JWT {alg}, fresh token"),
                            lambda headers=headers: authn.authenticate(next(headers)), opts.cold_calls,
                            is_async=True)
            for label, fn, is_async in parts:
                await timed(rows.get(f"parts of the cached path, {store_label} store", label), fn, calls,
                            is_async=is_async)
            for label, fn in signature:
                await timed(rows.get("parts of the cold path", label), fn, opts.cold_calls, is_async=False)
    finally:
        await every.aclose()
        await gateway.stop()
        gateway.auditor.log.close()
        if state != "memory":
            await unseed_revocations(state, revocations_path, seeded)


# -- 2. the whole ASGI app in-process ------------------------------------------------------------

class NoRevocations:
    """A revocation store that never finds anything and does no I/O: what the check itself costs in the app."""

    async def is_revoked(self, keys: Any) -> None:
        return None

    async def aclose(self) -> None:
        return None


def asgi_call(app: Any, token: str) -> tuple[Callable[[], Awaitable[None]], Callable[[], int]]:
    """One ``tools/call`` through ``app`` as uvicorn would make it, and a count of non-200 answers."""
    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "bench.read_file", "arguments": ARGS,
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}})
    headers = [(b"host", b"127.0.0.1:8765"), (b"content-type", b"application/json"),
               (b"accept", b"application/json, text/event-stream"), (b"content-length", str(len(body)).encode()),
               (b"mcp-protocol-version", b"2026-07-28"), (b"mcp-method", b"tools/call"),
               (b"mcp-name", b"bench.read_file"), (b"authorization", f"Bearer {token}".encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/mcp", "raw_path": b"/mcp", "root_path": "", "query_string": b"",
             "headers": headers, "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8765)}
    never = asyncio.Event()
    failures = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal failures
        refused = message["type"] == "http.response.start" and message["status"] != 200
        failed = message["type"] == "http.response.body" and b'"isError":false' not in message.get("body", b"")
        failures += refused or failed

    async def call() -> None:
        first = True

        async def receive() -> dict[str, Any]:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": body, "more_body": False}
            await never.wait()  # no disconnect: the endpoint's watcher is cancelled
            return {"type": "http.disconnect"}

        await app(dict(scope), receive, send)

    return call, lambda: failures


async def in_app(opts: argparse.Namespace, auth: AuthServer, kids: dict[str, str], tmp: Path, root: Path,
                 key: str, key_hash: str, rows: Rows) -> None:
    states = [("SQLite", "memory")]
    if opts.redis and await redis_reachable(opts.redis) is None:
        states.append(("Redis", opts.redis))
    for store_label, state in states:
        name = f"app-{store_label.lower()}"
        config = auth_config(tmp, name, {"command": ["unused"]}, root, key_hash, auth.issuer, state)
        loaded = load_config(config)
        revocations_path = loaded.path(loaded.config.auth.revocations)
        seeded = await seed_revocations(state, revocations_path, opts.seed_revocations)
        gateway = Gateway(loaded, Auditor(open_audit(loaded)), {"bench": StubUpstream("bench")})  # type: ignore[dict-item]
        await gateway.start()
        authn = build_authenticator(loaded, gateway)
        app = build_app(gateway, authn, loaded.config)
        # The same authenticator with the revocation check stubbed out, on the same gateway.
        bare = build_app(gateway, Authenticator(api_keys=authn._api_keys, revocations=NoRevocations(),  # type: ignore[arg-type]
                                                oauth=authn._oauth, jwt=authn._jwt), loaded.config)
        rs256 = issue(auth, kids["RS256"])
        try:
            cases = [("API key (cached)", asgi_call(app, key)),
                     ("API key, revocation check stubbed out", asgi_call(bare, key)),
                     ("JWT RS256, cached", asgi_call(app, rs256)),
                     ("JWT RS256, cached, revocation check stubbed out", asgi_call(bare, rs256)),
                     ("JWT ES256, cached", asgi_call(app, issue(auth, kids["ES256"])))]
            for label, (call, failures) in cases:
                await warm(call, opts.warmup, is_async=True)
                if failures():
                    raise RuntimeError(f"{label}: the app refused the call during warm-up")
            gateway.auditor.log.flush()
            for block in range(opts.blocks):
                order = cases if block % 2 == 0 else cases[::-1]
                for label, (call, _) in order:
                    await timed(rows.get(f"whole ASGI app, {store_label} store", label), call, opts.app_calls,
                                is_async=True, after=gateway.auditor.log.flush)
            for label, (_, failures) in cases:
                if failures():
                    raise RuntimeError(f"{label}: {failures()} calls were refused")
        finally:
            await gateway.stop()
            gateway.auditor.log.close()
            if state != "memory":
                await unseed_revocations(state, revocations_path, seeded)


# -- 3. end to end: gateway processes ------------------------------------------------------------

def serve_without_revocations(config: str) -> None:
    """``gatehold serve`` with the revocation store stubbed out (the child's entry for the "none" store)."""
    from gatehold import cli, runtime

    runtime.open_revocations = lambda state, path, **_: NoRevocations()  # type: ignore[assignment,return-value]
    cli.main(["serve", "--config", config, "--port", "0"], prog_name="gatehold")


@dataclass
class Case:
    label: str
    pid: int
    client: RawHttpClient
    cpu_ms: list[float] = field(default_factory=list)  # gateway process CPU per call, one entry per block
    loop_ms: list[float] = field(default_factory=list)  # the same, the event loop's thread alone
    latencies: list[float] = field(default_factory=list)


async def e2e_group(opts: argparse.Namespace, auth: AuthServer, kids: dict[str, str], tmp: Path, root: Path,
                    key: str, key_hash: str, kind: str, upstream: dict[str, Any],
                    stores: list[tuple[str, str | None]]) -> dict[str, Any]:
    """One gateway process per store (``None``: stubbed out), each called with an API key and a cached JWT.

    All cases run in the same blocks, in an order reversed every other block, so that drift in the
    machine's speed falls on every case alike and the differences can be taken block by block.
    """
    token = issue(auth, kids["RS256"])
    cases: list[Case] = []
    seeded: list[tuple[str, Path, list[tuple[str, str]]]] = []
    async with contextlib.AsyncExitStack() as stack:
        for store_label, state in stores:
            name = f"e2e-{kind.lower()}-{store_label.lower()}"
            config = auth_config(tmp, name, upstream, root, key_hash, auth.issuer, state or "memory")
            if state is None:
                argv = [sys.executable, str(Path(__file__).resolve()), "--serve-without-revocations", str(config)]
            else:
                path = tmp / f"{name}-revocations.db"
                seeded.append((state, path, await seed_revocations(state, path, opts.seed_revocations)))
                argv = gateway_argv(config, "gateway")
            gw, url = await stack.enter_async_context(process(argv, "URL: ", tmp / f"{name}.stderr", cwd=str(tmp)))
            # Room for a reconnection per block: uvicorn closes a connection idle for 5 s.
            for credential, secret in (("API key", key), ("JWT RS256, cached", token)):
                client = RawHttpClient(url, "bench.read_file", ARGS, key=secret, pool=opts.blocks + 4)
                stack.push_async_callback(client.aclose)
                cases.append(Case(f"{store_label} / {credential}", gw.pid, client))
        for case in cases:
            await sequential(case.client.call, opts.warmup)
        for block in range(opts.blocks):
            for case in (cases if block % 2 == 0 else cases[::-1]):
                before, loop_before = cpu_seconds(case.pid), thread_cpu_seconds(case.pid).get(case.pid, 0.0)
                case.latencies += await sequential(case.client.call, opts.calls)
                case.cpu_ms.append((cpu_seconds(case.pid) - before) * 1000 / opts.calls)
                case.loop_ms.append((thread_cpu_seconds(case.pid).get(case.pid, 0.0) - loop_before) * 1000 / opts.calls)
    for state, path, keys in seeded:
        if state != "memory":
            await unseed_revocations(state, path, keys)
    out: dict[str, Any] = {"upstream": kind, "calls_per_block": opts.calls, "blocks": opts.blocks, "cases": {},
                           "differences": {}}
    for case in cases:
        ordered = sorted(case.latencies)
        out["cases"][case.label] = {
            "gateway_cpu_ms_per_call": statistics.fmean(case.cpu_ms), "blocks_ms": case.cpu_ms,
            "event_loop_cpu_ms_per_call": statistics.fmean(case.loop_ms),
            "latency_p50_ms": statistics.median(ordered) * 1000,
            "latency_p99_ms": ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] * 1000}
    by_label = {case.label: case for case in cases}
    pairs = [(f"{s} / JWT RS256, cached", f"{s} / API key") for s, _ in stores]
    baseline = next((s for s, state in stores if state is None), None)
    if baseline is not None:
        pairs += [(f"{s} / API key", f"{baseline} / API key") for s, state in stores if state is not None]
    for a, b in pairs:
        diffs = [x - y for x, y in zip(by_label[a].cpu_ms, by_label[b].cpu_ms, strict=True)]
        half = 1.96 * statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.inf
        out["differences"][f"{a} minus {b}"] = {"mean": statistics.fmean(diffs), "ci95": half,
                                                  "median": statistics.median(diffs), "min": min(diffs),
                                                  "max": max(diffs)}
    return out


async def e2e(opts: argparse.Namespace, auth: AuthServer, kids: dict[str, str], tmp: Path, root: Path,
              key: str, key_hash: str) -> list[dict[str, Any]]:
    stores: list[tuple[str, str | None]] = [("SQLite", "memory")]
    if opts.redis and await redis_reachable(opts.redis) is None:
        stores.append(("Redis", opts.redis))
    stores.append(("no revocation check", None))
    stdio = {"command": [sys.executable, "-m", "gatehold.demo.server", "--root", str(root)], "cwd": str(root)}
    print(f"end to end: stdio upstream, {len(stores)} gateways ...", file=sys.stderr, flush=True)
    results = [await e2e_group(opts, auth, kids, tmp, root, key, key_hash, "stdio", stdio, stores)]
    print("end to end: Streamable HTTP upstream ...", file=sys.stderr, flush=True)
    upstream_argv = [sys.executable, str(BENCH / "http_upstream.py")]
    async with process(upstream_argv, "PORT: ", tmp / "http-upstream.stderr") as (_up, port):
        results.append(await e2e_group(opts, auth, kids, tmp, root, key, key_hash, "HTTP",
                                       {"url": f"http://127.0.0.1:{port}/mcp"}, [("SQLite", "memory")]))
    return results


# -- reporting -------------------------------------------------------------------------------------

def speed_probe(n: int = 2_000_000) -> float:
    """CPU ns per turn of a plain Python loop: how fast this (possibly shared) machine was at the time."""
    start, total = time.process_time(), 0
    for i in range(n):
        total += i
    return (time.process_time() - start) * 1e9 / n

def micro_table(rows: Rows) -> str:
    lines = []
    section = None
    for row in rows.rows.values():
        if row.section != section:
            section = row.section
            whole = section.startswith("whole")
            cpu_head = "CPU µs/call, median block (incl. audit writer)" if whole else "CPU µs/call, median round"
            spread_head = "CPU per block, µs" if whole else "per round: median / CPU, µs"
            lines += ["", f"### {section}", "",
                      f"| case | median µs | p99 µs | {cpu_head} | {spread_head} |",
                      "|---|---:|---:|---:|---|"]
        s = row.summary()
        if not row.calls:
            lines.append(f"| {row.label} | - | - | - | {row.note} |")
            continue
        if section.startswith("whole"):  # per-block CPU, then the paired difference
            spread = ", ".join(f"{c:.0f}" for c in s["round_cpu_us"])
        else:
            spread = ", ".join(f"{m:.1f}/{c:.1f}" for m, c in zip(s["round_medians_us"], s["round_cpu_us"],
                                                                 strict=True))
        lines.append(f"| {row.label} | {s['median_us']:.1f} | {s['p99_us']:.1f} | "
                     f"{s['cpu_us_per_call_median_round']:.1f} | {spread} |")
        base = rows.rows.get((section, "API key (cached)"))
        if section.startswith("whole") and base is not None and row is not base:
            diffs = [c - b for c, b in zip(row.round_cpu_us, base.round_cpu_us, strict=True)]
            lines.append(f"| ↳ {row.label} minus API key, paired blocks | | | **{statistics.median(diffs):+.1f}** | "
                         f"{min(diffs):+.0f} … {max(diffs):+.0f} |")
    return "\n".join(lines)


def e2e_table(results: list[dict[str, Any]]) -> str:
    lines = ["", "### end to end: gateway process CPU per call (from /proc), 1 client, sequential", "",
             "| upstream | revocation store / credential | gateway CPU ms/call | of which the event loop | "
             "per block, ms | latency p50 ms | p99 ms |", "|---|---|---:|---:|---|---:|---:|"]
    for result in results:
        for label, got in result["cases"].items():
            blocks = " / ".join(f"{b:.2f}" for b in got["blocks_ms"])
            lines.append(f"| {result['upstream']} | {label} | {got['gateway_cpu_ms_per_call']:.3f} | "
                         f"{got['event_loop_cpu_ms_per_call']:.3f} | {blocks} | {got['latency_p50_ms']:.2f} | "
                         f"{got['latency_p99_ms']:.2f} |")
        for label, d in result["differences"].items():
            lines.append(f"| {result['upstream']} | ↳ **{label}**, paired blocks | **{d['mean']:+.3f}** "
                         f"± {d['ci95']:.3f} (95 %) | | median {d['median']:+.3f}, {d['min']:+.3f} … {d['max']:+.3f} "
                         "| | |")
    return "\n".join(lines)


async def main_async(opts: argparse.Namespace) -> dict[str, Any]:
    rows = Rows()
    results: dict[str, Any] = {"settings": {k: v for k, v in vars(opts).items() if k != "json_out"},
                               "machine": machine()}
    key, key_hash = new_api_key("bench")
    with tempfile.TemporaryDirectory(prefix="gatehold-bench-auth-") as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "files"
        root.mkdir()
        (root / "README.txt").write_text("Welcome to the Gatehold demo. Files here are readable by the agent.\n",
                                         encoding="utf-8")
        async with running_auth_server() as auth:
            auth.default_audience = RESOURCE
            kids = {alg: auth.add_key(alg) for alg in ALGS}  # type: ignore[arg-type]
            if opts.only in (None, "micro"):
                print("in-process: Authenticator.authenticate ...", file=sys.stderr, flush=True)
                await micro(opts, auth, kids, tmp, root, key, key_hash, rows)
            if opts.only in (None, "app"):
                print("in-process: the whole ASGI app ...", file=sys.stderr, flush=True)
                await in_app(opts, auth, kids, tmp, root, key, key_hash, rows)
            if opts.only in (None, "e2e"):
                results["e2e"] = await e2e(opts, auth, kids, tmp, root, key, key_hash)
    results["in_process"] = [row.summary() for row in rows.rows.values()]
    results["_rows"] = rows
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the Authenticator cases (default 3)")
    parser.add_argument("--cached-calls", type=int, default=20000, help="timed calls per round, cached cases")
    parser.add_argument("--redis-calls", type=int, default=3000, help="the same, with the Redis store")
    parser.add_argument("--cold-calls", type=int, default=1000, help="fresh tokens per round and algorithm")
    parser.add_argument("--blocks", type=int, default=10,
                        help="blocks per credential, in alternating order, in the app and end to end (default 10)")
    parser.add_argument("--app-calls", type=int, default=500, help="calls per block through the in-process app")
    parser.add_argument("--calls", type=int, default=500, help="calls per block, end to end (default 500)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured calls first (default 200)")
    parser.add_argument("--seed-revocations", type=int, default=100, help="unrelated revocations in each store")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="'' to skip the Redis rows")
    parser.add_argument("--only", choices=["micro", "app", "e2e"], help="run one part only")
    parser.add_argument("--json", dest="json_out", help="also write the numbers to this file")
    parser.add_argument("--serve-without-revocations", metavar="CONFIG", help=argparse.SUPPRESS)  # a child's entry
    opts = parser.parse_args()
    if opts.serve_without_revocations:
        serve_without_revocations(opts.serve_without_revocations)
        return
    if min(opts.rounds, opts.cached_calls, opts.redis_calls, opts.cold_calls, opts.blocks, opts.app_calls, opts.calls,
           opts.warmup) < 1:
        parser.error("counts must be positive")
    started, probe = time.perf_counter(), speed_probe()
    results = asyncio.run(main_async(opts))
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["speed_probe_ns"] = [round(probe, 1), round(speed_probe(), 1)]
    rows: Rows = results.pop("_rows")
    print(micro_table(rows))
    if "e2e" in results:
        print(e2e_table(results["e2e"]))
    m = results["machine"]
    print(f"\nAuthenticator: {opts.rounds} rounds of {opts.cached_calls} cached calls ({opts.redis_calls} with "
          f"Redis) and {opts.cold_calls} fresh tokens per algorithm; app and end to end: {opts.blocks} alternating "
          f"blocks of {opts.app_calls} / {opts.calls} calls per credential; {opts.warmup} warm-up; "
          f"{m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}; {results['elapsed_s']} s; speed probe "
          f"(ns per Python loop turn, start/end) {results['speed_probe_ns'][0]}/{results['speed_probe_ns'][1]}")
    if opts.json_out:
        Path(opts.json_out).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
