"""The asyncio client against real runtime processes: splitting, errors, channel reuse."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalk.shim import RemoteCallClient, RemoteHandlerError, TransportError, split_batch
from chalk.shim.client import _call_error, wait_until_serving
from tests.support.runtime_process import RuntimeProcess, free_port, start_runtime

Serving = Callable[..., RuntimeProcess]


@pytest.fixture(scope="module")
def identity_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    runtime = start_runtime(
        "model_handlers.identity",
        log_path=tmp_path_factory.mktemp("identity") / "runtime.log",
        args=["--metrics-port", "0"],
    )
    asyncio.run(wait_until_serving(runtime.target))
    yield runtime
    runtime.stop()


def run(coroutine_factory: Callable[[RemoteCallClient], Any], **client_args: Any) -> Any:
    async def _run() -> Any:
        async with RemoteCallClient(**client_args) as client:
            return await coroutine_factory(client)

    return asyncio.run(_run())


def test_a_large_input_is_split_into_calls_and_rejoined_in_order(
    identity_runtime: RuntimeProcess,
) -> None:
    values = pa.array([f"row {i}" for i in range(10_000)], pa.large_string())

    result = run(
        lambda client: client.call(identity_runtime.target, {"x": values}, name="g"),
        max_request_bytes=8_000,
    )

    assert result.equals(values)


def test_each_part_of_a_split_input_is_its_own_call(identity_runtime: RuntimeProcess) -> None:
    before = _calls_served(identity_runtime)

    run(
        lambda client: client.call(
            identity_runtime.target, {"x": pa.array(range(1000), pa.int64())}, name="g"
        ),
        max_request_bytes=800,
    )

    assert _calls_served(identity_runtime) - before == 10


def test_refused_connection_is_a_transport_error() -> None:
    target = f"127.0.0.1:{free_port()}"

    with pytest.raises(TransportError, match="UNAVAILABLE") as info:
        run(lambda client: client.call(target, {"x": pa.array([1])}, name="g"))

    assert info.value.endpoint == target


def test_deadline_is_a_transport_error(serving: Serving) -> None:
    runtime = serving("model_handlers.slow", env={"SLOW_SECONDS": "3"})

    with pytest.raises(TransportError, match="DEADLINE_EXCEEDED"):
        run(
            lambda client: client.call(
                runtime.target, {"x": pa.array([1])}, name="g", deadline_s=0.3
            )
        )


def test_a_handler_error_is_not_a_transport_error(serving: Serving) -> None:
    runtime = serving("model_handlers.boom")

    with pytest.raises(RemoteHandlerError) as info:
        run(lambda client: client.call(runtime.target, {"x": pa.array([1])}, name="g"))

    assert not isinstance(info.value, TransportError)
    assert info.value.endpoint == runtime.target


def test_one_client_serves_concurrent_calls_over_one_channel(
    identity_runtime: RuntimeProcess,
) -> None:
    async def many(client: RemoteCallClient) -> list[pa.Array]:
        calls = [
            client.call(identity_runtime.target, {"x": pa.array([i] * (i + 1))}, name="g")
            for i in range(50)
        ]
        return await asyncio.gather(*calls)

    results = run(many)

    assert [r.to_pylist() for r in results] == [[i] * (i + 1) for i in range(50)]


_INT64 = st.integers(-(2**63), 2**63 - 1)
# Each Arrow type the property covers, with a strategy for its non-null values.
_VALUES: dict[pa.DataType, st.SearchStrategy[Any]] = {
    pa.int8(): st.integers(-128, 127),
    pa.int64(): _INT64,
    pa.uint32(): st.integers(0, 2**32 - 1),
    pa.float32(): st.floats(allow_nan=False, width=32),
    pa.float64(): st.floats(allow_nan=False),
    pa.bool_(): st.booleans(),
    pa.string(): st.text(max_size=20),
    pa.large_string(): st.text(max_size=20),
    pa.large_binary(): st.binary(max_size=20),
    pa.date32(): st.dates(),
    pa.timestamp("us", tz="UTC"): st.datetimes(
        min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1)
    ).map(lambda value: value.replace(tzinfo=dt.UTC)),
    pa.list_(pa.int64()): st.lists(st.none() | _INT64, max_size=4),
    pa.struct([("label", pa.string()), ("score", pa.float64())]): st.fixed_dictionaries(
        {"label": st.none() | st.text(max_size=5), "score": st.floats(allow_nan=False)}
    ),
}


@st.composite
def record_batches(draw: st.DrawFn) -> pa.RecordBatch:
    rows = draw(st.integers(0, 30))
    columns = {}
    for index in range(draw(st.integers(1, 4))):
        arrow_type = draw(st.sampled_from(list(_VALUES)))
        values = draw(st.lists(st.none() | _VALUES[arrow_type], min_size=rows, max_size=rows))
        columns[f"c{index}"] = pa.array(values, arrow_type)
    return pa.record_batch(columns)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=record_batches())
def test_random_batches_pass_through_identity_unchanged(
    identity_runtime: RuntimeProcess, batch: pa.RecordBatch
) -> None:
    async def each_column(client: RemoteCallClient) -> list[pa.Array]:
        return [
            await client.call(identity_runtime.target, {name: column}, name="g")
            for name, column in zip(batch.schema.names, batch.columns, strict=True)
        ]

    results = run(each_column)

    for sent, received in zip(batch.columns, results, strict=True):
        assert received.type == sent.type
        assert received.equals(sent)


@pytest.mark.parametrize(
    ("rows", "max_bytes", "expected"),
    [
        pytest.param(10, 1000, [10], id="fits"),
        pytest.param(10, 40, [5, 5], id="halves"),
        pytest.param(10, 1, [1] * 10, id="one_row_each"),
        pytest.param(1, 1, [1], id="single_row_over_limit"),
        pytest.param(0, 1, [0], id="empty"),
    ],
)
def test_split_batch_sizes(rows: int, max_bytes: int, expected: list[int]) -> None:
    batch = pa.record_batch({"x": pa.array(range(rows), pa.int64())})

    assert [len(part) for part in split_batch(batch, max_bytes)] == expected


@given(rows=st.integers(0, 500), max_bytes=st.integers(1, 5000))
def test_split_batch_parts_rejoin_to_the_input(rows: int, max_bytes: int) -> None:
    batch = pa.record_batch({"x": pa.array([str(i) * (i % 7) for i in range(rows)])})

    parts = split_batch(batch, max_bytes)

    rejoined = pa.Table.from_batches(parts, schema=batch.schema)
    assert rejoined.equals(pa.Table.from_batches([batch]))
    assert rows == 0 or all(len(part) >= 1 for part in parts)


def _calls_served(runtime: RuntimeProcess) -> float:
    return runtime.metric("chalk_remote_call_calls_total")


@pytest.mark.parametrize("code", ["UNAVAILABLE", "INTERNAL", "CANCELLED", "DEADLINE_EXCEEDED"])
def test_a_call_a_replica_did_not_finish_is_a_transport_error(code: str) -> None:
    # CANCELLED from the server: a replica stopping with the call running (its grace passed).
    status = grpc.StatusCode[code]
    error = grpc.aio.AioRpcError(status, grpc.aio.Metadata(), grpc.aio.Metadata(), "gone")

    failure = _call_error(error, "127.0.0.1:1")

    assert isinstance(failure, TransportError)
    assert failure.code == code
