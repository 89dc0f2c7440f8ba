"""The serialised feature graph: classes, features, Arrow types and expressions as text.

``@features`` classes become a ``FeatureGraph``; ``chalk apply`` stores its JSON in the
catalog; the engine plans and runs queries from it alone, never from user code.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final

import pyarrow as pa

from chalk.common.errors import ChalkError
from chalk.features.types import type_from_text, type_to_text

__all__ = ["GRAPH_FORMAT", "ClassDef", "FeatureDef", "FeatureGraph", "GraphError"]

GRAPH_FORMAT: Final = 1


class GraphError(ChalkError, ValueError):
    """A graph that is inconsistent, or a feature it does not have."""


@dataclass(frozen=True, slots=True)
class FeatureDef:
    """One feature: ``fqn`` is ``<namespace>.<name>``; ``expression`` is text or None (input)."""

    namespace: str
    name: str
    arrow_type: pa.DataType
    nullable: bool = False
    primary: bool = False
    expression: str | None = None
    description: str | None = None
    source: str | None = None
    # ``feature(max_staleness=...)`` in seconds (math.inf: "infinity"); None: no caching.
    max_staleness_s: float | None = None

    @property
    def fqn(self) -> str:
        return f"{self.namespace}.{self.name}"

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name,
            "type": type_to_text(self.arrow_type),
            "nullable": self.nullable,
            "primary": self.primary,
            "expression": self.expression,
            "description": self.description,
            "source": self.source,
        }
        # Written only when set, so the graphs (and fingerprints) of features without it stay
        # as they were before the option existed.
        if self.max_staleness_s is not None:
            staleness = self.max_staleness_s
            document["max_staleness_s"] = "infinity" if math.isinf(staleness) else staleness
        return document

    @classmethod
    def from_json(cls, namespace: str, data: Mapping[str, Any]) -> FeatureDef:
        return cls(
            namespace=namespace,
            name=str(data["name"]),
            arrow_type=type_from_text(str(data["type"])),
            nullable=bool(data.get("nullable", False)),
            primary=bool(data.get("primary", False)),
            expression=data.get("expression"),
            description=data.get("description"),
            source=data.get("source"),
            max_staleness_s=_staleness_of(data.get("max_staleness_s")),
        )


def _staleness_of(value: Any) -> float | None:
    if value is None:
        return None
    return math.inf if value == "infinity" else float(value)


@dataclass(frozen=True, slots=True)
class ClassDef:
    """One ``@features`` class: its namespace and its features in declaration order."""

    name: str
    namespace: str
    features: tuple[FeatureDef, ...]
    source: str | None = None

    @property
    def primary_key(self) -> FeatureDef | None:
        return next((f for f in self.features if f.primary), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "source": self.source,
            "features": [feature.to_json() for feature in self.features],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClassDef:
        namespace = str(data["namespace"])
        return cls(
            name=str(data["name"]),
            namespace=namespace,
            features=tuple(FeatureDef.from_json(namespace, f) for f in data["features"]),
            source=data.get("source"),
        )


@dataclass(frozen=True)
class FeatureGraph:
    """Every feature class of a project.

    Examples
    --------
    >>> graph = FeatureGraph.from_classes([ClassDef("Doc", "doc", (
    ...     FeatureDef("doc", "id", pa.int64(), primary=True),
    ...     FeatureDef("doc", "n", pa.int64(), expression="(_.id + 1)"),
    ... ))])
    >>> FeatureGraph.from_json(graph.to_json()) == graph
    True
    >>> graph.feature("doc.n").expression
    '(_.id + 1)'
    """

    classes: tuple[ClassDef, ...]
    _by_fqn: dict[str, FeatureDef] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_fqn: dict[str, FeatureDef] = {}
        namespaces: set[str] = set()
        for cls in self.classes:
            if cls.namespace in namespaces:
                raise GraphError(f"two feature classes share the namespace {cls.namespace!r}")
            namespaces.add(cls.namespace)
            for feature in cls.features:
                by_fqn[feature.fqn] = feature
        object.__setattr__(self, "_by_fqn", by_fqn)

    @classmethod
    def from_classes(cls, classes: Iterable[ClassDef]) -> FeatureGraph:
        """A graph of these classes, ordered by namespace (so equal graphs serialise equally)."""
        return cls(tuple(sorted(classes, key=lambda c: c.namespace)))

    @property
    def features(self) -> Mapping[str, FeatureDef]:
        """Every feature by fully qualified name."""
        return self._by_fqn

    def feature(self, fqn: str) -> FeatureDef:
        """The feature named ``<namespace>.<name>``."""
        found = self._by_fqn.get(fqn)
        if found is None:
            raise GraphError(f"there is no feature {fqn!r}{self._suggestion(fqn)}")
        return found

    def class_of(self, namespace: str) -> ClassDef:
        """The class with this namespace."""
        for cls in self.classes:
            if cls.namespace == namespace:
                return cls
        raise GraphError(f"there is no feature class with namespace {namespace!r}")

    def to_json(self) -> dict[str, Any]:
        return {"format": GRAPH_FORMAT, "classes": [cls.to_json() for cls in self.classes]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureGraph:
        if data.get("format") != GRAPH_FORMAT:
            raise GraphError(
                f"feature graph format {data.get('format')!r} is not understood: expected "
                f"{GRAPH_FORMAT}"
            )
        return cls(tuple(ClassDef.from_json(c) for c in data["classes"]))

    @cached_property
    def fingerprint(self) -> str:
        """A digest of the serialised graph: equal graphs, equal fingerprints (plan cache key)."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def _suggestion(self, fqn: str) -> str:
        close = difflib.get_close_matches(fqn, list(self._by_fqn), n=1)
        return f" (did you mean {close[0]!r}?)" if close else ""
