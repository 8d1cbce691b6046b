"""An upstream MCP server run as a child process, spoken to over newline-delimited JSON-RPC.

The child gets a scrubbed environment, its stderr goes to the log, and when it dies every
pending request fails at once while the process is restarted in the background with
exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from gatehold.call import Caller
from gatehold.config import StdioUpstream
from gatehold.errors import ConfigError, UpstreamFailed
from gatehold.upstream.base import (
    CLIENT_INFO,
    LATEST_LEGACY_VERSION,
    LEGACY_VERSIONS,
    NotificationHandler,
    Pending,
    RequestRouter,
    ServerRequestHandler,
    call_safely,
    failed,
)

ENV_ALLOW = (
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TEMP", "TMP", "USER", "LOGNAME",
    "SHELL", "TERM", "SYSTEMROOT", "PYTHONIOENCODING", "VIRTUAL_ENV",
)
"""Variables a child inherits from the gateway's environment without being configured."""

MAX_LINE_BYTES = 16 * 1024 * 1024
STDERR_MAX_CHARS = 2000
HANDSHAKE_TIMEOUT_SECONDS = 30.0
RESTART_WAIT_CAP_SECONDS = 10.0
STABLE_UPTIME_SECONDS = 30.0
INITIAL_BACKOFF_SECONDS = 0.1
EXIT_GRACE_SECONDS = 2.0
CLIENT_CAPABILITY_KEYS = ("elicitation", "sampling", "roots")


def scrubbed_env(cfg: StdioUpstream, secrets: Mapping[str, str], parent: Mapping[str, str]) -> dict[str, str]:
    """The environment for a child: allow-listed parent variables plus configured secrets.

    A configured secret that is not available is an error: the child never starts half-configured.
    """
    env = {key: parent[key] for key in (*ENV_ALLOW, *cfg.env_allow) if key in parent}
    missing = [
        f"env.{var}: secret {ref!r} is not available" for var, ref in cfg.env.items() if ref not in secrets
    ]
    if missing:
        raise ConfigError(missing)
    env.update({var: secrets[ref] for var, ref in cfg.env.items()})
    return env


class StdioUpstreamClient:
    """One child process speaking MCP on stdin/stdout."""

    def __init__(
        self,
        name: str,
        cfg: StdioUpstream,
        *,
        env: dict[str, str],
        on_event: NotificationHandler,
        cwd: str | None = None,
        client_capabilities: Mapping[str, Any] | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
        handshake_timeout: float = HANDSHAKE_TIMEOUT_SECONDS,
    ):
        self.name = name
        self.protocol_version = ""
        self.server_info: dict[str, Any] = {}
        self.capabilities: dict[str, Any] = {}
        self._cfg = cfg
        self._env = dict(env)
        self._cwd = cwd if cwd is not None else cfg.cwd
        self._on_event = on_event
        self._client_capabilities = {
            k: v for k, v in (client_capabilities or {}).items() if k in CLIENT_CAPABILITY_KEYS
        }
        self._max_line = max_line_bytes
        self._handshake_timeout = handshake_timeout
        self._log = logging.getLogger(f"gatehold.upstream.{name}")
        self._router = RequestRouter(self._log)
        self._write_lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._gen = 0  # which process is current; events from older ones are ignored
        self._down_gen = 0  # the newest process already handled as down
        self._alive = False  # the current process finished its handshake and has not gone down
        self._up_since = 0.0
        self._backoff = INITIAL_BACKOFF_SECONDS
        self._started = False
        self._closing = False

    @property
    def pid(self) -> int | None:
        """The current child's process id (for diagnostics)."""
        return self._proc.pid if self._proc is not None and self._alive else None

    async def start(self) -> None:
        if self._closing:
            raise failed("upstream.unavailable", "client is closed")
        await self._launch()
        self._started = True

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        timeout: float,  # noqa: ASYNC109 - the interface's per-call deadline
        on_server_request: ServerRequestHandler | None = None,
        on_notification: NotificationHandler | None = None,
        caller: Caller | None = None,  # unused: a stdio upstream gets its secrets via its environment
    ) -> dict[str, Any]:
        if not self._started or self._closing:
            raise failed("upstream.unavailable", f"upstream {self.name} is not running")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if not self._ready.is_set():
            try:
                async with asyncio.timeout(min(timeout, RESTART_WAIT_CAP_SECONDS)):
                    await self._ready.wait()
            except TimeoutError:
                raise failed("upstream.unavailable", f"upstream {self.name} is restarting") from None
        return await self._call(method, params, max(deadline - loop.time(), 0.001),
                                on_server_request, on_notification)

    async def aclose(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._ready.clear()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    proc.stdin.close()
            for stop in (None, proc.terminate, proc.kill):
                if stop is not None:
                    with contextlib.suppress(ProcessLookupError):
                        stop()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), EXIT_GRACE_SECONDS)
                    break
        self._alive = False
        self._router.fail_all("upstream.unavailable", f"upstream {self.name} was closed")
        await self._router.aclose_background()

    # -- process lifecycle ------------------------------------------------------------------

    async def _launch(self) -> None:
        """Spawn a process and handshake with it; raise UpstreamFailed(unavailable) on failure."""
        self._gen += 1
        gen = self._gen
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._cfg.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env,
                cwd=self._cwd,
                limit=self._max_line,
            )
        except OSError as exc:
            self._down_gen = gen
            raise failed("upstream.unavailable", f"cannot start {self._cfg.command[0]!r}: {exc}") from None
        self._proc = proc
        self._router.spawn(self._read_stdout(gen, proc))
        self._router.spawn(self._read_stderr(proc))
        self._router.spawn(self._watch_exit(gen, proc))
        try:
            reply = await self._call("initialize", {
                "protocolVersion": LATEST_LEGACY_VERSION,
                "capabilities": self._client_capabilities,
                "clientInfo": CLIENT_INFO,
            }, self._handshake_timeout, None, None)
            result = reply.get("result")
            if result is None:
                raise failed("upstream.protocol", f"initialize was refused: {reply.get('error')}")
            version = result.get("protocolVersion")
            if version not in LEGACY_VERSIONS:
                raise failed("upstream.protocol", f"unsupported protocol version {version!r}")
            await self._write({"jsonrpc": "2.0", "method": "notifications/initialized"})
        except BaseException as exc:
            self._down(gen, "upstream.unavailable", "handshake failed")
            if isinstance(exc, UpstreamFailed):
                raise failed("upstream.unavailable", f"handshake failed: {exc.detail}") from None
            raise
        self.protocol_version = str(version)
        server_info, capabilities = result.get("serverInfo"), result.get("capabilities")
        self.server_info = server_info if isinstance(server_info, dict) else {}
        self.capabilities = capabilities if isinstance(capabilities, dict) else {}
        self._alive = True
        self._up_since = asyncio.get_running_loop().time()
        self._ready.set()
        self._log.info("upstream %s ready (pid %s, protocol %s)", self.name, proc.pid, version)

    def _down(self, gen: int, code: str, detail: str) -> None:
        """The process of generation ``gen`` is gone or unusable: fail its requests, kill it, restart."""
        if gen != self._gen or gen <= self._down_gen:
            return
        self._down_gen = gen
        was_alive, self._alive = self._alive, False
        self._ready.clear()
        self._router.fail_all(code, f"upstream {self.name}: {detail}")
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        if was_alive and not self._closing:
            self._log.warning("upstream %s went down (%s); restarting", self.name, detail)
            if asyncio.get_running_loop().time() - self._up_since >= STABLE_UPTIME_SECONDS:
                self._backoff = INITIAL_BACKOFF_SECONDS
            self._router.spawn(self._restart())

    async def _restart(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, self._cfg.restart_max_backoff_seconds)
            if self._closing:
                return
            try:
                await self._launch()
            except UpstreamFailed as exc:
                self._log.warning("upstream %s restart failed: %s", self.name, exc.detail)
                continue
            await call_safely(self._log, self._on_event, "notifications/tools/list_changed", None)
            return

    async def _watch_exit(self, gen: int, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        # Give the stdout reader a moment to drain what the process wrote before it exited.
        await asyncio.sleep(0.5)
        self._down(gen, "upstream.crashed", f"process exited with code {code}")

    # -- reading ------------------------------------------------------------------------------

    async def _read_stdout(self, gen: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        code, detail = "upstream.crashed", "stdout closed"
        while True:
            try:
                line = await proc.stdout.readline()
            except ValueError:
                code, detail = "upstream.protocol", f"stdout line longer than {self._max_line} bytes"
                break
            except OSError as exc:
                detail = f"stdout read failed: {exc}"
                break
            if not line:
                break
            if line.strip():
                await self._dispatch(line)
        if code == "upstream.crashed" and proc.returncode is not None:
            detail = f"process exited with code {proc.returncode}"
        self._down(gen, code, detail)

    async def _dispatch(self, line: bytes) -> None:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            self._log.info("ignoring a non-JSON stdout line: %s",
                           line[:200].decode("utf-8", "replace").rstrip())
            return
        for item in message if isinstance(message, list) else [message]:
            if not isinstance(item, dict):
                self._log.info("ignoring a stdout message that is not an object")
                continue
            method = item.get("method")
            if isinstance(method, str):
                if "id" in item:
                    self._router.serve(item, None, self._write)
                else:
                    params = item.get("params")
                    await self._router.notify(method, params if isinstance(params, dict) else None,
                                              owner=None, on_event=self._on_event)
            elif "id" in item:
                self._router.resolve(item)
            else:
                self._log.info("ignoring a stdout message that is neither request, notification nor response")

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while True:
            try:
                line = await proc.stderr.readline()
            except ValueError:
                self._log.info("[stderr] (a line longer than %d bytes was dropped)", self._max_line)
                continue
            except OSError:
                return
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if len(text) > STDERR_MAX_CHARS:
                text = text[:STDERR_MAX_CHARS] + "...(truncated)"
            self._log.info("[stderr] %s", text)

    # -- writing ------------------------------------------------------------------------------

    async def _write(self, message: dict[str, Any]) -> None:
        proc, gen = self._proc, self._gen
        if proc is None or proc.stdin is None or gen <= self._down_gen:
            raise failed("upstream.crashed", f"upstream {self.name} is not running")
        data = orjson.dumps(message) + b"\n"
        try:
            async with self._write_lock:
                if proc.stdin.is_closing():
                    raise ConnectionResetError("stdin is closed")
                proc.stdin.write(data)
                await proc.stdin.drain()
        except (OSError, RuntimeError) as exc:
            self._down(gen, "upstream.crashed", f"write to stdin failed: {exc}")
            raise failed("upstream.crashed", f"upstream {self.name}: write to stdin failed") from None

    async def _call(
        self,
        method: str,
        params: dict[str, Any] | None,
        timeout: float,  # noqa: ASYNC109 - the per-call deadline
        on_server_request: ServerRequestHandler | None,
        on_notification: NotificationHandler | None,
    ) -> dict[str, Any]:
        pending, message = self._router.open(method, params, on_server_request, on_notification)
        gen = self._gen
        try:
            async with asyncio.timeout(timeout):
                await self._write(message)
                return await pending.future
        except TimeoutError:
            self._cancel_upstream(pending, gen, "timed out at the gateway")
            detail = f"{method} on {self.name} timed out after {timeout:g}s"
            raise failed("upstream.timeout", detail) from None
        except asyncio.CancelledError:
            self._cancel_upstream(pending, gen, "cancelled by the client")
            raise
        finally:
            self._router.close(pending)

    def _cancel_upstream(self, pending: Pending, gen: int, reason: str) -> None:
        """Tell the upstream to stop working on a request we no longer wait for (in the background)."""
        if pending.method == "initialize" or gen != self._gen or gen <= self._down_gen:
            return

        async def send() -> None:
            with contextlib.suppress(UpstreamFailed):
                await self._write({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                   "params": {"requestId": pending.id, "reason": reason}})

        self._router.spawn(send())
