"""Deduplication of a model call's argument rows: identical rows are sent once and the answer is
fanned back to each of them.

``ModelCaller`` runs ``dedupe`` on a call's argument batch before cutting it into chunks (never
for a non-deterministic model version, nor with ``CHALK_DEDUP=0``); a queue that merges the
chunks of several queries may run it again on a merged chunk.
"""

from __future__ import annotations

import math
import os
from typing import Final, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["DEDUP_ENV", "SAMPLE_ROWS", "dedup_enabled", "dedupe", "fan_out", "float_bits"]

# ``CHALK_DEDUP=0`` turns deduplication off for every ModelCaller of the process that is not
# told otherwise (benchmarks compare the two; a model whose answers vary should rather be
# registered with deterministic=False).
DEDUP_ENV: Final = "CHALK_DEDUP"

# A batch of more rows is first looked at through a random sample of this many: when no two
# sampled rows are alike, repeats are too rare to pay for hashing every row (a 1M-row batch of
# distinct rows costs 0.1-0.6 s to hash; its sample, 1-10 ms). At 1M rows, a batch whose rows
# are 5% repeats (the hardest kind: each repeated value twice) shows one in its sample about
# 95% of the time, 10% repeats 99.9% of the time (measured and by the birthday bound).
SAMPLE_ROWS: Final = 8192

# Combined row codes stay below this, so that multiplying two of them never overflows int64.
_MAX_CODE: Final = 1 << 31

_Answer = TypeVar("_Answer", pa.Array, pa.ChunkedArray)


def dedup_enabled(setting: bool | None = None) -> bool:
    """``setting`` when given, else whether ``CHALK_DEDUP`` is unset or not ``0``.

    Examples
    --------
    >>> dedup_enabled(False)
    False
    """
    if setting is not None:
        return setting
    return os.environ.get(DEDUP_ENV, "1").strip().lower() not in {"0", "false", "no", "off"}


def dedupe(
    batch: pa.RecordBatch, *, sample_rows: int = SAMPLE_ROWS
) -> tuple[pa.RecordBatch, pa.Array | None]:
    """The distinct rows of ``batch`` (in the order they first appear) and, per row of
    ``batch``, the index of its row among them; None instead of the indices when no row repeats
    (or a column's type cannot be compared; every type the engine passes can).

    A batch of more than ``sample_rows`` rows (0: no limit) is sent as it is, with None, when
    a random sample of that many rows holds no repeat (see ``SAMPLE_ROWS``): the answers are
    the same either way, only the rows sent differ.

    Two rows are identical when every column holds the same value, compared as the model
    would see it: a null equals a null (and only a null); a float equals a float of the same
    bits, except that every NaN equals every NaN (-0.0 and 0.0 stay apart: a model may tell
    them apart); lists, structs and dictionaries compare by their values. All of it is
    vectorised (Arrow's hash kernels), with no Python step per row.

    Examples
    --------
    >>> batch = pa.record_batch({"text": ["a", None, "a", None, "b"]})
    >>> distinct, indices = dedupe(batch)
    >>> distinct.column(0).to_pylist(), indices.to_pylist()
    (['a', None, 'b'], [0, 1, 0, 1, 2])
    >>> fan_out(pa.array([1, 2, 3]), indices).to_pylist()
    [1, 2, 1, 2, 3]
    >>> dedupe(pa.record_batch({"x": [1.0, -0.0, 0.0]}))[1] is None
    True
    """
    if batch.num_rows < 2 or batch.num_columns == 0:
        return batch, None
    if 0 < sample_rows < batch.num_rows and not _repeats(_sample(batch, sample_rows)):
        return batch, None
    codes = _row_codes(batch)
    if codes is None or codes[1] == batch.num_rows:
        return batch, None
    ids, _ = codes
    return batch.take(_first_appearances(ids)), ids


def fan_out(answer: _Answer, indices: pa.Array | None) -> _Answer:
    """The answer of each row of the call, from the answers of its distinct rows."""
    return answer if indices is None else answer.take(indices)


def _sample(batch: pa.RecordBatch, rows: int) -> pa.RecordBatch:
    """About ``rows`` distinct rows of ``batch`` picked at random (fewer when picks collide)."""
    picks = pc.floor(pc.multiply(pc.random(rows), pa.scalar(float(batch.num_rows))))
    return batch.take(pc.unique(picks.cast(pa.int64())))


def _repeats(batch: pa.RecordBatch) -> bool:
    codes = _row_codes(batch)
    return codes is not None and codes[1] < batch.num_rows


def _row_codes(batch: pa.RecordBatch) -> tuple[pa.Array, int] | None:
    """Per row an int64 code, equal for identical rows (see ``_codes``), and the code count."""
    combined: tuple[pa.Array, int] | None = None
    for column in batch.columns:
        codes = _codes(column)
        if codes is None:
            return None
        combined = codes if combined is None else _combine(combined, codes)
    return combined


def _codes(column: pa.Array) -> tuple[pa.Array, int] | None:
    """Per row an int64 code, equal for identical values, numbered from 0 in order of first
    appearance; and how many codes there are. None for a type that cannot be compared."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        return _codes(column.dictionary_decode())
    if pa.types.is_struct(kind):
        return _struct_codes(column)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _list_codes(column)
    if pa.types.is_nested(kind) or pa.types.is_union(kind):
        return None  # maps, unions: no engine type; their rows are sent as they are
    return _encode(float_bits(column) if pa.types.is_floating(kind) else column)


def _encode(column: pa.Array) -> tuple[pa.Array, int] | None:
    try:
        encoded = pc.dictionary_encode(column, null_encoding="encode")
    except pa.ArrowNotImplementedError:
        return None
    return encoded.indices.cast(pa.int64()), len(encoded.dictionary)


def float_bits(column: pa.Array) -> pa.Array:
    """The floats as integers of their bits, every NaN first made the same NaN."""
    if column.type == pa.float16():
        column = column.cast(pa.float32())  # exact: float32 holds every float16 value
    same_nan = pc.if_else(pc.is_nan(column), pa.scalar(math.nan, column.type), column)
    width = pa.int32() if column.type == pa.float32() else pa.int64()
    return same_nan.view(width)


def _struct_codes(column: pa.StructArray) -> tuple[pa.Array, int] | None:
    # A null struct is not a struct of nulls: its validity is one more field to compare.
    combined = _encode(column.is_null())
    for child in column.flatten():
        codes = _codes(child)
        if codes is None or combined is None:
            return None
        combined = _combine(combined, codes)
    return combined


def _list_codes(column: pa.Array) -> tuple[pa.Array, int] | None:
    """Lists compare as the byte strings of their items' codes (8 bytes an item); a null list
    is a null string, apart from an empty one.

    The list's whole child array (``values``, slicing ignored) is coded, and the offsets index
    it: the items under a null list are never compared.
    """
    if pa.types.is_fixed_size_list(column.type):
        size, first = column.type.list_size, column.offset
        ends = range(first * size, (first + len(column) + 1) * size, size)
        offsets = pa.array(ends, pa.int64())
    else:
        offsets = column.offsets
    items = _codes(column.values)
    if items is None:
        return None
    # Kernel outputs are fresh arrays (offset 0): their data buffers start at row 0.
    item_codes, _ = items
    starts = pc.multiply(offsets.cast(pa.int64()), pa.scalar(8, pa.int64()))
    data = item_codes.buffers()[1] or pa.py_buffer(b"")
    sequences = pa.Array.from_buffers(
        pa.large_binary(), len(column), [None, starts.buffers()[1], data]
    )
    return _encode(pc.if_else(column.is_null(), pa.scalar(None, pa.large_binary()), sequences))


def _combine(left: tuple[pa.Array, int], right: tuple[pa.Array, int]) -> tuple[pa.Array, int]:
    """Codes of the pairs (left, right), renumbered densely in order of first appearance."""
    left_codes, _ = left
    right_codes, right_count = right
    if right_count == 1:
        return left
    pairs = pc.add(pc.multiply(left_codes, pa.scalar(right_count, pa.int64())), right_codes)
    encoded = pc.dictionary_encode(pairs)
    count = len(encoded.dictionary)
    assert count < _MAX_CODE, "a batch has fewer rows than 2**31"
    return encoded.indices.cast(pa.int64()), count


def _first_appearances(ids: pa.Array) -> pa.Array:
    """The rows where each code first appears: codes are numbered in that order, so those are
    the rows whose code is above every code before them."""
    highest = pc.cumulative_max(ids)
    before = pa.concat_arrays([pa.array([-1], pa.int64()), highest.slice(0, len(ids) - 1)])
    return pc.indices_nonzero(pc.greater(ids, before))
