"""The answer cache's keys: 16 bytes per argument row, a hash of the row's values.

``ModelCaller`` computes them for a call's distinct argument rows (already cast to the model's
input_schema) and looks them up in its ``AnswerStore``. Vectorised: two seeded 64-bit row
hashes of polars (``DataFrame.hash_rows``), side by side.
"""

from __future__ import annotations

import struct
from typing import Final

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from chalk.engine.dedup import float_bits

__all__ = ["KEY_BYTES", "key_halves", "key_pair", "row_keys"]

KEY_BYTES: Final = 16
# Up to this many rows, the two hashes are put side by side in Python (an online query's call:
# a few microseconds, where the vectorised interleave costs a few hundred).
_FEW_ROWS: Final = 64
# Two unsigned 64-bit integers in the machine's order: the layout of the vectorised keys.
_PAIR: Final = struct.Struct("=QQ")

# Fixed seeds: every process running the same polars version hashes a row to the same key,
# so that processes sharing a store (Redis) share answers. polars promises the same hash only
# within one version: after an upgrade old answers become misses, never wrong answers.
_SEEDS: Final = (0x9E3779B97F4A7C15, 0x6A09E667BB67AE85)


def row_keys(batch: pa.RecordBatch) -> pa.FixedSizeBinaryArray:
    """One 16-byte key per row of ``batch``: equal rows give equal keys, in any process running
    the same scalegroup and polars versions; different rows, different keys (but for a
    collision of two 64-bit hashes at once).

    Rows compare as ``chalk.engine.dedup`` compares them: a null is a value of its own, every
    NaN the same NaN, -0.0 apart from 0.0, in a list or struct as at the top. Column names
    play no part; their order does.

    Examples
    --------
    >>> keys = row_keys(pa.record_batch({"text": ["a", None, "a"]}))
    >>> keys.type, keys[0] == keys[2], keys[0] == keys[1]
    (FixedSizeBinaryType(fixed_size_binary[16]), True, False)
    """
    rows = batch.num_rows
    if rows == 0:
        return pa.array([], pa.binary(KEY_BYTES))
    columns = {f"c{index}": _hashable(column) for index, column in enumerate(batch.columns)}
    frame = pl.DataFrame(columns)
    halves = [frame.hash_rows(seed=seed) for seed in _SEEDS]
    if rows <= _FEW_ROWS:
        pairs = zip(halves[0].to_list(), halves[1].to_list(), strict=True)
        packed = pa.py_buffer(b"".join(_PAIR.pack(first, second) for first, second in pairs))
        few = pa.Array.from_buffers(pa.binary(KEY_BYTES), rows, [None, packed])
        assert isinstance(few, pa.FixedSizeBinaryArray)
        return few
    # Interleaved: the first hash of row 0, its second, the first of row 1, ...
    place = pl.int_range(0, 2 * rows, eager=True)
    order = (place % 2) * rows + place // 2
    values = pl.concat(halves).gather(order).rechunk().to_arrow()
    data = values.buffers()[1]
    assert data is not None
    assert values.offset == 0
    keys = pa.Array.from_buffers(pa.binary(KEY_BYTES), rows, [None, data])
    assert isinstance(keys, pa.FixedSizeBinaryArray)
    return keys


def key_pair(key: bytes) -> tuple[int, int]:
    """One key's two halves, as ``key_halves`` gives them."""
    first, second = _PAIR.unpack(key)
    return first, second


def key_halves(keys: pa.FixedSizeBinaryArray) -> tuple[pl.Series, pl.Series]:
    """The two 64-bit halves of each key, as unsigned integers (what a store indexes)."""
    data = keys.buffers()[1]
    if data is None or len(keys) == 0:
        empty = pl.Series([], dtype=pl.UInt64)
        return empty, empty
    words = pa.Array.from_buffers(pa.uint64(), 2 * len(keys), [None, data], offset=2 * keys.offset)
    series = pl.Series(words)
    return series.gather_every(2), series.gather_every(2, offset=1)


def _hashable(column: pa.Array) -> pa.Array:
    """``column`` with every float in it, at any depth, as the integer of its bits
    (``float_bits``), as dedupe compares them: polars' row hash gives list[-0.0] the key of
    list[0.0]. Columns without floats are returned as they are."""
    kind = column.type
    if not _holds_floats(kind):
        return column
    if pa.types.is_floating(kind):
        return float_bits(column)
    if pa.types.is_dictionary(kind):
        return _hashable(column.dictionary_decode())
    mask = column.is_null() if column.null_count else None
    if pa.types.is_struct(kind):
        # flatten() gives the children of this slice; a null struct stays null (the mask).
        children = [_hashable(child) for child in column.flatten()]
        names = [kind.field(index).name for index in range(kind.num_fields)]
        return pa.StructArray.from_arrays(children, names=names, mask=mask)
    if pa.types.is_fixed_size_list(kind):
        size = kind.list_size
        items = column.values.slice(column.offset * size, len(column) * size)
        return pa.FixedSizeListArray.from_arrays(_hashable(items), size, mask=mask)
    # A slice's offsets index its parent's whole child array: only the items between its
    # first and last offset are its own, renumbered from 0 (Arrow takes no mask beside
    # offsets that do not start at 0).
    offsets = column.offsets
    first, last = offsets[0].as_py(), offsets[-1].as_py()
    items = _hashable(column.values.slice(first, last - first))
    if first:
        offsets = pc.subtract(offsets, pa.scalar(first, offsets.type))
    lists = pa.LargeListArray if pa.types.is_large_list(kind) else pa.ListArray
    return lists.from_arrays(offsets, items, mask=mask)


def _holds_floats(kind: pa.DataType) -> bool:
    if pa.types.is_floating(kind):
        return True
    if pa.types.is_dictionary(kind):
        return _holds_floats(kind.value_type)
    if pa.types.is_struct(kind):
        return any(_holds_floats(kind.field(index).type) for index in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _holds_floats(kind.value_type)
    return False
