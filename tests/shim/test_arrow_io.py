"""Column naming by CHALK_INPUT_ARGS and coercion of handler results."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from chalk.shim.arrow_io import (
    InputArgsError,
    ResultLengthError,
    encode_batch,
    iter_batches,
    name_columns,
    parse_input_args,
    result_batch,
    stream_pieces,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(None, None, id="unset"),
        pytest.param("  ", None, id="blank"),
        pytest.param("text", ("text",), id="one"),
        pytest.param(" a , b ", ("a", "b"), id="spaces"),
    ],
)
def test_parse_input_args(raw: str | None, expected: tuple[str, ...] | None) -> None:
    assert parse_input_args(raw) == expected


def test_parse_input_args_refuses_an_empty_name() -> None:
    with pytest.raises(InputArgsError, match=r"empty name.*'a,,b'"):
        parse_input_args("a,,b")


@pytest.mark.parametrize(
    ("names", "args", "expected"),
    [
        pytest.param(["x", "y"], None, ["x", "y"], id="no_args_keep_names"),
        pytest.param(["x", "y"], ["b", "a"], ["b", "a"], id="by_position_not_name"),
        pytest.param(
            ["__chalk_row_metadata__", "x"], ["t"], ["__chalk_row_metadata__", "t"], id="reserved"
        ),
    ],
)
def test_name_columns(names: list[str], args: list[str] | None, expected: list[str]) -> None:
    assert name_columns(names, args) == expected


def test_name_columns_count_mismatch_names_both_counts() -> None:
    with pytest.raises(InputArgsError, match=r"names 1 arguments \(t\) but the request has 2"):
        name_columns(["x", "y"], ["t"])


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(pa.array([1, 2]), id="array"),
        pytest.param(pa.chunked_array([[1], [2]]), id="chunked"),
        pytest.param(pa.record_batch({"out": [1, 2]}), id="batch"),
        pytest.param(pa.table({"out": [1, 2]}), id="table"),
        pytest.param([1, 2], id="list"),
        pytest.param(np.array([1, 2]), id="numpy"),
    ],
)
def test_result_batch_accepts_every_documented_form(value: Any) -> None:
    batch = result_batch(value, 2)

    assert batch.schema.names == ["result"]
    assert batch.column(0).to_pylist() == [1, 2]


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        pytest.param([1], ResultLengthError, "returned 1 values for 2 input rows", id="short"),
        pytest.param("ab", TypeError, "returned str", id="string"),
        pytest.param({"a": [1, 2]}, TypeError, "returned dict", id="dict"),
        pytest.param(3, TypeError, "returned int", id="scalar"),
        pytest.param(pa.table({"a": [1, 2], "b": [1, 2]}), TypeError, "2 columns", id="2cols"),
    ],
)
def test_result_batch_refuses(value: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        result_batch(value, 2)


def test_encode_then_iter_batches_round_trips() -> None:
    batch = pa.record_batch({"x": pa.array(["a", None])})

    assert list(iter_batches(encode_batch(batch))) == [batch]


def _written_stream(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue())


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(pa.array([1.5, None, 3.0]), id="float64"),
        pytest.param(pa.array(["a", None, "ünï"], pa.large_string()), id="large_string"),
        pytest.param(pa.array([[1, 2], None, []], pa.list_(pa.int64())), id="list"),
        pytest.param(pa.array([{"a": 1}, None], pa.struct([("a", pa.int64())])), id="struct"),
        pytest.param(pa.array(range(10), pa.int64()).slice(3, 4), id="sliced"),
        pytest.param(pa.array([], pa.float64()), id="empty"),
        pytest.param(pa.array(["x", "y", "x"]).dictionary_encode(), id="dictionary"),
        pytest.param(
            pa.array([["x"], ["y", "x"]], pa.list_(pa.dictionary(pa.int8(), pa.string()))),
            id="nested_dictionary",
        ),
    ],
)
def test_stream_pieces_join_to_what_the_ipc_writer_writes(values: pa.Array) -> None:
    batch = pa.RecordBatch.from_arrays(
        [values], schema=pa.schema([("x", values.type)], {b"k": b"v"})
    )

    joined = b"".join(stream_pieces(batch))

    assert joined == _written_stream(batch)
    assert list(iter_batches(joined)) == [batch]
