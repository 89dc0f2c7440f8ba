"""The runtime's gRPC server cores (chalk.shim._core, chalk.shim._grpcio_core, with
chalk.shim._services) as a real process; every test runs on both cores.

Streams of several messages, handler slots, cancellation, unknown methods, undecodable
messages, health Watch and reflection, each through a real gRPC client on 127.0.0.1. The
single-message wire behaviour and the lifecycle are in test_server.py.
"""

from __future__ import annotations

import asyncio
import queue
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from chalk.shim import RemoteCallClient, _wire
from chalk.shim.client import health_status
from tests.shim.conftest import BOTH_CORES
from tests.support.runtime_process import RuntimeProcess

pytestmark = BOTH_CORES

Serving = Callable[..., RuntimeProcess]
Start = Callable[..., RuntimeProcess]

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"


def message(batches: Sequence[pa.RecordBatch], *, name: str = "group") -> Any:
    """One CallFunctionRequest whose Arrow IPC stream holds ``batches``."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batches[0].schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return _wire.CallFunctionRequest(name=name, feather_stream=sink.getvalue().to_pybytes())


def floats(*values: float) -> pa.RecordBatch:
    return pa.record_batch({"x": pa.array(values, pa.float64())})


def answer(response: Any) -> list[Any]:
    """The values of the one result batch a CallFunctionResponse holds."""
    reader = pa.ipc.open_stream(pa.py_buffer(response.feather_stream))
    return list(reader.read_next_batch().column(0).to_pylist())


def call_function(channel: grpc.Channel) -> Any:
    return channel.stream_stream(
        _wire.CALL_FUNCTION_METHOD,
        request_serializer=_wire.CallFunctionRequest.SerializeToString,
        response_deserializer=_wire.CallFunctionResponse.FromString,
    )


def call(target: str, values: pa.Array) -> list[Any]:
    """One call through our client, as the engine makes it."""

    async def _call() -> pa.Array:
        async with RemoteCallClient() as client:
            return await client.call(target, {"x": values}, name="group")

    return list(asyncio.run(_call()).to_pylist())


def health(target: str, service: str = "") -> str:
    return asyncio.run(health_status(target, service=service))


def status_name(response: health_pb2.HealthCheckResponse) -> str:
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def drain(responses: Iterator[Any]) -> tuple[list[Any], grpc.StatusCode]:
    """Whatever a response stream still yields, and the code it ends with."""
    rest: list[Any] = []
    try:
        rest.extend(responses)
    except grpc.RpcError as error:
        return rest, error.code()
    return rest, grpc.StatusCode.OK


class Outgoing:
    """Request messages handed to a stream one at a time; ``close`` half-closes it."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()

    def send(self, request: Any) -> None:
        self._queue.put(request)

    def close(self) -> None:
        self._queue.put(None)

    def __iter__(self) -> Iterator[Any]:
        while (request := self._queue.get()) is not None:
            yield request


def warnings_logged(runtime: RuntimeProcess) -> list[str]:
    return [r["message"] for r in runtime.records() if r["severity"] in ("WARNING", "ERROR")]


def test_an_interactive_stream_gets_each_answer_before_sending_the_next(serving: Serving) -> None:
    runtime = serving("model_handlers.double")
    outgoing = Outgoing()

    with grpc.insecure_channel(runtime.target) as channel:
        responses = call_function(channel)(iter(outgoing), timeout=30)
        received = []
        for round_ in range(5):
            outgoing.send(message([floats(round_), floats(round_ + 0.5, 1.0)]))
            received.append([answer(next(responses)), answer(next(responses))])
        outgoing.close()
        rest, code = drain(responses)

    assert received == [[[2.0 * r], [2.0 * r + 1.0, 2.0]] for r in range(5)]
    assert rest == []
    assert code == grpc.StatusCode.OK


def test_messages_sent_at_once_are_answered_in_order_batch_by_batch(serving: Serving) -> None:
    runtime = serving("model_handlers.identity")
    requests = [message([floats(10 * m + b) for b in range(3)]) for m in range(20)]

    with grpc.insecure_channel(runtime.target) as channel:
        responses = list(call_function(channel)(iter(requests), timeout=30))

    expected = [[float(10 * m + b)] for m in range(20) for b in range(3)]
    assert [answer(r) for r in responses] == expected


def test_a_stream_half_closed_without_messages_ends_ok_with_no_answers(serving: Serving) -> None:
    runtime = serving("model_handlers.identity", args=["--metrics-port", "0"])

    with grpc.insecure_channel(runtime.target) as channel:
        responses = call_function(channel)(iter([]), timeout=30)
        rest, code = drain(responses)

    assert rest == []
    assert code == grpc.StatusCode.OK
    runtime.wait_in_flight(0)
    assert runtime.metric("chalk_remote_call_calls_total") == 1


def test_an_error_in_a_later_message_ends_the_call_after_the_earlier_answers(
    serving: Serving,
) -> None:
    runtime = serving("model_handlers.double", args=["--metrics-port", "0"])
    requests = [
        message([floats(1.0), floats(2.0)]),
        _wire.CallFunctionRequest(name="group", feather_stream=b"not arrow at all"),
        message([floats(3.0)]),
    ]

    with grpc.insecure_channel(runtime.target) as channel:
        responses, code = drain(call_function(channel)(iter(requests), timeout=30))

    assert [answer(r) for r in responses] == [[2.0], [4.0]]
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    runtime.wait_in_flight(0)
    assert runtime.metric("chalk_remote_call_rows_total") == 2


def test_an_open_stream_waiting_for_its_next_message_holds_no_handler_slot(
    serving: Serving,
) -> None:
    runtime = serving("model_handlers.double", args=["--workers", "1"])
    outgoing = Outgoing()

    with grpc.insecure_channel(runtime.target) as channel:
        responses = call_function(channel)(iter(outgoing), timeout=30)
        outgoing.send(message([floats(1.0)]))
        first = answer(next(responses))
        # The only handler slot is free while the open stream waits for its client.
        other = call(runtime.target, pa.array([5.0]))
        outgoing.send(message([floats(2.0)]))
        second = answer(next(responses))
        outgoing.close()
        rest, code = drain(responses)

    assert (first, other, second) == ([2.0], [10.0], [4.0])
    assert rest == []
    assert code == grpc.StatusCode.OK


def test_workers_bound_how_many_handlers_run_at_once(serving: Serving, tmp_path: Path) -> None:
    peak_file = tmp_path / "peak"
    runtime = serving(
        "model_handlers.peak_tracking",
        args=["--workers", "2"],
        env={"SLOW_SECONDS": "1", "PEAK_FILE": str(peak_file)},
    )

    async def five_calls() -> list[list[Any]]:
        async with RemoteCallClient() as client:
            results = await asyncio.gather(
                *(
                    client.call(runtime.target, {"x": pa.array([i, i + 100])}, name="group")
                    for i in range(5)
                )
            )
        return [list(result.to_pylist()) for result in results]

    results = asyncio.run(five_calls())

    assert results == [[i, i + 100] for i in range(5)]
    assert peak_file.read_text() == "2"


def test_a_call_past_its_deadline_is_cancelled_and_the_server_carries_on(
    serving: Serving,
) -> None:
    runtime = serving(
        "model_handlers.slow", env={"SLOW_SECONDS": "4"}, args=["--metrics-port", "0"]
    )

    with grpc.insecure_channel(runtime.target) as channel:
        responses = call_function(channel)(iter([message([floats(1.0)])]), timeout=2)
        runtime.wait_in_flight(1)
        rest, code = drain(responses)

    assert rest == []
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert health(runtime.target) == "SERVING"
    assert call(runtime.target, pa.array([7.0])) == [7.0]
    runtime.wait_in_flight(0)
    # Both handlers ran to their end: the cancelled one's too.
    assert runtime.metric("chalk_remote_call_handler_seconds_count") == 2
    assert runtime.metric("chalk_remote_call_calls_total") == 2


def test_a_call_cancelled_while_waiting_for_a_handler_slot_never_runs_the_handler(
    serving: Serving,
) -> None:
    runtime = serving(
        "model_handlers.slow",
        env={"SLOW_SECONDS": "3"},
        args=["--workers", "1", "--metrics-port", "0"],
    )
    outcome: dict[str, Any] = {}

    def first_call() -> None:
        outcome["result"] = call(runtime.target, pa.array([1.0, 2.0]))

    caller = threading.Thread(target=first_call)
    caller.start()
    runtime.wait_in_flight(1)
    with grpc.insecure_channel(runtime.target) as channel:
        waiting = call_function(channel)(iter([message([floats(3.0, 4.0, 5.0)])]), timeout=30)
        runtime.wait_in_flight(2)
        waiting.cancel()
        rest, code = drain(waiting)
    caller.join(timeout=20)

    assert rest == []
    assert code == grpc.StatusCode.CANCELLED
    assert outcome["result"] == [1.0, 2.0]
    runtime.wait_in_flight(0)
    assert runtime.metric("chalk_remote_call_calls_total") == 2
    assert runtime.metric("chalk_remote_call_rows_total") == 2


def test_a_call_cancelled_before_sending_anything_leaves_nothing_in_flight(
    serving: Serving,
) -> None:
    runtime = serving("model_handlers.identity", args=["--metrics-port", "0"])
    outgoing = Outgoing()

    with grpc.insecure_channel(runtime.target) as channel:
        responses = call_function(channel)(iter(outgoing), timeout=30)
        runtime.wait_in_flight(1)
        responses.cancel()
        outgoing.close()
        rest, code = drain(responses)

    assert rest == []
    assert code == grpc.StatusCode.CANCELLED
    runtime.wait_in_flight(0)
    assert health(runtime.target) == "SERVING"
    assert call(runtime.target, pa.array([3.0])) == [3.0]


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(f"/{_wire.SERVICE_NAME}/NoSuch", id="unknown_method"),
        pytest.param("/no.such.Service/CallFunction", id="unknown_service"),
    ],
)
def test_a_path_naming_no_method_is_unimplemented(serving: Serving, path: str) -> None:
    runtime = serving("model_handlers.identity")

    with grpc.insecure_channel(runtime.target) as channel, pytest.raises(grpc.RpcError) as info:
        channel.unary_unary(path)(b"", timeout=10)

    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert path in info.value.details()
    assert health(runtime.target) == "SERVING"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param(
            _wire.CALL_FUNCTION_METHOD, "chalk.runtime.v1.CallFunctionRequest", id="call_function"
        ),
        pytest.param(HEALTH_CHECK, "grpc.health.v1.HealthCheckRequest", id="health_check"),
    ],
)
def test_bytes_that_are_not_the_request_message_are_an_invalid_argument(
    serving: Serving, path: str, expected: str
) -> None:
    runtime = serving("model_handlers.identity", args=["--metrics-port", "0"])

    with grpc.insecure_channel(runtime.target) as channel, pytest.raises(grpc.RpcError) as info:
        list(channel.stream_stream(path)(iter([b"\xff\xff\xff"]), timeout=10))

    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"expected a {expected}" in info.value.details()
    runtime.wait_in_flight(0)
    assert health(runtime.target) == "SERVING"
    assert call(runtime.target, pa.array([4.0])) == [4.0]


def test_a_health_watch_takes_one_request(serving: Serving) -> None:
    runtime = serving("model_handlers.identity")
    request = health_pb2.HealthCheckRequest(service="").SerializeToString()

    with grpc.insecure_channel(runtime.target) as channel:
        watch = channel.stream_stream(
            HEALTH_WATCH, response_deserializer=health_pb2.HealthCheckResponse.FromString
        )
        responses, code = drain(watch(iter([request, request]), timeout=10))

    assert [status_name(r) for r in responses] == ["SERVING"]
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_health_watch_follows_startup_then_shutdown_without_holding_exit_up(
    start: Start, tmp_path: Path
) -> None:
    runtime = start(
        "lifecycle_handlers.handler",
        env={"LIFECYCLE_DIR": str(tmp_path), "STARTUP_SECONDS": "4"},
    )

    with grpc.insecure_channel(runtime.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=30
        )
        before = [status_name(next(watch)), status_name(next(watch))]
        runtime.signal(signal.SIGTERM)
        after, code = drain(watch)
        # Well under the 30 s grace period: an open Watch is no call to wait for.
        exit_code = runtime.wait(timeout=15)

    assert before == ["NOT_SERVING", "SERVING"]
    assert {status_name(r) for r in after} <= {"NOT_SERVING"}
    assert code != grpc.StatusCode.DEADLINE_EXCEEDED
    assert exit_code == 0
    assert (tmp_path / "shutdown").read_text() == "ran"
    assert warnings_logged(runtime) == []


def test_health_watch_of_an_unknown_service_says_service_unknown(serving: Serving) -> None:
    runtime = serving("model_handlers.identity")

    with grpc.insecure_channel(runtime.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=30
        )
        first = status_name(next(watch))
        watch.cancel()

    assert first == "SERVICE_UNKNOWN"
    assert health(runtime.target) == "SERVING"


def test_reflection_describes_the_health_service(serving: Serving) -> None:
    runtime = serving("model_handlers.identity")
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.health.v1.Health")

    with grpc.insecure_channel(runtime.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        [response] = list(stub.ServerReflectionInfo(iter([request]), timeout=10))

    files = [
        descriptor_pb2.FileDescriptorProto.FromString(data)
        for data in response.file_descriptor_response.file_descriptor_proto
    ]
    [health_service] = [
        service
        for f in files
        for service in f.service
        if f"{f.package}.{service.name}" == "grpc.health.v1.Health"
    ]
    assert {"Check", "Watch"} <= {method.name for method in health_service.method}


def test_reflection_answers_an_empty_request_with_an_error_and_carries_on(
    serving: Serving,
) -> None:
    runtime = serving("model_handlers.identity")
    requests = [
        reflection_pb2.ServerReflectionRequest(),
        reflection_pb2.ServerReflectionRequest(list_services=""),
    ]

    with grpc.insecure_channel(runtime.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses, code = drain(stub.ServerReflectionInfo(iter(requests), timeout=10))

    assert [r.WhichOneof("message_response") for r in responses] == [
        "error_response",
        "list_services_response",
    ]
    assert responses[0].error_response.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    names = {service.name for service in responses[1].list_services_response.service}
    assert {_wire.SERVICE_NAME, "grpc.health.v1.Health"} <= names
    assert code == grpc.StatusCode.OK


def test_sigterm_with_a_watch_and_a_slow_call_open_finishes_the_call_and_exits_0(
    serving: Serving,
) -> None:
    runtime = serving(
        "model_handlers.slow", env={"SLOW_SECONDS": "3"}, args=["--metrics-port", "0"]
    )
    outcome: dict[str, Any] = {}

    def slow_call() -> None:
        outcome["result"] = call(runtime.target, pa.array([7.0, 8.0]))

    with grpc.insecure_channel(runtime.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=30
        )
        first = status_name(next(watch))
        caller = threading.Thread(target=slow_call)
        caller.start()
        runtime.wait_in_flight(1)
        runtime.signal(signal.SIGTERM)
        draining = status_name(next(watch))
        caller.join(timeout=20)
        exit_code = runtime.wait(timeout=20)
        after, code = drain(watch)

    assert (first, draining) == ("SERVING", "NOT_SERVING")
    assert outcome["result"] == [7.0, 8.0]
    assert exit_code == 0
    assert after == []
    assert code != grpc.StatusCode.DEADLINE_EXCEEDED
    assert warnings_logged(runtime) == []


def test_a_handler_raising_system_exit_fails_its_call_and_frees_its_slot(
    serving: Serving,
) -> None:
    runtime = serving("model_handlers.exits", args=["--workers", "1", "--metrics-port", "0"])
    codes = []

    with grpc.insecure_channel(runtime.target) as channel:
        for _ in range(2):
            _rest, code = drain(call_function(channel)(iter([message([floats(1.0)])]), timeout=5))
            codes.append(code)

    assert codes == [grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNKNOWN]
    runtime.wait_in_flight(0)


def test_a_client_that_reads_nothing_is_held_back_not_buffered(serving: Serving) -> None:
    # 100 messages of 2 MB each: a server that went on answering while its answers could not
    # leave would take them all (and hold 200 MB of answers); HTTP/2 flow control must stop
    # the client well before that.
    runtime = serving("model_handlers.identity", args=["--workers", "2"])
    request = message([pa.record_batch({"x": pa.array(range(250_000), pa.float64())})])
    total = 100
    taken = threading.Semaphore(0)
    taken_count = [0]

    def requests() -> Iterator[Any]:
        for _ in range(total):
            taken_count[0] += 1
            taken.release()
            yield request

    options = [("grpc.max_receive_message_length", 1 << 30)]
    with grpc.insecure_channel(runtime.target, options=options) as channel:
        responses = call_function(channel)(requests(), timeout=60)
        # Wait until the client stack stops taking requests (or has taken them all).
        while taken.acquire(timeout=1.5):
            pass
        held_at = taken_count[0]
        answered = sum(1 for _ in responses)

    assert held_at < total // 2
    assert answered == total


def test_a_call_refused_while_draining_does_not_wait_for_a_busy_handler(
    serving: Serving,
) -> None:
    runtime = serving(
        "model_handlers.slow",
        env={"SLOW_SECONDS": "4"},
        args=["--workers", "1", "--metrics-port", "0"],
    )
    outcome: dict[str, Any] = {}

    def slow_call() -> None:
        outcome["result"] = call(runtime.target, pa.array([1.0]))

    caller = threading.Thread(target=slow_call)
    caller.start()
    runtime.wait_in_flight(1)
    runtime.signal(signal.SIGTERM)
    # Health says NOT_SERVING once new calls are refused.
    while health(runtime.target) == "SERVING":
        pass
    with grpc.insecure_channel(runtime.target) as channel:
        request = message([floats(2.0)])
        _rest, refused = drain(call_function(channel)(iter([request]), timeout=10))
    busy_handler_done = "result" in outcome
    caller.join(timeout=20)

    assert refused == grpc.StatusCode.UNAVAILABLE
    assert not busy_handler_done
    assert outcome["result"] == [1.0]
    assert runtime.wait(timeout=20) == 0


@pytest.mark.parametrize(
    ("count", "code"),
    [
        pytest.param(0, grpc.StatusCode.UNIMPLEMENTED, id="none"),
        pytest.param(2, grpc.StatusCode.INVALID_ARGUMENT, id="two"),
    ],
)
def test_health_check_takes_exactly_one_request(
    serving: Serving, count: int, code: grpc.StatusCode
) -> None:
    runtime = serving("model_handlers.identity")
    request = health_pb2.HealthCheckRequest(service="").SerializeToString()

    with grpc.insecure_channel(runtime.target) as channel:
        check = channel.stream_stream(HEALTH_CHECK)
        _answers, got = drain(check(iter([request] * count), timeout=10))

    assert got == code
    assert health(runtime.target) == "SERVING"
