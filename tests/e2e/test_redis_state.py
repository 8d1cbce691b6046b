"""Revocations through Redis (``state: redis://...``): the CLI in another process, the running gateway, failure.

The gateway accepts the harness's API keys and OAuth tokens from the in-test authorization server.
``gatehold revoke`` runs as a real subprocess against the same Redis database, and the running
gateway refuses the revoked credential on its next request. A gateway pointed at a Redis that does
not answer refuses every request with 503, fail closed.

The tests use Redis database 14 alone and flush it before and after (the store's key prefix is fixed).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import redis

from tests.e2e.harness import REPO
from tests.e2e.identity import ROLES, after_revocation_window, identity_gateway
from tests.state.conftest import redis_url  # noqa: F401  (the live-Redis fixture: skip, or fail if required)

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

DB = 14
PREFIX = "gatehold:revoked:"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
GATEWAY_ROLES = {**ROLES, "reader": {"tools": {"sdk.echo": {}}}}  # the harness's key alice is a reader


@pytest.fixture
def redis14(redis_url: str) -> Iterator[str]:  # noqa: F811
    """The URL of test database 14, empty at the start and flushed again at the end."""
    url = f"{redis_url.rsplit('/', 1)[0]}/{DB}"
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.flushdb()
        yield url
    finally:
        client.flushdb()
        client.close()


def keys_in(url: str) -> list[str]:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return sorted(key.decode() if isinstance(key, bytes) else str(key) for key in client.keys("*"))
    finally:
        client.close()


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gatehold", "revoke", "--config", str(config), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=60)


async def change(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Revoke or restore through the CLI, then wait until the running gateway must see it."""
    done = cli(config, *args)
    await after_revocation_window()
    return done


async def test_a_revocation_from_the_cli_reaches_the_running_gateway_through_redis(tmp_path: Path,
                                                                                  redis14: str) -> None:
    async with identity_gateway(tmp_path, roles=GATEWAY_ROLES, sections={"state": redis14}) as s:
        alice = s.gw.key("alice")
        token = s.token(sub="dana")
        assert (await s.call(alice)).status_code == 200
        assert (await s.call(token)).status_code == 200

        config = tmp_path / "revoke.yaml"
        config.write_text(f"state: {redis14}\n")
        done = await change(config, "apikey", "alice", "--reason", "left the team")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "revoked: apikey alice"
        assert keys_in(redis14) == [f"{PREFIX}apikey:alice"]  # in Redis, not in a SQLite file
        assert not (tmp_path / "gatehold-revocations.db").exists()

        refused = await s.call(alice)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "auth.revoked"
        assert 'error_description="the credential was revoked"' in refused.headers["www-authenticate"]
        assert s.last_record()["code"] == "auth.revoked"
        assert s.last_record()["decision"] == "deny"
        assert (await s.call(token)).status_code == 200  # another caller is untouched

        listed = cli(config, "--list")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("apikey alice since ")
        assert lines[0].endswith(" left the team")

        undone = await change(config, "--undo", "apikey", "alice")
        assert undone.returncode == 0, undone.stderr
        assert undone.stdout.strip() == "restored: apikey alice"
        assert (await s.call(alice)).status_code == 200
        assert cli(config, "--list").stdout == ""
        assert keys_in(redis14) == []

        # The OAuth caller: its token's jti, revoked the same way, then its subject.
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
        assert (await change(config, "jti", jti)).returncode == 0
        assert (await s.call(token)).status_code == 401
        assert s.last_record()["code"] == "auth.revoked"
        assert (await s.call(s.token(sub="dana"))).status_code == 200  # a new token of the same subject
        assert (await change(config, "sub", "dana")).returncode == 0
        assert (await s.call(s.token(sub="dana"))).status_code == 401  # now every token of the subject
        assert (await s.call(alice)).status_code == 200
        in_force = cli(config, "--list").stdout.splitlines()
        assert sorted(line.split(" since ")[0] for line in in_force) == [f"jti {jti}", "sub dana"]


async def test_an_unreachable_redis_fails_every_request_closed_with_503(tmp_path: Path) -> None:
    async with identity_gateway(tmp_path, roles=GATEWAY_ROLES, sections={"state": UNREACHABLE_REDIS}) as s:
        for credential in (s.gw.key("alice"), s.token(sub="dana")):
            response = await s.call(credential)
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            assert response.json()["error"] == "auth.unavailable"
            record = s.last_record()
            assert record["decision"] == "deny"
            assert record["code"] == "auth.unavailable"
            assert "Redis" in record["reason"]
        assert not [r for r in s.gw.records() if r.get("tool") == "sdk.echo"]  # no call reached the pipeline


async def test_the_cli_reports_an_unreachable_redis_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "revoke.yaml"
    config.write_text(f"state: {UNREACHABLE_REDIS}\n")
    for args in (("apikey", "alice"), ("--list",), ("--undo", "apikey", "alice")):
        done = cli(config, *args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("error: cannot ")
        assert "Redis" in done.stderr
