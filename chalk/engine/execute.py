"""The vectorised executor: runs a ``Plan`` over whole Arrow columns with polars expressions.

Query runners call ``execute`` with a plan from ``chalk.engine.plan`` and an input table
whose columns are named by fully qualified feature name.
"""

from __future__ import annotations

import difflib
import functools
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, cast

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from chalk.common.errors import ChalkError
from chalk.engine import arrow_steps
from chalk.engine.plan import Plan, Step
from chalk.features.expr import BinaryOp, Call, Expr, FeatureRef, Literal, UnaryOp
from chalk.features.graph import FeatureGraph
from chalk.features.types import FeatureTypeError, type_from_text, type_to_text

if TYPE_CHECKING:
    # calls.py imports this module's errors; the executor only calls a caller it is given.
    from chalk.engine.calls import ModelCaller

__all__ = [
    "EngineError",
    "EngineTypeError",
    "ModelCallNotWiredError",
    "check_declared_type",
    "execute",
    "expression_type",
    "model_calls",
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
# The row count of a table whose plan reads no column (every output a constant).
_ROWS: Final = "__chalk_rows__"
# Columns holding a step's model answers and arguments while it is evaluated; a feature's
# column name always has a '.', so these never collide with one.
_MODEL_COLUMN: Final = "__chalk_model_call_{}__"
_ARGUMENT_COLUMN: Final = "__chalk_model_argument_{}__"


class EngineError(ChalkError, ValueError):
    """A planned query that cannot run; the message names the feature."""


class EngineTypeError(EngineError, TypeError):
    """An expression applied to values of the wrong type; names the feature and both types."""


class ModelCallNotWiredError(EngineError, NotImplementedError):
    """``catalog_call`` reached an executor that was given no ``ModelCaller``."""


def execute(
    plan: Plan,
    table: pa.Table | pl.DataFrame,
    graph: FeatureGraph,
    *,
    model_caller: ModelCaller | None = None,
    arrow_steps_first: bool = True,
) -> pa.Table:
    """Compute the plan's outputs from ``table``, vectorised, as an Arrow table.

    ``table`` has one column per input of the plan, named by fully qualified name (other
    columns are ignored); each is cast safely to its feature's declared type. The result has
    one column per output, in the plan's order, typed by each feature's declared type, rows in
    input order.

    Nulls follow SQL: an operator or function of a null is null (``is_null`` and
    ``coalesce`` excepted); ``&`` and ``|`` are three-valued (``False & None`` is False,
    ``True | None`` is True); ``if_then_else`` takes the else branch when the condition is
    null. Division (``/``, ``//``, ``%``) by zero gives null. On integers ``//`` and ``%``
    floor as Python's do; int64 arithmetic wraps on overflow, unchecked.

    ``catalog_call`` needs ``model_caller`` (``chalk.engine.calls.ModelCaller``): its argument
    columns are evaluated first and sent to the model for every row (also rows an
    ``if_then_else`` discards), and the answer column takes the call's place in the rest of
    the expression. A call written twice in one expression is made once. Without a caller,
    ``catalog_call`` raises ``ModelCallNotWiredError``.

    Steps that only pass columns along (a feature, a literal, or a ``catalog_call`` on those)
    run on the Arrow columns directly, giving what polars would; ``arrow_steps_first=False``
    runs every step through polars (the reference the tests compare the two with).

    Examples
    --------
    >>> from chalk.engine.plan import plan
    >>> from chalk.features.graph import ClassDef, FeatureDef
    >>> graph = FeatureGraph.from_classes([ClassDef("Doc", "doc", (
    ...     FeatureDef("doc", "text", pa.large_string(), nullable=True),
    ...     FeatureDef("doc", "shout", pa.large_string(), expression="upper(_.text)"),
    ... ))])
    >>> query = plan(graph, ["doc.text"], ["doc.shout"])
    >>> execute(query, pa.table({"doc.text": ["hi", None]}), graph).to_pydict()
    {'doc.shout': ['HI', None]}
    """
    if plan.fingerprint != graph.fingerprint:
        raise EngineError(
            f"the plan was made from another feature graph: expected fingerprint "
            f"{graph.fingerprint[:12]}, got {plan.fingerprint[:12]}; plan the query again"
        )
    columns = _Columns(*_inputs(plan, table, graph))
    types = {step.fqn: graph.features[step.fqn].arrow_type for step in plan.steps}
    for step in plan.steps:
        node = step.node
        if node is None:
            continue
        if arrow_steps_first and _on_arrow(node, model_caller):
            value = arrow_steps.evaluate(
                node,
                fqn=step.fqn,
                namespace=step.namespace,
                column=columns.get,
                rows=columns.rows,
                model_caller=model_caller,
            )
            columns.add(step.fqn, _stored(value, types[step.fqn], step.fqn, node))
        else:
            columns.frame = _derive(columns.polars(), step, node, types, model_caller)
    return columns.table(plan.outputs, types)


def _on_arrow(node: Expr, model_caller: ModelCaller | None) -> bool:
    # Without a caller a model call goes through polars, which raises ModelCallNotWiredError.
    return arrow_steps.evaluates(node) and (model_caller is not None or not model_calls(node))


class _Columns:
    """A query's columns so far: Arrow ones, and a polars frame made when a step needs one.

    Columns that steps computed on Arrow join the frame when a later step needs polars.
    """

    def __init__(self, arrow: dict[str, pa.ChunkedArray], rows: int) -> None:
        self.arrow: dict[str, pa.Array | pa.ChunkedArray] = dict(arrow)
        self.rows = rows
        self.frame: pl.DataFrame | None = None

    def get(self, fqn: str) -> pa.Array | pa.ChunkedArray:
        found = self.arrow.get(fqn)
        if found is not None:
            return found
        assert self.frame is not None  # the plan orders every step after its inputs
        return self.frame.get_column(fqn).to_arrow()

    def add(self, fqn: str, column: pa.Array | pa.ChunkedArray) -> None:
        self.arrow[fqn] = column

    def polars(self) -> pl.DataFrame:
        """The frame, holding every column computed so far."""
        if self.frame is None:
            if not self.arrow:
                return pl.DataFrame({_ROWS: pl.repeat(None, self.rows, dtype=pl.Null, eager=True)})
            self.frame = pl.DataFrame(pa.table(self.arrow))
            return self.frame
        missing = [name for name in self.arrow if name not in self.frame.columns]
        if missing:
            self.frame = self.frame.with_columns(pl.Series(n, self.arrow[n]) for n in missing)
        return self.frame

    def table(self, outputs: Sequence[str], types: Mapping[str, pa.DataType]) -> pa.Table:
        """The outputs, typed by their declared types, in the order asked."""
        in_frame = [fqn for fqn in outputs if fqn not in self.arrow]
        from_frame = self.polars().select(in_frame).to_arrow() if in_frame else None
        columns = [
            self.arrow[fqn] if from_frame is None or fqn in self.arrow else from_frame[fqn]
            for fqn in outputs
        ]
        return pa.table(
            [
                _cast_column(column, types[fqn], fqn)
                for column, fqn in zip(columns, outputs, strict=True)
            ],
            names=list(outputs),
        )


def _stored(
    value: pa.Array | pa.ChunkedArray, declared: pa.DataType, fqn: str, node: Expr
) -> pa.Array | pa.ChunkedArray:
    """An Arrow step's value as its feature's declared type, as polars would cast it."""
    if value.type == declared:
        return value
    frame = pl.DataFrame({_MODEL_COLUMN.format(0): value})
    typed = _Typed(pl.col(_MODEL_COLUMN.format(0)), value.type)
    stored = _collect(frame.lazy().select(_cast_to_declared(typed, declared, fqn)), fqn, node)
    return stored.get_column(fqn).to_arrow()


def _inputs(
    plan: Plan, table: pa.Table | pl.DataFrame, graph: FeatureGraph
) -> tuple[dict[str, pa.ChunkedArray], int]:
    needed = plan.needed_inputs
    names = table.columns if isinstance(table, pl.DataFrame) else table.column_names
    for fqn in needed:
        if fqn not in names:
            close = difflib.get_close_matches(fqn, list(names), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise EngineError(
                f"the input has no column {fqn!r}: expected one column per input feature, "
                f"named by fully qualified name{hint}"
            )
    if isinstance(table, pl.DataFrame):
        rows, arrow = table.height, table.select(list(needed)).to_arrow()
    else:
        rows, arrow = table.num_rows, table
    columns = {}
    for fqn in needed:
        column = arrow.column(fqn)
        declared = graph.features[fqn].arrow_type
        if not _fits(column.type, declared):
            raise EngineTypeError(
                f"{fqn}: the input column holds {_text(column.type)}, but the feature is "
                f"declared {_text(declared)}: expected a column of {_text(declared)}"
            )
        columns[fqn] = _cast_column(column, declared, fqn)
    return columns, rows


def _derive(
    frame: pl.DataFrame,
    step: Step,
    node: Expr,
    types: Mapping[str, pa.DataType],
    model_caller: ModelCaller | None,
) -> pl.DataFrame:
    declared = types[step.fqn]
    answers: dict[Call, _Typed] = {}
    if model_caller is not None:
        for index, call in enumerate(model_calls(node)):
            frame, answers[call] = _call_model(
                frame, step, call, index, types, answers, model_caller
            )
    typed = _Compiler(step.fqn, step.namespace, types, answers).compile(node)
    column = _cast_to_declared(typed, declared, step.fqn)
    # Through the lazy engine: polars 2.1's eager with_columns gives `lit == when(...)` one
    # row where the condition is all null; the lazy engine broadcasts it.
    derived = _collect(frame.lazy().with_columns(column), step.fqn, node)
    return derived.drop([_MODEL_COLUMN.format(index) for index in range(len(answers))])


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
    chalk.engine.execute.EngineTypeError: doc.n: abs() expects a number, got large_string
    """
    answers = {
        call: _Typed(pl.lit(None, dtype=_polars_type(answer)), answer)
        for call, answer in model_types.items()
    }
    return _Compiler(fqn, namespace, types, answers).compile(node).type


def check_declared_type(fqn: str, given: pa.DataType, declared: pa.DataType) -> None:
    """Raise ``EngineTypeError`` unless an expression of ``given`` may be stored as ``declared``.

    Examples
    --------
    >>> check_declared_type("doc.n", pa.int32(), pa.int64())
    >>> check_declared_type("doc.n", pa.large_string(), pa.int64())
    Traceback (most recent call last):
    ...
    chalk.engine.execute.EngineTypeError: doc.n: its expression gives large_string, but the feature is declared int64: expected an expression of int64; use cast() or change the feature's type
    """  # noqa: E501
    if not _fits(given, declared):
        raise EngineTypeError(
            f"{fqn}: its expression gives {_text(given)}, but the feature is declared "
            f"{_text(declared)}: expected an expression of {_text(declared)}; use cast() or "
            f"change the feature's type"
        )


def _cast_to_declared(typed: _Typed, declared: pa.DataType, fqn: str) -> pl.Expr:
    """The feature ``fqn``'s column from its expression: cast strictly to its declared type."""
    check_declared_type(fqn, typed.type, declared)
    return typed.expr.cast(_polars_type(declared), strict=True).alias(fqn)


def model_calls(node: Expr) -> list[Call]:
    """The ``catalog_call`` nodes of ``node``, each once, calls in arguments first."""
    found: dict[Call, None] = {}

    def visit(current: Expr) -> None:
        for child in current.children():
            visit(child)
        if isinstance(current, Call) and current.function == "catalog_call":
            found.setdefault(current)

    visit(node)
    return list(found)


def _call_model(
    frame: pl.DataFrame,
    step: Step,
    call: Call,
    index: int,
    types: Mapping[str, pa.DataType],
    answers: Mapping[Call, _Typed],
    model_caller: ModelCaller,
) -> tuple[pl.DataFrame, _Typed]:
    """Evaluate ``call``'s arguments, call the model, and add its answers as a column."""
    compiler = _Compiler(step.fqn, step.namespace, types, answers)
    names = [_ARGUMENT_COLUMN.format(n) for n in range(len(call.args) - 1)]
    arguments = [
        compiler.compile(argument).expr.alias(name)
        for argument, name in zip(call.args[1:], names, strict=True)
    ]
    # with_columns, then select: literal arguments broadcast to the frame's rows.
    evaluated = _collect(frame.lazy().with_columns(arguments).select(names), step.fqn, call)
    table = evaluated.to_arrow()
    # Call refuses a catalog_call whose first argument is not the name as a string literal.
    name = str(cast(Literal, call.args[0]).value)
    answer = model_caller.call_blocking(
        feature=step.fqn,
        name=name,
        args=[table.column(n).combine_chunks() for n in names],
    )
    column = _MODEL_COLUMN.format(index)
    frame = frame.with_columns(pl.Series(column, answer))
    return frame, _Typed(pl.col(column), answer.type)


def _collect(lazy: pl.LazyFrame, fqn: str, node: Expr) -> pl.DataFrame:
    try:
        return lazy.collect()
    except _CastFailure as failure:
        # polars rebuilds the error with the failing expression appended; ours names it already.
        message, _, _ = str(failure).partition("\n\nThis error occurred")
        raise EngineTypeError(message) from None
    except (pl.exceptions.PolarsError, pa.ArrowException) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise EngineError(f"{fqn}: evaluating {node!r} failed: {first_line}") from error


def _cast_column(
    column: pa.Array | pa.ChunkedArray, declared: pa.DataType, fqn: str
) -> pa.Array | pa.ChunkedArray:
    if column.type == declared:
        return column
    try:
        return pc.cast(column, declared, safe=True)
    except pa.ArrowException as error:
        raise EngineError(
            f"{fqn}: cannot store the values as {_text(declared)} without loss: {error}"
        ) from None


class _CastFailure(Exception):
    """A value ``cast()`` cannot convert, raised inside polars and re-raised by ``_derive``."""


@dataclass(frozen=True, slots=True)
class _Typed:
    """A compiled expression and the Arrow type of the column it makes."""

    expr: pl.Expr
    type: pa.DataType


class _Compiler:
    """Turns one feature's expression node into a polars expression, checking types."""

    def __init__(
        self,
        fqn: str,
        namespace: str,
        types: Mapping[str, pa.DataType],
        answers: Mapping[Call, _Typed] | None = None,
    ) -> None:
        self._fqn = fqn
        self._namespace = namespace
        self._types = types
        # Model calls already made, by node: their answer columns stand in for them.
        self._answers = answers or {}

    def compile(self, node: Expr) -> _Typed:
        if isinstance(node, FeatureRef):
            name = f"{self._namespace}.{node.name}"
            return _Typed(pl.col(name), self._types[name])
        if isinstance(node, Literal):
            return self._literal(node)
        if isinstance(node, BinaryOp):
            return self._binary(node)
        if isinstance(node, UnaryOp):
            return self._unary(node)
        if isinstance(node, Call):
            return self._call(node)
        raise EngineError(f"{self._fqn}: cannot evaluate {node!r}: unknown kind of expression")

    def _literal(self, node: Literal) -> _Typed:
        value = node.value
        if type(value) is int and not arrow_steps.fits_int64(value):
            raise EngineTypeError(
                f"{self._fqn}: the integer {value} does not fit int64: expected a value "
                f"from {arrow_steps.INT64_MIN} to {arrow_steps.INT64_MAX}"
            )
        kind = arrow_steps.literal_type(value)
        return _Typed(pl.lit(value, dtype=_polars_type(kind)), kind)

    def _binary(self, node: BinaryOp) -> _Typed:
        left, right = self.compile(node.left), self.compile(node.right)
        if node.op in _ARITHMETIC:
            return self._arithmetic(node, left, right)
        if node.op in _COMPARISONS:
            return self._comparison(node.op, left, right)
        if not (_is_bool(left.type) and _is_bool(right.type)):
            raise self._type_error(f"{node.op} expects bools on both sides", left, right)
        return _Typed(_OPERATORS[node.op](_as(left, _BOOL), _as(right, _BOOL)), _BOOL)

    def _arithmetic(self, node: BinaryOp, left: _Typed, right: _Typed) -> _Typed:
        op = node.op
        if not (_is_number(left.type) and _is_number(right.type)):
            raise self._type_error(f"{op} expects numbers on both sides", left, right)
        if _is_null(left.type) and _is_null(right.type):
            return _Typed(pl.lit(None, dtype=pl.Null), _NULL)
        # A null literal takes the other side's kind: `_.n + None` is an int64 null.
        integers = not (_is_float(left.type) or _is_float(right.type))
        if op == "/" or (op == "**" and _natural_literal(node.right) is None):
            integers = False
        kind = _INT if integers else _FLOAT
        a, b = _as(left, kind), _as(right, kind)
        expr = _OPERATORS[op](a, b)
        if op in ("/", "//", "%") and not integers:
            # polars gives inf or NaN for a float divided by zero (null for an integer one).
            expr = pl.when(b == 0).then(None).otherwise(expr)
        return _Typed(expr, kind)

    def _comparison(self, op: str, left: _Typed, right: _Typed) -> _Typed:
        common = _common_type(left.type, right.type)
        if common is None:
            raise self._type_error(f"{op} expects two values of one type", left, right)
        if op not in ("==", "!=") and _is_list(common):
            raise self._type_error(f"{op} expects values that have an order, not lists", left)
        if _is_null(common):
            return _Typed(pl.lit(None, dtype=pl.Boolean), _BOOL)
        return _Typed(_OPERATORS[op](_as(left, common), _as(right, common)), _BOOL)

    def _unary(self, node: UnaryOp) -> _Typed:
        operand = self.compile(node.operand)
        if node.op == "~":
            if not _is_bool(operand.type):
                raise self._type_error("~ expects a bool", operand)
            return _Typed(~_as(operand, _BOOL), _BOOL)
        if not _is_number(operand.type):
            raise self._type_error("- expects a number", operand)
        if _is_null(operand.type):
            return operand
        kind = _INT if _is_int(operand.type) else _FLOAT
        return _Typed(-_as(operand, kind), kind)

    def _call(self, node: Call) -> _Typed:
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
        functions: dict[str, Callable[[Call], _Typed]] = {
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
        if not _is_text(argument.type):
            raise self._type_error(f"{node.function}() expects a string", argument)
        return _as(argument, _STR)

    def _text_function(self, node: Call) -> _Typed:
        text = self._string_argument(node)
        if node.function == "lower":
            return _Typed(text.str.to_lowercase(), _STR)
        if node.function == "upper":
            return _Typed(text.str.to_uppercase(), _STR)
        return _Typed(text.str.strip_chars(), _STR)

    def _length(self, node: Call) -> _Typed:
        value = self.compile(node.args[0])
        if _is_list(value.type):
            return _Typed(value.expr.list.len().cast(pl.Int64), _INT)
        if not _is_text(value.type):
            raise self._type_error("length() expects a string or a list", value)
        return _Typed(_as(value, _STR).str.len_chars().cast(pl.Int64), _INT)

    def _concat(self, node: Call) -> _Typed:
        parts = [self._string_argument(node, index) for index in range(len(node.args))]
        return _Typed(pl.concat_str(parts, separator="", ignore_nulls=False), _STR)

    def _coalesce(self, node: Call) -> _Typed:
        values = [self.compile(arg) for arg in node.args]
        common = self._one_type(node.function, values)
        return _Typed(pl.coalesce([_as(value, common) for value in values]), common)

    def _if_then_else(self, node: Call) -> _Typed:
        condition, if_true, if_false = (self.compile(arg) for arg in node.args)
        if not _is_bool(condition.type):
            raise self._type_error("if_then_else() expects a bool condition", condition)
        common = self._one_type("if_then_else", [if_true, if_false])
        expr = (
            pl.when(_as(condition, _BOOL))
            .then(_as(if_true, common))
            .otherwise(_as(if_false, common))
        )
        return _Typed(expr, common)

    def _is_null(self, node: Call) -> _Typed:
        return _Typed(self.compile(node.args[0]).expr.is_null(), _BOOL)

    def _abs(self, node: Call) -> _Typed:
        value = self.compile(node.args[0])
        if not _is_number(value.type):
            raise self._type_error("abs() expects a number", value)
        if _is_null(value.type):
            return value
        kind = _INT if _is_int(value.type) else _FLOAT
        return _Typed(_as(value, kind).abs(), kind)

    def _round(self, node: Call) -> _Typed:
        value = self.compile(node.args[0])
        if not _is_number(value.type):
            raise self._type_error("round() expects a number", value)
        digits = node.args[1] if len(node.args) == 2 else Literal(0)
        places = _natural_literal(digits)
        if places is None:
            raise EngineTypeError(
                f"{self._fqn}: round() expects its digits as a whole number from 0 up, such as "
                f"round(_.x, 2), got {digits!r}"
            )
        if _is_null(value.type):
            return value
        if _is_int(value.type):
            return _Typed(_as(value, _INT), _INT)
        # SQL's ROUND, not Python's round(): halves go away from zero.
        rounded = _as(value, _FLOAT).round(places, mode="half_away_from_zero")
        return _Typed(rounded, _FLOAT)

    def _cast(self, node: Call) -> _Typed:
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
                raise _CastFailure(
                    f"{fqn}: cast() cannot convert {_text(source)} to {_text(target)} without "
                    f"loss: {error}"
                ) from None
            return pl.Series(series.name, converted)

        expr = value.expr.map_batches(
            safely, return_dtype=_polars_type(target), is_elementwise=True
        )
        return _Typed(expr, target)

    def _json_value(self, node: Call) -> _Typed:
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
        return _Typed(text.str.json_path_match(path.value), _STR)

    def _one_type(self, function: str, values: Sequence[_Typed]) -> pa.DataType:
        common = values[0].type
        for value in values[1:]:
            found = _common_type(common, value.type)
            if found is None:
                raise self._type_error(
                    f"{function}() expects arguments of one type", common, value.type
                )
            common = found
        return common

    def _type_error(self, expected: str, *values: _Typed | pa.DataType) -> EngineTypeError:
        got = " and ".join(_text(v.type if isinstance(v, _Typed) else v) for v in values)
        return EngineTypeError(f"{self._fqn}: {expected}, got {got}")


def _as(value: _Typed, target: pa.DataType) -> pl.Expr:
    """``value`` as a column of ``target`` (a lossless widening, or a null of that type)."""
    if value.type == target:
        return value.expr
    return value.expr.cast(_polars_type(target))


def _common_type(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The type both values widen to without loss, or None when they have none."""
    if _is_null(a):
        return b
    if _is_null(b) or _polars_type(a) == _polars_type(b):
        return a
    if _is_int(a) and _is_int(b):
        return _INT
    if _is_number(a) and _is_number(b):
        return _FLOAT
    return None


def _fits(given: pa.DataType, declared: pa.DataType) -> bool:
    """Whether a column of ``given`` may be stored as ``declared`` (values are checked then)."""
    if _is_null(given) or _polars_type(given) == _polars_type(declared):
        return True
    if _is_list(given) and _is_list(declared):
        return _fits(given.value_type, declared.value_type)
    if _is_int(given):
        return _is_int(declared) or declared == _FLOAT
    return _is_float(given) and _is_float(declared) and declared.bit_width >= given.bit_width


def _natural_literal(node: Expr) -> int | None:
    """The value of an int literal from 0 up, else None."""
    if isinstance(node, Literal) and type(node.value) is int and node.value >= 0:
        return node.value
    return None


def _is_null(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_null(arrow_type))


def _is_int(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_integer(arrow_type))


def _is_float(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_floating(arrow_type))


def _is_number(arrow_type: pa.DataType) -> bool:
    # A null literal fits anywhere a number does: the result is null.
    return bool(
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_null(arrow_type)
    )


def _is_bool(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_boolean(arrow_type) or pa.types.is_null(arrow_type))


def _is_text(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_null(arrow_type)
    )


def _is_list(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type))


@functools.lru_cache(maxsize=256)
def _polars_type(arrow_type: pa.DataType) -> pl.DataType:
    series = pl.Series(pa.array([], type=arrow_type))
    return series.dtype


def _text(arrow_type: pa.DataType) -> str:
    """An Arrow type as the feature graph writes it (``int64``, ``list<large_string>``)."""
    try:
        return type_to_text(arrow_type)
    except FeatureTypeError:
        return str(arrow_type)
