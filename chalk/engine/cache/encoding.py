"""Model answers as one bytes value per answer and back, for stores that keep a value per key
(``chalk.engine.cache.redis_store``); every Arrow type round-trips, nulls included.

Three layouts, picked by the answers' type, each vectorised where Arrow allows:

- fixed-width values (numbers, booleans as one byte, dates, times, timestamps, durations,
  intervals, decimals, fixed-size binary): the value's bytes; a null is the empty value.
- strings and binaries (every width and view): one byte 0x01, then the bytes; a null is the
  empty value, so an empty string (b"\\x01") and a null stay apart.
- anything else (lists, structs, maps, unions): each answer as an Arrow IPC record batch
  message of one row, read back with the type the store knows. About 10 us per answer each
  way, against about 0.1-0.2 us for the two layouts above (bench/README.md, "calls.py").

Dictionary answers are kept as their values, extension answers as their storage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from chalk.engine.arrow_types import is_bytes, is_float, is_int, is_text

__all__ = ["decode_answers", "encode_answers", "encoding_name"]

# Named in every key (``encoding_name``): a store never reads values of another layout.
_VERSION: Final = "e1"
_TEXT_TAG: Final = b"\x01"
_COLUMN: Final = "answer"


def encoding_name(output_type: pa.DataType) -> str:
    """A short name for how answers of ``output_type`` are encoded: the layout's version and
    a hash of the type, so that a value is only ever read as the type that wrote it.

    Examples
    --------
    >>> encoding_name(pa.int64()) == encoding_name(pa.int64())
    True
    >>> encoding_name(pa.int64()) == encoding_name(pa.int32())
    False
    """
    digest = hashlib.blake2b(str(output_type).encode(), digest_size=4).hexdigest()
    return f"{_VERSION}.{digest}"


def encode_answers(answers: pa.Array | pa.ChunkedArray) -> list[bytes]:
    """One value per answer, in order (see the module's layouts).

    Examples
    --------
    >>> encode_answers(pa.array(["", None, "ab"]))
    [b'\\x01', b'', b'\\x01ab']
    """
    if isinstance(answers, pa.ChunkedArray):
        answers = answers.combine_chunks()
    plain = _plain(answers)
    kind = plain.type
    if pa.types.is_null(kind):
        return [b""] * len(plain)
    if _is_fixed_width(kind):
        return _encode_fixed(plain)
    if _is_text(kind):
        return _encode_text(plain)
    return _encode_ipc(plain)


def decode_answers(values: Sequence[bytes], output_type: pa.DataType) -> pa.Array:
    """The answers ``values`` (written by ``encode_answers``) hold, typed ``output_type``.

    Raises ValueError when a value cannot be one of ``output_type`` (another writer's).

    Examples
    --------
    >>> decode_answers([b"\\x01", b"", b"\\x01ab"], pa.string()).to_pylist()
    ['', None, 'ab']
    """
    kind = _plain_type(output_type)
    if pa.types.is_null(kind):
        plain = pa.nulls(len(values))
    elif _is_fixed_width(kind):
        plain = _decode_fixed(values, kind)
    elif _is_text(kind):
        plain = _decode_text(values, kind)
    else:
        plain = _decode_ipc(values, kind)
    return _restored(plain, output_type)


def _plain(answers: pa.Array) -> pa.Array:
    """Answers as the type they are kept as: an extension's storage, a dictionary's values,
    booleans as one byte each."""
    kind = answers.type
    if isinstance(kind, pa.ExtensionType):
        return _plain(answers.storage)
    if pa.types.is_dictionary(kind):
        return _plain(answers.cast(kind.value_type))
    if pa.types.is_boolean(kind):
        return answers.cast(pa.uint8())
    return answers


def _plain_type(kind: pa.DataType) -> pa.DataType:
    """The type ``_plain`` keeps answers of ``kind`` as."""
    if isinstance(kind, pa.ExtensionType):
        return _plain_type(kind.storage_type)
    if pa.types.is_dictionary(kind):
        return _plain_type(kind.value_type)
    if pa.types.is_boolean(kind):
        return pa.uint8()
    return kind


def _restored(plain: pa.Array, kind: pa.DataType) -> pa.Array:
    """``plain`` answers back as ``kind`` (undoes ``_plain``)."""
    if isinstance(kind, pa.ExtensionType):
        return pa.ExtensionArray.from_storage(kind, _restored(plain, kind.storage_type))
    if pa.types.is_dictionary(kind):
        return _restored(plain, kind.value_type).cast(kind)
    if pa.types.is_boolean(kind):
        return plain.cast(pa.bool_())
    return plain


def _is_fixed_width(kind: pa.DataType) -> bool:
    return bool(
        is_int(kind)
        or is_float(kind)
        or pa.types.is_temporal(kind)
        or pa.types.is_interval(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_fixed_size_binary(kind)
    )


def _is_text(kind: pa.DataType) -> bool:
    return is_text(kind) or is_bytes(kind)


def _encode_fixed(answers: pa.Array) -> list[bytes]:
    # The same validity and data buffers read as fixed-size binary: each value's bytes.
    width = answers.type.bit_width // 8
    validity, data = answers.buffers()[:2]
    as_bytes = pa.Array.from_buffers(
        pa.binary(width), len(answers), [validity, data], offset=answers.offset
    )
    values: list[bytes] = pc.fill_null(as_bytes.cast(pa.large_binary()), b"").to_pylist()
    return values


def _decode_fixed(values: Sequence[bytes], kind: pa.DataType) -> pa.Array:
    width = kind.bit_width // 8
    count = len(values)
    zero = bytes(width)
    data = b"".join([value or zero for value in values])
    if len(data) != count * width:
        raise ValueError(f"expected {width} bytes per {kind} answer, got {len(data)} for {count}")
    valid = pa.array([bool(value) for value in values], pa.bool_())
    validity = None if valid.false_count == 0 else valid.buffers()[1]
    return pa.Array.from_buffers(kind, count, [validity, pa.py_buffer(data)])


def _encode_text(answers: pa.Array) -> list[bytes]:
    as_bytes = answers.cast(pa.large_binary())
    tag = pa.scalar(_TEXT_TAG, pa.large_binary())
    tagged = pc.binary_join_element_wise(tag, as_bytes, pa.scalar(b"", pa.large_binary()))
    values: list[bytes] = pc.fill_null(tagged, b"").to_pylist()
    return values


def _decode_text(values: Sequence[bytes], kind: pa.DataType) -> pa.Array:
    # A value is its tag and its bytes, or empty for a null; the tag comes off in Python
    # (a slice per value): pyarrow's binary_slice fails on some arrays ("Negative buffer
    # resize", pyarrow 26).
    if any(value[:1] not in (b"", _TEXT_TAG) for value in values):
        raise ValueError(f"expected {kind} answers to start with {_TEXT_TAG!r}")
    stripped = pa.array([value[1:] if value else None for value in values], pa.large_binary())
    return stripped.cast(kind)


def _encode_ipc(answers: pa.Array) -> list[bytes]:
    batch = pa.record_batch([answers], [_COLUMN])
    return [batch.slice(row, 1).serialize().to_pybytes() for row in range(len(answers))]


def _decode_ipc(values: Sequence[bytes], kind: pa.DataType) -> pa.Array:
    schema = pa.schema([(_COLUMN, kind)])
    rows = [pa.ipc.read_record_batch(pa.py_buffer(value), schema).column(0) for value in values]
    if not rows:
        return pa.array([], kind)
    return pa.concat_arrays(rows)
