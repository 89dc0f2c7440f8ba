"""A one-chunk call from a thread whose route is cached (an online query's path: handed to the
loop through its inbox, answered from the queue's callback): its answers, errors, timeout, and
a caller closed under it behave as any call's, against a real replica."""

from __future__ import annotations

import concurrent.futures
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

from chalk.engine.calls import ModelCaller
from chalk.engine.errors import ModelCallError, ModelHandlerError
from chalk.engine.recorder import CallRecorder
from tests.engine.call_handlers import BLOCK
from tests.engine.conftest import Deploy, MakeCaller, StartRuntime
from tests.engine.test_batching import INT, NO_DELAY_EXIT, picky_group, wait_for


def call(caller: ModelCaller, values: list[int], timeout_s: float | None = None) -> list[int]:
    answer = caller.call_blocking(
        feature="t.y", name="model.picky", args=[pa.array(values, INT)], timeout_s=timeout_s
    )
    return answer.to_pylist()


@pytest.fixture
def warm(runtime: StartRuntime, deploy: Deploy, make_caller: MakeCaller) -> ModelCaller:
    """A caller of one ``picky`` replica (one slot, no delay exit) whose route is cached."""
    picky_group(runtime, deploy, 1)
    caller = make_caller(max_in_flight_per_endpoint=1, batch_max_delay_s=NO_DELAY_EXIT)
    assert call(caller, [1]) == [1]
    return caller


def test_answers_and_recorder_counts_come_back(warm: ModelCaller) -> None:
    recorder = CallRecorder()
    answer = warm.call_blocking(
        feature="t.y", name="model.picky", args=[pa.array([5, 5], INT)], recorder=recorder
    )

    assert answer.to_pylist() == [5, 5]
    calls = recorder.groups()["picky"]
    assert (calls.calls, calls.rows_asked, calls.rows_sent) == (1, 2, 1)


def test_a_handler_error_surfaces_naming_the_feature(warm: ModelCaller) -> None:
    with pytest.raises(ModelHandlerError, match="cannot score negative values") as raised:
        call(warm, [-5])

    assert str(raised.value).startswith("t.y: ")
    assert call(warm, [2]) == [2]


def test_a_timed_out_call_leaves_the_queue_and_the_next_call_goes(warm: ModelCaller) -> None:
    with ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(call, warm, [BLOCK])
        wait_for(lambda: warm.demand()["picky"] == (1, 0), "the slot is taken")
        with pytest.raises(TimeoutError, match=r"did not finish within 0\.3s"):
            call(warm, [3], timeout_s=0.3)
        wait_for(lambda: warm.demand()["picky"] == (1, 0), "the timed-out call left the queue")
        assert blocker.result(timeout=30) == [BLOCK]
    assert call(warm, [4]) == [4]


def test_a_caller_closed_under_a_waiting_call_ends_the_wait(warm: ModelCaller) -> None:
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(call, warm, [BLOCK])
        wait_for(lambda: warm.demand()["picky"] == (1, 0), "the call is in flight")
        began = time.monotonic()
        warm.close()
        with pytest.raises((concurrent.futures.CancelledError, ModelCallError)):
            waiting.result(timeout=30)
    assert time.monotonic() - began < 10
