"""RedisAnswerStore against a real Redis server: round trips, expiry, version isolation,
pipelined reads, and a Redis that stops or stalls (a miss with an error, never an exception)."""

from __future__ import annotations

import asyncio
import hashlib
import math
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pyarrow as pa
import pytest

from chalk.common.errors import ConfigError
from chalk.engine.cache import AnswerStoreUnavailableError, open_answer_store
from chalk.engine.cache.redis_store import KEY_PREFIX, RedisAnswerStore, check_redis_url
from chalk.engine.cache.store import AnswerScope, CacheStats, Lookup
from chalk.engine.event_loop import EventLoopThread
from tests.support import redis as support_redis
from tests.support.redis import RedisServer

T = TypeVar("T")


class FakeClock:
    """The store's clock for skipping Redis and for its live bytes, or its wall clock for the
    answers' put times; Redis keeps real time."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def keys(*names: str) -> pa.FixedSizeBinaryArray:
    """16-byte keys, one per name, as the engine would hash argument rows."""
    digests = [hashlib.blake2b(name.encode(), digest_size=16).digest() for name in names]
    return pa.array(digests, pa.binary(16))


FLOAT64 = pa.float64()


def scope(
    output_type: pa.DataType = FLOAT64,
    *,
    model: str = "fraud",
    version: int = 1,
    ttl_s: float = 60.0,
    group: str = "fraud-group",
    identity: str = "5eed",
) -> AnswerScope:
    return AnswerScope(group, model, version, ttl_s, output_type, identity)


def run(coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(coroutine())


@pytest.mark.parametrize(
    "answers",
    [
        pa.array([0.5, None, -1.0], pa.float64()),
        pa.array([True, None, False], pa.bool_()),
        pa.array(["ORG", None, ""], pa.large_string()),
        pa.array([[1, None], None, []], pa.list_(pa.int64())),
        pa.array([{"label": "ORG"}, None, {"label": None}], pa.struct([("label", pa.string())])),
    ],
    ids=["float64", "bool", "large_string", "list", "struct"],
)
def test_answers_round_trip_with_their_nulls(redis_server: RedisServer, answers: pa.Array) -> None:
    where = scope(answers.type)
    written = keys("a", "b", "c")

    async def scenario() -> tuple[Any, Any]:
        store = RedisAnswerStore(redis_server.url)
        try:
            await store.put(where, written, answers)
            return await store.get(where, keys("c", "unknown", "a", "b")), store.stats()
        finally:
            await store.aclose()

    lookup, stats = run(scenario)

    assert lookup.error is None
    assert lookup.found.to_pylist() == [True, False, True, True]
    assert lookup.answers.type == answers.type
    expected = answers.to_pylist()
    assert lookup.answers.to_pylist() == [expected[2], expected[0], expected[1]]
    assert stats["fraud-group"].hits == 3
    assert stats["fraud-group"].misses == 1
    assert stats["fraud-group"].errors == 0


def test_a_unix_socket_url_reaches_the_same_server(redis_server: RedisServer) -> None:
    async def scenario() -> Any:
        over_tcp = RedisAnswerStore(redis_server.url)
        over_unix = open_answer_store(redis_server.unix_url)
        try:
            await over_tcp.put(scope(), keys("a"), pa.array([1.5]))
            return await over_unix.get(scope(), keys("a"))
        finally:
            await over_tcp.aclose()
            await over_unix.aclose()

    lookup = run(scenario)

    assert lookup.error is None
    assert lookup.answers.to_pylist() == [1.5]


def test_keys_name_the_scheme_model_version_and_identity(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        store = RedisAnswerStore(redis_server.url)
        await store.put(scope(version=7), keys("a"), pa.array([1.0]))
        await store.aclose()

    run(scenario)

    with redis_server.client() as client:
        (key,) = client.keys("*")
    assert key.startswith(KEY_PREFIX + b"e1.")
    assert key[:-16].endswith(b":fraud:7:5eed:")
    assert key[-16:] == keys("a")[0].as_py()


def test_answers_expire_after_the_scopes_time_to_live(redis_server: RedisServer) -> None:
    clock = FakeClock()
    short = scope(ttl_s=0.3)

    async def scenario() -> tuple[list[bool], int, CacheStats, list[bool], CacheStats]:
        store = RedisAnswerStore(redis_server.url, clock=clock)
        try:
            await store.put(short, keys("a"), pa.array([1.0]))
            fresh = (await store.get(short, keys("a"))).found.to_pylist()
            with redis_server.client() as client:
                (key,) = client.keys("*")
                ttl_ms = client.pttl(key)
            written = store.stats()["fraud-group"]
            for _ in range(100):  # Redis expires it in real time: wait for it, up to 10 s
                later = (await store.get(short, keys("a"))).found.to_pylist()
                if later == [False]:
                    break
                await asyncio.sleep(0.1)
            clock.now += 1.0  # the store forgets written bytes by the whole second
            return fresh, ttl_ms, written, later, store.stats()["fraud-group"]
        finally:
            await store.aclose()

    fresh, ttl_ms, written, later, after = run(scenario)

    assert fresh == [True]
    assert 0 < ttl_ms <= 300
    assert written.bytes > 16
    assert later == [False]
    assert after.bytes == 0


def test_bytes_count_what_this_process_wrote_until_it_expires(
    redis_server: RedisServer,
) -> None:
    clock = FakeClock()

    async def scenario() -> list[int]:
        store = RedisAnswerStore(redis_server.url, clock=clock)
        seen = []
        try:
            for name in ("a", "b", "c"):  # three writes within one second, one of 60 s
                await store.put(scope(ttl_s=10.0), keys(name), pa.array([1.0]))
            await store.put(scope(ttl_s=60.0), keys("d"), pa.array([1.0]))
            seen.append(store.stats()["fraud-group"].bytes)
            clock.now += 11.0
            seen.append(store.stats()["fraud-group"].bytes)
            clock.now += 50.0
            seen.append(store.stats()["fraud-group"].bytes)
            return seen
        finally:
            await store.aclose()

    every, after_ten, after_sixty = run(scenario)

    key = len(KEY_PREFIX) + len(b"e1.12345678:fraud:1:5eed:") + 16
    one = key + 8 + 8  # the key, the put time and a float64
    assert every == 4 * one
    assert after_ten == one
    assert after_sixty == 0


def test_a_new_version_never_sees_an_older_versions_answers(redis_server: RedisServer) -> None:
    async def scenario() -> list[list[bool]]:
        store = RedisAnswerStore(redis_server.url)
        try:
            await store.put(scope(version=1), keys("a"), pa.array([1.0]))
            return [
                (await store.get(where, keys("a"))).found.to_pylist()
                for where in [
                    scope(version=2),
                    scope(model="other"),
                    scope(pa.float32()),
                    scope(identity="another-registration"),
                    scope(identity=""),
                    scope(version=1, group="another-group"),
                ]
            ]
        finally:
            await store.aclose()

    new_version, other_model, other_type, registered_again, no_identity, same_version = run(
        scenario
    )

    assert new_version == [False]
    assert other_model == [False]
    assert other_type == [False]
    assert registered_again == [False]  # another catalog's `fraud` v1, or registered anew
    assert no_identity == [False]
    assert same_version == [True]  # the group only sorts figures; the version owns answers


def test_a_lookup_serves_answers_no_older_than_its_own_time_to_live(
    redis_server: RedisServer,
) -> None:
    wall = FakeClock(now=1_700_000_000.0)
    hour, minute = scope(ttl_s=3600.0), scope(ttl_s=60.0)

    async def scenario() -> list[list[bool]]:
        store = RedisAnswerStore(redis_server.url, wall_clock=wall)
        seen = []
        try:
            await store.put(hour, keys("a"), pa.array([1.0]))  # feature A: max_staleness 1h
            wall.now += 60.0
            seen.append((await store.get(minute, keys("a"))).found.to_pylist())
            wall.now += 0.5
            seen.append((await store.get(minute, keys("a"))).found.to_pylist())
            seen.append((await store.get(hour, keys("a"))).found.to_pylist())
            await store.put(minute, keys("a"), pa.array([2.0]))  # B asked the model again
            seen.append((await store.get(minute, keys("a"))).found.to_pylist())
            wall.now += 3601.0  # Redis keeps the key (its PX runs in real time), but it is old
            seen.append((await store.get(hour, keys("a"))).found.to_pylist())
            return seen
        finally:
            await store.aclose()

    at_a_minute, past_a_minute, within_the_hour, asked_again, past_the_hour = run(scenario)

    assert at_a_minute == [True]
    assert past_a_minute == [False]  # B (1m) never gets A's hour-old answer
    assert within_the_hour == [True]
    assert asked_again == [True]
    assert past_the_hour == [False]


@pytest.mark.parametrize(
    ("ttl_s", "expected_pttl"),
    [(math.inf, -1), (1e300, 2**62), (2e15, 2 * 10**18)],
    ids=["infinity", "beyond-redis", "centuries"],
)
def test_a_time_to_live_too_long_for_px_keeps_answers(
    redis_server: RedisServer, ttl_s: float, expected_pttl: int
) -> None:
    clock = FakeClock()
    forever = scope(ttl_s=ttl_s)

    async def scenario() -> tuple[Any, CacheStats]:
        store = RedisAnswerStore(redis_server.url, clock=clock)
        try:
            await store.put(forever, keys("a", "b"), pa.array([1.0, None]))
            clock.now += 1e9  # thirty years on, the bytes are still counted
            return await store.get(forever, keys("a", "b", "c")), store.stats()["fraud-group"]
        finally:
            await store.aclose()

    lookup, stats = run(scenario)

    assert lookup.error is None
    assert lookup.found.to_pylist() == [True, True, False]
    assert lookup.answers.to_pylist() == [1.0, None]
    assert stats.errors == 0
    assert stats.bytes > 0
    with redis_server.client() as client:
        pttls = [client.pttl(key) for key in client.keys("*")]
    if expected_pttl == -1:
        assert pttls == [-1, -1]  # no expiry
    else:
        assert all(expected_pttl - 60_000 < pttl <= expected_pttl for pttl in pttls)


@pytest.mark.parametrize("ttl_s", [0.0, -1.0, math.nan, -math.inf], ids=["0", "-1", "nan", "-inf"])
def test_a_time_to_live_that_keeps_nothing_writes_nothing(
    redis_server: RedisServer, ttl_s: float
) -> None:
    async def scenario() -> Any:
        store = RedisAnswerStore(redis_server.url)
        try:
            await store.put(scope(ttl_s=ttl_s), keys("a"), pa.array([1.0]))
            return await store.get(scope(ttl_s=ttl_s), keys("a"))
        finally:
            await store.aclose()

    lookup = run(scenario)

    assert lookup.found.to_pylist() == [False]
    assert lookup.error is None
    with redis_server.client() as client:
        assert client.keys("*") == []


def test_an_infinite_time_to_live_never_raises_with_redis_down() -> None:
    forever = scope(pa.int64(), ttl_s=math.inf)

    async def scenario() -> Any:
        store = RedisAnswerStore("redis://127.0.0.1:1/0")
        await store.put(forever, keys("a"), pa.array([1], pa.int64()))
        return await store.get(forever, keys("a")), store.stats()["fraud-group"]

    lookup, stats = run(scenario)

    assert lookup.found.to_pylist() == [False]
    assert lookup.error is not None
    assert stats.errors == 2


def test_a_value_without_a_put_time_is_a_miss_with_an_error(redis_server: RedisServer) -> None:
    def overwrite() -> None:
        with redis_server.client() as client:
            (key,) = client.keys("*")
            client.set(key, b"\x01")

    lookup = _looked_up_after(redis_server, overwrite)

    assert lookup.found.to_pylist() == [False]
    assert lookup.error is not None
    assert "unreadable: a value of 1 bytes has no 8-byte put time" in lookup.error


def test_many_keys_are_read_in_pipelined_batches(redis_server: RedisServer) -> None:
    count = 25_000
    names = [f"row-{index}" for index in range(count)]
    values = pa.array([float(index) if index % 5 else None for index in range(count)])
    asked = [*names[::2], "missing", *names[1::2]]

    async def scenario() -> Any:
        store = RedisAnswerStore(redis_server.url)
        try:
            await store.put(scope(), keys(*names), values)
            with redis_server.client() as client:
                client.config_resetstat()
            return await store.get(scope(), keys(*asked))
        finally:
            await store.aclose()

    lookup = run(scenario)

    with redis_server.client() as client:
        mget = client.info("commandstats")["cmdstat_mget"]
    assert mget["calls"] == 3  # 25,001 keys in MGETs of 10,000
    assert lookup.error is None
    assert lookup.found.to_pylist() == [name != "missing" for name in asked]
    expected = values.to_pylist()
    in_order = [*expected[::2], *expected[1::2]]
    assert lookup.answers.to_pylist() == in_order


def test_a_stopped_redis_costs_misses_then_is_skipped_then_recovers(
    redis_server: RedisServer,
) -> None:
    clock = FakeClock()
    where = scope()

    async def scenario() -> list[Any]:
        store = RedisAnswerStore(redis_server.url, clock=clock, skip_after_error_s=5.0)
        try:
            await store.put(where, keys("a", "b"), pa.array([1.0, 2.0]))
            redis_server.stop()
            down = await store.get(where, keys("a", "b"))
            await store.put(where, keys("c"), pa.array([3.0]))
            skipped = await store.get(where, keys("a"))
            redis_server.start()  # same port, empty: no persistence
            still_skipped = await store.get(where, keys("a"))
            clock.now += 5.0
            back = await store.get(where, keys("a"))
            await store.put(where, keys("a"), pa.array([4.0]))
            again = await store.get(where, keys("a"))
            return [down, skipped, still_skipped, back, again, store.stats()["fraud-group"]]
        finally:
            await store.aclose()

    down, skipped, still_skipped, back, again, stats = run(scenario)

    assert down.found.to_pylist() == [False, False]
    assert len(down.answers) == 0
    assert down.error is not None
    assert down.error.startswith(f"could not read answers from Redis at {redis_server.url}")
    assert skipped.error is not None
    assert "skipped for 5 s after: could not read answers" in skipped.error
    assert still_skipped.error is not None
    assert back.error is None
    assert back.found.to_pylist() == [False]
    assert again.found.to_pylist() == [True]
    assert again.answers.to_pylist() == [4.0]
    # Lookups: down, skipped, still skipped; the write while skipped: 4 errors.
    assert stats.errors == 4
    assert stats.hits == 1
    assert stats.misses == 2 + 1 + 1 + 1


def test_a_large_write_to_a_stopped_redis_is_dropped_and_counted(
    redis_server: RedisServer,
) -> None:
    names = [f"row-{index}" for index in range(12_000)]  # three runs of the write script

    async def scenario() -> tuple[CacheStats, Any]:
        store = RedisAnswerStore(redis_server.url)
        try:
            await store.get(scope(), keys("warm"))  # a pooled connection, stale after the stop
            redis_server.stop()
            await store.put(scope(), keys(*names), pa.array([1.0] * len(names)))
            stats = store.stats()["fraud-group"]
            return stats, await store.get(scope(), keys("row-1"))
        finally:
            await store.aclose()

    stats, after = run(scenario)

    assert stats.errors == 1
    assert stats.bytes == 0
    assert after.error is not None
    assert "skipped for 1 s after: could not write answers to Redis" in after.error


def test_redis_killed_during_a_lookup_costs_a_miss(redis_server: RedisServer) -> None:
    async def scenario() -> tuple[Any, bool]:
        store = RedisAnswerStore(redis_server.url, timeout_s=30.0)
        try:
            await store.put(scope(), keys("a"), pa.array([1.0]))
            _pause(redis_server, 30.0)  # the lookup's MGET waits in Redis
            lookup = asyncio.create_task(store.get(scope(), keys("a")))
            await asyncio.sleep(0.2)
            waiting = not lookup.done()
            redis_server.kill()
            return await lookup, waiting
        finally:
            await store.aclose()

    lookup, waited_for_redis = run(scenario)

    assert waited_for_redis
    assert lookup.found.to_pylist() == [False]
    assert lookup.error is not None
    assert "could not read answers from Redis" in lookup.error


def test_a_slow_redis_costs_a_miss_within_the_timeout(redis_server: RedisServer) -> None:
    lookup = _looked_up_after(redis_server, lambda: _pause(redis_server, 30.0), timeout_s=0.2)

    assert lookup.found.to_pylist() == [False]
    assert lookup.error is not None
    assert "could not read answers from Redis" in lookup.error
    assert "Timeout" in lookup.error


def test_a_closed_store_answers_misses(redis_server: RedisServer) -> None:
    async def scenario() -> Any:
        store = RedisAnswerStore(redis_server.url)
        await store.put(scope(), keys("a"), pa.array([1.0]))
        await store.aclose()
        return await store.get(scope(), keys("a"))

    lookup = run(scenario)

    assert lookup.found.to_pylist() == [False]
    assert lookup.error is not None
    assert "closed" in lookup.error


def test_a_store_used_from_another_loop_closes_the_first_loops_connections(
    redis_server: RedisServer,
) -> None:
    # A client dropped with its connections open would be collected later, after its
    # server stopped, as an "unclosed Connection" in whichever test runs then.
    store = RedisAnswerStore(redis_server.url)
    thread = EventLoopThread(name="redis-store-test")
    try:
        first = thread.run(store.get(scope(), keys("a")))

        async def then_here() -> Lookup:
            try:
                return await store.get(scope(), keys("a"))
            finally:
                await store.aclose()

        second = run(then_here)
        with redis_server.client() as client:
            give_up = time.monotonic() + 30.0
            while len(client.client_list()) > 1 and time.monotonic() < give_up:
                time.sleep(0.02)
            connected = len(client.client_list())
    finally:
        thread.stop()

    assert (first.error, second.error) == (None, None)
    assert connected == 1  # only the checking client


def test_an_empty_lookup_asks_nothing() -> None:
    async def scenario() -> Any:
        store = RedisAnswerStore("redis://127.0.0.1:1/0")
        lookup = await store.get(scope(pa.string()), keys())
        await store.put(scope(pa.string()), keys(), pa.array([], pa.string()))
        return lookup, store.stats()

    lookup, stats = run(scenario)

    assert len(lookup.found) == 0
    assert lookup.answers.type == pa.string()
    assert lookup.error is None
    assert stats == {}


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:6379", "is not a Redis URL"),
        ("redis:///0", "names no host"),
        ("127.0.0.1:6379", "is not a Redis URL"),
        ("redis://127.0.0.1:notaport/0", "is not a Redis URL"),
        ("unix://", "names no socket path"),
        ("redis://127.0.0.1:6379/zero", "names database 'zero', not a number"),
    ],
    ids=["http", "no-host", "no-scheme", "bad-port", "unix-no-path", "bad-db"],
)
def test_a_url_that_is_not_redis_is_a_config_error(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"chalk\.yaml: online_store") as raised:
        check_redis_url(url)

    assert problem in str(raised.value)
    assert "expected redis://" in str(raised.value)


def test_a_url_hides_its_password_in_errors() -> None:
    with pytest.raises(ConfigError) as raised:
        check_redis_url("redis://user:secret@:6379/0")

    assert "secret" not in str(raised.value)
    assert "user:***@" in str(raised.value)


def test_without_redis_py_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)

    with pytest.raises(AnswerStoreUnavailableError, match=r"pip install 'scalegroup\[redis\]'"):
        open_answer_store("redis://127.0.0.1:6379/0")


def test_open_answer_store_opens_redis_for_a_redis_url() -> None:
    store = open_answer_store("redis://127.0.0.1:6379/0", max_bytes=1)

    assert isinstance(store, RedisAnswerStore)
    with pytest.raises(ConfigError, match=r"online_store 'redis://:6379/0' names no host"):
        open_answer_store("redis://:6379/0")
    with pytest.raises(ConfigError, match=r"Invalid value for 'socket_timeout' in connection URL;"):
        open_answer_store("redis://127.0.0.1:6379/0?socket_timeout=soon")


@pytest.mark.parametrize(
    ("ci", "outcome"),
    [("true", pytest.fail.Exception), ("", pytest.skip.Exception)],
    ids=["ci-fails", "else-skips"],
)
def test_without_redis_server_the_tests_skip_except_under_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setattr(support_redis.shutil, "which", lambda _name: None)
    monkeypatch.setattr(support_redis.os, "access", lambda _path, _mode: False)
    monkeypatch.setenv("CI", ci)

    with pytest.raises(outcome, match="no redis-server for the answer cache's Redis tests"):
        support_redis.require_redis_server()


def _looked_up_after(server: RedisServer, between: Callable[[], None], **options: Any) -> Any:
    """A store's lookup of the answer it put, after ``between()`` did something to Redis."""

    async def scenario() -> Any:
        store = RedisAnswerStore(server.url, **options)
        try:
            await store.put(scope(), keys("a"), pa.array([1.0]))
            between()
            return await store.get(scope(), keys("a"))
        finally:
            await store.aclose()

    return run(scenario)


def _pause(server: RedisServer, seconds: float) -> None:
    """Hold every client's commands for ``seconds`` (CLIENT PAUSE ... ALL), as a stalled
    Redis; the server still accepts connections and ends at once when stopped."""
    with server.client() as client:
        client.execute_command("CLIENT", "PAUSE", int(seconds * 1000), "ALL")
