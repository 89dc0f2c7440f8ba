"""The vectorised executor: runs a ``Plan`` over whole Arrow columns with polars expressions.

Query runners call ``execute`` (on an event loop, ``execute_async``) with a plan from
``chalk.engine.plan`` and an input table whose columns are named by fully qualified feature
name. Steps that only move columns run in ``chalk.engine.arrow_steps``; the others compile
through ``chalk.engine.compiler``. Model calls go through ``chalk.engine.model_requests``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Final, cast

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from chalk.engine import arrow_steps
from chalk.engine.arrow_types import stores_as, type_text
from chalk.engine.calls import ModelCaller
from chalk.engine.compiler import CastFailure, Compiler, Typed, cast_to_declared
from chalk.engine.errors import EngineError, EngineTypeError
from chalk.engine.model_requests import ModelRequest, Steps, answer_awaiting, answer_blocking
from chalk.engine.plan import Plan, Step
from chalk.features.expr import Call, Expr, Literal
from chalk.features.graph import FeatureGraph

__all__ = ["execute", "execute_async", "model_calls"]

# The row count of a table whose plan reads no column (every output a constant).
_ROWS: Final = "__chalk_rows__"
# Columns holding a step's model answers and arguments while it is evaluated; a feature's
# column name always has a '.', so these never collide with one.
_MODEL_COLUMN: Final = "__chalk_model_call_{}__"
_ARGUMENT_COLUMN: Final = "__chalk_model_argument_{}__"


def execute(
    plan: Plan,
    table: pa.Table | pl.DataFrame,
    graph: FeatureGraph,
    *,
    model_caller: ModelCaller | None = None,
    arrow_steps_first: bool = True,
    use_cache: bool = True,
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
    ``catalog_call`` raises ``ModelCallNotWiredError``. The model answers of a feature with
    ``max_staleness`` are looked up in the caller's answer store first and kept there
    (``chalk.engine.cache``); ``use_cache=False`` neither reads nor fills it.

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
    steps = _steps(plan, table, graph, model_caller is not None, arrow_steps_first, use_cache)
    return answer_blocking(steps, model_caller)


async def execute_async(
    plan: Plan,
    table: pa.Table | pl.DataFrame,
    graph: FeatureGraph,
    *,
    model_caller: ModelCaller | None = None,
    arrow_steps_first: bool = True,
    use_cache: bool = True,
) -> pa.Table:
    """``execute`` on the running event loop: each model call is awaited on ``model_caller``
    (which must belong to this loop), the polars and Arrow work between them runs on the loop
    itself. Same results and errors as ``execute``; for small tables, since the loop serves
    nothing else meanwhile (``chalk serve`` runs a one-row online query this way)."""
    steps = _steps(plan, table, graph, model_caller is not None, arrow_steps_first, use_cache)
    return await answer_awaiting(steps, model_caller)


def _steps(
    plan: Plan,
    table: pa.Table | pl.DataFrame,
    graph: FeatureGraph,
    calls_models: bool,
    arrow_steps_first: bool,
    use_cache: bool = True,
) -> Steps[pa.Table]:
    """``execute``'s work, yielding a ``ModelRequest`` per model call (one copy for both
    drivers); without ``calls_models``, a ``catalog_call`` raises ModelCallNotWiredError."""
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
        staleness = graph.features[step.fqn].max_staleness_s if use_cache else None
        if arrow_steps_first and _on_arrow(node, calls_models):
            value = yield from arrow_steps.evaluate(
                node,
                fqn=step.fqn,
                namespace=step.namespace,
                column=columns.get,
                rows=columns.rows,
                max_staleness_s=staleness,
            )
            columns.add(step.fqn, _stored(value, types[step.fqn], step.fqn, node))
        else:
            frame = columns.polars()
            derived = _derive(frame, step, node, types, calls_models, staleness)
            columns.frame = yield from derived
    return columns.table(plan.outputs, types)


def _on_arrow(node: Expr, calls_models: bool) -> bool:
    # Without a caller a model call goes through polars, which raises ModelCallNotWiredError.
    return arrow_steps.evaluates(node) and (calls_models or not model_calls(node))


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
    typed = Typed(pl.col(_MODEL_COLUMN.format(0)), value.type)
    stored = _collect(frame.lazy().select(cast_to_declared(typed, declared, fqn)), fqn, node)
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
        if column.type != declared and not stores_as(column.type, declared):
            raise EngineTypeError(
                f"{fqn}: the input column holds {type_text(column.type)}, but the feature is "
                f"declared {type_text(declared)}: expected a column of {type_text(declared)}"
            )
        columns[fqn] = _cast_column(column, declared, fqn)
    return columns, rows


def _derive(
    frame: pl.DataFrame,
    step: Step,
    node: Expr,
    types: Mapping[str, pa.DataType],
    calls_models: bool,
    max_staleness_s: float | None = None,
) -> Steps[pl.DataFrame]:
    declared = types[step.fqn]
    answers: dict[Call, Typed] = {}
    if calls_models:
        for index, call in enumerate(model_calls(node)):
            frame, answers[call] = yield from _call_model(
                frame, step, call, index, types, answers, max_staleness_s
            )
    typed = Compiler(step.fqn, step.namespace, types, answers).compile(node)
    column = cast_to_declared(typed, declared, step.fqn)
    # Through the lazy engine: polars 2.1's eager with_columns gives `lit == when(...)` one
    # row where the condition is all null; the lazy engine broadcasts it.
    derived = _collect(frame.lazy().with_columns(column), step.fqn, node)
    return derived.drop([_MODEL_COLUMN.format(index) for index in range(len(answers))])


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
    answers: Mapping[Call, Typed],
    max_staleness_s: float | None,
) -> Steps[tuple[pl.DataFrame, Typed]]:
    """Evaluate ``call``'s arguments, call the model, and add its answers as a column."""
    compiler = Compiler(step.fqn, step.namespace, types, answers)
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
    args = [table.column(n).combine_chunks() for n in names]
    answer = yield ModelRequest(step.fqn, name, args, False, max_staleness_s)
    column = _MODEL_COLUMN.format(index)
    frame = frame.with_columns(pl.Series(column, answer))
    return frame, Typed(pl.col(column), answer.type)


def _collect(lazy: pl.LazyFrame, fqn: str, node: Expr) -> pl.DataFrame:
    try:
        return lazy.collect()
    except CastFailure as failure:
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
            f"{fqn}: cannot store the values as {type_text(declared)} without loss: {error}"
        ) from None
