"""Arrow IPC framing and column handling shared by the runtime server and its client.

The server uses it to turn a request's IPC stream into handler events and a handler's return
value into a ``result`` batch; the client uses it for the reverse trip.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import pyarrow as pa

from chalk.common.errors import ChalkError

__all__ = [
    "RESERVED_COLUMNS",
    "RESULT_COLUMN",
    "InputArgsError",
    "ResultLengthError",
    "ResultShapeError",
    "decode_result",
    "encode_batch",
    "iter_batches",
    "name_columns",
    "parse_input_args",
    "result_batch",
    "stream_pieces",
    "to_record_batch",
]

RESULT_COLUMN: Final = "result"
# Side-channel columns keep their own name and take no position in CHALK_INPUT_ARGS.
RESERVED_COLUMNS: Final = frozenset({"__chalk_row_metadata__"})
# The continuation marker and a zero length: what ends an Arrow IPC stream.
_END_OF_STREAM: Final = b"\xff\xff\xff\xff\x00\x00\x00\x00"


class InputArgsError(ChalkError, ValueError):
    """The request's columns do not match ``CHALK_INPUT_ARGS``."""


class ResultShapeError(ChalkError, ValueError):
    """A response batch does not have exactly one column."""


class ResultLengthError(ChalkError, ValueError):
    """A handler answered a batch with a different number of values than it had rows."""


def parse_input_args(raw: str | None) -> tuple[str, ...] | None:
    """Parse ``CHALK_INPUT_ARGS`` (comma-separated names); ``None`` when unset or blank.

    Examples
    --------
    >>> parse_input_args("text, lang")
    ('text', 'lang')
    >>> parse_input_args("") is None
    True
    """
    if raw is None or not raw.strip():
        return None
    names = tuple(part.strip() for part in raw.split(","))
    if any(not name for name in names):
        raise InputArgsError(
            f"CHALK_INPUT_ARGS has an empty name: expected comma-separated argument names, "
            f"got {raw!r}"
        )
    return names


def name_columns(names: Sequence[str], arg_names: Sequence[str] | None) -> list[str]:
    """Rename columns positionally by ``arg_names``, keeping reserved columns as they are.

    Examples
    --------
    >>> name_columns(["a", "__chalk_row_metadata__", "b"], ["x", "y"])
    ['x', '__chalk_row_metadata__', 'y']
    """
    if arg_names is None:
        return list(names)
    positional = sum(1 for name in names if name not in RESERVED_COLUMNS)
    if positional != len(arg_names):
        raise InputArgsError(
            f"CHALK_INPUT_ARGS names {len(arg_names)} arguments ({', '.join(arg_names)}) but the "
            f"request has {positional} argument columns: expected one column per name"
        )
    remaining = iter(arg_names)
    return [name if name in RESERVED_COLUMNS else next(remaining) for name in names]


def iter_batches(stream: Any) -> Iterator[pa.RecordBatch]:
    """Record batches of an Arrow IPC stream, read without copying the buffer."""
    with pa.ipc.open_stream(pa.py_buffer(stream)) as reader:
        yield from reader


def stream_pieces(batch: pa.RecordBatch) -> tuple[Any, ...]:
    """One record batch as a complete Arrow IPC stream, in bytes-like pieces to be joined.

    The schema message, the batch message and the end-of-stream mark, byte for byte what
    ``pa.ipc.new_stream`` writes, for about a fifth of its cost on a small batch (the writer's
    Python layer is most of it); the caller joins them into its message, so the payload is
    copied once, as it is by the writer. A schema with dictionaries goes through the writer,
    which also writes their dictionary batches.

    Examples
    --------
    >>> batch = pa.record_batch({"x": [1.5]})
    >>> list(iter_batches(b"".join(stream_pieces(batch)))) == [batch]
    True
    """
    if any(_has_dictionary(field.type) for field in batch.schema):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        return (sink.getvalue(),)
    return (batch.schema.serialize(), batch.serialize(), _END_OF_STREAM)


def encode_batch(batch: pa.RecordBatch) -> bytes:
    """One record batch as a complete Arrow IPC stream."""
    return b"".join(stream_pieces(batch))


def to_record_batch(columns: pa.RecordBatch | Mapping[str, Any]) -> pa.RecordBatch:
    """Accept a RecordBatch or a mapping of names to arrays (or anything pa.array takes)."""
    if isinstance(columns, pa.RecordBatch):
        return columns
    arrays = [_as_array(values) for values in columns.values()]
    return pa.RecordBatch.from_arrays(arrays, names=list(columns))


def result_batch(value: Any, expected_rows: int) -> pa.RecordBatch:
    """A handler's return value as a one-column ``result`` batch of ``expected_rows`` rows.

    Examples
    --------
    >>> result_batch([1, 2], 2).to_pydict()
    {'result': [1, 2]}
    """
    array = _result_array(value)
    if len(array) != expected_rows:
        raise ResultLengthError(
            f"the handler returned {len(array)} values for {expected_rows} input rows: "
            f"expected exactly one value per row"
        )
    return pa.RecordBatch.from_arrays([array], names=[RESULT_COLUMN])


def decode_result(stream: Any) -> list[pa.Array]:
    """The result column of every batch in a response's IPC stream.

    A batch with several columns is refused: a model answers one value per row.
    """
    arrays = []
    for batch in iter_batches(stream):
        if batch.num_columns != 1:
            raise ResultShapeError(
                f"the model answered a batch with {batch.num_columns} columns "
                f"({', '.join(batch.schema.names)}): expected one column named {RESULT_COLUMN!r}"
            )
        arrays.append(batch.column(0))
    return arrays


def _has_dictionary(type_: pa.DataType) -> bool:
    if pa.types.is_dictionary(type_):
        return True
    return any(_has_dictionary(type_.field(index).type) for index in range(type_.num_fields))


def _result_array(value: Any) -> pa.Array:
    if isinstance(value, pa.Array):
        return value
    if isinstance(value, pa.ChunkedArray):
        return value.combine_chunks()
    if isinstance(value, pa.RecordBatch | pa.Table):
        if value.num_columns != 1:
            raise TypeError(
                f"the handler returned a {type(value).__name__} with {value.num_columns} "
                f"columns ({', '.join(value.schema.names)}): expected exactly one column"
            )
        column = value.column(0)
        return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(value, str | bytes | Mapping) or not hasattr(value, "__len__"):
        raise TypeError(
            f"the handler returned {type(value).__name__}: expected a pyarrow Array, "
            f"ChunkedArray, one-column RecordBatch or Table, a list, or a numpy array"
        )
    return _as_array(value)


def _as_array(values: Any) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    return pa.array(values)
