"""The polars expression compiler: one feature's expression node -> a typed polars expression.

``chalk.engine.execute`` compiles each step through polars with ``Compiler``;
``chalk.engine.validate`` checks a graph's types with ``expression_type`` and
``check_declared_type`` without data. Types follow ``chalk.engine.arrow_types``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from chalk.common.errors import ChalkError
from chalk.engine.arrow_types import (
    INT64_MAX,
    INT64_MIN,
    common_type,
    fits_int64,
    is_bool_or_null,
    is_float,
    is_int,
    is_list,
    is_null,
    is_number_or_null,
    is_string_or_null,
    literal_type,
    polars_type,
    stores_as,
    type_text,
)
from chalk.engine.errors import EngineError, EngineTypeError, ModelCallNotWiredError
from chalk.features.expr import BinaryOp, Call, Expr, FeatureRef, Literal, UnaryOp
from chalk.features.types import FeatureTypeError, type_from_text

__all__ = [
    "CastFailure",
    "Compiler",
    "Typed",
    "cast_to_declared",
    "check_declared_type",
    "expression_type",
]

_INT: Final = pa.int64()
_FLOAT: Final = pa.float64()
_STR: Final = pa.large_string()
_BOOL: Final = pa.bool_()
_NULL: Final = pa.null()
_ARITHMETIC: Final = frozenset({"+", "-", "*", "/", "//", "%", "**"})
_COMPARISONS: Final = frozenset({"==", "!=", "<", "<=", ">", ">="})
# polars expressions overload Python's operators; & and | on bools are three-valued.
_OPERATORS: Final[dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "&": operator.and_,
    "|": operator.or_,
}
# The JSONPath subset json_value reads: $, then .key, [index], ['key'] or ["key"].
_JSON_PATH: Final = re.compile(
    r"""^\$(?:\.[A-Za-z_][A-Za-z0-9_]*|\[[0-9]+\]|\['[^'\\]*'\]|\["[^"\\]*"\])*$"""
)


def expression_type(
    fqn: str,
    namespace: str,
    node: Expr,
    types: Mapping[str, pa.DataType],
    model_types: Mapping[Call, pa.DataType],
) -> pa.DataType:
    """The type of the column ``node`` computes for ``fqn``, checked as ``execute`` checks it,
    without data. ``types`` holds every feature's declared type by fully qualified name, and
    ``model_types`` the answer type of each ``catalog_call`` node (its output_schema's field).

    Raises ``EngineTypeError`` where ``execute`` would, naming the feature and both types.

    Examples
    --------
    >>> from chalk.engine.parse import parse
    >>> types = {"doc.text": pa.large_string()}
    >>> expression_type("doc.n", "doc", parse("length(_.text)"), types, {})
    DataType(int64)
    >>> expression_type("doc.n", "doc", parse("abs(_.text)"), types, {})
    Traceback (most recent call last):
    ...
    chalk.engine.errors.EngineTypeError: doc.n: abs() expects a number, got large_string
    """
    answers = {
        call: Typed(pl.lit(None, dtype=polars_type(answer)), answer)
        for call, answer in model_types.items()
    }
    return Compiler(fqn, namespace, types, answers).compile(node).type


def check_declared_type(fqn: str, given: pa.DataType, declared: pa.DataType) -> None:
    """Raise ``EngineTypeError`` unless an expression of ``given`` may be stored as ``declared``.

    Examples
    --------
    >>> check_declared_type("doc.n", pa.int32(), pa.int64())
    >>> check_declared_type("doc.n", pa.large_string(), pa.int64())
    Traceback (most recent call last):
    ...
    chalk.engine.errors.EngineTypeError: doc.n: its expression gives large_string, but the feature is declared int64: expected an expression of int64; use cast() or change the feature's type
    """  # noqa: E501
    if not stores_as(given, declared):
        raise EngineTypeError(
            f"{fqn}: its expression gives {type_text(given)}, but the feature is declared "
            f"{type_text(declared)}: expected an expression of {type_text(declared)}; use "
            f"cast() or change the feature's type"
        )


def cast_to_declared(typed: Typed, declared: pa.DataType, fqn: str) -> pl.Expr:
    """The feature ``fqn``'s column from its expression: cast strictly to its declared type."""
    check_declared_type(fqn, typed.type, declared)
    return typed.expr.cast(polars_type(declared), strict=True).alias(fqn)


class CastFailure(ChalkError):
    """A value ``cast()`` cannot convert, raised inside polars; the executor re-raises it as
    ``EngineTypeError``."""


@dataclass(frozen=True, slots=True)
class Typed:
    """A compiled expression and the Arrow type of the column it makes."""

    expr: pl.Expr
    type: pa.DataType


class Compiler:
    """Turns one feature's expression node into a polars expression, checking types."""

    def __init__(
        self,
        fqn: str,
        namespace: str,
        types: Mapping[str, pa.DataType],
        answers: Mapping[Call, Typed] | None = None,
    ) -> None:
        self._fqn = fqn
        self._namespace = namespace
        self._types = types
        # Model calls already made, by node: their answer columns stand in for them.
        self._answers = answers or {}

    def compile(self, node: Expr) -> Typed:
        if isinstance(node, FeatureRef):
            name = f"{self._namespace}.{node.name}"
            return Typed(pl.col(name), self._types[name])
        if isinstance(node, Literal):
            return self._literal(node)
        if isinstance(node, BinaryOp):
            return self._binary(node)
        if isinstance(node, UnaryOp):
            return self._unary(node)
        if isinstance(node, Call):
            return self._call(node)
        raise EngineError(f"{self._fqn}: cannot evaluate {node!r}: unknown kind of expression")

    def _literal(self, node: Literal) -> Typed:
        value = node.value
        if type(value) is int and not fits_int64(value):
            raise EngineTypeError(
                f"{self._fqn}: the integer {value} does not fit int64: expected a value "
                f"from {INT64_MIN} to {INT64_MAX}"
            )
        kind = literal_type(value)
        return Typed(pl.lit(value, dtype=polars_type(kind)), kind)

    def _binary(self, node: BinaryOp) -> Typed:
        left, right = self.compile(node.left), self.compile(node.right)
        if node.op in _ARITHMETIC:
            return self._arithmetic(node, left, right)
        if node.op in _COMPARISONS:
            return self._comparison(node.op, left, right)
        if not (is_bool_or_null(left.type) and is_bool_or_null(right.type)):
            raise self._type_error(f"{node.op} expects bools on both sides", left, right)
        return Typed(_OPERATORS[node.op](_as(left, _BOOL), _as(right, _BOOL)), _BOOL)

    def _arithmetic(self, node: BinaryOp, left: Typed, right: Typed) -> Typed:
        op = node.op
        if not (is_number_or_null(left.type) and is_number_or_null(right.type)):
            raise self._type_error(f"{op} expects numbers on both sides", left, right)
        if is_null(left.type) and is_null(right.type):
            return Typed(pl.lit(None, dtype=pl.Null), _NULL)
        # A null literal takes the other side's kind: `_.n + None` is an int64 null.
        integers = not (is_float(left.type) or is_float(right.type))
        if op == "/" or (op == "**" and _natural_literal(node.right) is None):
            integers = False
        kind = _INT if integers else _FLOAT
        a, b = _as(left, kind), _as(right, kind)
        expr = _OPERATORS[op](a, b)
        if op in ("/", "//", "%") and not integers:
            # polars gives inf or NaN for a float divided by zero (null for an integer one).
            expr = pl.when(b == 0).then(None).otherwise(expr)
        return Typed(expr, kind)

    def _comparison(self, op: str, left: Typed, right: Typed) -> Typed:
        common = common_type(left.type, right.type)
        if common is None:
            raise self._type_error(f"{op} expects two values of one type", left, right)
        if op not in ("==", "!=") and is_list(common):
            raise self._type_error(f"{op} expects values that have an order, not lists", left)
        if is_null(common):
            return Typed(pl.lit(None, dtype=pl.Boolean), _BOOL)
        return Typed(_OPERATORS[op](_as(left, common), _as(right, common)), _BOOL)

    def _unary(self, node: UnaryOp) -> Typed:
        operand = self.compile(node.operand)
        if node.op == "~":
            if not is_bool_or_null(operand.type):
                raise self._type_error("~ expects a bool", operand)
            return Typed(~_as(operand, _BOOL), _BOOL)
        if not is_number_or_null(operand.type):
            raise self._type_error("- expects a number", operand)
        if is_null(operand.type):
            return operand
        kind = _INT if is_int(operand.type) else _FLOAT
        return Typed(-_as(operand, kind), kind)

    def _call(self, node: Call) -> Typed:
        name = node.function
        if name == "catalog_call":
            answer = self._answers.get(node)
            if answer is None:
                raise ModelCallNotWiredError(
                    f"{self._fqn}: {node!r} calls a model, and model calls arrive with the "
                    f"query engine: expected execute(..., model_caller=ModelCaller(catalog)) "
                    f"to run it"
                )
            return answer
        functions: dict[str, Callable[[Call], Typed]] = {
            "json_value": self._json_value,
            "lower": self._text_function,
            "upper": self._text_function,
            "trim": self._text_function,
            "length": self._length,
            "concat": self._concat,
            "coalesce": self._coalesce,
            "if_then_else": self._if_then_else,
            "is_null": self._is_null,
            "abs": self._abs,
            "round": self._round,
            "cast": self._cast,
        }
        return functions[name](node)

    def _string_argument(self, node: Call, index: int = 0) -> pl.Expr:
        argument = self.compile(node.args[index])
        if not is_string_or_null(argument.type):
            raise self._type_error(f"{node.function}() expects a string", argument)
        return _as(argument, _STR)

    def _text_function(self, node: Call) -> Typed:
        text = self._string_argument(node)
        if node.function == "lower":
            return Typed(text.str.to_lowercase(), _STR)
        if node.function == "upper":
            return Typed(text.str.to_uppercase(), _STR)
        return Typed(text.str.strip_chars(), _STR)

    def _length(self, node: Call) -> Typed:
        value = self.compile(node.args[0])
        if is_list(value.type):
            return Typed(value.expr.list.len().cast(pl.Int64), _INT)
        if not is_string_or_null(value.type):
            raise self._type_error("length() expects a string or a list", value)
        return Typed(_as(value, _STR).str.len_chars().cast(pl.Int64), _INT)

    def _concat(self, node: Call) -> Typed:
        parts = [self._string_argument(node, index) for index in range(len(node.args))]
        return Typed(pl.concat_str(parts, separator="", ignore_nulls=False), _STR)

    def _coalesce(self, node: Call) -> Typed:
        values = [self.compile(arg) for arg in node.args]
        common = self._one_type(node.function, values)
        return Typed(pl.coalesce([_as(value, common) for value in values]), common)

    def _if_then_else(self, node: Call) -> Typed:
        condition, if_true, if_false = (self.compile(arg) for arg in node.args)
        if not is_bool_or_null(condition.type):
            raise self._type_error("if_then_else() expects a bool condition", condition)
        common = self._one_type("if_then_else", [if_true, if_false])
        expr = (
            pl.when(_as(condition, _BOOL))
            .then(_as(if_true, common))
            .otherwise(_as(if_false, common))
        )
        return Typed(expr, common)

    def _is_null(self, node: Call) -> Typed:
        return Typed(self.compile(node.args[0]).expr.is_null(), _BOOL)

    def _abs(self, node: Call) -> Typed:
        value = self.compile(node.args[0])
        if not is_number_or_null(value.type):
            raise self._type_error("abs() expects a number", value)
        if is_null(value.type):
            return value
        kind = _INT if is_int(value.type) else _FLOAT
        return Typed(_as(value, kind).abs(), kind)

    def _round(self, node: Call) -> Typed:
        value = self.compile(node.args[0])
        if not is_number_or_null(value.type):
            raise self._type_error("round() expects a number", value)
        digits = node.args[1] if len(node.args) == 2 else Literal(0)
        places = _natural_literal(digits)
        if places is None:
            raise EngineTypeError(
                f"{self._fqn}: round() expects its digits as a whole number from 0 up, such as "
                f"round(_.x, 2), got {digits!r}"
            )
        if is_null(value.type):
            return value
        if is_int(value.type):
            return Typed(_as(value, _INT), _INT)
        # SQL's ROUND, not Python's round(): halves go away from zero.
        rounded = _as(value, _FLOAT).round(places, mode="half_away_from_zero")
        return Typed(rounded, _FLOAT)

    def _cast(self, node: Call) -> Typed:
        value = self.compile(node.args[0])
        target_node = node.args[1]
        if not (isinstance(target_node, Literal) and isinstance(target_node.value, str)):
            raise EngineTypeError(
                f'{self._fqn}: cast() expects the type as a string, such as cast(_.x, "int64"), '
                f"got {target_node!r}"
            )
        try:
            target = type_from_text(target_node.value)
        except FeatureTypeError as error:
            raise EngineTypeError(f"{self._fqn}: cast() cannot read its type: {error}") from None
        if value.type == target:
            return value
        fqn, source = self._fqn, value.type

        def safely(series: pl.Series) -> pl.Series:
            try:
                converted = pc.cast(series.to_arrow(), target, safe=True)
            except pa.ArrowException as error:
                raise CastFailure(
                    f"{fqn}: cast() cannot convert {type_text(source)} to {type_text(target)} "
                    f"without loss: {error}"
                ) from None
            return pl.Series(series.name, converted)

        expr = value.expr.map_batches(safely, return_dtype=polars_type(target), is_elementwise=True)
        return Typed(expr, target)

    def _json_value(self, node: Call) -> Typed:
        text = self._string_argument(node)
        path = node.args[1]
        if not (
            isinstance(path, Literal)
            and isinstance(path.value, str)
            and _JSON_PATH.match(path.value)
        ):
            raise EngineTypeError(
                f'{self._fqn}: json_value() expects a JSONPath string such as "$.a.b[0].c" '
                f"($, .key, [index], ['key']), got {path!r}"
            )
        return Typed(text.str.json_path_match(path.value), _STR)

    def _one_type(self, function: str, values: Sequence[Typed]) -> pa.DataType:
        common = values[0].type
        for value in values[1:]:
            found = common_type(common, value.type)
            if found is None:
                raise self._type_error(
                    f"{function}() expects arguments of one type", common, value.type
                )
            common = found
        return common

    def _type_error(self, expected: str, *values: Typed | pa.DataType) -> EngineTypeError:
        got = " and ".join(type_text(v.type if isinstance(v, Typed) else v) for v in values)
        return EngineTypeError(f"{self._fqn}: {expected}, got {got}")


def _as(value: Typed, target: pa.DataType) -> pl.Expr:
    """``value`` as a column of ``target`` (a lossless widening, or a null of that type)."""
    if value.type == target:
        return value.expr
    return value.expr.cast(polars_type(target))


def _natural_literal(node: Expr) -> int | None:
    """The value of an int literal from 0 up, else None."""
    if isinstance(node, Literal) and type(node.value) is int and node.value >= 0:
        return node.value
    return None
