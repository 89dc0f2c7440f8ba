"""Checks a feature graph against the catalog before ``chalk apply`` stores it.

Each ``catalog_call`` must name a live scaling group hosting a model version, pass one
argument per input_schema field with types that convert without loss, and every derived
feature's expression must type as its declared type: the rules ``execute`` and
``ModelCaller`` apply at query time, checked here without data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

import pyarrow as pa

from chalk.catalog.errors import ResolveError
from chalk.catalog.records import Route
from chalk.engine.call_schema import check_arguments
from chalk.engine.compiler import check_declared_type, expression_type
from chalk.engine.errors import EngineError
from chalk.engine.execute import model_calls
from chalk.engine.parse import parse
from chalk.engine.plan import PlanError, plan
from chalk.features.expr import Call, Expr, ExpressionError, Literal
from chalk.features.graph import FeatureDef, FeatureGraph

__all__ = ["GraphProblem", "validate_graph"]

Resolve = Callable[[str], Route]


@dataclass(frozen=True, slots=True)
class GraphProblem:
    """One thing wrong with a graph: the feature (None: the graph), its source, the message."""

    feature: str | None
    source: str | None
    message: str


def validate_graph(graph: FeatureGraph, resolve: Resolve) -> list[GraphProblem]:
    """Every problem of ``graph`` at once, features in name order.

    ``resolve`` maps ``model.<group>`` to a ``Route`` without needing live replicas
    (``functools.partial(catalog.resolve, serving=False)``) and raises the catalog's
    ``ResolveError`` for a missing or deleted group, or one that hosts no model.

    Examples
    --------
    >>> from chalk.catalog import open_catalog
    >>> from chalk.features.graph import ClassDef
    >>> graph = FeatureGraph.from_classes([ClassDef("Doc", "doc", (
    ...     FeatureDef("doc", "text", pa.large_string()),
    ...     FeatureDef("doc", "tags", pa.large_string(),
    ...                expression='catalog_call("model.ner", _.text)', source="doc.py:4"),
    ... ))])
    >>> catalog = open_catalog("sqlite://")
    >>> [(p.source, p.message) for p in validate_graph(graph, catalog.resolve)]
    [('doc.py:4', "doc.tags: cannot call 'model.ner': there is no scaling group named 'ner'")]
    """
    routes: dict[str, Route | ResolveError] = {}

    def route_of(name: str) -> Route | ResolveError:
        if name not in routes:
            try:
                routes[name] = resolve(name)
            except ResolveError as error:
                routes[name] = error
        return routes[name]

    types = {fqn: feature.arrow_type for fqn, feature in graph.features.items()}
    problems = []
    for fqn in sorted(graph.features):
        feature = graph.features[fqn]
        if feature.expression is None:
            continue
        for message in _feature_problems(feature, types, route_of):
            problems.append(GraphProblem(fqn, feature.source, message))
    if not problems:
        problems.extend(_cycles(graph))
    return problems


def _feature_problems(
    feature: FeatureDef,
    types: dict[str, pa.DataType],
    route_of: Callable[[str], Route | ResolveError],
) -> Iterator[str]:
    """The problems of one derived feature; none past the first of its calls that fails."""
    try:
        node = parse(cast(str, feature.expression))
    except ExpressionError as error:
        yield f"{feature.fqn}: its expression does not parse: {error}"
        return
    answers: dict[Call, pa.DataType] = {}
    for call in model_calls(node):
        name = str(cast(Literal, call.args[0]).value)
        route = route_of(name)
        if isinstance(route, ResolveError):
            yield f"{feature.fqn}: {route}"
            return
        try:
            arguments = [_typed(feature, argument, types, answers) for argument in call.args[1:]]
            check_arguments(feature.fqn, name, route, arguments)
        except EngineError as error:
            yield str(error)
            return
        answers[call] = route.output_schema.field(0).type
    try:
        given = _typed(feature, node, types, answers)
        check_declared_type(feature.fqn, given, feature.arrow_type)
    except EngineError as error:
        yield str(error)


def _typed(
    feature: FeatureDef, node: Expr, types: dict[str, pa.DataType], answers: dict[Call, pa.DataType]
) -> pa.DataType:
    return expression_type(feature.fqn, feature.namespace, node, types, answers)


def _cycles(graph: FeatureGraph) -> Iterator[GraphProblem]:
    """A cycle among derived features, found by planning every one of them from the inputs."""
    inputs = [fqn for fqn, f in graph.features.items() if f.expression is None]
    derived = [fqn for fqn, f in graph.features.items() if f.expression is not None]
    try:
        plan(graph, inputs, derived)
    except PlanError as error:
        yield GraphProblem(None, None, str(error))
