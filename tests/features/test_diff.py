"""The plan of ``chalk apply``: features added, removed, changed and kept between two graphs."""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa
import pytest

from chalk.features.diff import diff_graphs, feature_summary
from chalk.features.graph import ClassDef, FeatureDef, FeatureGraph

KEY = FeatureDef("doc", "id", pa.int64(), primary=True, source="doc.py:3")
TEXT = FeatureDef("doc", "text", pa.large_string(), source="doc.py:4")
SHOUT = FeatureDef("doc", "shout", pa.large_string(), expression="upper(_.text)")


def graph(*features: FeatureDef) -> FeatureGraph:
    return FeatureGraph.from_classes([ClassDef("Doc", "doc", features)])


def test_nothing_applied_yet_adds_every_feature_in_name_order() -> None:
    diff = diff_graphs(None, graph(KEY, TEXT, SHOUT))

    assert [f.fqn for f in diff.added] == ["doc.id", "doc.shout", "doc.text"]
    assert (diff.removed, diff.changed, diff.kept) == ((), (), ())
    assert not diff.is_empty


def test_an_equal_graph_changes_nothing() -> None:
    diff = diff_graphs(graph(KEY, TEXT, SHOUT), graph(KEY, TEXT, SHOUT))

    assert diff.is_empty
    assert [f.fqn for f in diff.kept] == ["doc.id", "doc.shout", "doc.text"]


def test_a_moved_definition_is_no_change() -> None:
    moved = replace(TEXT, source="elsewhere.py:40")

    assert diff_graphs(graph(KEY, TEXT), graph(KEY, moved)).is_empty


def test_added_and_removed_features() -> None:
    diff = diff_graphs(graph(KEY, TEXT), graph(KEY, SHOUT))

    assert [f.fqn for f in diff.added] == ["doc.shout"]
    assert [f.fqn for f in diff.removed] == ["doc.text"]
    assert [f.fqn for f in diff.kept] == ["doc.id"]


@pytest.mark.parametrize(
    ("after", "differences"),
    [
        pytest.param(
            replace(SHOUT, expression="lower(_.text)"),
            [("expression", "upper(_.text)", "lower(_.text)")],
            id="expression",
        ),
        pytest.param(
            replace(SHOUT, arrow_type=pa.int64(), nullable=True),
            [("type", "large_string", "int64"), ("nullable", "False", "True")],
            id="type-and-nullable",
        ),
        pytest.param(
            replace(SHOUT, expression=None),
            [("expression", "upper(_.text)", "(input)")],
            id="derived-to-input",
        ),
        pytest.param(
            replace(SHOUT, description="loud"),
            [("description", "None", "'loud'")],
            id="description",
        ),
    ],
)
def test_a_changed_feature_lists_each_difference(
    after: FeatureDef, differences: list[tuple[str, str, str]]
) -> None:
    diff = diff_graphs(graph(KEY, TEXT, SHOUT), graph(KEY, TEXT, after))

    [change] = diff.changed
    assert change.fqn == "doc.shout"
    assert list(change.differences) == differences
    assert (diff.added, diff.removed) == ((), ())


@pytest.mark.parametrize(
    ("feature", "summary"),
    [
        pytest.param(KEY, "int64 primary key", id="key"),
        pytest.param(TEXT, "large_string input", id="input"),
        pytest.param(SHOUT, "large_string upper(_.text)", id="derived"),
    ],
)
def test_feature_summary(feature: FeatureDef, summary: str) -> None:
    assert feature_summary(feature) == summary
