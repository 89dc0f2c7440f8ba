"""Online and offline queries over a feature graph: inputs in, requested features out.

``ChalkClient.query``/``offline_query`` and ``chalk query`` call ``run_query`` (``chalk
serve`` also ``run_query_async``, on its event loop); it normalises the inputs, plans
(cached), executes, and orders the result: the primary key first when it was an input, then
the outputs, named by fully qualified name, rows in input order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa

from chalk.common.errors import ChalkError
from chalk.engine.arrow_types import is_list
from chalk.engine.calls import ModelCaller
from chalk.engine.execute import execute, execute_async
from chalk.engine.plan import Plan, cached_plan
from chalk.features.graph import FeatureGraph, GraphError
from chalk.features.wire import WireValueError, check_python_values

__all__ = [
    "OnlineShape",
    "QueryError",
    "feature_name",
    "input_table",
    "online_shape",
    "run_online",
    "run_query",
    "run_query_async",
]


class QueryError(ChalkError, ValueError):
    """A query's inputs or outputs do not fit the feature graph."""


def feature_name(feature: Any) -> str:
    """A feature reference (``Document.text``) or a name (``"document.text"``) as its fqn.

    Examples
    --------
    >>> feature_name("document.text")
    'document.text'
    """
    fqn = getattr(feature, "fqn", None)
    if isinstance(fqn, str):
        return fqn
    if isinstance(feature, str):
        return feature
    raise QueryError(
        f"{feature!r} does not name a feature: expected a feature such as Document.text or "
        f"its name 'document.text'"
    )


def input_table(
    graph: FeatureGraph, inputs: Mapping[Any, Any] | pl.DataFrame | pa.Table, *, online: bool
) -> pa.Table:
    """The inputs as an Arrow table named by fqn; online inputs are single values."""
    if isinstance(inputs, pl.DataFrame):
        inputs = inputs.to_arrow()
    if isinstance(inputs, pa.Table):
        names = [_known(graph, name) for name in inputs.column_names]
        return _typed(graph, inputs.rename_columns(names))
    if not isinstance(inputs, Mapping) or not inputs:
        raise QueryError(
            "a query needs inputs: expected a dict such as {Document.id: 1, Document.text: "
            "'...'}, a polars DataFrame or an Arrow table"
        )
    columns: dict[str, pa.Array] = {}
    for key, value in inputs.items():
        fqn = _known(graph, feature_name(key))
        arrow_type = graph.feature(fqn).arrow_type
        columns[fqn] = _input_column(fqn, arrow_type, is_list(arrow_type), value, online=online)
    lengths = {len(column) for column in columns.values()}
    if len(lengths) > 1:
        raise QueryError(
            f"the input columns have different lengths ({sorted(lengths)}): expected one value "
            f"per row in every column"
        )
    return pa.Table.from_arrays(list(columns.values()), names=list(columns))


def _input_column(
    fqn: str, arrow_type: pa.DataType, listed: bool, value: Any, *, online: bool
) -> pa.Array:
    """One input feature's column: ``value`` (one value online, a sequence offline)."""
    values = [value] if online else value
    if online and not listed and isinstance(value, list | tuple):
        raise QueryError(
            f"{fqn}: an online query takes one value per feature, got a "
            f"{type(value).__name__}; use offline_query for many rows"
        )
    if isinstance(values, list | tuple):
        try:
            check_python_values(values, arrow_type, what=fqn)
        except WireValueError as error:
            raise QueryError(str(error)) from None
    try:
        if isinstance(values, list | tuple):
            # A list is never taken for pandas; saying so skips pyarrow's look for pandas
            # (half the cost of a one-value array).
            return pa.array(values, arrow_type, from_pandas=False)
        return pa.array(values, arrow_type)
    except (pa.ArrowException, TypeError, ValueError) as error:
        # ValueError also covers text Arrow cannot encode (a lone surrogate).
        raise QueryError(f"{fqn}: the input does not fit its type {arrow_type}: {error}") from None


@dataclass(frozen=True, slots=True)
class OnlineShape:
    """What a one-row query of given input features and outputs needs from its graph, worked
    out once (``online_shape``) for every query of that shape (``run_online``)."""

    graph: FeatureGraph
    inputs: tuple[tuple[str, pa.DataType, bool], ...]  # fqn, type, list-typed, in key order
    plan: Plan
    wanted: tuple[str, ...]
    keys: tuple[str, ...]  # the primary keys given as inputs, first in the result


def online_shape(graph: FeatureGraph, keys: Iterable[Any], outputs: Iterable[Any]) -> OnlineShape:
    """The shape of a one-row query naming ``keys`` as inputs; raises QueryError where
    ``input_table`` or ``run_query`` would (possibly another of their errors first)."""
    inputs = []
    for key in keys:
        fqn = _known(graph, feature_name(key))
        arrow_type = graph.feature(fqn).arrow_type
        inputs.append((fqn, arrow_type, is_list(arrow_type)))
    if not inputs:
        raise QueryError("a query needs inputs")
    names = list(dict.fromkeys(fqn for fqn, _, _ in inputs))
    plan, wanted = _planned(graph, names, outputs)
    primary = tuple(key for key in _primary_keys(graph, wanted) if key in names)
    return OnlineShape(graph, tuple(inputs), plan, tuple(wanted), primary)


def run_online(
    shape: OnlineShape,
    values: Iterable[Any],
    *,
    model_caller: ModelCaller | None = None,
    use_cache: bool = True,
) -> dict[str, Any]:
    """One row's outputs by fqn, primary keys first: what ``run_query`` over
    ``input_table(graph, inputs, online=True)`` answers, as Python values, for inputs of
    ``shape`` whose values are ``values`` (in the shape's key order)."""
    columns: dict[str, pa.Array] = {}
    for (fqn, arrow_type, listed), value in zip(shape.inputs, values, strict=True):
        columns[fqn] = _input_column(fqn, arrow_type, listed, value, online=True)
    table = pa.Table.from_arrays(list(columns.values()), names=list(columns))
    result = execute(shape.plan, table, shape.graph, model_caller=model_caller, use_cache=use_cache)
    row = {key: columns[key][0].as_py() for key in shape.keys}
    for fqn in shape.wanted:
        if fqn not in row:
            row[fqn] = result.column(fqn)[0].as_py()
    return row


def run_query(
    graph: FeatureGraph,
    table: pa.Table,
    outputs: Iterable[Any],
    *,
    run: Callable[..., pa.Table] = execute,
    **execute_options: Any,
) -> pa.Table:
    """Compute ``outputs`` for every row of ``table`` (columns named by fqn)."""
    names = table.column_names  # (a new list on every read: read once)
    plan, wanted = _planned(graph, names, outputs)
    return _ordered(graph, table, names, wanted, run(plan, table, graph, **execute_options))


async def run_query_async(
    graph: FeatureGraph,
    table: pa.Table,
    outputs: Iterable[Any],
    *,
    model_caller: ModelCaller,
    use_cache: bool = True,
) -> pa.Table:
    """``run_query`` on the running event loop, its model calls awaited on ``model_caller``
    (see ``execute_async``): for small tables, on a loop that serves other work too."""
    names = table.column_names
    plan, wanted = _planned(graph, names, outputs)
    result = await execute_async(plan, table, graph, model_caller=model_caller, use_cache=use_cache)
    return _ordered(graph, table, names, wanted, result)


def _planned(
    graph: FeatureGraph, names: list[str], outputs: Iterable[Any]
) -> tuple[Plan, list[str]]:
    wanted = [_known(graph, feature_name(output)) for output in outputs]
    if not wanted:
        raise QueryError("a query needs outputs: expected features such as [Document.entities]")
    return cached_plan(graph, names, wanted), wanted


def _ordered(
    graph: FeatureGraph, table: pa.Table, names: list[str], wanted: list[str], result: pa.Table
) -> pa.Table:
    """The primary keys given as inputs (``names``: the table's columns) first, then the
    outputs asked for."""
    keys = [key for key in _primary_keys(graph, wanted) if key in names]
    columns = {key: table.column(key) for key in keys}
    columns.update({fqn: result.column(fqn) for fqn in wanted if fqn not in columns})
    return pa.table(columns)


def _primary_keys(graph: FeatureGraph, outputs: Sequence[str]) -> list[str]:
    keys: list[str] = []
    for fqn in outputs:
        primary = graph.class_of(graph.feature(fqn).namespace).primary_key
        if primary is not None and primary.fqn not in keys:
            keys.append(primary.fqn)
    return keys


def _known(graph: FeatureGraph, fqn: str) -> str:
    try:
        graph.feature(fqn)
    except GraphError as error:
        raise QueryError(str(error)) from None
    return fqn


def _typed(graph: FeatureGraph, table: pa.Table) -> pa.Table:
    """``table`` with each column cast safely to its feature's type (a Parquet file's string
    column to a large_string feature, an int32 one to int64); a cast with loss is refused."""
    for index, fqn in enumerate(table.column_names):
        arrow_type = graph.feature(fqn).arrow_type
        column = table.column(index)
        if column.type == arrow_type:
            continue
        try:
            table = table.set_column(index, fqn, column.cast(arrow_type, safe=True))
        except (pa.ArrowException, ValueError) as error:
            raise QueryError(
                f"{fqn}: the input column of type {column.type} does not fit the feature's type "
                f"{arrow_type}: {error}"
            ) from None
    return table
