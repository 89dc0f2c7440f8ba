"""RouteCache: calls that find a route expired share one catalog read."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pyarrow as pa
import pytest

from chalk.catalog import Endpoint, Route
from chalk.catalog.errors import UnknownGroupError
from chalk.catalog.records import Replica
from chalk.engine.routes import RouteCache


class _SlowResolver:
    """Counts its reads; each takes ``read_s`` (a database under load), then answers or
    fails."""

    def __init__(self, read_s: float, *, fails: bool = False) -> None:
        self.read_s = read_s
        self.fails = fails
        self.reads = 0
        self._lock = threading.Lock()

    def resolve(self, name: str) -> Route:
        with self._lock:
            self.reads += 1
        time.sleep(self.read_s)
        if self.fails:
            raise UnknownGroupError(f"cannot call {name!r}: there is no scaling group named 'x'")
        return _route(name)

    def replica_at(self, group: str, endpoint: str) -> Replica | None:
        return None


def _route(name: str) -> Route:
    empty = pa.schema([])
    return Route(name, "m", 1, empty, empty, None, (Endpoint("127.0.0.1:1"),))


async def _resolve_many(cache: RouteCache, calls: int) -> list[Any]:
    return await asyncio.gather(
        *(cache.resolve(f"t.y{index}", "model.x") for index in range(calls)),
        return_exceptions=True,
    )


def test_concurrent_calls_share_one_read_of_an_expired_route() -> None:
    resolver = _SlowResolver(0.05)
    cache = RouteCache(resolver)

    answers = asyncio.run(_resolve_many(cache, 20))

    assert resolver.reads == 1
    assert {answer[0] for answer in answers} == {_route("model.x")}
    assert len({answer[1] for answer in answers}) == 1


def test_a_failed_shared_read_reaches_every_call_with_its_own_feature() -> None:
    resolver = _SlowResolver(0.02, fails=True)
    cache = RouteCache(resolver)

    answers = asyncio.run(_resolve_many(cache, 3))

    assert resolver.reads == 1
    for index, answer in enumerate(answers):
        assert isinstance(answer, UnknownGroupError)
        assert str(answer).startswith(f"t.y{index}: cannot call 'model.x'")


def test_a_cancelled_call_leaves_the_shared_read_to_the_others() -> None:
    resolver = _SlowResolver(0.05)
    cache = RouteCache(resolver)

    async def scenario() -> Any:
        first = asyncio.ensure_future(cache.resolve("t.a", "model.x"))
        second = asyncio.ensure_future(cache.resolve("t.b", "model.x"))
        await asyncio.sleep(0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    route, _, _ = asyncio.run(scenario())

    assert route == _route("model.x")
    assert resolver.reads == 1
