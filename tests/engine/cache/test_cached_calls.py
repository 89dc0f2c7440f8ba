"""``ModelCaller`` with a feature's ``max_staleness``: answers from the cache, only misses sent,
real runtime processes counting the rows they get."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pytest

from chalk.catalog import Catalog
from chalk.engine.cache import MemoryAnswerStore
from chalk.engine.cache.redis_store import RedisAnswerStore
from chalk.engine.calls import ModelCaller
from chalk.engine.errors import ModelUnavailableError
from chalk.engine.recorder import CallRecorder, GroupCalls, recording
from chalk.engine.routes import ROUTE_TTL_S
from tests.engine.conftest import (
    SHIM_HANDLERS,
    Deploy,
    MakeCaller,
    StartRuntime,
    deploy_group,
    sqlite_catalog,
)
from tests.support.redis import RedisServer
from tests.support.runtime_process import RuntimeProcess

ROWS = "chalk_remote_call_rows_total"
INT_IN, INT_OUT = pa.schema({"x": pa.int64()}), pa.schema({"y": pa.int64()})
HOUR = 3600.0


@pytest.fixture
def model(runtime: StartRuntime, deploy: Deploy) -> RuntimeProcess:
    """The runtime of ``model_handlers.double``, deployed as the group ``double``."""
    started = runtime("model_handlers.double", cwd=SHIM_HANDLERS)
    deploy("double", [started.target], inputs=INT_IN, output=INT_OUT)
    return started


def call(
    caller: ModelCaller,
    values: list[int | None],
    *,
    staleness: float | None = HOUR,
    group: str = "double",
) -> tuple[list[int | None], GroupCalls]:
    with recording(CallRecorder()) as recorder:
        answer = caller.call_blocking(
            feature="t.y",
            name=f"model.{group}",
            args=[pa.array(values, pa.int64())],
            max_staleness_s=staleness,
        )
    return answer.to_pylist(), recorder.groups()[group]


def test_a_second_call_is_answered_from_the_cache(
    model: RuntimeProcess, make_caller: MakeCaller
) -> None:
    caller = make_caller()

    first, first_calls = call(caller, [1, 2, None, 2])
    second, second_calls = call(caller, [2, None, 1, 1])

    assert first == [2, 4, None, 4]
    assert second == [4, None, 2, 2]
    assert model.metric(ROWS) == 3
    assert (first_calls.cache_hits, first_calls.cache_misses) == (0, 3)
    assert (second_calls.cache_hits, second_calls.cache_misses, second_calls.calls) == (3, 0, 0)


def test_only_the_rows_not_cached_are_sent(model: RuntimeProcess, make_caller: MakeCaller) -> None:
    caller = make_caller(max_chunk_rows=2)
    call(caller, [1, 3, 5])

    answer, calls = call(caller, [7, 1, 8, 3, 9, 7])

    assert answer == [14, 2, 16, 6, 18, 14]
    assert model.metric(ROWS) == 3 + 3
    assert (calls.cache_hits, calls.cache_misses, calls.rows) == (2, 3, 3)
    assert call(caller, [9, 8, 7, 5])[1].cache_hits == 4


def test_without_max_staleness_nothing_is_read_or_kept(
    model: RuntimeProcess, make_caller: MakeCaller
) -> None:
    store = MemoryAnswerStore()
    caller = make_caller(answers=store)
    call(caller, [1, 2])

    answer, calls = call(caller, [1, 2], staleness=None)
    call(caller, [3], staleness=None)

    assert answer == [2, 4]
    assert model.metric(ROWS) == 2 + 2 + 1
    assert (calls.cache_hits, calls.cache_misses) == (0, 0)
    assert call(caller, [3])[1].cache_misses == 1  # [3] was never kept


def test_a_non_deterministic_model_is_never_cached(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    model = runtime("model_handlers.double", cwd=SHIM_HANDLERS)
    deploy("dice", [model.target], inputs=INT_IN, output=INT_OUT, deterministic=False)
    store = MemoryAnswerStore()
    caller = make_caller(answers=store)

    call(caller, [1, 1], group="dice")
    answer, calls = call(caller, [1, 1], group="dice")

    assert answer == [2, 2]
    assert model.metric(ROWS) == 4
    assert (calls.cache_hits, calls.cache_misses) == (0, 0)
    assert store.stats() == {}


def test_a_new_model_version_gets_fresh_calls(
    model: RuntimeProcess, make_caller: MakeCaller, catalog: Catalog
) -> None:
    caller = make_caller()
    call(caller, [1, 2])
    version = catalog.models.register(
        "double", input_schema=INT_IN, output_schema=INT_OUT, image="x"
    )
    group = catalog.groups.get("double")
    spec = {**group.spec, "model": {"name": "double", "version": version.model_version}}
    catalog.groups.update("double", spec)
    caller = make_caller()  # a fresh route (a caller reads it again after a second)
    store = caller.answers

    answer, calls = call(caller, [1, 2])

    assert answer == [2, 4]
    assert model.metric(ROWS) == 4
    assert (calls.cache_hits, calls.cache_misses) == (0, 2)
    assert store.stats()["double"].misses == 2


def test_two_catalogs_sharing_one_redis_never_share_a_versions_answers(
    model: RuntimeProcess,
    make_caller: MakeCaller,
    tmp_path: Path,
    redis_server: RedisServer,
) -> None:
    dev = make_caller(answers=RedisAnswerStore(redis_server.url))
    call(dev, [1, 2])
    (tmp_path / "prod").mkdir()

    with sqlite_catalog(tmp_path / "prod") as prod_catalog:  # its own `double` v1
        deploy_group(prod_catalog, "double", [model.target], inputs=INT_IN, output=INT_OUT)
        prod = ModelCaller(prod_catalog, answers=RedisAnswerStore(redis_server.url))
        try:
            answer, first = call(prod, [1, 2])
            second = call(prod, [2, 1])[1]
        finally:
            prod.close()

    assert answer == [2, 4]
    assert (first.cache_hits, first.cache_misses) == (0, 2)
    assert second.cache_hits == 2
    assert call(dev, [2, 1])[1].cache_hits == 2
    assert model.metric(ROWS) == 2 + 2


def test_answers_expire_after_max_staleness(model: RuntimeProcess, make_caller: MakeCaller) -> None:
    now = [100.0]
    caller = make_caller(answers=MemoryAnswerStore(clock=lambda: now[0]))
    call(caller, [1], staleness=30)
    now[0] += 20
    assert call(caller, [1], staleness=30)[1].cache_hits == 1

    now[0] += 11
    answer, calls = call(caller, [1], staleness=30)

    assert answer == [2]
    assert (calls.cache_hits, calls.cache_misses) == (0, 1)
    assert model.metric(ROWS) == 2


def test_every_answer_type_round_trips_through_the_cache(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    model = runtime("model_handlers.identity", cwd=SHIM_HANDLERS)
    columns = {
        "s": pa.array(["a", None, "a"], pa.large_string()),
        "f": pa.array([1.5, None, 1.5]),
        "b": pa.array([True, None, True]),
        "bin": pa.array([b"x", None, b"x"], pa.large_binary()),
        "l": pa.array([[1, None], None, [1, None]], pa.list_(pa.int64())),
        "ts": pa.array([5, None, 5], pa.timestamp("us", tz="UTC")),
        "d": pa.array([3, None, 3], pa.date32()),
    }
    caller = make_caller()
    for name, values in columns.items():
        deploy(
            f"echo-{name}",
            [model.target],
            inputs=pa.schema({"x": values.type}),
            output=pa.schema({"y": values.type}),
        )
        for _ in range(2):
            with recording(CallRecorder()) as recorder:
                answer = caller.call_blocking(
                    feature="t.y", name=f"model.echo-{name}", args=[values], max_staleness_s=HOUR
                )
            assert answer.type == values.type
            assert answer.to_pylist() == values.to_pylist()
        assert recorder.groups()[f"echo-{name}"].cache_hits == 2


def test_a_group_with_no_ready_replica_answers_cached_rows_and_holds_only_for_misses(
    model: RuntimeProcess, catalog: Catalog, make_caller: MakeCaller
) -> None:
    caller = make_caller(hold_timeout_s=0.3)
    call(caller, [1, 2])
    group = catalog.groups.find("double")
    assert group is not None
    # The group scaled to zero: no endpoint left.
    catalog.groups.report(
        group.id,
        status="Idle",
        reason="no call for 300 s",
        desired=0,
        ready=0,
        available=0,
        endpoints=[],
    )
    time.sleep(ROUTE_TTL_S)

    answer, calls = call(caller, [2, 1, 2])
    assert answer == [4, 2, 4]
    assert (calls.cache_hits, calls.calls) == (2, 0)
    with pytest.raises(ModelUnavailableError, match="double"):
        call(caller, [3])


def test_rows_sent_counts_only_rows_the_model_got_and_the_store_says_its_bytes_and_evictions(
    model: RuntimeProcess, make_caller: MakeCaller
) -> None:
    store = MemoryAnswerStore()
    caller = make_caller(answers=store)

    _, first = call(caller, [1, 2, 2, 3])
    _, second = call(caller, [3, 1, 4, 4])

    kept = store.stats()["double"].bytes
    assert (first.rows_asked, first.rows_sent, first.dedup_hits) == (4, 3, 1)
    assert (second.rows_asked, second.rows_sent, second.dedup_hits) == (4, 1, 1)
    assert (second.cache_hits, second.cache_misses, second.rows) == (2, 1, 1)
    assert first.cache_bytes > 0
    assert second.cache_bytes == kept > first.cache_bytes
    assert (first.cache_evictions, second.cache_evictions) == (0, 0)
    assert call(caller, [1, 2, 3, 4])[1].rows_sent == 0


def test_a_query_counts_the_evictions_its_group_had_while_it_ran(
    model: RuntimeProcess, make_caller: MakeCaller
) -> None:
    probe = make_caller()
    call(probe, list(range(10)))
    ten_rows = probe.answers.stats()["double"].bytes
    store = MemoryAnswerStore(max_bytes=ten_rows)
    caller = make_caller(answers=store)
    call(caller, list(range(10)))
    before = store.stats()["double"].evictions

    _, calls = call(caller, list(range(100, 110)))

    evicted = store.stats()["double"].evictions - before
    assert evicted > 0
    assert calls.cache_evictions == evicted
    assert calls.cache_bytes == store.stats()["double"].bytes <= ten_rows
