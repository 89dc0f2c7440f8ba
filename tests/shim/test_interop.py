"""Interop with the reference runtime chalk-remote-call-python, both ways, as real processes.

Our ``RemoteCallClient`` calls the reference server; the reference package's own generated
client (run by the reference venv's python) calls our server. Every server binds 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pytest

from chalk.shim import RemoteCallClient, RemoteHandlerError
from chalk.shim.client import health_status, wait_until_serving
from tests.support.reference_runtime import ReferenceRuntime
from tests.support.runtime_process import RuntimeProcess

pytestmark = pytest.mark.interop

# Our console script beside the interpreter running the tests, so that `.venv/bin/pytest`
# works without .venv/bin on PATH.
_OUR_SCRIPT: Final = str(Path(sys.executable).with_name("chalk-remote-call"))
_SERVICE: Final = "chalk.runtime.v1.RemoteCallService"
_TRACEBACK_FRAME: Final = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')

Launch = Callable[..., RuntimeProcess]
ReferenceClient = Callable[[Mapping[str, Any]], dict[str, Any]]

# Runs in the reference venv: its generated stub, its grpcio and its pyarrow, nothing of ours.
_REFERENCE_CLIENT: Final = r'''
"""Calls a runtime with chalk-remote-call-python's generated client; prints JSON on stdout."""
import json
import sys

import grpc
import pyarrow as pa
from chalk_remote_call._gen.chalk.runtime.v1 import remote_python_call_pb2 as pb
from chalk_remote_call._gen.chalk.runtime.v1 import remote_python_call_pb2_grpc as pb_grpc

SCHEMA = pa.schema([("x", pa.int64())])


def ipc_stream(batches):
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SCHEMA) as writer:
        for rows in batches:
            writer.write_batch(pa.record_batch([pa.array(rows, pa.int64())], schema=SCHEMA))
    return sink.getvalue().to_pybytes()


def call(channel, name, messages):
    stub = pb_grpc.RemoteCallServiceStub(channel)
    requests = [pb.CallFunctionRequest(name=name, feather_stream=ipc_stream(m)) for m in messages]
    answer = {"code": "OK", "details": None, "responses": []}
    try:
        for response in stub.CallFunction(iter(requests), timeout=20):
            table = pa.ipc.open_stream(response.feather_stream).read_all()
            answer["responses"].append(
                {"names": table.schema.names, "values": table.column(0).to_pylist()}
            )
    except grpc.RpcError as error:
        answer.update(code=error.code().name, details=error.details())
    return answer


def health(channel, service):
    # grpcio-health-checking is not installed beside the reference, so the two messages are
    # encoded by hand: HealthCheckRequest {string service = 1} and
    # HealthCheckResponse {ServingStatus status = 1} (SERVING = 1, NOT_SERVING = 2).
    check = channel.unary_unary("/grpc.health.v1.Health/Check")
    name = service.encode()
    try:
        reply = check(b"\n" + bytes([len(name)]) + name, timeout=5)
    except grpc.RpcError as error:
        return error.code().name
    return {b"": "UNKNOWN", b"\x08\x01": "SERVING", b"\x08\x02": "NOT_SERVING"}.get(
        reply, reply.hex()
    )


spec = json.loads(sys.argv[1])
with grpc.insecure_channel(spec["target"]) as channel:
    out = {"health": {service: health(channel, service) for service in spec.get("health", [])}}
    if "messages" in spec:
        out["call"] = call(channel, spec.get("name", "g"), spec["messages"])
print(json.dumps(out))
'''


@pytest.fixture
def launch(start: Launch, reference: ReferenceRuntime) -> Launch:
    """Start ``launch("ours" | "ours-grpcio" | "reference", handler, env=...)``, ready to answer
    calls; "ours-grpcio" is our runtime on its grpcio-public-API server core."""

    def _launch(runtime: str, handler: str, env: Mapping[str, str] | None = None) -> RuntimeProcess:
        if runtime == "reference":
            # The reference binds only after on_startup, so accepting TCP means ready.
            return start(handler, command=(str(reference.script),), pick_port=True, env=env)
        if runtime == "ours-grpcio":
            env = {**(env or {}), "CHALK_REMOTE_CALL_SERVER_CORE": "grpcio"}
        process = start(handler, command=(_OUR_SCRIPT,), env=env)
        asyncio.run(wait_until_serving(process.target, timeout_s=20))
        return process

    return _launch


def _call(
    target: str, columns: Mapping[str, Any], *, name: str = "g", **client_options: Any
) -> pa.Array:
    async def call() -> pa.Array:
        async with RemoteCallClient(**client_options) as client:
            return await client.call(target, columns, name=name)

    return asyncio.run(call())


@pytest.fixture
def reference_client(reference: ReferenceRuntime, tmp_path: Path) -> ReferenceClient:
    """Run the reference's generated client on a spec; returns what it printed, as JSON."""
    script = tmp_path / "reference_client.py"
    script.write_text(_REFERENCE_CLIENT)

    def _run(spec: Mapping[str, Any]) -> dict[str, Any]:
        done = subprocess.run(
            [str(reference.python), str(script), json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    return _run


def _frames(stacktrace: str) -> list[tuple[str, int, str]]:
    return [
        (Path(file).name, int(line), function)
        for file, line, function in _TRACEBACK_FRAME.findall(stacktrace)
    ]


_STRUCT = pa.struct([("a", pa.int64()), ("b", pa.string())])
_PARIS_US = pa.timestamp("us", tz="Europe/Paris")


@pytest.mark.parametrize(
    ("handler", "values", "expected"),
    [
        pytest.param(
            "double",
            pa.array([1, -2, None], pa.int64()),
            pa.array([2, -4, None], pa.int64()),
            id="int64",
        ),
        pytest.param(
            "double",
            pa.array([0.5, None, -1.25], pa.float64()),
            pa.array([1.0, None, -2.5], pa.float64()),
            id="float64",
        ),
        pytest.param(
            "identity",
            pa.array(["a", "", None, "grüße"], pa.string()),
            pa.array(["a", "", None, "grüße"], pa.string()),
            id="string",
        ),
        pytest.param(
            "identity",
            pa.array(["long" * 100, None], pa.large_string()),
            pa.array(["long" * 100, None], pa.large_string()),
            id="large_string",
        ),
        pytest.param(
            "identity",
            pa.array([b"\x00\xff", None], pa.binary()),
            pa.array([b"\x00\xff", None], pa.binary()),
            id="binary",
        ),
        pytest.param(
            "identity",
            pa.array([[1, 2], [], None, [None, 3]], pa.list_(pa.int64())),
            pa.array([[1, 2], [], None, [None, 3]], pa.list_(pa.int64())),
            id="list-int64",
        ),
        pytest.param(
            "identity",
            pa.array([{"a": 1, "b": "x"}, None, {"a": None, "b": "y"}], _STRUCT),
            pa.array([{"a": 1, "b": "x"}, None, {"a": None, "b": "y"}], _STRUCT),
            id="struct",
        ),
        pytest.param(
            "identity",
            pa.array([datetime(2024, 3, 31, 0, 30, tzinfo=UTC), None], _PARIS_US),
            pa.array([datetime(2024, 3, 31, 0, 30, tzinfo=UTC), None], _PARIS_US),
            id="timestamp-tz",
        ),
        pytest.param(
            "double",
            pa.array([None, None], pa.int64()),
            pa.array([None, None], pa.int64()),
            id="all-null-int64",
        ),
        pytest.param("identity", pa.nulls(3), pa.nulls(3), id="null-type"),
        pytest.param(
            "double", pa.array([], pa.int64()), pa.array([], pa.int64()), id="empty-batch"
        ),
    ],
)
def test_our_client_round_trips_types_through_the_reference(
    launch: Launch, handler: str, values: pa.Array, expected: pa.Array
) -> None:
    server = launch("reference", f"model_handlers.{handler}")

    result = _call(server.target, {"x": values})

    assert result.type == expected.type
    assert result.equals(expected), result.to_pylist()


@pytest.mark.parametrize(
    ("input_args", "columns", "expected"),
    [
        pytest.param(None, ["x", "y"], "x,y", id="names-kept-without-input-args"),
        pytest.param("text,lang", ["x", "y"], "text,lang", id="renamed-by-position"),
        pytest.param(
            "text, lang",
            ["x", "__chalk_row_metadata__", "y"],
            "text,__chalk_row_metadata__,lang",
            id="reserved-column-keeps-its-name",
        ),
    ],
)
def test_our_client_multi_column_batch_renamed_by_the_reference(
    launch: Launch, input_args: str | None, columns: list[str], expected: str
) -> None:
    env = {} if input_args is None else {"CHALK_INPUT_ARGS": input_args}
    server = launch("reference", "model_handlers.column_names", env=env)

    result = _call(server.target, {name: pa.array([1, 2], pa.int64()) for name in columns})

    assert result.to_pylist() == [expected, expected]


def test_our_client_raises_the_reference_handler_error(launch: Launch) -> None:
    server = launch("reference", "model_handlers.boom")

    with pytest.raises(RemoteHandlerError, match="cannot score 3 rows") as raised:
        _call(server.target, {"x": pa.array([1, 2, 3], pa.int64())})

    error = raised.value
    assert error.kind == "ValueError"
    assert error.remote_message == "cannot score 3 rows: the model is not trained"
    assert error.code == "UNKNOWN"
    assert [frame[2] for frame in _frames(error.remote_traceback)] == ["boom", "_validate"]
    assert "chalk_remote_call" not in error.remote_traceback
    assert "chalk_remote_call/servicer.py" in error.internal_traceback


def test_our_client_rejects_a_wrong_length_answer_the_reference_lets_through(
    launch: Launch,
) -> None:
    server = launch("reference", "model_handlers.wrong_length")

    with pytest.raises(RemoteHandlerError, match="answered 4 rows for 3 input rows") as raised:
        _call(server.target, {"x": pa.array([1, 2, 3], pa.int64())})

    assert raised.value.kind == "ResultLengthError"
    assert raised.value.code == "OK"


def test_our_client_rejects_a_two_column_answer_the_reference_lets_through(
    launch: Launch,
) -> None:
    server = launch("reference", "model_handlers.two_columns")

    with pytest.raises(RemoteHandlerError, match=r"2 columns \(a, b\)") as raised:
        _call(server.target, {"x": pa.array([1, 2], pa.int64())})

    assert raised.value.kind == "ResultShapeError"


@pytest.mark.parametrize(
    ("handler", "values", "expected"),
    [
        pytest.param(
            "double",
            pa.array(range(1000), pa.int64()),
            pa.array(range(0, 2000, 2), pa.int64()),
            id="int64",
        ),
        pytest.param(
            "identity",
            pa.array([f"row-{i}" for i in range(1000)], pa.string()),
            pa.array([f"row-{i}" for i in range(1000)], pa.string()),
            id="string",
        ),
    ],
)
def test_our_client_splits_a_large_input_into_calls_to_the_reference(
    launch: Launch,
    monkeypatch: pytest.MonkeyPatch,
    handler: str,
    values: pa.Array,
    expected: pa.Array,
) -> None:
    server = launch("reference", f"model_handlers.{handler}")
    part_rows: list[int] = []
    call_once = RemoteCallClient._call_once

    async def counting_call_once(self: RemoteCallClient, *args: Any) -> pa.Array:
        part_rows.append(args[3].num_rows)  # (target, tls, name, batch, deadline_s)
        return await call_once(self, *args)

    monkeypatch.setattr(RemoteCallClient, "_call_once", counting_call_once)

    result = _call(server.target, {"x": values}, max_request_bytes=1000, max_parts_in_flight=3)

    assert len(part_rows) >= values.nbytes // 1000
    assert sum(part_rows) == len(values)
    assert result.equals(expected)


def test_our_client_joins_split_results_whose_types_differ_by_nulls(launch: Launch) -> None:
    server = launch("reference", "model_handlers.as_list")
    values = pa.array([1, 2, None, None], pa.int64())
    unsplit = _call(server.target, {"x": values})

    split = _call(server.target, {"x": values}, max_request_bytes=16)

    assert unsplit.equals(pa.array([2, 4, None, None], pa.int64()))
    assert split.equals(unsplit)


def test_our_health_check_sees_the_reference_serving(launch: Launch) -> None:
    server = launch("reference", "model_handlers.double")

    statuses = [
        asyncio.run(health_status(server.target, service=service)) for service in ("", _SERVICE)
    ]

    assert statuses == ["SERVING", "SERVING"]


def test_handler_context_has_the_reference_keys(launch: Launch) -> None:
    contexts = [
        json.loads(
            _call(
                launch(runtime, "model_handlers.context_echo").target,
                {"x": pa.array([1], pa.int64())},
                name="fraud_score",
            )[0].as_py()
        )
        for runtime in ("ours", "reference")
    ]

    ours, theirs = contexts
    assert set(ours) == set(theirs) == {"function_name", "peer", "metadata"}
    assert ours["function_name"] == theirs["function_name"] == "fraud_score"
    assert "user-agent" in ours["metadata"]
    assert "user-agent" in theirs["metadata"]


@pytest.mark.parametrize("runtime", ["ours", "reference"])
def test_our_client_raises_when_input_args_do_not_match_the_columns(
    launch: Launch, runtime: str
) -> None:
    server = launch(runtime, "model_handlers.column_names", env={"CHALK_INPUT_ARGS": "text,lang"})

    with pytest.raises(RemoteHandlerError, match="CHALK_INPUT_ARGS") as raised:
        _call(server.target, {"x": pa.array([1], pa.int64())})

    assert raised.value.kind in {"InputArgsError", "ValueError"}


def test_handler_context_peer_has_the_reference_format(launch: Launch) -> None:
    server = launch("ours", "model_handlers.context_echo")

    context = json.loads(_call(server.target, {"x": pa.array([1], pa.int64())})[0].as_py())

    assert re.fullmatch(r"127\.0\.0\.1:\d+", context["peer"]), context["peer"]


@pytest.mark.parametrize(
    ("runtime", "messages", "expected"),
    [
        pytest.param("ours", [[[1, 2, 3]]], [[2, 4, 6]], id="ours-one-batch"),
        pytest.param("reference", [[[1, 2, 3]]], [[2, 4, 6]], id="reference-one-batch"),
        pytest.param(
            "ours",
            [[[1], [2, 3], [4, 5, 6]]],
            [[2], [4, 6], [8, 10, 12]],
            id="ours-three-batches-in-one-message",
        ),
        pytest.param(
            "reference",
            [[[1], [2, 3], [4, 5, 6]]],
            [[2], [4, 6], [8, 10, 12]],
            id="reference-three-batches-in-one-message",
        ),
        pytest.param("ours", [[[]]], [[]], id="ours-empty-batch"),
        pytest.param("ours", [[[1, 2]], [[3]]], [[2, 4], [6]], id="ours-serves-every-message"),
        pytest.param(
            "reference", [[[1, 2]], [[3]]], [[2, 4]], id="reference-serves-the-first-message-only"
        ),
    ],
)
def test_reference_client_calls_double(
    launch: Launch,
    reference_client: ReferenceClient,
    runtime: str,
    messages: list[list[list[int]]],
    expected: list[list[int]],
) -> None:
    server = launch(runtime, "model_handlers.double")

    call = reference_client({"target": server.target, "messages": messages})["call"]

    assert call["code"] == "OK", call["details"]
    assert [response["names"] for response in call["responses"]] == [["result"]] * len(expected)
    assert [response["values"] for response in call["responses"]] == expected


@pytest.mark.parametrize("runtime", ["ours", "ours-grpcio", "reference"])
def test_reference_client_gets_the_error_payload(
    launch: Launch, reference_client: ReferenceClient, runtime: str
) -> None:
    server = launch(runtime, "model_handlers.boom")

    call = reference_client({"target": server.target, "messages": [[[1, 2]]]})["call"]

    assert call["code"] == "UNKNOWN"
    payload = json.loads(call["details"])
    assert payload["chalk_remote_error"] == 1
    exception = payload["exception"]
    assert set(exception) == {"kind", "message", "stacktrace", "internal_stacktrace"}
    assert exception["kind"] == "ValueError"
    assert exception["message"] == "cannot score 2 rows: the model is not trained"
    assert [frame[2] for frame in _frames(exception["stacktrace"])] == ["boom", "_validate"]
    assert exception["stacktrace"].endswith(
        "ValueError: cannot score 2 rows: the model is not trained\n"
    )
    assert len(_frames(exception["internal_stacktrace"])) > len(_frames(exception["stacktrace"]))


def test_our_error_stacktrace_matches_the_reference_frame_for_frame(
    launch: Launch, reference_client: ReferenceClient
) -> None:
    stacktraces = {}
    for runtime in ("ours", "reference"):
        server = launch(runtime, "model_handlers.boom")
        spec = {"target": server.target, "messages": [[[1]]]}
        details = reference_client(spec)["call"]["details"]
        stacktraces[runtime] = json.loads(details)["exception"]["stacktrace"]

    assert _frames(stacktraces["ours"]) == _frames(stacktraces["reference"])
    assert _frames(stacktraces["ours"])[0][0] == "model_handlers.py"


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [
        pytest.param("ours", {"code": "UNKNOWN", "kind": "ResultLengthError"}, id="ours-refuses"),
        pytest.param("reference", {"code": "OK", "rows": 4}, id="reference-passes-it-through"),
    ],
)
def test_reference_client_sees_a_wrong_length_answer(
    launch: Launch,
    reference_client: ReferenceClient,
    runtime: str,
    expected: dict[str, Any],
) -> None:
    server = launch(runtime, "model_handlers.wrong_length")

    call = reference_client({"target": server.target, "messages": [[[1, 2, 3]]]})["call"]

    seen: dict[str, Any] = {"code": call["code"]}
    if call["code"] == "OK":
        seen["rows"] = sum(len(response["values"]) for response in call["responses"])
    else:
        seen["kind"] = json.loads(call["details"])["exception"]["kind"]
    assert seen == expected


@pytest.mark.parametrize("runtime", ["ours", "ours-grpcio", "reference"])
def test_reference_client_checks_health(
    launch: Launch, reference_client: ReferenceClient, runtime: str
) -> None:
    server = launch(runtime, "model_handlers.double")
    services = ["", _SERVICE, "no.such.Service"]

    health = reference_client({"target": server.target, "health": services})["health"]

    assert health == {"": "SERVING", _SERVICE: "SERVING", "no.such.Service": "NOT_FOUND"}
