"""The feature DSL: ``@features`` classes, ``feature()``, ``_`` and the serialised graph.

Imports nothing else from ``chalk``: the engine works on what this package serialises.
"""

from __future__ import annotations

from chalk.features.dsl import (
    FeatureClassError,
    FeatureReference,
    feature,
    features,
    graph_for,
    graph_of,
)
from chalk.features.expr import Deferred, Expr, ExpressionError
from chalk.features.expr import underscore as _
from chalk.features.graph import ClassDef, FeatureDef, FeatureGraph, GraphError

__all__ = [
    "ClassDef",
    "Deferred",
    "Expr",
    "ExpressionError",
    "FeatureClassError",
    "FeatureDef",
    "FeatureGraph",
    "FeatureReference",
    "GraphError",
    "_",
    "feature",
    "features",
    "graph_for",
    "graph_of",
]
