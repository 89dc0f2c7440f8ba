"""Batching across calls against real runtime processes: chunks of different calls merged
while the in-flight slots are full, each call getting exactly its rows, and what a failure of
a merged chunk does to each call (DESIGN.md's failure table)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalk.catalog import Catalog, Route
from chalk.engine.calls import ModelCaller
from chalk.engine.errors import ModelHandlerError, ModelTransportError
from chalk.engine.recorder import CallRecorder
from tests.engine.call_handlers import BLOCK, CRASH
from tests.engine.conftest import Deploy, MakeCaller, StartRuntime
from tests.support.runtime_process import RuntimeProcess

CALLS = "chalk_remote_call_calls_total"
INT = pa.int64()
SCHEMAS = {"inputs": pa.schema([("x", INT)]), "output": pa.schema([("y", INT)])}
# Long enough that the queued calls merge while the slots are busy, never by the delay.
NO_DELAY_EXIT = 60.0


def calls_served(*runtimes: RuntimeProcess) -> int:
    return sum(int(runtime.metric(CALLS)) for runtime in runtimes)


def picky_group(
    runtime: StartRuntime, deploy: Deploy, replicas: int, block_s: float = 1.5
) -> list[RuntimeProcess]:
    """``replicas`` runtimes of ``call_handlers.picky`` serving scaling group ``picky``."""
    env = {"BLOCK_SECONDS": str(block_s)}
    models = [runtime("call_handlers.picky", env=env) for _ in range(replicas)]
    deploy("picky", [m.target for m in models], **SCHEMAS)
    return models


def call_in_thread(
    pool: ThreadPoolExecutor, caller: ModelCaller, values: list[int], recorder: CallRecorder
) -> Future[pa.Array]:
    return pool.submit(
        caller.call_blocking,
        feature="t.y",
        name="model.picky",
        args=[pa.array(values, INT)],
        recorder=recorder,
    )


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    give_up = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < give_up, f"timed out waiting until {what}"
        time.sleep(0.005)


def queued_behind_blockers(
    caller: ModelCaller, pool: ThreadPoolExecutor, blockers: int, queued: list[list[int]]
) -> list[Future[pa.Array]]:
    """Fill ``blockers`` slots with slow calls, then queue a call of each of ``queued`` behind
    them; returns the queued calls' futures once all wait."""
    for _ in range(blockers):
        call_in_thread(pool, caller, [BLOCK], CallRecorder())
    wait_for(lambda: caller.demand().get("picky", (0, 0))[0] == blockers, "the slots are full")
    futures = [call_in_thread(pool, caller, values, CallRecorder()) for values in queued]
    assert caller.demand()["picky"][0] == blockers, "a blocker ended before the calls queued"
    wait_for(lambda: caller.demand()["picky"] == (blockers, len(queued)), "the calls queue")
    return futures


def exit_codes_once_two_died(models: list[RuntimeProcess]) -> list[int]:
    """The replicas' exit codes (0: running), sorted, once two exited and a moment later."""
    wait_for(lambda: sum(m.process.poll() is not None for m in models) >= 2, "two replicas die")
    time.sleep(0.2)
    return sorted(m.process.poll() or 0 for m in models)


@pytest.fixture
def one_picky(runtime: StartRuntime, deploy: Deploy) -> RuntimeProcess:
    """One replica of group ``picky``, shared by a hypothesis test's examples."""
    [model] = picky_group(runtime, deploy, 1)
    return model


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=64, max_size=64),
    pauses=st.lists(st.sampled_from([0.0, 0.0, 0.001, 0.005]), min_size=64, max_size=64),
)
def test_under_64_threads_each_call_gets_exactly_its_rows(
    one_picky: RuntimeProcess, make_caller: MakeCaller, sizes: list[int], pauses: list[float]
) -> None:
    model = one_picky
    caller = make_caller(max_in_flight_per_endpoint=1, max_chunk_rows=200)
    served_before = calls_served(model)
    starts = [sum(sizes[:index]) for index in range(64)]
    barrier = threading.Barrier(64)

    def one_call(index: int) -> list[Any]:
        values = pa.array(range(starts[index], starts[index] + sizes[index]), INT)
        barrier.wait()
        time.sleep(pauses[index])
        answer = caller.call_blocking(feature="t.y", name="model.picky", args=[values])
        return answer.to_pylist()  # type: ignore[no-any-return]

    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(one_call, range(64)))

    assert answers == [list(range(s, s + n)) for s, n in zip(starts, sizes, strict=True)]
    # One slot for 64 calls: most of them rode in another call's model call.
    assert calls_served(model) - served_before < 64


@pytest.mark.parametrize(
    ("deterministic", "model_calls", "merged"),
    [
        pytest.param(True, 2, (3,), id="deterministic_merges"),
        pytest.param(False, 4, (1,), id="non_deterministic_never_merges"),
    ],
)
def test_calls_queued_behind_a_full_slot_merge_unless_the_model_is_non_deterministic(
    runtime: StartRuntime,
    deploy: Deploy,
    catalog: Catalog,
    deterministic: bool,
    model_calls: int,
    merged: tuple[int, ...],
) -> None:
    [model] = picky_group(runtime, deploy, 1)

    def resolve(name: str) -> Route:
        return dataclasses.replace(catalog.resolve(name), deterministic=deterministic)

    resolver = type("Resolver", (), {"resolve": staticmethod(resolve)})()
    recorders = [CallRecorder() for _ in range(3)]
    with (
        ModelCaller(
            resolver, max_in_flight_per_endpoint=1, batch_max_delay_s=NO_DELAY_EXIT
        ) as caller,
        ThreadPoolExecutor(4) as pool,
    ):
        call_in_thread(pool, caller, [BLOCK], CallRecorder())
        wait_for(lambda: caller.demand().get("picky") == (1, 0), "the slot is full")
        futures = [
            call_in_thread(pool, caller, values, recorder)
            for values, recorder in zip([[1, 2], [3], [4, 5, 6]], recorders, strict=True)
        ]
        wait_for(lambda: caller.demand()["picky"] == (1, 3), "the calls queue")
        answers = [future.result(timeout=30).to_pylist() for future in futures]

    assert answers == [[1, 2], [3], [4, 5, 6]]
    assert calls_served(model) == model_calls
    figures = recorders[0].groups()["picky"]
    assert (figures.calls, figures.rows, figures.chunk_queries) == (1, 2, merged)
    assert figures.left_slot_free == 1
    assert figures.waited_s > 0


def test_a_handler_error_in_a_merged_chunk_fails_only_the_call_whose_rows_fail(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    [model] = picky_group(runtime, deploy, 1)
    caller = make_caller(max_in_flight_per_endpoint=1, batch_max_delay_s=NO_DELAY_EXIT)

    with ThreadPoolExecutor(4) as pool:
        good, bad, other = queued_behind_blockers(caller, pool, 1, [[1, 2], [-1], [5]])
        answers = [good.result(timeout=30).to_pylist(), other.result(timeout=30).to_pylist()]
        with pytest.raises(
            ModelHandlerError,
            match=r"^t\.y: the handler of scaling group 'picky' \(model picky version 1\) failed "
            r"at 127\.0\.0\.1:\d+ on rows 0-0: ValueError: cannot score negative values \[-1\]",
        ):
            bad.result(timeout=30)

    assert answers == [[1, 2], [5]]
    # The blocker, the merged chunk, then each call's part alone.
    assert calls_served(model) == 5


def test_a_call_whose_deadline_passes_while_queued_leaves_the_queue(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    picky_group(runtime, deploy, 1, block_s=1.0)
    # Rows never merge (one per chunk), so the second blocker holds the slot past the third
    # call's deadline: 1.5 s after it queued, the slot is busy until about 2 s.
    caller = make_caller(
        max_in_flight_per_endpoint=1,
        max_chunk_rows=1,
        deadline_s=1.5,
        batch_max_delay_s=NO_DELAY_EXIT,
    )

    with ThreadPoolExecutor(3) as pool:
        call_in_thread(pool, caller, [BLOCK], CallRecorder())
        wait_for(lambda: caller.demand().get("picky") == (1, 0), "the slot is full")
        second = call_in_thread(pool, caller, [BLOCK], CallRecorder())
        wait_for(lambda: caller.demand()["picky"] == (1, 1), "the second blocker queues")
        late = call_in_thread(pool, caller, [7], CallRecorder())
        with pytest.raises(
            ModelTransportError,
            match=r"^t\.y: catalog_call\('model\.picky'\): rows 0-0 waited 1\.\ds in the queue "
            r"of scaling group 'picky' without a free replica slot, past the deadline",
        ):
            late.result(timeout=30)
        assert second.result(timeout=30).to_pylist() == [BLOCK]

    assert caller.demand()["picky"] == (0, 0)


def test_a_replica_death_during_a_merged_chunk_splits_it_and_fails_only_the_killer(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    models = picky_group(runtime, deploy, 3)
    caller = make_caller(max_in_flight_per_endpoint=1, batch_max_delay_s=NO_DELAY_EXIT)

    with ThreadPoolExecutor(6) as pool:
        good, killer, other = queued_behind_blockers(caller, pool, 3, [[1], [CRASH], [2]])
        answers = [good.result(timeout=60).to_pylist(), other.result(timeout=60).to_pylist()]
        with pytest.raises(
            ModelTransportError,
            match=r"^t\.y: catalog_call\('model\.picky'\): the model's handler crashed replica "
            r"127\.0\.0\.1:\d+ of scaling group 'picky' on rows 0-0, twice: connection lost",
        ):
            killer.result(timeout=60)

    assert answers == [[1], [2]]
    assert exit_codes_once_two_died(models) == [0, 3, 3]


def test_a_handler_that_kills_its_replica_kills_two_of_four_at_most(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    models = [runtime("call_handlers.crash") for _ in range(4)]
    deploy("crash", [m.target for m in models], **SCHEMAS)

    with pytest.raises(
        ModelTransportError,
        match=r"the model's handler crashed replica 127\.0\.0\.1:\d+ of scaling group 'crash' "
        r"on rows 0-0, twice: connection lost \(.+\): expected the handler to answer or raise",
    ):
        make_caller().call_blocking(feature="t.y", name="model.crash", args=[pa.array([1])])

    assert exit_codes_once_two_died(models) == [0, 0, 3, 3]


def test_a_queued_chunk_leaves_without_a_free_slot_once_past_the_groups_delay(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    picky_group(runtime, deploy, 1)
    caller = make_caller(max_in_flight_per_endpoint=1, batch_max_delay_s=0.05)
    recorder = CallRecorder()

    with ThreadPoolExecutor(2) as pool:
        blocker = call_in_thread(pool, caller, [BLOCK], CallRecorder())
        wait_for(lambda: caller.demand().get("picky") == (1, 0), "the slot is full")
        answer = call_in_thread(pool, caller, [7], recorder).result(timeout=30)
        blocked_meanwhile = not blocker.done()

    assert answer.to_pylist() == [7]
    assert blocked_meanwhile
    figures = recorder.groups()["picky"]
    assert (figures.left_delay, figures.left_slot_free, figures.chunk_queries) == (1, 0, (1,))
    assert figures.waited_s >= 0.05


def test_queued_chunks_that_fill_a_merged_chunk_leave_without_a_free_slot(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    picky_group(runtime, deploy, 1)
    caller = make_caller(
        max_in_flight_per_endpoint=1, max_chunk_rows=3, batch_max_delay_s=NO_DELAY_EXIT
    )
    first, second = CallRecorder(), CallRecorder()

    with ThreadPoolExecutor(4) as pool:
        blocker = call_in_thread(pool, caller, [BLOCK], CallRecorder())
        wait_for(lambda: caller.demand().get("picky") == (1, 0), "the slot is full")
        two_rows = call_in_thread(pool, caller, [1, 2], first)
        wait_for(lambda: caller.demand()["picky"] == (1, 1), "the first call queues")
        one_row = call_in_thread(pool, caller, [3], second)
        wait_for(lambda: caller.demand()["picky"] == (1, 2), "the second call queues")
        # Three rows fill a chunk: a third call's row would not fit, so the two leave now.
        last = call_in_thread(pool, caller, [4], CallRecorder())
        answers = [two_rows.result(timeout=30).to_pylist(), one_row.result(timeout=30)]
        blocked_meanwhile = not blocker.done()
        assert last.result(timeout=30).to_pylist() == [4]

    assert answers[0] == [1, 2]
    assert answers[1].to_pylist() == [3]
    assert blocked_meanwhile
    for recorder in (first, second):
        figures = recorder.groups()["picky"]
        assert (figures.left_full, figures.chunk_queries) == (1, (2,))


def test_demand_counts_each_call_a_merged_model_call_carries(
    runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller
) -> None:
    # DESIGN.md: demand counts calls before merging, so 3 queries in one model call are 3 in
    # flight (the autoscaler divides them by the queue-depth target).
    picky_group(runtime, deploy, 1)
    caller = make_caller(max_in_flight_per_endpoint=1, batch_max_delay_s=NO_DELAY_EXIT)

    with ThreadPoolExecutor(4) as pool:
        queued = queued_behind_blockers(caller, pool, 1, [[BLOCK], [BLOCK, 1], [BLOCK, 2]])
        wait_for(lambda: caller.demand()["picky"] == (3, 0), "the merged call is in flight")
        answers = [future.result(timeout=30).to_pylist() for future in queued]

    assert answers == [[BLOCK], [BLOCK, 1], [BLOCK, 2]]
    assert caller.demand()["picky"] == (0, 0)
