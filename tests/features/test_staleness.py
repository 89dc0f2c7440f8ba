"""``feature(max_staleness=...)``: Chalk's duration forms, errors naming the feature, and the
graph that keeps it."""

from __future__ import annotations

import math
from datetime import timedelta

import pyarrow as pa
import pytest

from chalk import functions as F
from chalk.features import FeatureClassError, FeatureDef, FeatureGraph, _, feature, features
from chalk.features.diff import diff_graphs
from chalk.features.graph import ClassDef
from chalk.features.staleness import StalenessError, max_staleness_seconds, staleness_text


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        pytest.param("30s", 30.0, id="seconds"),
        pytest.param("10m", 600.0, id="minutes"),
        pytest.param("1h", 3600.0, id="hours"),
        pytest.param("1d", 86400.0, id="days"),
        pytest.param("1w", 604800.0, id="weeks"),
        pytest.param("1h30m", 5400.0, id="compound"),
        pytest.param(" 2H ", 7200.0, id="case-and-space"),
        pytest.param("1.5s", 1.5, id="fraction"),
        pytest.param("1.5h", 5400.0, id="fraction-of-an-hour"),
        pytest.param("1w2d3h4m5s", 788645.0, id="every-unit-largest-first"),
        pytest.param("520w", 520 * 604800.0, id="ten-years-less-a-few-days"),
        pytest.param(timedelta(days=3650), 3650 * 86400.0, id="ten-years"),
        pytest.param(timedelta(minutes=5), 300.0, id="timedelta"),
        pytest.param("infinity", math.inf, id="infinity"),
        pytest.param("0s", None, id="zero"),
        pytest.param(timedelta(0), None, id="zero-timedelta"),
        pytest.param(None, None, id="none"),
    ],
)
def test_durations_chalk_accepts_are_read_in_seconds(given: object, seconds: float | None) -> None:
    assert max_staleness_seconds(given) == seconds


@pytest.mark.parametrize(
    ("given", "message"),
    [
        pytest.param("soon", "got 'soon'", id="word"),
        pytest.param("1y", "got '1y'", id="unknown-unit"),
        pytest.param("h", "got 'h'", id="no-amount"),
        pytest.param("", "got ''", id="empty"),
        pytest.param(60, "got int 60", id="number"),
        pytest.param(timedelta(seconds=-5), "a negative duration", id="negative"),
        pytest.param("1h1h", "got '1h1h'", id="unit-twice"),
        pytest.param("30m1h", "got '30m1h'", id="units-out-of-order"),
        pytest.param("1h 30m", "got '1h 30m'", id="space-inside"),
        pytest.param("3651d", "got '3651d', longer than 10 years", id="over-ten-years"),
        pytest.param(
            "99999999999999999999999w", 'longer than 10 years: write "infinity"', id="huge"
        ),
        pytest.param("9" * 400 + "s", "longer than 10 years", id="past-a-float"),
        pytest.param(timedelta(days=3651), "longer than 10 years", id="timedelta-over"),
    ],
)
def test_anything_else_is_refused_saying_what_was_expected(given: object, message: str) -> None:
    with pytest.raises(StalenessError, match=r"expected a duration such as \"30s\".*" + message):
        max_staleness_seconds(given)


@pytest.mark.parametrize("seconds", [5400.0, 1.5, math.inf])
def test_staleness_text_reads_back(seconds: float) -> None:
    assert max_staleness_seconds(staleness_text(seconds)) == seconds


def test_a_bad_max_staleness_names_the_class_and_attribute() -> None:
    with pytest.raises(FeatureClassError, match=r"^Tardy\.e at .* has max_staleness='often': "):

        @features
        class Tardy:
            id: int
            text: str
            e: str = feature(expression=F.catalog_call("model.ner", _.text), max_staleness="often")


def test_max_staleness_travels_in_the_graph_and_only_when_set() -> None:
    @features
    class Kept:
        id: int
        text: str
        e: str = feature(expression=F.catalog_call("model.ner", _.text), max_staleness="1h")
        forever: str = feature(
            expression=F.catalog_call("model.ner", _.text), max_staleness="infinity"
        )
        plain: str = F.catalog_call("model.ner", _.text)
        no_model: str = feature(expression=F.upper(_.text), max_staleness="10m")

    graph = FeatureGraph.from_classes([Kept.__chalk_class__])
    document = graph.to_json()
    by_name = {f["name"]: f for f in document["classes"][0]["features"]}

    assert by_name["e"]["max_staleness_s"] == 3600.0
    assert by_name["forever"]["max_staleness_s"] == "infinity"
    assert "max_staleness_s" not in by_name["plain"]
    assert by_name["no_model"]["max_staleness_s"] == 600.0  # kept, and has no effect
    read = FeatureGraph.from_json(document)
    assert read == graph
    assert read.feature("kept.forever").max_staleness_s == math.inf


def test_apply_shows_a_change_of_max_staleness() -> None:
    def graph(staleness: float | None) -> FeatureGraph:
        features_ = (
            FeatureDef("doc", "id", pa.int64(), primary=True),
            FeatureDef("doc", "e", pa.int64(), expression="(_.id + 1)", max_staleness_s=staleness),
        )
        return FeatureGraph.from_classes([ClassDef("Doc", "doc", features_)])

    changed = diff_graphs(graph(None), graph(3600.0)).changed

    assert [(c.fqn, c.differences) for c in changed] == [
        ("doc.e", (("max_staleness", "(no caching)", "3600s"),))
    ]
