import os

import pytest
import redis

REDIS_URL = "redis://127.0.0.1:6379/15"  # a database of its own; tests also use unique key prefixes
UNREACHABLE = "Redis not reachable on 127.0.0.1:6379"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of a live test Redis; skips without one, or fails if GATEHOLD_REQUIRE_SERVICES=1."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except (redis.RedisError, OSError):
        if os.environ.get("GATEHOLD_REQUIRE_SERVICES") == "1":
            pytest.fail(UNREACHABLE)
        pytest.skip(UNREACHABLE)
    finally:
        client.close()
    return REDIS_URL
