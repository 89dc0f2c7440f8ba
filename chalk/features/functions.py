"""The F functions (``from chalk import functions as F``): each builds one call node.

Feature classes call them in their bodies; ``chalk.functions`` re-exports them under the
product's names and argument order. Each returns a ``Deferred``, which a type checker lets
stand for any feature's annotated type (``s: str = F.upper(_.name)``), while wrong arguments
(bytes, a missing argument, a non-int ``digits``) are still type errors.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from chalk.features.expr import (
    Deferred,
    ExpressionError,
    Operand,
    call,
    check_catalog_call_name,
)
from chalk.features.types import arrow_type_of, type_from_text, type_to_text

__all__ = [
    "abs",
    "cast",
    "catalog_call",
    "coalesce",
    "concat",
    "if_then_else",
    "is_null",
    "json_value",
    "length",
    "lower",
    "round",
    "trim",
    "upper",
]


def catalog_call(name: str, *args: Operand) -> Deferred:
    """Call the model served by the scaling group ``name`` (``model.<group>``) on ``args``.

    Argument i goes to field i of the model's input schema; the result is typed by its
    output schema. The name is checked here, so a bad one fails where the class is defined.

    Parameters
    ----------
    name
        ``model.<scaling group>``, the group a DNS-1123 label.
    *args
        The model's inputs, in the order of its input schema.

    Examples
    --------
    >>> from chalk import functions as F
    >>> from chalk.features import _
    >>> F.catalog_call("model.ner", _.text)
    catalog_call("model.ner", _.text)
    >>> F.catalog_call("ner", _.text)
    Traceback (most recent call last):
    ...
    chalk.features.expr.ExpressionError: catalog_call name 'ner' is not valid: expected 'model.<scaling group>', such as 'model.ner', where the group is lowercase letters, digits and '-'
    """  # noqa: E501
    return call("catalog_call", check_catalog_call_name(name), *args)


def json_value(expr: Operand, path: str) -> Deferred:
    """The value at a JSONPath inside a JSON string, or None where there is none.

    Parameters
    ----------
    expr
        A JSON text.
    path
        A JSONPath starting at the root ``$``, such as ``$.entities[0].label``.

    Examples
    --------
    >>> from chalk import functions as F
    >>> from chalk.features import _
    >>> F.json_value(_.entities, "$.entities[0].label")
    json_value(_.entities, "$.entities[0].label")
    """
    if not isinstance(path, str) or not path.startswith("$"):
        raise ExpressionError(
            f"json_value's path must be JSONPath text: expected a str starting with '$', such "
            f"as '$.entities[0].label', got {path!r}"
        )
    return call("json_value", expr, path)


def lower(expr: Operand) -> Deferred:
    """A string in lower case.

    Examples
    --------
    >>> from chalk import functions as F
    >>> from chalk.features import _
    >>> F.lower(_.name)
    lower(_.name)
    """
    return call("lower", expr)


def upper(expr: Operand) -> Deferred:
    """A string in upper case.

    Examples
    --------
    >>> from chalk import functions as F
    >>> from chalk.features import _
    >>> F.upper(_.name)
    upper(_.name)
    """
    return call("upper", expr)


def length(expr: Operand) -> Deferred:
    """The number of characters of a string (of items, for a list).

    Examples
    --------
    >>> from chalk import functions as F
    >>> from chalk.features import _
    >>> F.length(_.text)
    length(_.text)
    """
    return call("length", expr)


def trim(expr: Operand) -> Deferred:
    """A string without its leading and trailing whitespace.

    Examples
    --------
    >>> from chalk import functions as F
    >>> from chalk.features import _
    >>> F.trim(_.text)
    trim(_.text)
    """
    return call("trim", expr)


def concat(*exprs: Operand) -> Deferred:
    """The strings (or lists) one after another.

    Examples
    --------
    >>> from chalk import functions as F
    >>> from chalk.features import _
    >>> F.concat(_.first, " ", _.last)
    concat(_.first, " ", _.last)
    """
    return call("concat", *exprs)


def coalesce(*exprs: Operand) -> Deferred:
    """The first argument that is not None, row by row.

    Examples
    --------
    >>> from chalk import functions as F
    >>> from chalk.features import _
    >>> F.coalesce(_.nickname, _.name, "anonymous")
    coalesce(_.nickname, _.name, "anonymous")
    """
    return call("coalesce", *exprs)


def if_then_else(condition: Operand, if_true: Operand, if_false: Operand) -> Deferred:
    """``if_true`` where ``condition`` holds, else ``if_false``: the expression's ``x if c else y``.

    Examples
    --------
    >>> from chalk import functions as F
    >>> from chalk.features import _
    >>> F.if_then_else(_.age >= 18, "adult", "minor")
    if_then_else((_.age >= 18), "adult", "minor")
    """
    return call("if_then_else", condition, if_true, if_false)


def is_null(expr: Operand) -> Deferred:
    """Whether a value is None (missing).

    Examples
    --------
    >>> from chalk import functions as F
    >>> from chalk.features import _
    >>> F.is_null(_.email)
    is_null(_.email)
    """
    return call("is_null", expr)


def abs(expr: Operand) -> Deferred:
    """The absolute value of a number.

    Examples
    --------
    >>> from chalk import functions as F
    >>> from chalk.features import _
    >>> F.abs(_.balance - 100)
    abs((_.balance - 100))
    """
    return call("abs", expr)


def round(expr: Operand, digits: int = 0) -> Deferred:
    """A number rounded to ``digits`` decimal places.

    Examples
    --------
    >>> from chalk import functions as F
    >>> from chalk.features import _
    >>> F.round(_.score, 2)
    round(_.score, 2)
    >>> F.round(_.score)
    round(_.score, 0)
    """
    if type(digits) is not int:
        raise ExpressionError(
            f"round's digits must be a whole number: expected an int, got {digits!r}"
        )
    return call("round", expr, digits)


def cast(expr: Operand, dtype: pa.DataType | type | str | Any) -> Deferred:
    """A value converted to another Arrow type.

    Parameters
    ----------
    expr
        The value to convert.
    dtype
        The target: a ``pyarrow.DataType``, a Python type from the feature type table (``int``,
        ``str``, ``list[float]``, ...) or an Arrow type's text (``"int32"``).

    Examples
    --------
    >>> import pyarrow as pa
    >>> from chalk import functions as F
    >>> from chalk.features import _
    >>> F.cast(_.count, pa.int32())
    cast(_.count, "int32")
    >>> F.cast(_.count, str)
    cast(_.count, "large_string")
    """
    return call("cast", expr, type_to_text(_arrow_type(dtype)))


def _arrow_type(dtype: Any) -> pa.DataType:
    if isinstance(dtype, pa.DataType):
        return dtype
    if isinstance(dtype, str):
        return type_from_text(dtype)
    arrow_type, _nullable = arrow_type_of(dtype)
    return arrow_type
