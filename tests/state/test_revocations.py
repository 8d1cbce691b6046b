import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest
import redis

from gatehold.call import Caller
from gatehold.errors import AuthUnavailable
from gatehold.state import (
    KINDS,
    RedisRevocations,
    Revocation,
    RevocationStore,
    SqliteRevocations,
    open_revocations,
    revocation_keys,
)

pytestmark = pytest.mark.anyio

Factory = Callable[..., RevocationStore]

SUBPROCESS_CHANGE = """
import asyncio, sys, time
from pathlib import Path
from gatehold.state import Revocation, SqliteRevocations

async def main() -> None:
    store = SqliteRevocations(Path(sys.argv[1]))
    if sys.argv[2] == "revoke":
        await store.revoke(Revocation(sys.argv[3], sys.argv[4], "from the CLI", time.time(), "ops"))
    else:
        print(await store.restore(sys.argv[3], sys.argv[4]))
    await store.aclose()

asyncio.run(main())
"""


def revocation(kind: str = "sub", value: str = "alice", *, expires_at: float | None = None,
               reason: str = "leaked") -> Revocation:
    return Revocation(kind, value, reason, time.time(), "tester", expires_at)


# --- which keys apply to a caller -------------------------------------------------------------

def test_keys_of_an_oauth_caller() -> None:
    caller = Caller(principal="alice", roles=(), credential_id="oauth:jti-1", subject="user-1",
                    client_id="agent-app", token_id="jti-1")
    assert revocation_keys(caller) == (
        ("jti", "jti-1"), ("sub", "user-1"), ("client", "agent-app"), ("principal", "alice"))


def test_keys_of_an_api_key_caller() -> None:
    caller = Caller(principal="ci", roles=("reader",), credential_id="apikey:ci-bot")
    assert revocation_keys(caller) == (("apikey", "ci-bot"), ("principal", "ci"))


def test_keys_of_a_certificate_caller() -> None:
    caller = Caller(principal="agent-1", roles=(), credential_id="cert:ab:cd:ef")
    assert revocation_keys(caller) == (("cert", "ab:cd:ef"), ("principal", "agent-1"))


@pytest.mark.parametrize("credential_id", ["stdio", "apikey:", "jwt:abc", ""])
def test_keys_of_other_callers_name_only_the_principal(credential_id: str) -> None:
    caller = Caller(principal="p", roles=(), credential_id=credential_id, transport="stdio")
    assert revocation_keys(caller) == (("principal", "p"),)


def test_every_key_kind_is_a_revocable_kind() -> None:
    caller = Caller(principal="p", roles=(), credential_id="apikey:k", subject="s", client_id="c", token_id="j")
    assert {kind for kind, _ in revocation_keys(caller)} <= set(KINDS)


# --- both backends ----------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "redis"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """Makes store instances over one backing store, as separate processes would open it."""
    made: list[RevocationStore] = []
    prefix = f"gatehold-test:{uuid.uuid4().hex}:"
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""

    def make(check_seconds: float = 0.0) -> RevocationStore:
        store: RevocationStore = (
            SqliteRevocations(tmp_path / "revocations.db", check_seconds=check_seconds)
            if request.param == "sqlite" else RedisRevocations(url, prefix=prefix, check_seconds=check_seconds))
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()
    if url:
        client = redis.Redis.from_url(url)
        try:
            for key in client.scan_iter(match=prefix + "*"):
                client.delete(key)
        finally:
            client.close()


async def test_revoke_check_restore(stores: Factory) -> None:
    store = stores()
    assert await store.is_revoked([("sub", "alice")]) is None
    rev = revocation()
    await store.revoke(rev)
    assert await store.is_revoked([("jti", "j"), ("sub", "alice"), ("principal", "alice")]) == rev
    assert await store.is_revoked([("sub", "Alice"), ("principal", "alice")]) is None  # exact match only
    assert await store.restore("sub", "alice") is True
    assert await store.is_revoked([("sub", "alice")]) is None
    assert await store.restore("sub", "alice") is False


async def test_the_first_matching_key_wins(stores: Factory) -> None:
    store = stores()
    by_principal, by_jti = revocation("principal", "alice"), revocation("jti", "j-1")
    await store.revoke(by_principal)
    await store.revoke(by_jti)
    assert await store.is_revoked([("jti", "j-1"), ("principal", "alice")]) == by_jti
    assert await store.is_revoked([("principal", "alice"), ("jti", "j-1")]) == by_principal
    assert await store.is_revoked([]) is None


async def test_list_holds_live_revocations_oldest_first(stores: Factory) -> None:
    store = stores()
    assert await store.list() == []
    now = time.time()
    older = Revocation("cert", "ab:cd", "lost laptop", now - 10, "root")
    newer = Revocation("client", "agent:app", "", now, "ops", now + 3600)  # ':' in a value is fine
    await store.revoke(newer)
    await store.revoke(older)
    assert await store.list() == [older, newer]


async def test_expired_revocations_are_ignored(stores: Factory) -> None:
    store = stores()
    rev = revocation("jti", "short-lived", expires_at=time.time() + 0.3)
    await store.revoke(rev)
    await store.revoke(revocation("jti", "kept"))
    assert await store.is_revoked([("jti", "short-lived")]) == rev
    await anyio.sleep(0.45)
    assert await store.is_revoked([("jti", "short-lived")]) is None
    assert [r.value for r in await store.list()] == ["kept"]
    assert await store.restore("jti", "short-lived") is False


async def test_revoking_again_never_shortens_a_revocation(stores: Factory) -> None:
    store = stores()
    forever = revocation(reason="forever")
    await store.revoke(forever)
    await store.revoke(revocation(reason="an hour", expires_at=time.time() + 3600))
    assert await store.list() == [forever]
    await store.restore("sub", "alice")
    hour = revocation(reason="an hour", expires_at=time.time() + 3600)
    await store.revoke(hour)
    await store.revoke(revocation(reason="a minute", expires_at=time.time() + 60))
    assert await store.list() == [hour]
    day = revocation(reason="a day", expires_at=time.time() + 86400)
    await store.revoke(day)
    assert await store.list() == [day]
    await store.revoke(forever)
    assert await store.list() == [forever]


async def test_a_second_instance_is_seen_on_the_very_next_check(stores: Factory) -> None:
    gateway, cli = stores(), stores()
    assert await gateway.is_revoked([("apikey", "ci-bot")]) is None  # warm the gateway's view
    rev = revocation("apikey", "ci-bot")
    await cli.revoke(rev)
    assert await gateway.is_revoked([("apikey", "ci-bot")]) == rev
    assert await cli.restore("apikey", "ci-bot") is True
    assert await gateway.is_revoked([("apikey", "ci-bot")]) is None


async def test_within_the_window_another_instance_is_seen_late_but_its_own_change_at_once(
        stores: Factory) -> None:
    gateway, cli = stores(check_seconds=60.0), stores()
    assert await gateway.is_revoked([("apikey", "ci-bot")]) is None
    rev = revocation("apikey", "ci-bot")
    await cli.revoke(rev)
    # the documented staleness: another process's revocation waits for the window to pass
    assert await gateway.is_revoked([("apikey", "ci-bot")]) is None
    own = revocation("sub", "mallory")
    await gateway.revoke(own)
    assert await gateway.is_revoked([("sub", "mallory")]) == own
    assert await gateway.is_revoked([("apikey", "ci-bot")]) == rev  # the re-read saw both
    assert await gateway.restore("sub", "mallory") is True
    assert await gateway.is_revoked([("sub", "mallory")]) is None


async def test_after_the_window_another_instance_is_seen(stores: Factory) -> None:
    gateway, cli = stores(check_seconds=0.2), stores()
    assert await gateway.is_revoked([("client", "agent-app")]) is None
    rev = revocation("client", "agent-app")
    await cli.revoke(rev)
    await anyio.sleep(0.25)
    assert await gateway.is_revoked([("client", "agent-app")]) == rev


@pytest.mark.parametrize(("kind", "value"), [("user", "x"), ("", "x"), ("sub", ""), ("SUB", "x")])
async def test_bad_kinds_and_values_are_rejected(stores: Factory, kind: str, value: str) -> None:
    store = stores()
    with pytest.raises(ValueError):
        Revocation(kind, value, "", time.time(), "tester")
    with pytest.raises(ValueError):
        await store.restore(kind, value)


@pytest.mark.parametrize("expires_at", [0.0, -1.0, float("nan"), float("inf")])
async def test_a_revocation_that_could_never_apply_is_rejected(stores: Factory, expires_at: float) -> None:
    with pytest.raises(ValueError):
        await stores().revoke(revocation(expires_at=expires_at))


async def test_a_closed_store_fails_closed(stores: Factory) -> None:
    store = stores()
    await store.revoke(revocation())
    await store.aclose()
    with pytest.raises(AuthUnavailable):
        await store.is_revoked([("sub", "alice")])


def test_open_revocations_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_revocations("memory", tmp_path / "r.db"), SqliteRevocations)
    assert isinstance(open_revocations("redis://127.0.0.1:6379/0", tmp_path / "r.db"), RedisRevocations)
    assert isinstance(open_revocations("rediss://127.0.0.1:6380/0", tmp_path / "r.db"), RedisRevocations)
    with pytest.raises(ValueError):
        open_revocations("memcached://x", tmp_path / "r.db")


# --- SQLite -----------------------------------------------------------------------------------

def run_cli(path: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", SUBPROCESS_CHANGE, str(path), *args],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_sqlite_sees_a_revocation_from_another_process(tmp_path: Path) -> None:
    path = tmp_path / "revocations.db"
    store = SqliteRevocations(path)
    try:
        assert await store.is_revoked([("principal", "mallory")]) is None
        run_cli(path, "revoke", "principal", "mallory")
        found = await store.is_revoked([("principal", "mallory")])
        assert found is not None
        assert (found.reason, found.created_by) == ("from the CLI", "ops")
        assert run_cli(path, "restore", "principal", "mallory") == "True"
        assert await store.is_revoked([("principal", "mallory")]) is None
    finally:
        await store.aclose()


async def test_sqlite_reloads_only_when_the_file_changed(tmp_path: Path) -> None:
    store = SqliteRevocations(tmp_path / "revocations.db")
    try:
        await store.revoke(revocation())
        await store.is_revoked([("sub", "alice")])
        loaded = store._cache
        for _ in range(3):
            assert await store.is_revoked([("sub", "alice")]) is not None
        assert store._cache is loaded
        await store.restore("sub", "alice")
        assert await store.is_revoked([("sub", "alice")]) is None
        assert store._cache is not loaded
    finally:
        await store.aclose()


async def test_sqlite_creates_the_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "revocations.db"
    store = SqliteRevocations(path)
    assert not path.exists()  # nothing is opened before first use
    assert await store.list() == []
    await store.aclose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM revocations").fetchone()[0] == 0


async def test_sqlite_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "revocations.db"
    first = SqliteRevocations(path)
    await first.revoke(revocation())
    await first.aclose()
    second = SqliteRevocations(path)
    try:
        assert await second.is_revoked([("sub", "alice")]) is not None
    finally:
        await second.aclose()


async def test_a_corrupt_sqlite_file_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "revocations.db"
    path.write_bytes(b"this is not a database, whatever its name says\n" * 200)
    store = SqliteRevocations(path)
    try:
        for _ in range(2):  # and keeps failing: no stale or empty cache is trusted
            with pytest.raises(AuthUnavailable):
                await store.is_revoked([("sub", "alice")])
        with pytest.raises(AuthUnavailable):
            await store.list()
        with pytest.raises(AuthUnavailable):
            await store.revoke(revocation())
    finally:
        await store.aclose()


@pytest.mark.parametrize("where", ["a-directory", "missing/folder/revocations.db"])
async def test_an_unopenable_sqlite_path_fails_closed(tmp_path: Path, where: str) -> None:
    (tmp_path / "a-directory").mkdir()
    store = SqliteRevocations(tmp_path / where)
    with pytest.raises(AuthUnavailable):
        await store.is_revoked([("sub", "alice")])
    await store.aclose()


async def test_a_damaged_sqlite_row_fails_closed_until_repaired(tmp_path: Path) -> None:
    path = tmp_path / "revocations.db"
    store = SqliteRevocations(path)
    try:
        await store.revoke(revocation())
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE revocations SET created_at = 'yesterday'")
        with pytest.raises(AuthUnavailable):
            await store.is_revoked([("jti", "unrelated")])
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE revocations SET created_at = 1.0")
        assert await store.is_revoked([("sub", "alice")]) is not None
    finally:
        await store.aclose()


# --- Redis ------------------------------------------------------------------------------------

async def test_unreachable_redis_fails_closed_and_fast() -> None:
    store = RedisRevocations("redis://127.0.0.1:1/0")
    started = time.monotonic()
    try:
        with pytest.raises(AuthUnavailable):
            await store.is_revoked([("sub", "alice")])
        with pytest.raises(AuthUnavailable):
            await store.revoke(revocation())
        with pytest.raises(AuthUnavailable):
            await store.restore("sub", "alice")
        with pytest.raises(AuthUnavailable):
            await store.list()
    finally:
        await store.aclose()
    assert time.monotonic() - started < 5  # no retry backoff on the request path


async def test_a_damaged_redis_record_fails_closed(redis_url: str) -> None:
    prefix = f"gatehold-test:{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(redis_url)
    store = RedisRevocations(redis_url, prefix=prefix)
    try:
        client.set(f"{prefix}sub:alice", b"{not json")
        with pytest.raises(AuthUnavailable):
            await store.is_revoked([("sub", "alice")])
        assert await store.is_revoked([("sub", "bob")]) is None
        client.set(f"{prefix}sub:alice", b'{"reason": 1}')
        with pytest.raises(AuthUnavailable):
            await store.is_revoked([("sub", "alice")])
    finally:
        client.delete(f"{prefix}sub:alice")
        client.close()
        await store.aclose()


async def test_redis_expiry_is_a_redis_ttl(redis_url: str) -> None:
    prefix = f"gatehold-test:{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(redis_url)
    store = RedisRevocations(redis_url, prefix=prefix)
    try:
        await store.revoke(revocation("jti", "j", expires_at=time.time() + 600))
        await store.revoke(revocation("sub", "s"))
        assert 590_000 < client.pttl(f"{prefix}jti:j") <= 600_000
        assert client.pttl(f"{prefix}sub:s") == -1
    finally:
        client.delete(f"{prefix}jti:j", f"{prefix}sub:s")
        client.close()
        await store.aclose()
