"""Lightweight raw MCP clients for the benchmark, and the two load shapes (sequential, concurrent).

Each client offers ``call()``: one ``tools/call`` that raises unless the tool answered with a
successful text result, so a benchmark never silently measures refusals.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

VERSION = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": VERSION, "io.modelcontextprotocol/clientCapabilities": {}}
CALL_TIMEOUT = 30.0

Call = Callable[[], Awaitable[None]]


class BenchError(RuntimeError):
    pass


def check_reply(reply: Any) -> None:
    result = reply.get("result") if isinstance(reply, dict) else None
    if not isinstance(result, dict) or result.get("isError") or not result.get("content"):
        raise BenchError(f"the call did not succeed: {str(reply)[:300]}")


class StdioClient:
    """Newline-delimited JSON-RPC over a child's pipes; concurrent requests multiplexed by id."""

    def __init__(self, proc: asyncio.subprocess.Process, tool: str, arguments: dict[str, Any]):
        self.proc = proc
        self.tool = tool
        self.arguments = arguments
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, argv: Sequence[str], tool: str, arguments: dict[str, Any],
                    cwd: str | None = None) -> StdioClient:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, limit=16 * 1024 * 1024)
        client = cls(proc, tool, arguments)
        reply = await client.request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                                    "clientInfo": {"name": "gatehold-bench", "version": "1"}})
        if "result" not in reply:
            raise BenchError(f"initialize failed: {reply}")
        await client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return client

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                if not line.strip():
                    continue
                message = orjson.loads(line)
                future = self._pending.pop(message.get("id"), None) if isinstance(message, dict) else None
                if future is not None and not future.done():
                    future.set_result(message)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BenchError("the stdio server closed its output"))

    async def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(message) + b"\n")
        await self.proc.stdin.drain()

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        rid = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
                return await future
        finally:
            self._pending.pop(rid, None)

    async def call(self) -> None:
        check_reply(await self.request("tools/call", {"name": self.tool, "arguments": self.arguments}))

    async def aclose(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 5.0)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()


class HttpClient:
    """Raw 2026-07-28 (stateless) JSON-RPC POSTs with one shared ``httpx.AsyncClient``."""

    def __init__(self, url: str, tool: str, arguments: dict[str, Any], *, key: str | None, pool: int):
        self.url = url
        self.tool = tool
        self.arguments = arguments
        self._ids = itertools.count(1)
        limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
        self.http = httpx.AsyncClient(limits=limits, timeout=CALL_TIMEOUT)
        self.headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                        "MCP-Protocol-Version": VERSION, "Mcp-Method": "tools/call", "Mcp-Name": tool}
        if key is not None:
            self.headers["Authorization"] = f"Bearer {key}"

    async def call(self) -> None:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": "tools/call",
                "params": {"name": self.tool, "arguments": self.arguments, "_meta": META}}
        response = await self.http.post(self.url, content=orjson.dumps(body), headers=self.headers)
        if response.status_code != 200:
            raise BenchError(f"HTTP {response.status_code}: {response.text[:300]}")
        check_reply(orjson.loads(response.content))

    async def aclose(self) -> None:
        await self.http.aclose()


class RawHttpClient:
    """The same requests as ``HttpClient`` over hand-written HTTP/1.1 keep-alive connections.

    Far cheaper per call than httpx (no pool bookkeeping, one write per request), so that on a
    small machine the client is not what limits the throughput. Each concurrent caller takes an
    idle connection or opens one; replies must carry Content-Length (JSON replies do).
    """

    def __init__(self, url: str, tool: str, arguments: dict[str, Any], *, key: str | None, pool: int):
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise BenchError(f"raw client needs http://host:port/path, got {url}")
        self.host, self.port = parts.hostname, parts.port
        self.tool = tool
        self.arguments = arguments
        self.pool = pool
        self._ids = itertools.count(1)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._all: list[asyncio.StreamWriter] = []
        head = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {self.host}:{self.port}",
                "Content-Type: application/json", "Accept: application/json, text/event-stream",
                f"MCP-Protocol-Version: {VERSION}", "Mcp-Method: tools/call", f"Mcp-Name: {tool}"]
        if key is not None:
            head.append(f"Authorization: Bearer {key}")
        self._head = ("\r\n".join(head) + "\r\nContent-Length: ").encode()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if len(self._all) >= self.pool:
            raise BenchError(f"more than {self.pool} connections needed")
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=16 * 1024 * 1024)
        self._all.append(writer)
        return reader, writer

    async def call(self) -> None:
        body = orjson.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": "tools/call",
                             "params": {"name": self.tool, "arguments": self.arguments, "_meta": META}})
        request = self._head + str(len(body)).encode() + b"\r\n\r\n" + body
        async with asyncio.timeout(CALL_TIMEOUT):
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._connect()
            try:
                status, payload = await self._exchange(conn, request)
            except (asyncio.IncompleteReadError, ConnectionError):
                conn[1].close()
                if not reused:
                    raise
                conn = await self._connect()  # the server closed an idle keep-alive connection: once more
                status, payload = await self._exchange(conn, request)
        self._idle.append(conn)
        if status != 200:
            raise BenchError(f"HTTP {status}: {payload[:300]!r}")
        check_reply(orjson.loads(payload))

    @staticmethod
    async def _exchange(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                        request: bytes) -> tuple[int, bytes]:
        reader, writer = conn
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise BenchError("chunked replies are not supported by the raw client")
        if length is None:
            raise BenchError("reply without Content-Length")
        return status, await reader.readexactly(length)

    async def aclose(self) -> None:
        for writer in self._all:
            writer.close()
        self._idle.clear()


async def sequential(call: Call, n: int) -> list[float]:
    """``n`` calls one after another; the latency of each, in seconds."""
    latencies = []
    clock = time.perf_counter
    for _ in range(n):
        start = clock()
        await call()
        latencies.append(clock() - start)
    return latencies


async def concurrent(call: Call, n: int, clients: int) -> float:
    """``n`` calls made by ``clients`` concurrent workers; the wall time, in seconds."""
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    start = time.perf_counter()
    async with asyncio.timeout(CALL_TIMEOUT + n):  # generous, but the run is bounded
        await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - start
