"""Python annotations to Arrow types (the README's type table), and Arrow types to and from text.

The feature DSL types each feature with ``arrow_type_of``; the serialised graph writes types
with ``type_to_text`` and the engine reads them back with ``type_from_text``.
"""

from __future__ import annotations

import datetime as dt
import re
import types
import typing
from typing import Any, Final, Union

import pyarrow as pa

from chalk.common.errors import ChalkError

__all__ = ["FeatureTypeError", "arrow_type_of", "type_from_text", "type_to_text"]

_SCALARS: Final[dict[Any, pa.DataType]] = {
    int: pa.int64(),
    float: pa.float64(),
    str: pa.large_string(),
    bool: pa.bool_(),
    bytes: pa.large_binary(),
    dt.datetime: pa.timestamp("us", tz="UTC"),
    dt.date: pa.date32(),
}
_TEXT_SCALARS: Final[dict[str, pa.DataType]] = {
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "large_string": pa.large_string(),
    "binary": pa.binary(),
    "large_binary": pa.large_binary(),
    "bool": pa.bool_(),
    "date32": pa.date32(),
    "null": pa.null(),
}
# How pyarrow itself prints some of them (str(pa.float64()) is "double").
_TEXT_SCALARS.update({"double": pa.float64(), "float": pa.float32(), "date32[day]": pa.date32()})
_TIMESTAMP: Final = re.compile(r"^timestamp\[(s|ms|us|ns)(?:, tz=(.+))?\]$")
_LIST: Final = re.compile(r"^(large_)?list<(.+)>$")


class FeatureTypeError(ChalkError, TypeError):
    """An annotation has no Arrow type in the type table."""


def arrow_type_of(annotation: Any) -> tuple[pa.DataType, bool]:
    """The Arrow type of a feature annotation, and whether it is nullable (``Optional``).

    Examples
    --------
    >>> arrow_type_of(str)
    (DataType(large_string), False)
    >>> arrow_type_of(list[int] | None)
    (ListType(list<item: int64>), True)
    """
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            raise FeatureTypeError(
                f"{annotation!r} is not a feature type: expected Optional[T] of one type T"
            )
        inner, _ = arrow_type_of(members[0])
        return inner, True
    if origin is list:
        (item,) = typing.get_args(annotation) or (None,)
        if item is None:
            raise FeatureTypeError("list needs its item type: expected list[T], e.g. list[str]")
        item_type, _ = arrow_type_of(item)
        return pa.list_(item_type), False
    found = _SCALARS.get(annotation)
    if found is None:
        raise FeatureTypeError(
            f"{getattr(annotation, '__name__', annotation)!r} is not a feature type: expected "
            f"int, float, str, bool, bytes, datetime, date, list[T] or Optional[T]"
        )
    return found, False


def type_to_text(arrow_type: pa.DataType) -> str:
    """The text of an Arrow type that ``type_from_text`` reads back.

    Examples
    --------
    >>> type_to_text(pa.list_(pa.timestamp("us", tz="UTC")))
    'list<timestamp[us, tz=UTC]>'
    """
    if pa.types.is_large_list(arrow_type):
        return f"large_list<{type_to_text(arrow_type.value_type)}>"
    if pa.types.is_list(arrow_type):
        return f"list<{type_to_text(arrow_type.value_type)}>"
    text = str(arrow_type)
    if type_from_text(text) != arrow_type:
        raise FeatureTypeError(f"Arrow type {arrow_type} is not supported in a feature graph")
    return text


def type_from_text(text: str) -> pa.DataType:
    """The Arrow type written by ``type_to_text``.

    Examples
    --------
    >>> type_from_text("list<large_string>")
    ListType(list<item: large_string>)
    """
    text = text.strip()
    scalar = _TEXT_SCALARS.get(text)
    if scalar is not None:
        return scalar
    timestamp = _TIMESTAMP.match(text)
    if timestamp:
        return pa.timestamp(timestamp.group(1), tz=timestamp.group(2))
    listed = _LIST.match(text)
    if listed:
        item = type_from_text(listed.group(2))
        return pa.large_list(item) if listed.group(1) else pa.list_(item)
    raise FeatureTypeError(f"unknown Arrow type text {text!r}")
