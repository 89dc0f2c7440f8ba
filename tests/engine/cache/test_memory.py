"""``MemoryAnswerStore``: answers by key and scope, time to live, the byte bound."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pyarrow as pa

from chalk.engine.cache import AnswerScope, MemoryAnswerStore, open_answer_store
from chalk.engine.cache.keys import row_keys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


INT = pa.int64()
T = TypeVar("T")


def scope(version: int = 1, ttl_s: float = 60.0, output: pa.DataType = INT) -> AnswerScope:
    return AnswerScope("ner", "ner", version, ttl_s, output)


def keys_of(values: list[int]) -> pa.FixedSizeBinaryArray:
    return row_keys(pa.record_batch({"x": pa.array(values, pa.int64())}))


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def test_answers_come_back_for_the_keys_put_in_key_order() -> None:
    store = MemoryAnswerStore(1 << 20)
    run(store.put(scope(), keys_of([1, 2, 3]), pa.array([10, None, 30])))

    found = run(store.get(scope(), keys_of([3, 9, 1, 2])))

    assert found.found.to_pylist() == [True, False, True, True]
    assert found.answers.to_pylist() == [30, 10, None]
    assert found.error is None
    stats = store.stats()["ner"]
    assert (stats.hits, stats.misses, stats.evictions, stats.errors) == (3, 1, 0, 0)
    assert stats.bytes > 0


def test_a_key_put_again_answers_with_its_newest_answer() -> None:
    store = MemoryAnswerStore(1 << 20)
    run(store.put(scope(), keys_of([1, 2]), pa.array([10, 20])))
    for value in range(5):  # enough puts to merge runs
        run(store.put(scope(), keys_of([100 + value]), pa.array([value])))
    run(store.put(scope(), keys_of([1]), pa.array([11])))

    found = run(store.get(scope(), keys_of([1, 2, 104])))

    assert found.answers.to_pylist() == [11, 20, 4]


def test_another_model_version_never_sees_the_answers() -> None:
    store = MemoryAnswerStore(1 << 20)
    run(store.put(scope(version=1), keys_of([1]), pa.array([10])))

    assert run(store.get(scope(version=2), keys_of([1]))).found.to_pylist() == [False]


def test_the_same_version_registered_again_never_sees_the_answers() -> None:
    store = MemoryAnswerStore(1 << 20)
    first, again = (AnswerScope("ner", "ner", 1, 60.0, INT, identity) for identity in "ab")
    run(store.put(first, keys_of([1]), pa.array([10])))

    assert run(store.get(again, keys_of([1]))).found.to_pylist() == [False]
    assert run(store.get(first, keys_of([1]))).found.to_pylist() == [True]


def test_an_answer_older_than_its_time_to_live_is_not_served() -> None:
    clock = Clock()
    store = MemoryAnswerStore(1 << 20, clock=clock)
    run(store.put(scope(ttl_s=10), keys_of([1]), pa.array([10])))
    clock.now += 5
    run(store.put(scope(ttl_s=10), keys_of([2]), pa.array([20])))
    clock.now += 6

    found = run(store.get(scope(ttl_s=10), keys_of([1, 2])))

    assert found.found.to_pylist() == [False, True]
    clock.now += 10
    assert run(store.get(scope(ttl_s=10), keys_of([2]))).found.to_pylist() == [False]
    assert store.stats()["ner"].bytes == 0  # swept


def test_an_infinite_time_to_live_keeps_answers() -> None:
    clock = Clock()
    store = MemoryAnswerStore(1 << 20, clock=clock)
    run(store.put(scope(ttl_s=float("inf")), keys_of([1]), pa.array([10])))
    clock.now += 1e9

    assert run(store.get(scope(ttl_s=float("inf")), keys_of([1]))).answers.to_pylist() == [10]


def test_over_its_bound_the_store_drops_the_oldest_answers_and_counts_them() -> None:
    clock = Clock()
    store = MemoryAnswerStore(40_000, clock=clock)
    for block in range(10):
        clock.now += 1
        values = list(range(block * 1000, block * 1000 + 1000))
        run(store.put(scope(), keys_of(values), pa.array(values, pa.int64())))

    stats = store.stats()["ner"]
    assert stats.bytes <= 40_000
    assert store.nbytes == stats.bytes
    assert stats.evictions >= 8000
    newest = run(store.get(scope(), keys_of(list(range(9000, 10000)))))
    oldest = run(store.get(scope(), keys_of(list(range(0, 1000)))))
    assert newest.found.true_count > 500
    assert newest.answers.to_pylist() == [
        value
        for value, hit in zip(range(9000, 10000), newest.found.to_pylist(), strict=True)
        if hit
    ]
    assert oldest.found.true_count == 0


def test_a_store_of_no_bytes_keeps_nothing() -> None:
    store = MemoryAnswerStore(0)
    run(store.put(scope(), keys_of([1, 2]), pa.array([1, 2])))

    assert run(store.get(scope(), keys_of([1]))).found.to_pylist() == [False]
    assert store.stats()["ner"].evictions == 2


def test_every_arrow_type_the_models_answer_with_round_trips() -> None:
    store = MemoryAnswerStore(1 << 20)
    answers = [
        pa.array(["a", None], pa.large_string()),
        pa.array([1.5, None]),
        pa.array([True, None]),
        pa.array([b"x", None], pa.large_binary()),
        pa.array([[1, None], None], pa.list_(pa.int64())),
        pa.array([{"a": 1}, None], pa.struct({"a": pa.int64()})),
        pa.array([0, None], pa.timestamp("us", tz="UTC")),
        pa.array([1, None], pa.date32()),
    ]
    for index, answer in enumerate(answers):
        kind = scope(version=index, output=answer.type)
        run(store.put(kind, keys_of([1, 2]), answer))
        found = run(store.get(kind, keys_of([2, 1])))
        assert found.answers.type == answer.type
        assert found.answers.to_pylist() == answer.to_pylist()[::-1]


def test_open_answer_store_keeps_answers_in_memory_without_online_store() -> None:
    store = open_answer_store(None, max_bytes=123)

    assert isinstance(store, MemoryAnswerStore)
    assert store.max_bytes == 123


def test_a_lookup_of_few_keys_finds_what_a_lookup_of_many_finds() -> None:
    clock = Clock()
    store = MemoryAnswerStore(1 << 20, clock=clock)
    for start in (0, 50, 100, 25):  # overlapping puts: later answers win
        clock.now += 1
        values = list(range(start, start + 60))
        run(store.put(scope(), keys_of(values), pa.array([v + start for v in values])))
    wanted = list(range(-5, 200, 3))

    many = run(store.get(scope(), keys_of(wanted)))
    few = [run(store.get(scope(), keys_of(wanted[i : i + 4]))) for i in range(0, len(wanted), 4)]

    assert len(wanted) > 32
    assert many.found.to_pylist() == [hit for part in few for hit in part.found.to_pylist()]
    assert many.answers.to_pylist() == [a for part in few for a in part.answers.to_pylist()]
    answered = [key for key, hit in zip(wanted, many.found.to_pylist(), strict=True) if hit]
    by_key = dict(zip(answered, many.answers.to_pylist(), strict=True))
    assert (by_key[1], by_key[25], by_key[55], by_key[130]) == (1, 50, 80, 230)  # newest put
