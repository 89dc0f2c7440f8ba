"""Steps that only move columns (a feature, a literal, a model call on those) run on Arrow.

``chalk.engine.execute`` evaluates a step here when ``evaluates`` accepts its expression, and
through polars otherwise. Each value is the one the polars path gives: a model receives its
arguments with the Arrow types polars would hand it, so both paths agree on values and errors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeAlias, cast

import polars as pl
import pyarrow as pa

from chalk.engine.arrow_types import fits_int64, literal_type, polars_keeps
from chalk.engine.model_requests import ModelRequest, Steps
from chalk.features.expr import Call, Expr, FeatureRef, Literal

__all__ = ["evaluate", "evaluates"]

Column: TypeAlias = pa.Array | pa.ChunkedArray


@functools.lru_cache(maxsize=1024)
def evaluates(node: Expr) -> bool:
    """Whether ``evaluate`` takes ``node``: a feature, a literal (ints within int64), or a
    ``catalog_call`` whose arguments are such nodes.

    Examples
    --------
    >>> from chalk.engine.parse import parse
    >>> evaluates(parse('catalog_call("model.ner", _.text)')), evaluates(parse("_.n + 1"))
    (True, False)
    """
    if isinstance(node, FeatureRef):
        return True
    if isinstance(node, Literal):
        return not (type(node.value) is int and not fits_int64(node.value))
    if isinstance(node, Call) and node.function == "catalog_call":
        return all(evaluates(argument) for argument in node.args[1:])
    return False


def evaluate(
    node: Expr,
    *,
    fqn: str,
    namespace: str,
    column: Callable[[str], Column],
    rows: int,
    max_staleness_s: float | None = None,
) -> Steps[Column]:
    """The column of ``node`` (one ``evaluates`` accepts) for feature ``fqn``, as steps that
    yield each model call's ``ModelRequest`` and are sent its answer.

    ``column(name)`` gives a feature's column by fully qualified name; ``rows`` is the row
    count literals are repeated to. Each ``catalog_call`` is made once, arguments first, its
    answers cached for ``max_staleness_s`` (None: not cached).
    """
    # Each call's answer; a list, since an expression rarely holds more than one call and a
    # Call's hash walks its whole tree.
    answers: list[tuple[Call, Column]] = []

    def value(current: Expr) -> Steps[Column]:
        if isinstance(current, FeatureRef):
            return column(f"{namespace}.{current.name}")
        if isinstance(current, Literal):
            kind = literal_type(current.value)
            return pa.repeat(pa.scalar(current.value, kind), rows)
        call = cast(Call, current)
        answer = None
        for seen, found in answers:
            if seen is call or seen == call:
                answer = found
                break
        if answer is None:
            arguments = []
            for argument in call.args[1:]:
                # (ruff takes the ``del value`` below for the name's end)
                argument_value = yield from value(argument)  # noqa: F821
                arguments.append(_as_polars_gives(argument_value))
            # Call refuses a catalog_call whose first argument is not the name as a literal.
            name = str(cast(Literal, call.args[0]).value)
            answer = yield ModelRequest(fqn, name, arguments, True, max_staleness_s)
            answers.append((call, answer))
        return answer

    try:
        return (yield from value(node))
    finally:
        # A recursive closure refers to itself: without this, the query's columns and model
        # answers (in its cells) would wait for the garbage collector, and an offline query's
        # memory would grow block after block until it ran.
        del value


def _as_polars_gives(column: Column) -> Column:
    """``column`` as polars hands it back to Arrow (a list comes back a large_list, ...)."""
    if polars_keeps(column.type):
        return column
    return pl.Series(column).to_arrow()
