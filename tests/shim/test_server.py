"""The runtime server as a real process on 127.0.0.1: wire behaviour, errors, lifecycle.

Tests of behaviour a server core gives (errors, health, draining, reflection) run on both
cores (``@BOTH_CORES``); the data round trips, the same through either, run on the default.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from chalk.shim import RemoteCallClient, RemoteHandlerError, TransportError, _wire
from chalk.shim.client import health_status
from chalk.shim.errors import MAX_PAYLOAD_BYTES, TRUNCATION_MARK
from tests.shim.conftest import BOTH_CORES
from tests.support.runtime_process import RuntimeProcess

Serving = Callable[..., RuntimeProcess]


def call(target: str, columns: Any, *, name: str = "group", **client_args: Any) -> pa.Array:
    async def _call() -> pa.Array:
        async with RemoteCallClient(**client_args) as client:
            return await client.call(target, columns, name=name)

    return asyncio.run(_call())


def raw_call(
    target: str,
    batches: Sequence[pa.RecordBatch],
    *,
    name: str = "group",
    metadata: Sequence[tuple[str, str]] = (),
) -> list[pa.RecordBatch]:
    """One CallFunction with one request message holding every batch, without our client."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batches[0].schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    request = _wire.CallFunctionRequest(name=name, feather_stream=sink.getvalue().to_pybytes())
    with grpc.insecure_channel(target) as channel:
        method = channel.stream_stream(
            _wire.CALL_FUNCTION_METHOD,
            request_serializer=_wire.CallFunctionRequest.SerializeToString,
            response_deserializer=_wire.CallFunctionResponse.FromString,
        )
        responses = list(method(iter([request]), metadata=metadata, timeout=30))
    return [
        pa.ipc.open_stream(pa.py_buffer(response.feather_stream)).read_next_batch()
        for response in responses
    ]


def health(target: str, service: str = "") -> str:
    return asyncio.run(health_status(target, service=service))


ROUND_TRIP_CASES = [
    pytest.param(pa.array([1, -2, None, 2**62], pa.int64()), id="int64"),
    pytest.param(pa.array([1, 2, None], pa.int8()), id="int8"),
    pytest.param(pa.array([1.5, None, float("inf")], pa.float64()), id="float64"),
    pytest.param(pa.array(["a", None, "ünïcode", ""], pa.string()), id="string"),
    pytest.param(pa.array(["a", None, "b" * 1000], pa.large_string()), id="large_string"),
    pytest.param(pa.array([b"\x00\x01", None], pa.large_binary()), id="large_binary"),
    pytest.param(pa.array([True, None, False]), id="bool"),
    pytest.param(pa.array([[1, 2], None, [], [None]], pa.list_(pa.int64())), id="list"),
    pytest.param(
        pa.array(
            [{"label": "ORG", "score": 0.9}, None, {"label": None, "score": 0.1}],
            pa.struct([("label", pa.string()), ("score", pa.float64())]),
        ),
        id="struct",
    ),
    pytest.param(
        pa.array(
            [dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC), None], pa.timestamp("us", tz="UTC")
        ),
        id="timestamp_utc",
    ),
    pytest.param(
        pa.array([dt.datetime(2024, 5, 1, 12, 30)], pa.timestamp("ms", tz="Europe/Paris")),
        id="timestamp_paris",
    ),
    pytest.param(pa.array([dt.date(2024, 2, 29), None], pa.date32()), id="date32"),
    pytest.param(pa.array([None, None], pa.null()), id="all_null"),
    pytest.param(pa.array([], pa.float64()), id="empty"),
]


@pytest.mark.parametrize("values", ROUND_TRIP_CASES)
def test_identity_returns_every_type_unchanged(serving: Serving, values: pa.Array) -> None:
    runtime = serving("model_handlers.identity")

    result = call(runtime.target, {"x": values})

    assert result.type == values.type
    assert result.equals(values)


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        pytest.param("model_handlers.double", [2.0, None, 6.0], id="array"),
        pytest.param("model_handlers.async_double", [2.0, None, 6.0], id="async"),
        pytest.param("model_handlers.as_list", [2.0, None, 6.0], id="list"),
        pytest.param("model_handlers.as_numpy", [2.0, float("nan"), 6.0], id="numpy"),
        pytest.param("model_handlers.as_table", [2.0, None, 6.0], id="table"),
        pytest.param("model_handlers.as_chunked", [2.0, None, 6.0], id="chunked"),
    ],
)
def test_handler_results_of_every_accepted_form(
    serving: Serving, handler: str, expected: list[float | None]
) -> None:
    runtime = serving(handler)

    result = call(runtime.target, {"x": pa.array([1.0, None, 3.0])})

    assert str(result.to_pylist()) == str(expected)


@pytest.mark.slow
def test_two_million_rows_in_one_call(serving: Serving) -> None:
    runtime = serving("model_handlers.double")
    values = pa.array(range(2_000_000), pa.float64())

    result = call(runtime.target, {"x": values}, max_request_bytes=1 << 30)

    assert len(result) == 2_000_000
    assert result[1_999_999].as_py() == 3_999_998.0


def test_each_batch_of_a_stream_gets_its_own_response(serving: Serving) -> None:
    runtime = serving("model_handlers.double")
    batches = [pa.record_batch({"x": pa.array([float(i)] * (i + 1))}) for i in range(3)]

    responses = raw_call(runtime.target, batches)

    assert [r.schema.names for r in responses] == [["result"]] * 3
    assert [r.column(0).to_pylist() for r in responses] == [[0.0], [2.0, 2.0], [4.0, 4.0, 4.0]]


def test_input_args_rename_by_position_and_keep_the_reserved_column(serving: Serving) -> None:
    runtime = serving("model_handlers.column_names", env={"CHALK_INPUT_ARGS": "text, lang"})
    batch = pa.record_batch(
        {
            "document.body": pa.array(["a"]),
            "__chalk_row_metadata__": pa.array([1]),
            "document.language": pa.array(["en"]),
        }
    )

    result = call(runtime.target, batch)

    assert result.to_pylist() == ["text,__chalk_row_metadata__,lang"]


def test_input_args_count_mismatch_is_an_error_naming_both_counts(serving: Serving) -> None:
    runtime = serving("model_handlers.identity", env={"CHALK_INPUT_ARGS": "a,b"})

    with pytest.raises(
        RemoteHandlerError, match=r"names 2 arguments \(a, b\).* 1 argument"
    ) as info:
        call(runtime.target, {"x": pa.array([1])})

    assert info.value.kind == "InputArgsError"
    assert info.value.code == "INVALID_ARGUMENT"


@BOTH_CORES
def test_handler_error_payload_shows_the_handler_frames(serving: Serving) -> None:
    runtime = serving("model_handlers.boom")

    with pytest.raises(RemoteHandlerError) as info:
        call(runtime.target, {"x": pa.array([1, 2, 3])})

    error = info.value
    assert error.code == "UNKNOWN"
    assert error.kind == "ValueError"
    assert error.remote_message == "cannot score 3 rows: the model is not trained"
    assert "in boom" in error.remote_traceback
    assert "in _validate" in error.remote_traceback
    assert "chalk/shim/server.py" not in error.remote_traceback
    assert "chalk/shim/server.py" in error.internal_traceback
    assert "Remote traceback" in str(error)


@BOTH_CORES
def test_an_async_handler_error_payload_starts_at_the_handler(serving: Serving) -> None:
    runtime = serving("model_handlers.async_boom")

    with pytest.raises(RemoteHandlerError) as info:
        call(runtime.target, {"x": pa.array([1, 2, 3])})

    frames = [line for line in info.value.remote_traceback.splitlines() if "File " in line]
    assert [frame.rsplit(" in ", 1)[1] for frame in frames] == ["async_boom", "_validate"]
    assert info.value.kind == "ValueError"


@BOTH_CORES
def test_server_keeps_serving_after_a_handler_error(serving: Serving) -> None:
    runtime = serving("model_handlers.boom")
    for _ in range(3):
        with pytest.raises(RemoteHandlerError):
            call(runtime.target, {"x": pa.array([1])})

    assert health(runtime.target) == "SERVING"
    assert runtime.process.poll() is None


@BOTH_CORES
def test_huge_error_payload_is_bounded_and_marked(serving: Serving) -> None:
    runtime = serving("model_handlers.huge_error")

    with pytest.raises(grpc.RpcError) as info:
        raw_call(runtime.target, [pa.record_batch({"x": pa.array([1])})])

    details = info.value.details()
    payload = json.loads(details)
    assert len(details) <= MAX_PAYLOAD_BYTES
    assert payload["truncated"] is True
    assert payload["exception"]["kind"] == "RuntimeError"
    assert TRUNCATION_MARK in payload["exception"]["message"]


def test_wrong_result_length_is_an_error_stating_both_numbers(serving: Serving) -> None:
    runtime = serving("model_handlers.wrong_length")

    with pytest.raises(RemoteHandlerError, match="returned 4 values for 3 input rows") as info:
        call(runtime.target, {"x": pa.array([1, 2, 3])})

    assert info.value.kind == "ResultLengthError"


def test_a_result_with_two_columns_is_refused(serving: Serving) -> None:
    runtime = serving("model_handlers.two_columns")

    with pytest.raises(RemoteHandlerError, match=r"2 columns \(a, b\)"):
        call(runtime.target, {"x": pa.array([1])})


@pytest.mark.parametrize(
    ("env", "seen"),
    [
        pytest.param({}, None, id="unset"),
        pytest.param(
            {"GRPC_EXPERIMENTS": "-event_engine_callback_cq"},
            "-event_engine_callback_cq",
            id="users_own",
        ),
    ],
)
def test_the_handler_sees_grpc_experiments_as_the_user_set_them(
    serving: Serving, env: dict[str, str], seen: str | None
) -> None:
    # The runtime sets GRPC_EXPERIMENTS only while gRPC loads (chalk.shim.cli).
    runtime = serving("model_handlers.grpc_experiments", env=env)

    result = call(runtime.target, {"x": pa.array([1])})

    assert result.to_pylist() == [seen]


@BOTH_CORES
def test_handler_context_has_function_name_peer_and_metadata(serving: Serving) -> None:
    runtime = serving("model_handlers.context_echo")

    [response] = raw_call(
        runtime.target,
        [pa.record_batch({"x": pa.array([1])})],
        name="ner",
        metadata=[("x-request-id", "abc-123")],
    )

    context = json.loads(response.column(0)[0].as_py())
    assert context["function_name"] == "ner"
    assert context["peer"].startswith("127.0.0.1:")
    assert context["metadata"]["x-request-id"] == "abc-123"


@BOTH_CORES
def test_an_undecodable_stream_is_an_invalid_argument(serving: Serving) -> None:
    runtime = serving("model_handlers.identity")
    request = _wire.CallFunctionRequest(name="g", feather_stream=b"not arrow at all")

    with grpc.insecure_channel(runtime.target) as channel:
        method = channel.stream_stream(
            _wire.CALL_FUNCTION_METHOD,
            request_serializer=_wire.CallFunctionRequest.SerializeToString,
            response_deserializer=_wire.CallFunctionResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as info:
            list(method(iter([request]), timeout=10))

    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert json.loads(info.value.details())["exception"]["kind"] == "ArrowInvalid"


@pytest.mark.parametrize(
    ("handler", "logged"),
    [
        pytest.param("broken_import.handler", "ModuleNotFoundError", id="import_error"),
        pytest.param("model_handlers.missing", "has no handler named 'missing'", id="no_attr"),
        pytest.param("not_a_dotted_path", "must be a dotted path", id="not_dotted"),
    ],
)
def test_a_handler_that_cannot_load_logs_one_error_and_exits_1(
    start: Callable[..., RuntimeProcess], handler: str, logged: str
) -> None:
    runtime = start(handler, wait_listening=False)

    assert runtime.wait() == 1
    errors = [r for r in runtime.records() if r["severity"] == "ERROR"]
    assert len(errors) == 1
    assert logged in errors[0]["exception"]


def test_a_failing_on_startup_logs_one_error_and_exits_1(
    start: Callable[..., RuntimeProcess], tmp_path: Path
) -> None:
    runtime = start(
        "lifecycle_handlers.handler",
        args=["--on-startup", "lifecycle_handlers.failing_startup"],
        env={"LIFECYCLE_DIR": str(tmp_path)},
    )

    assert runtime.wait() == 1
    errors = [r for r in runtime.records() if r["severity"] == "ERROR"]
    assert len(errors) == 1
    assert "model weights not found" in errors[0]["exception"]


@BOTH_CORES
def test_health_goes_not_serving_serving_then_exit_runs_on_shutdown(
    start: Callable[..., RuntimeProcess], tmp_path: Path
) -> None:
    runtime = start(
        "lifecycle_handlers.handler",
        env={"LIFECYCLE_DIR": str(tmp_path), "STARTUP_SECONDS": "1.5"},
    )

    assert health(runtime.target) == "NOT_SERVING"
    assert health(runtime.target, _wire.SERVICE_NAME) == "NOT_SERVING"
    deadline = time.monotonic() + 20
    while health(runtime.target) != "SERVING" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health(runtime.target, _wire.SERVICE_NAME) == "SERVING"
    assert (tmp_path / "startup").read_text() == "ran"
    assert call(runtime.target, {"x": pa.array([1])}).to_pylist() == ["loaded"]

    runtime.signal(signal.SIGTERM)

    assert runtime.wait() == 0
    assert (tmp_path / "shutdown").read_text() == "ran"
    assert runtime.records()[-1]["message"] == "stopped"


def test_on_startup_flag_replaces_the_module_hook(serving: Serving, tmp_path: Path) -> None:
    runtime = serving(
        "lifecycle_handlers.handler",
        args=["--on-startup", "lifecycle_handlers.explicit_startup"],
        env={"LIFECYCLE_DIR": str(tmp_path)},
    )

    assert call(runtime.target, {"x": pa.array([1])}).to_pylist() == ["explicit"]
    assert not (tmp_path / "startup").exists()


@BOTH_CORES
def test_sigterm_lets_an_in_flight_call_finish_and_refuses_new_ones(
    serving: Serving, tmp_path: Path
) -> None:
    runtime = serving(
        "lifecycle_handlers.handler",
        env={"LIFECYCLE_DIR": str(tmp_path)},
    )
    slow = serving("model_handlers.slow", env={"SLOW_SECONDS": "2"}, args=["--metrics-port", "0"])
    outcome: dict[str, Any] = {}

    def in_flight() -> None:
        outcome["result"] = call(slow.target, {"x": pa.array([7, 8])})

    caller = threading.Thread(target=in_flight)
    caller.start()
    slow.wait_in_flight(1)
    slow.signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while health(slow.target) != "NOT_SERVING" and time.monotonic() < deadline:
        time.sleep(0.05)

    assert health(slow.target) == "NOT_SERVING"
    with pytest.raises(TransportError, match="UNAVAILABLE"):
        call(slow.target, {"x": pa.array([1])})
    caller.join(timeout=20)
    assert outcome["result"].to_pylist() == [7, 8]
    assert slow.wait() == 0
    assert runtime.process.poll() is None


@BOTH_CORES
def test_health_answers_while_every_handler_thread_is_busy(serving: Serving) -> None:
    runtime = serving(
        "model_handlers.slow",
        env={"SLOW_SECONDS": "4"},
        args=["--workers", "1", "--metrics-port", "0"],
    )
    outcome: dict[str, Any] = {}

    def in_flight() -> None:
        outcome["result"] = call(runtime.target, {"x": pa.array([5])})

    caller = threading.Thread(target=in_flight)
    caller.start()
    runtime.wait_in_flight(1)

    # health() gives up after 1 s, well before the handler's 4 s end.
    assert health(runtime.target) == "SERVING"
    caller.join(timeout=20)
    assert outcome["result"].to_pylist() == [5]


@BOTH_CORES
def test_the_grace_period_bounds_the_drain(serving: Serving) -> None:
    runtime = serving(
        "model_handlers.slow",
        env={"SLOW_SECONDS": "30"},
        args=["--grace-period", "0.5", "--metrics-port", "0"],
    )
    errors: list[BaseException] = []

    def in_flight() -> None:
        try:
            call(runtime.target, {"x": pa.array([1])})
        except BaseException as error:
            errors.append(error)

    caller = threading.Thread(target=in_flight)
    caller.start()
    runtime.wait_in_flight(1)
    started = time.monotonic()
    runtime.signal(signal.SIGTERM)

    assert runtime.wait(timeout=20) == 0
    assert time.monotonic() - started < 10
    caller.join(timeout=20)
    # The call the stop cut short is a transport failure: the engine may send it elsewhere.
    assert len(errors) == 1
    assert isinstance(errors[0], TransportError), errors
    assert any(r["severity"] == "WARNING" for r in runtime.records())


@BOTH_CORES
def test_reflection_lists_the_services(serving: Serving) -> None:
    runtime = serving("model_handlers.identity")

    with grpc.insecure_channel(runtime.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=_wire.SERVICE_NAME),
        ]
        listing, files = list(stub.ServerReflectionInfo(iter(requests), timeout=10))

    names = {service.name for service in listing.list_services_response.service}
    assert {_wire.SERVICE_NAME, "grpc.health.v1.Health"} <= names
    descriptor = files.file_descriptor_response.file_descriptor_proto[0]
    assert _wire.file_descriptor_proto().SerializeToString() == descriptor


@BOTH_CORES
def test_health_service_answers_for_unknown_names_with_not_found(serving: Serving) -> None:
    runtime = serving("model_handlers.identity")

    with grpc.insecure_channel(runtime.target) as channel, pytest.raises(grpc.RpcError) as info:
        health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5
        )

    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no.such.Service" in info.value.details()


@BOTH_CORES
def test_metrics_count_calls_rows_errors(serving: Serving) -> None:
    runtime = serving("model_handlers.wrong_length", args=["--metrics-port", "0"])
    [metrics_port] = [r["metrics_port"] for r in runtime.records() if "metrics_port" in r]
    for rows in (3, 5):
        with pytest.raises(RemoteHandlerError):
            call(runtime.target, {"x": pa.array(range(rows))})

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()

    assert "chalk_remote_call_calls_total 2.0" in text
    assert "chalk_remote_call_rows_total 8.0" in text
    assert 'chalk_remote_call_errors_total{kind="ResultLengthError"} 2.0' in text
    assert "chalk_remote_call_in_flight 0.0" in text
    assert "chalk_remote_call_handler_seconds_count 2.0" in text


def test_every_log_line_is_a_json_record(serving: Serving) -> None:
    runtime = serving("model_handlers.identity")
    call(runtime.target, {"x": pa.array([1])})
    runtime.stop()

    lines = runtime.log_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert lines
    assert all({"timestamp", "severity", "logger", "message"} <= set(r) for r in records)


@pytest.mark.slow
def test_messages_over_256_mib_pass_both_ways(serving: Serving) -> None:
    runtime = serving("model_handlers.identity")
    blob = b"\x07" * ((256 << 20) + 1024)

    result = call(runtime.target, {"x": pa.array([blob], pa.large_binary())})

    assert result[0].as_py() == blob
