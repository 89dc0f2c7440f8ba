"""The planner: from a query's outputs back to its inputs, in dependency order.

``chalk.engine.execute`` runs a ``Plan``; query runners get plans through ``cached_plan``, so
a repeated query neither re-parses expressions nor re-plans.
"""

from __future__ import annotations

import difflib
import functools
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, NamedTuple

from chalk.common.errors import ChalkError
from chalk.engine.parse import parse
from chalk.features.expr import Expr, ExpressionError, features_used
from chalk.features.graph import FeatureDef, FeatureGraph

__all__ = [
    "PLAN_CACHE",
    "CacheInfo",
    "Plan",
    "PlanCache",
    "PlanError",
    "Step",
    "cached_plan",
    "plan",
]


class PlanError(ChalkError, ValueError):
    """A query that cannot be planned: an unknown feature, a cycle, or a missing input."""


@dataclass(frozen=True, slots=True)
class Step:
    """One feature of a plan: an input column (``node`` is None) or an expression to evaluate.

    ``_.name`` references in ``node`` name features of ``namespace``.
    """

    fqn: str
    namespace: str
    node: Expr | None

    @property
    def is_input(self) -> bool:
        return self.node is None


@dataclass(frozen=True, slots=True)
class Plan:
    """The steps of one query, every feature after the features it needs.

    ``inputs`` are the features the query was given (sorted), ``outputs`` the ones it asked
    for (in the order asked); ``fingerprint`` is the fingerprint of the graph it was made from.
    """

    steps: tuple[Step, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    fingerprint: str

    @property
    def needed_inputs(self) -> tuple[str, ...]:
        """The inputs that some output depends on, in plan order."""
        return tuple(step.fqn for step in self.steps if step.is_input)


def plan(graph: FeatureGraph, inputs: Iterable[str], outputs: Iterable[str]) -> Plan:
    """Plan the features that compute ``outputs`` from ``inputs``, in dependency order.

    A feature given as an input is read from the input, even when it has an expression.
    Dependencies are visited in name order, so equal queries give equal plans.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from chalk.features.graph import ClassDef, FeatureDef
    >>> graph = FeatureGraph.from_classes([ClassDef("Doc", "doc", (
    ...     FeatureDef("doc", "text", pa.large_string()),
    ...     FeatureDef("doc", "shout", pa.large_string(), expression="upper(_.text)"),
    ...     FeatureDef("doc", "size", pa.int64(), expression="length(_.shout)"),
    ... ))])
    >>> [(step.fqn, step.node) for step in plan(graph, ["doc.text"], ["doc.size"]).steps]
    [('doc.text', None), ('doc.shout', upper(_.text)), ('doc.size', length(_.shout))]
    >>> plan(graph, [], ["doc.size"])
    Traceback (most recent call last):
    ...
    chalk.engine.plan.PlanError: cannot compute doc.size: it needs doc.text (doc.size -> doc.shout -> doc.text), which is neither an input nor derived: expected doc.text among the inputs
    """  # noqa: E501
    given = tuple(sorted(set(_known(graph, inputs, "input"))))
    wanted = tuple(dict.fromkeys(_known(graph, outputs, "output")))
    steps = _Planner(graph, frozenset(given)).order(wanted)
    return Plan(steps=steps, inputs=given, outputs=wanted, fingerprint=graph.fingerprint)


class CacheInfo(NamedTuple):
    """How a ``PlanCache`` has done: as ``functools.lru_cache``'s ``cache_info()``."""

    hits: int
    misses: int
    size: int
    maxsize: int


class PlanCache:
    """Plans by (graph fingerprint, set of inputs, outputs in order); least recently used out.

    Thread-safe. Failed plans are not kept: planning them again raises the same error.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from chalk.features.graph import ClassDef, FeatureDef
    >>> graph = FeatureGraph.from_classes([ClassDef("Doc", "doc", (
    ...     FeatureDef("doc", "n", pa.int64()),
    ...     FeatureDef("doc", "twice", pa.int64(), expression="(_.n * 2)"),
    ... ))])
    >>> cache = PlanCache(maxsize=8)
    >>> cache.get(graph, ["doc.n"], ["doc.twice"]) is cache.get(graph, ["doc.n"], ["doc.twice"])
    True
    >>> cache.info()
    CacheInfo(hits=1, misses=1, size=1, maxsize=8)
    """

    def __init__(self, maxsize: int = 256) -> None:
        if maxsize < 1:
            raise ValueError(f"a plan cache holds at least one plan, got maxsize={maxsize}")
        self._maxsize = maxsize
        self._plans: OrderedDict[tuple[str, frozenset[str], tuple[str, ...]], Plan] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, graph: FeatureGraph, inputs: Iterable[str], outputs: Iterable[str]) -> Plan:
        """The plan of this query, made once and then reused."""
        given, wanted = tuple(inputs), tuple(outputs)
        key = (graph.fingerprint, frozenset(given), wanted)
        with self._lock:
            found = self._plans.get(key)
            if found is not None:
                self._plans.move_to_end(key)
                self._hits += 1
                return found
            self._misses += 1
        # Planned outside the lock: planning is pure, so a race only plans twice.
        made = plan(graph, given, wanted)
        with self._lock:
            self._plans[key] = made
            self._plans.move_to_end(key)
            while len(self._plans) > self._maxsize:
                self._plans.popitem(last=False)
        return made

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, len(self._plans), self._maxsize)

    def clear(self) -> None:
        """Forget every plan and reset the counters."""
        with self._lock:
            self._plans.clear()
            self._hits = self._misses = 0


PLAN_CACHE: Final = PlanCache()
"""The process-wide plan cache that ``cached_plan`` uses."""


def cached_plan(graph: FeatureGraph, inputs: Iterable[str], outputs: Iterable[str]) -> Plan:
    """``plan(graph, inputs, outputs)`` through the process-wide ``PLAN_CACHE``."""
    return PLAN_CACHE.get(graph, inputs, outputs)


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> Expr:
    # Graphs of one project share most expression texts across versions and queries.
    return parse(text)


def _known(graph: FeatureGraph, names: Iterable[str], role: str) -> Iterator[str]:
    for name in names:
        if name not in graph.features:
            close = difflib.get_close_matches(name, list(graph.features), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PlanError(
                f"unknown {role} {name!r}: expected a feature of the graph named "
                f"'<namespace>.<feature>'{hint}"
            )
        yield name


class _Planner:
    """A depth-first walk from the outputs that emits each feature after its dependencies."""

    def __init__(self, graph: FeatureGraph, inputs: frozenset[str]) -> None:
        self._graph = graph
        self._inputs = inputs
        self._nodes: dict[str, Expr] = {}

    def order(self, outputs: tuple[str, ...]) -> tuple[Step, ...]:
        steps: list[Step] = []
        done: set[str] = set()
        for output in outputs:
            if output not in done:
                self._walk(output, steps, done)
        return tuple(steps)

    def _walk(self, output: str, steps: list[Step], done: set[str]) -> None:
        # Iterative, so a long chain of derived features cannot hit the recursion limit.
        path = [output]
        on_path = {output}
        pending = [iter(self._dependencies(path))]
        while pending:
            fqn = next(pending[-1], None)
            if fqn is None:
                pending.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                steps.append(self._step(finished))
            elif fqn in on_path:
                cycle = " -> ".join([*path[path.index(fqn) :], fqn])
                raise PlanError(
                    f"cannot compute {output}: its features depend on each other in a cycle, "
                    f"{cycle}: expected each feature to depend only on features computed "
                    f"before it"
                )
            elif fqn not in done:
                path.append(fqn)
                on_path.add(fqn)
                pending.append(iter(self._dependencies(path)))

    def _dependencies(self, path: list[str]) -> list[str]:
        fqn = path[-1]
        if fqn in self._inputs:
            return []
        feature = self._graph.features[fqn]
        if feature.expression is None:
            raise PlanError(_missing_message(path))
        node = self._node(feature)
        needed = []
        for name in sorted(features_used(node)):
            dependency = f"{feature.namespace}.{name}"
            if dependency not in self._graph.features:
                raise PlanError(
                    f"{fqn} refers to _.{name}, but {feature.namespace} has no feature "
                    f"{name!r}: expected a feature of the same class"
                )
            needed.append(dependency)
        return needed

    def _node(self, feature: FeatureDef) -> Expr:
        text = feature.expression
        assert text is not None
        try:
            node = _parsed(text)
        except ExpressionError as error:
            raise PlanError(f"{feature.fqn}: its expression does not parse: {error}") from None
        self._nodes[feature.fqn] = node
        return node

    def _step(self, fqn: str) -> Step:
        namespace = self._graph.features[fqn].namespace
        return Step(fqn=fqn, namespace=namespace, node=self._nodes.get(fqn))


def _missing_message(path: list[str]) -> str:
    output, fqn = path[0], path[-1]
    if len(path) == 1:
        return (
            f"cannot compute {fqn}: it is neither an input nor derived: expected {fqn} among "
            f"the inputs"
        )
    return (
        f"cannot compute {output}: it needs {fqn} ({' -> '.join(path)}), which is neither an "
        f"input nor derived: expected {fqn} among the inputs"
    )
