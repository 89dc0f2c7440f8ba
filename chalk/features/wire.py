"""Feature values as JSON, and the fingerprint of a feature's definition.

The one copy of these rules shared by the HTTP feature server (``chalk serve``) and its client
(``ChalkClient(api_server=...)``): timestamps and dates travel as ISO 8601 text, bytes as
base64, lists item by item; two sides agree on a feature when their fingerprints are equal;
offline blocks travel as Arrow IPC streams with the headers named here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any, Final

import pyarrow as pa

from chalk.common.errors import ChalkError
from chalk.features.graph import FeatureDef

__all__ = [
    "ARROW_STREAM",
    "FINGERPRINTS_HEADER",
    "GRAPH_VERSION_HEADER",
    "MAX_BODY_HEADER",
    "MODEL_CALLS_HEADER",
    "WireValueError",
    "check_python_values",
    "feature_fingerprint",
    "value_from_json",
    "value_to_json",
]

# Offline queries over HTTP (POST /v1/query/offline): the media type of a block, in and out,
# and the headers beside it. The fingerprints of the features the caller defines (a JSON
# object, fqn: fingerprint); the applied graph's version and what the block's model calls did
# per scaling group (a JSON object) in the answer; on a 413, the server's body limit.
ARROW_STREAM: Final = "application/vnd.apache.arrow.stream"
FINGERPRINTS_HEADER: Final = "x-chalk-fingerprints"
GRAPH_VERSION_HEADER: Final = "x-chalk-graph-version"
MODEL_CALLS_HEADER: Final = "x-chalk-model-calls"
MAX_BODY_HEADER: Final = "x-chalk-max-body-bytes"


class WireValueError(ChalkError, ValueError):
    """A JSON value that cannot be read as its feature's type."""


def feature_fingerprint(feature: FeatureDef) -> str:
    """A digest of what defines ``feature``: its type, nullability, key role and expression.

    Where it was written (``source``) and its description do not count.

    Examples
    --------
    >>> a = FeatureDef("doc", "n", pa.int64(), expression="(_.id + 1)")
    >>> b = FeatureDef("doc", "n", pa.int64(), expression="(_.id + 2)")
    >>> feature_fingerprint(a) == feature_fingerprint(a), feature_fingerprint(a) == feature_fingerprint(b)
    (True, False)
    """  # noqa: E501
    data = feature.to_json()
    defining = {key: data[key] for key in ("name", "type", "nullable", "primary", "expression")}
    text = json.dumps([feature.namespace, defining], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def value_to_json(value: Any, arrow_type: pa.DataType | None) -> Any:
    """A plain Python value of ``arrow_type`` (as ``as_py`` gives it) as a JSON value; with no
    type (a feature this side does not define), by the value's own Python type.

    Examples
    --------
    >>> value_to_json(dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC), pa.timestamp("us", "UTC"))
    '2024-05-01T12:00:00+00:00'
    >>> value_to_json([b"hi", None], pa.list_(pa.large_binary()))
    ['aGk=', None]
    """
    if value is None:
        return None
    if arrow_type is None and isinstance(value, list | tuple):
        return [value_to_json(item, None) for item in value]
    if arrow_type is not None and _is_list(arrow_type):
        return [value_to_json(item, arrow_type.value_type) for item in value]
    if isinstance(value, dt.date):  # datetime is a date too
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def value_from_json(value: Any, arrow_type: pa.DataType, *, what: str) -> Any:
    """A JSON value read as ``arrow_type``: ISO 8601 text for timestamps and dates, base64 for
    bytes; integers only in their type's range, finite numbers, booleans and text only as
    themselves. ``what`` names the value in the error.

    Examples
    --------
    >>> value_from_json("2024-02-29", pa.date32(), what="doc.on")
    datetime.date(2024, 2, 29)
    >>> value_from_json("yesterday", pa.date32(), what="doc.on")
    Traceback (most recent call last):
    ...
    chalk.features.wire.WireValueError: doc.on: expected an ISO 8601 date such as 2024-05-01, got 'yesterday'
    >>> value_from_json(1.9, pa.int64(), what="doc.id")
    Traceback (most recent call last):
    ...
    chalk.features.wire.WireValueError: doc.id: the input does not fit its type int64: expected an integer, got 1.9
    """  # noqa: E501
    if value is None:
        return None
    if _is_list(arrow_type):
        if not isinstance(value, list):
            raise WireValueError(f"{what}: expected a JSON list, got {_shown(value)}")
        return [value_from_json(item, arrow_type.value_type, what=what) for item in value]
    if pa.types.is_timestamp(arrow_type):
        return _instant(value, what, dt.datetime.fromisoformat, "timestamp", "2024-05-01T12:30Z")
    if pa.types.is_date(arrow_type):
        return _instant(value, what, dt.date.fromisoformat, "date", "2024-05-01")
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        if not isinstance(value, str):
            raise WireValueError(f"{what}: expected base64 text for bytes, got {_shown(value)}")
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise WireValueError(
                f"{what}: expected base64 text for bytes, got {_shown(value)}"
            ) from None
    return _scalar(value, arrow_type, what)


def check_python_values(values: Sequence[Any], arrow_type: pa.DataType, *, what: str) -> None:
    """Refuse Python values Arrow would coerce quietly into ``arrow_type``: fractions truncated
    to ints, booleans read as numbers, ints past the type's range, infinities and NaN. The
    same rule as ``value_from_json``'s; values of other Python types are left to Arrow.

    Examples
    --------
    >>> check_python_values([1, 2, None], pa.int64(), what="doc.id")
    >>> check_python_values([1, 2.7], pa.int64(), what="doc.id")
    Traceback (most recent call last):
    ...
    chalk.features.wire.WireValueError: doc.id: the input does not fit its type int64: expected an integer, got 2.7 (row 1)
    """  # noqa: E501
    if _plainly_fits(values, arrow_type):
        return
    many = len(values) > 1
    for row, value in enumerate(values):
        if value is None:
            continue
        if _is_list(arrow_type) and isinstance(value, list | tuple):
            check_python_values(value, arrow_type.value_type, what=what)
        elif isinstance(value, bool | int | float | str):
            expected = _unfit(value, arrow_type)
            if expected is not None:
                where = f" (row {row})" if many else ""
                raise WireValueError(
                    f"{what}: the input does not fit its type {arrow_type}: expected "
                    f"{expected}, got {_shown(value)}{where}"
                )


def _plainly_fits(values: Sequence[Any], arrow_type: pa.DataType) -> bool:
    """Whether every value is of the type's own Python kind and in range (no value-by-value
    look needed: the common case of a large offline input)."""
    kinds = set(map(type, values)) - {type(None)}
    present = [value for value in values if value is not None]
    if pa.types.is_integer(arrow_type) and kinds <= {int}:
        low, high = _int_range(arrow_type)
        return not present or (low <= min(present) and max(present) <= high)
    if pa.types.is_floating(arrow_type) and kinds <= {float}:
        return all(map(math.isfinite, present))
    if pa.types.is_boolean(arrow_type):
        return kinds <= {bool}
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return kinds <= {str}
    return not _is_list(arrow_type) and not kinds & {bool, int, float, str}


def _scalar(value: Any, arrow_type: pa.DataType, what: str) -> Any:
    """``value`` when it is a JSON value of ``arrow_type``'s kind (and range); other types pass
    as they are, for Arrow to check."""
    expected = _unfit(value, arrow_type)
    if expected is not None:
        raise WireValueError(
            f"{what}: the input does not fit its type {arrow_type}: expected {expected}, got "
            f"{_shown(value)}"
        )
    return value


def _unfit(value: Any, arrow_type: pa.DataType) -> str | None:
    """What ``arrow_type`` expects, when ``value`` is not that; None when it fits."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if pa.types.is_integer(arrow_type):
        if not is_number or not isinstance(value, int):
            return "an integer"
        low, high = _int_range(arrow_type)
        return None if low <= value <= high else f"an integer from {low} to {high}"
    if pa.types.is_floating(arrow_type):
        return "a number" if not is_number else None if _finite(value) else "a finite number"
    if pa.types.is_boolean(arrow_type):
        return None if isinstance(value, bool) else "true or false"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return None if isinstance(value, str) else "a string"
    return None


def _int_range(arrow_type: pa.DataType) -> tuple[int, int]:
    bits = arrow_type.bit_width
    if pa.types.is_signed_integer(arrow_type):
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer past the largest float
        return False


def _instant(value: Any, what: str, parse: Any, kind: str, example: str) -> Any:
    if isinstance(value, str):
        try:
            return parse(value)
        except ValueError:
            pass
    raise WireValueError(f"{what}: expected an ISO 8601 {kind} such as {example}, got {value!r}")


def _shown(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_list(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type))
