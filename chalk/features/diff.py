"""The difference between two feature graphs, feature by feature: what ``chalk apply`` plans.

Where a feature is defined (its source line) is not part of it: moving a class changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from chalk.features.graph import FeatureDef, FeatureGraph
from chalk.features.staleness import staleness_text
from chalk.features.types import type_to_text

__all__ = ["FeatureChange", "GraphDiff", "diff_graphs", "feature_summary"]


@dataclass(frozen=True, slots=True)
class FeatureChange:
    """A feature in both graphs that differs: each difference as ``(what, old, new)``."""

    old: FeatureDef
    new: FeatureDef
    differences: tuple[tuple[str, str, str], ...]

    @property
    def fqn(self) -> str:
        return self.new.fqn


@dataclass(frozen=True, slots=True)
class GraphDiff:
    """Features added, removed, changed and kept, each in name order."""

    added: tuple[FeatureDef, ...]
    removed: tuple[FeatureDef, ...]
    changed: tuple[FeatureChange, ...]
    kept: tuple[FeatureDef, ...]

    @property
    def is_empty(self) -> bool:
        """Whether the graphs have the same features."""
        return not (self.added or self.removed or self.changed)


def diff_graphs(old: FeatureGraph | None, new: FeatureGraph) -> GraphDiff:
    """What applying ``new`` over ``old`` (None: nothing applied yet) changes.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from chalk.features.graph import ClassDef
    >>> def graph(*features):
    ...     return FeatureGraph.from_classes([ClassDef("Doc", "doc", features)])
    >>> key = FeatureDef("doc", "id", pa.int64(), primary=True)
    >>> before = graph(key, FeatureDef("doc", "n", pa.int64(), expression="(_.id + 1)"))
    >>> after = graph(key, FeatureDef("doc", "n", pa.int64(), expression="(_.id + 2)"),
    ...               FeatureDef("doc", "s", pa.large_string()))
    >>> change = diff_graphs(before, after)
    >>> [f.fqn for f in change.added], change.changed[0].differences
    (['doc.s'], (('expression', '(_.id + 1)', '(_.id + 2)'),))
    >>> diff_graphs(after, after).is_empty
    True
    """
    before = {} if old is None else dict(old.features)
    after = dict(new.features)
    changed = []
    kept = []
    for fqn in sorted(before.keys() & after.keys()):
        differences = tuple(_differences(before[fqn], after[fqn]))
        if differences:
            changed.append(FeatureChange(before[fqn], after[fqn], differences))
        else:
            kept.append(after[fqn])
    return GraphDiff(
        added=tuple(after[fqn] for fqn in sorted(after.keys() - before.keys())),
        removed=tuple(before[fqn] for fqn in sorted(before.keys() - after.keys())),
        changed=tuple(changed),
        kept=tuple(kept),
    )


def feature_summary(feature: FeatureDef) -> str:
    """A feature as one line of a plan: its type, then its expression or ``input``, then its
    ``max_staleness`` when it has one.

    Examples
    --------
    >>> import pyarrow as pa
    >>> feature_summary(FeatureDef("doc", "text", pa.large_string(), nullable=True))
    'large_string (nullable) input'
    >>> feature_summary(FeatureDef("doc", "n", pa.int64(), expression="(_.id + 1)",
    ...                            max_staleness_s=3600.0))
    'int64 (_.id + 1) max_staleness=3600s'
    """
    nullable = " (nullable)" if feature.nullable else ""
    role = "primary key" if feature.primary else feature.expression or "input"
    seconds = feature.max_staleness_s
    staleness = "" if seconds is None else f" max_staleness={staleness_text(seconds)}"
    return f"{type_to_text(feature.arrow_type)}{nullable} {role}{staleness}"


def _differences(old: FeatureDef, new: FeatureDef) -> Iterator[tuple[str, str, str]]:
    pairs = (
        ("type", type_to_text(old.arrow_type), type_to_text(new.arrow_type)),
        ("nullable", str(old.nullable), str(new.nullable)),
        ("primary", str(old.primary), str(new.primary)),
        ("expression", old.expression or "(input)", new.expression or "(input)"),
        ("description", repr(old.description), repr(new.description)),
        ("max_staleness", _staleness(old), _staleness(new)),
    )
    for what, before, after in pairs:
        if before != after:
            yield what, before, after


def _staleness(feature: FeatureDef) -> str:
    seconds = feature.max_staleness_s
    return "(no caching)" if seconds is None else staleness_text(seconds)
