"""The Arrow type rules of the engine, one copy each: what a type is, what it converts to.

The compiler and the executor check expressions and stored columns with them, the model call
casts arguments and answers with them, and error messages write types with ``type_text``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final

import polars as pl
import pyarrow as pa

from chalk.features.types import FeatureTypeError, type_to_text

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "common_type",
    "converts_without_loss",
    "fits_int64",
    "is_bool_or_null",
    "is_bytes",
    "is_float",
    "is_int",
    "is_list",
    "is_null",
    "is_number_or_null",
    "is_string_or_null",
    "is_text",
    "literal_type",
    "polars_keeps",
    "polars_type",
    "stores_as",
    "type_text",
]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
_TIMESTAMP_UNITS: Final = ("s", "ms", "us", "ns")


def type_text(arrow_type: pa.DataType) -> str:
    """An Arrow type as the feature graph writes it (``int64``, ``list<large_string>``).

    Examples
    --------
    >>> type_text(pa.list_(pa.large_string())), type_text(pa.string())
    ('list<large_string>', 'string')
    """
    try:
        return type_to_text(arrow_type)
    except FeatureTypeError:
        return str(arrow_type)


def is_null(arrow_type: pa.DataType) -> bool:
    """The type of a column of nulls only (a ``None`` literal's)."""
    return bool(pa.types.is_null(arrow_type))


def is_int(arrow_type: pa.DataType) -> bool:
    """Any signed or unsigned integer type."""
    return bool(pa.types.is_integer(arrow_type))


def is_float(arrow_type: pa.DataType) -> bool:
    """Any floating-point type."""
    return bool(pa.types.is_floating(arrow_type))


def is_list(arrow_type: pa.DataType) -> bool:
    """A list or a large_list (of any value type)."""
    return bool(pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type))


def is_text(arrow_type: pa.DataType) -> bool:
    """Any Arrow string type: string, large_string or string_view."""
    return bool(
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_string_view(arrow_type)
    )


def is_bytes(arrow_type: pa.DataType) -> bool:
    """Any Arrow binary type: binary, large_binary or binary_view."""
    return bool(
        pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
        or pa.types.is_binary_view(arrow_type)
    )


def is_number_or_null(arrow_type: pa.DataType) -> bool:
    """What an arithmetic operator takes: a number, or a null (the result is null)."""
    return bool(is_int(arrow_type) or is_float(arrow_type) or is_null(arrow_type))


def is_bool_or_null(arrow_type: pa.DataType) -> bool:
    """What ``&``, ``|``, ``~`` and a condition take: a bool, or a null (three-valued logic)."""
    return bool(pa.types.is_boolean(arrow_type) or is_null(arrow_type))


def is_string_or_null(arrow_type: pa.DataType) -> bool:
    """What the executor's string functions take: string or large_string (polars' String),
    or a null (the result is null). Unlike ``is_text``, not string_view.
    """
    return bool(
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or is_null(arrow_type)
    )


def literal_type(value: object) -> pa.DataType:
    """The Arrow type of a literal's column: null, bool, int64, float64 or large_string.

    Examples
    --------
    >>> literal_type(2), literal_type("a"), literal_type(None)
    (DataType(int64), DataType(large_string), DataType(null))
    """
    if value is None:
        return pa.null()
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    return pa.large_string()


def fits_int64(value: int) -> bool:
    """Whether an int literal fits int64, the type of its column."""
    return INT64_MIN <= value <= INT64_MAX


@functools.lru_cache(maxsize=256)
def polars_type(arrow_type: pa.DataType) -> pl.DataType:
    """The polars type a column of ``arrow_type`` becomes (string and large_string: String)."""
    series = pl.Series(pa.array([], type=arrow_type))
    return series.dtype


@functools.lru_cache(maxsize=256)
def polars_keeps(arrow_type: pa.DataType) -> bool:
    """Whether a column of ``arrow_type`` comes back from polars as the same Arrow type (a
    list comes back a large_list, a string a large_string)."""
    return bool(pl.Series(pa.array([], type=arrow_type)).to_arrow().type == arrow_type)


def stores_as(given: pa.DataType, declared: pa.DataType) -> bool:
    """Whether a column of ``given`` may be stored as ``declared`` (values are checked then).

    Examples
    --------
    >>> stores_as(pa.int32(), pa.float64()), stores_as(pa.float64(), pa.int64())
    (True, False)
    """
    if is_null(given) or polars_type(given) == polars_type(declared):
        return True
    if is_list(given) and is_list(declared):
        return stores_as(given.value_type, declared.value_type)
    if is_int(given):
        return is_int(declared) or declared == pa.float64()
    return is_float(given) and is_float(declared) and declared.bit_width >= given.bit_width


def common_type(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The type both values widen to without loss, or None when they have none.

    Examples
    --------
    >>> common_type(pa.int32(), pa.float32()), common_type(pa.int64(), pa.large_string())
    (DataType(double), None)
    """
    if is_null(a):
        return b
    if is_null(b) or polars_type(a) == polars_type(b):
        return a
    if is_int(a) and is_int(b):
        return pa.int64()
    if is_number_or_null(a) and is_number_or_null(b):
        return pa.float64()
    return None


def converts_without_loss(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether every value of ``source`` has an equal value of ``target`` (a safe cast).

    The same type; null to anything; string <-> large_string (binary likewise); an int to
    a wider int (unsigned to a strictly wider signed one); an int to float64; a float to a wider
    float; a timestamp to a finer unit of the same time zone; lists of such.

    Examples
    --------
    >>> converts_without_loss(pa.int32(), pa.int64()), converts_without_loss(pa.int64(), pa.int32())
    (True, False)
    >>> converts_without_loss(pa.string(), pa.large_string())
    True
    >>> converts_without_loss(pa.float64(), pa.int64())
    False
    """
    if source == target or is_null(source):
        return True
    if is_list(source) and is_list(target):
        return converts_without_loss(source.value_type, target.value_type)
    return any(rule(source, target) for rule in _WIDENINGS)


def _text_to_text(source: pa.DataType, target: pa.DataType) -> bool:
    return is_text(source) and is_text(target)


def _bytes_to_bytes(source: pa.DataType, target: pa.DataType) -> bool:
    return is_bytes(source) and is_bytes(target)


def _int_widens(source: pa.DataType, target: pa.DataType) -> bool:
    if not (is_int(source) and is_int(target)):
        return False
    source_signed = pa.types.is_signed_integer(source)
    target_signed = pa.types.is_signed_integer(target)
    if source_signed and not target_signed:
        return False
    if target_signed and not source_signed:
        return bool(target.bit_width > source.bit_width)
    return bool(target.bit_width >= source.bit_width)


def _int_to_float64(source: pa.DataType, target: pa.DataType) -> bool:
    return bool(is_int(source) and target == pa.float64())


def _float_widens(source: pa.DataType, target: pa.DataType) -> bool:
    return bool(is_float(source) and is_float(target) and target.bit_width >= source.bit_width)


def _timestamp_finer(source: pa.DataType, target: pa.DataType) -> bool:
    return bool(
        pa.types.is_timestamp(source)
        and pa.types.is_timestamp(target)
        and source.tz == target.tz
        and _TIMESTAMP_UNITS.index(target.unit) >= _TIMESTAMP_UNITS.index(source.unit)
    )


_WIDENINGS: Final[tuple[Callable[[pa.DataType, pa.DataType], bool], ...]] = (
    _text_to_text,
    _bytes_to_bytes,
    _int_widens,
    _int_to_float64,
    _float_widens,
    _timestamp_finer,
)
