"""Answer-cache fixtures: a throwaway Redis server per test (tests/support/redis.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis import RedisServer
from tests.support.redis import redis_server as start_redis_server


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh Redis server of this test's own on a free loopback port; skipped without
    redis-server (failed under CI=true)."""
    with start_redis_server() as server:
        yield server
