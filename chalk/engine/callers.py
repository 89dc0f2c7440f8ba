"""Which features call which scaling groups: ``chalk apply`` warns about a call to a group that
keeps crashing, and deleting a group the applied features call is refused without ``--force``.
"""

from __future__ import annotations

from typing import cast

from chalk.catalog import Catalog, ConflictError
from chalk.engine.execute import model_calls
from chalk.engine.parse import parse
from chalk.features.expr import ExpressionError, Literal
from chalk.features.graph import FeatureGraph, GraphError

__all__ = ["active_callers", "groups_called", "refuse_delete_of_called"]

_PREFIX = "model."


def groups_called(graph: FeatureGraph) -> dict[str, tuple[str, ...]]:
    """Each scaling group a ``catalog_call`` names, with the features calling it (sorted).

    Examples
    --------
    >>> import pyarrow as pa
    >>> from chalk.features.graph import ClassDef, FeatureDef
    >>> graph = FeatureGraph.from_classes([ClassDef("Doc", "doc", (
    ...     FeatureDef("doc", "text", pa.large_string()),
    ...     FeatureDef("doc", "tags", pa.large_string(),
    ...                expression='catalog_call("model.ner", _.text)'),
    ... ))])
    >>> groups_called(graph)
    {'ner': ('doc.tags',)}
    """
    found: dict[str, set[str]] = {}
    for fqn, feature in graph.features.items():
        if feature.expression is None:
            continue
        try:
            node = parse(feature.expression)
        except ExpressionError:  # apply refuses it; nothing calls a group through it
            continue
        for call in model_calls(node):
            name = str(cast(Literal, call.args[0]).value)
            if name.startswith(_PREFIX):
                found.setdefault(name.removeprefix(_PREFIX), set()).add(fqn)
    return {group: tuple(sorted(fqns)) for group, fqns in sorted(found.items())}


def active_callers(catalog: Catalog, group: str) -> tuple[str, ...]:
    """The features of the active (applied) graph that call ``group``; none when no graph
    is applied or it was written in a format this version does not read."""
    record = catalog.graphs.active()
    if record is None:
        return ()
    try:
        graph = FeatureGraph.from_json(record.graph)
    except (GraphError, KeyError, TypeError, ValueError):
        return ()
    return groups_called(graph).get(group, ())


def refuse_delete_of_called(catalog: Catalog, group: str, *, force_hint: str) -> None:
    """Raise ``ConflictError`` naming the applied features that call ``group``, if any.

    ``force_hint`` says how the caller overrides it (``--force``, ``force=True``).
    """
    callers = active_callers(catalog, group)
    if not callers:
        return
    shown = ", ".join(callers[:5]) + (f" and {len(callers) - 5} more" if len(callers) > 5 else "")
    raise ConflictError(
        f"scaling group {group!r} is called by the applied features {shown}: deleting it would "
        f"make their queries fail: expected a group no applied feature calls; remove those "
        f"calls and run `chalk apply` first, or pass {force_hint} to delete it anyway"
    )
