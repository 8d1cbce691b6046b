"""The credential revocation list: consulted on every request, written by ``gatehold revoke``.

A revocation names one credential attribute, a ``(kind, value)`` pair matched exactly, such as
``("jti", "abc")`` or ``("principal", "alice")``. Two backends share one behaviour:

* ``SqliteRevocations``, the embedded default: a WAL-mode SQLite file, so the CLI in another
  process reaches the running gateway and revocations survive restarts. The gateway keeps the
  list in a dictionary and reloads it only when ``PRAGMA data_version`` says another connection
  committed.
* ``RedisRevocations``, for shared state: one key per revocation holding its JSON, with a Redis
  TTL for ``expires_at``. A check is one MGET round trip.

Both take ``check_seconds``: how stale an answer may be. With 0 every check reads the store; with
a window, the SQLite pragma runs at most once per window and a Redis answer for the same keys is
reused within it, so a revocation made by another process or gateway takes effect within the
window. A revocation made through the store object itself takes effect at once. The window is
what keeps the check off the hot path: a pragma or a round trip per request cost more than the
rest of authentication together (see BENCHMARKS.md).

Revoking again never shortens a revocation: a revocation that already lasts at least as long
is kept as it is, so a mistyped expiry cannot quietly lift one. ``restore`` lifts it.

Every failure to read the list raises ``AuthUnavailable`` (503): a request whose revocation
status is unknown is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from gatehold.call import Caller
from gatehold.errors import AuthUnavailable

CREDENTIAL_KINDS: tuple[str, ...] = ("jti", "sub", "client", "apikey", "cert", "principal")
# The kill switch shares the list: a principal kill is a principal revocation; these stop targets.
KILL_TARGET_KINDS: tuple[str, ...] = ("tool", "server", "all")
KINDS: tuple[str, ...] = CREDENTIAL_KINDS + KILL_TARGET_KINDS
_CREDENTIAL_KINDS = ("apikey", "cert")  # credential_id "<kind>:<id>" prefixes that are revocable
_READ_BUSY_SECONDS = 0.25  # the reader runs on the event loop: never wait long on a lock
_WRITE_BUSY_SECONDS = 5.0  # writers run in a worker thread
_REDIS_TIMEOUT_SECONDS = 1.0
_ANSWER_CACHE_SIZE = 10_000  # distinct callers whose Redis answers are remembered within the window

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Revocation:
    kind: str
    value: str
    reason: str
    created_at: float  # epoch seconds
    created_by: str  # free text, e.g. the OS user who ran `gatehold revoke`
    expires_at: float | None = None  # epoch seconds; None: until restored

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown revocation kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if not isinstance(self.value, str) or not self.value:
            raise ValueError("a revocation needs a non-empty value")

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now


def revocation_keys(caller: Caller) -> tuple[tuple[str, str], ...]:
    """The ``(kind, value)`` pairs a revocation of which refuses this caller."""
    keys: list[tuple[str, str]] = []
    if caller.token_id:
        keys.append(("jti", caller.token_id))
    if caller.subject:
        keys.append(("sub", caller.subject))
    if caller.client_id:
        keys.append(("client", caller.client_id))
    scheme, sep, ident = caller.credential_id.partition(":")
    if sep and ident and scheme in _CREDENTIAL_KINDS:
        keys.append((scheme, ident))
    if caller.principal:
        keys.append(("principal", caller.principal))
    return tuple(keys)


class RevocationStore(Protocol):
    async def is_revoked(self, keys: Sequence[tuple[str, str]]) -> Revocation | None:
        """The first of ``keys`` with a live revocation, or None. Raises ``AuthUnavailable``."""

    async def revoke(self, revocation: Revocation) -> None: ...

    async def restore(self, kind: str, value: str) -> bool:
        """Lift a revocation; True if a live one was removed."""

    async def list(self) -> list[Revocation]:
        """Every live revocation, oldest first."""

    async def aclose(self) -> None: ...


def _check_new(revocation: Revocation) -> None:
    expires = revocation.expires_at
    if expires is not None and (not math.isfinite(expires) or expires <= time.time()):
        raise ValueError("expires_at must be a time in the future")


def _check_key(kind: str, value: str) -> None:
    Revocation(kind, value, "", 0.0, "")  # raises ValueError for an unknown kind or empty value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, found {type(value).__name__}")
    return float(value)


def _decode(kind: Any, value: Any, reason: Any, created_at: Any, created_by: Any, expires_at: Any) -> Revocation:
    """A stored revocation, type-checked; raises ``AuthUnavailable`` for a damaged one."""
    try:
        if not isinstance(reason, str) or not isinstance(created_by, str) or not isinstance(kind, str):
            raise TypeError("reason, created_by and kind must be text")
        return Revocation(kind, value, reason, _number(created_at),
                          created_by, None if expires_at is None else _number(expires_at))
    except (TypeError, ValueError) as exc:
        # fail closed: a damaged revocation could be lifting nothing or anything; refuse the check
        raise AuthUnavailable(f"damaged revocation record for {kind!r}: {exc}") from exc


def _ordered(revocations: list[Revocation]) -> list[Revocation]:
    return sorted(revocations, key=lambda r: (r.created_at, r.kind, r.value))


# --- SQLite -------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS revocations (
    kind TEXT NOT NULL, value TEXT NOT NULL, reason TEXT NOT NULL, created_at REAL NOT NULL,
    created_by TEXT NOT NULL, expires_at REAL, PRIMARY KEY (kind, value)
) WITHOUT ROWID;
"""
_PRUNE = "DELETE FROM revocations WHERE expires_at IS NOT NULL AND expires_at <= ?"
# Replace only with a revocation that lasts at least as long (NULL: forever).
_UPSERT = """
INSERT INTO revocations (kind, value, reason, created_at, created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (kind, value) DO UPDATE SET reason = excluded.reason, created_at = excluded.created_at,
    created_by = excluded.created_by, expires_at = excluded.expires_at
WHERE excluded.expires_at IS NULL
    OR (revocations.expires_at IS NOT NULL AND excluded.expires_at >= revocations.expires_at)
"""
_DELETE = "DELETE FROM revocations WHERE kind = ? AND value = ?"
_SELECT = "SELECT kind, value, reason, created_at, created_by, expires_at FROM revocations"


class SqliteRevocations:
    """The revocation list in a SQLite file, cached in memory and reloaded when the file changes.

    Nothing is opened until first use; the schema is created if missing. Reads run on the event
    loop (a pragma, or a reload after a change); writes open their own connection in a worker
    thread, which is also what makes the reader's ``data_version`` move after them.
    """

    def __init__(self, path: Path, *, check_seconds: float = 0.0):
        self.path = Path(path)
        self._check_seconds = check_seconds
        self._checked_at = -math.inf  # monotonic time of the last data_version read
        self._reader: sqlite3.Connection | None = None
        self._version: int | None = None
        self._cache: dict[tuple[str, str], Revocation] = {}
        self._closed = False

    def _connect(self, busy_seconds: float) -> sqlite3.Connection:
        if self._closed:
            raise sqlite3.ProgrammingError("the revocation store is closed")
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=busy_seconds)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def _current(self) -> dict[tuple[str, str], Revocation]:
        """The cached list, reloaded first if another connection committed since the last load."""
        checked = time.monotonic()
        if self._reader is not None and checked - self._checked_at < self._check_seconds:
            return self._cache
        try:
            if self._reader is None:
                self._reader = self._connect(_READ_BUSY_SECONDS)
                self._version = None
            version = self._reader.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                rows = self._reader.execute(_SELECT).fetchall()
                self._cache = {(r.kind, r.value): r for r in (_decode(*row) for row in rows)}
                self._version = version
            self._checked_at = checked
        except (sqlite3.Error, OSError) as exc:
            self._drop_reader()
            # fail closed: an unreadable list refuses every request until it reads again
            raise AuthUnavailable(f"cannot read the revocation list {self.path}: {exc}") from exc
        except AuthUnavailable:
            self._drop_reader()
            raise
        return self._cache

    def _drop_reader(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(sqlite3.Error):
                self._reader.close()
        self._reader, self._version, self._cache = None, None, {}
        self._checked_at = -math.inf

    def _write(self, change: Callable[[sqlite3.Connection], T]) -> T:
        try:
            with contextlib.closing(self._connect(_WRITE_BUSY_SECONDS)) as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute(_PRUNE, (time.time(),))
                    result = change(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
                return result
        except (sqlite3.Error, OSError) as exc:
            # fail closed: the caller learns the revocation list was not changed
            raise AuthUnavailable(f"cannot write the revocation list {self.path}: {exc}") from exc

    async def is_revoked(self, keys: Sequence[tuple[str, str]]) -> Revocation | None:
        if not keys:
            return None
        cache = self._current()
        now = time.time()
        for key in keys:
            found = cache.get(key)
            if found is not None and found.live(now):
                return found
        return None

    async def revoke(self, revocation: Revocation) -> None:
        _check_new(revocation)
        row = (revocation.kind, revocation.value, revocation.reason, revocation.created_at,
               revocation.created_by, revocation.expires_at)
        try:
            await asyncio.to_thread(self._write, lambda conn: conn.execute(_UPSERT, row))
        finally:
            self._checked_at = -math.inf  # this process's own change shows on the next check

    async def restore(self, kind: str, value: str) -> bool:
        _check_key(kind, value)

        def delete(conn: sqlite3.Connection) -> int:
            return conn.execute(_DELETE, (kind, value)).rowcount

        try:
            return await asyncio.to_thread(self._write, delete) > 0
        finally:
            self._checked_at = -math.inf

    async def list(self) -> list[Revocation]:
        now = time.time()
        return _ordered([r for r in self._current().values() if r.live(now)])

    async def aclose(self) -> None:
        self._drop_reader()
        self._closed = True


# --- Redis --------------------------------------------------------------------------------

# KEYS[1]: the key; ARGV[1]: the JSON; ARGV[2]: expiry in epoch ms, or '' for none.
# Like the SQLite upsert: an existing revocation that lasts at least as long is kept.
_REDIS_REVOKE = """
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
local left = redis.call('PTTL', KEYS[1])
if left == -1 then return 0 end
local at = tonumber(ARGV[2])
if left >= 0 then
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + left > at then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', at)
return 1
"""
_GLOB = str.maketrans({c: "\\" + c for c in "*?[]\\"})
_REDIS_ERRORS = (RedisError, OSError, TimeoutError, UnicodeError)


class RedisRevocations:
    """The revocation list in Redis: key ``prefix + kind + ":" + value`` holds the JSON revocation.

    Socket timeouts are short; a dropped connection (say, a pooled one the server closed) is
    retried once at once, a timeout never, and nothing waits on a backoff: a check fails fast
    and, failing, refuses.
    """

    def __init__(self, url: str, *, prefix: str = "gatehold:revoked:", check_seconds: float = 0.0):
        self.prefix = prefix
        self._check_seconds = check_seconds
        # keys -> (monotonic time read, answer); answers, revoked or not, reused within the window
        self._answers: dict[tuple[tuple[str, str], ...], tuple[float, Revocation | None]] = {}
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=_REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._revoke_script = self._client.register_script(_REDIS_REVOKE)
        self._closed = False

    def _key(self, kind: str, value: str) -> bytes:
        return f"{self.prefix}{kind}:{value}".encode()

    def _open(self) -> aioredis.Redis:
        if self._closed:
            # fail closed: a closed store answers nothing
            raise AuthUnavailable("the revocation store is closed")
        return self._client

    async def is_revoked(self, keys: Sequence[tuple[str, str]]) -> Revocation | None:
        if not keys:
            return None
        wanted = tuple(keys)
        checked = time.monotonic()
        answer = self._answers.get(wanted)
        fresh = answer is not None and checked - answer[0] < self._check_seconds
        if answer is not None and fresh and (answer[1] is None or answer[1].live(time.time())):
            return answer[1]
        revocation = await self._read(wanted)
        if self._check_seconds > 0:
            if len(self._answers) >= _ANSWER_CACHE_SIZE:
                self._answers.clear()  # bounded; a cleared cache only costs round trips
            self._answers[wanted] = (checked, revocation)
        return revocation

    async def _read(self, keys: Sequence[tuple[str, str]]) -> Revocation | None:
        try:
            found = await self._open().mget([self._key(kind, value) for kind, value in keys])
        except _REDIS_ERRORS as exc:
            # fail closed: revocation status unknown, so the request is refused (503)
            raise AuthUnavailable(f"cannot read the revocation list from Redis: {exc}") from exc
        now = time.time()
        for (kind, value), raw in zip(keys, found, strict=True):
            if raw is not None:
                revocation = self._parse(kind, value, raw)
                if revocation.live(now):
                    return revocation
        return None

    @staticmethod
    def _parse(kind: str, value: str, raw: bytes | str) -> Revocation:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            # fail closed: an unreadable record for a key that matched refuses the request
            raise AuthUnavailable(f"damaged revocation record for {kind!r} in Redis")
        return _decode(kind, value, data.get("reason"), data.get("created_at"), data.get("created_by"),
                       data.get("expires_at"))

    async def revoke(self, revocation: Revocation) -> None:
        _check_new(revocation)
        data = orjson.dumps({
            "kind": revocation.kind, "value": revocation.value, "reason": revocation.reason,
            "created_at": revocation.created_at, "created_by": revocation.created_by,
            "expires_at": revocation.expires_at,
        })
        expires = "" if revocation.expires_at is None else str(math.ceil(revocation.expires_at * 1000))
        self._answers.clear()  # this process's own change shows on the next check
        try:
            self._open()
            await self._revoke_script(keys=[self._key(revocation.kind, revocation.value)], args=[data, expires])
        except _REDIS_ERRORS as exc:
            # fail closed: the caller learns the revocation was not stored
            raise AuthUnavailable(f"cannot write the revocation list to Redis: {exc}") from exc

    async def restore(self, kind: str, value: str) -> bool:
        _check_key(kind, value)
        self._answers.clear()
        try:
            removed = await self._open().delete(self._key(kind, value))
        except _REDIS_ERRORS as exc:
            # fail closed: the caller learns nothing was restored
            raise AuthUnavailable(f"cannot write the revocation list to Redis: {exc}") from exc
        return bool(removed)

    async def list(self) -> list[Revocation]:
        client = self._open()
        out: list[Revocation] = []
        try:
            names = [name async for name in client.scan_iter(match=self.prefix.translate(_GLOB) + "*", count=1000)]
            for start in range(0, len(names), 500):
                chunk = names[start:start + 500]
                for name, raw in zip(chunk, await client.mget(chunk), strict=True):
                    if raw is None:
                        continue  # expired between the scan and the read
                    kind, _, value = name.decode()[len(self.prefix):].partition(":")
                    out.append(self._parse(kind, value, raw))
        except _REDIS_ERRORS as exc:
            # fail closed: a partial list is not presented as the list
            raise AuthUnavailable(f"cannot read the revocation list from Redis: {exc}") from exc
        now = time.time()
        return _ordered([r for r in out if r.live(now)])

    async def aclose(self) -> None:
        self._closed = True
        await self._client.aclose()


def open_revocations(state: str, sqlite_path: Path, *, check_seconds: float = 0.0) -> RevocationStore:
    """The revocation store for the configured ``state``: SQLite at ``sqlite_path`` for memory."""
    if state == "memory":
        return SqliteRevocations(sqlite_path, check_seconds=check_seconds)
    if state.startswith(("redis://", "rediss://")):
        return RedisRevocations(state, check_seconds=check_seconds)
    raise ValueError(f"unknown state backend {state!r}; expected memory or a redis:// URL")
