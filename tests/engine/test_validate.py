"""A feature graph checked against a real SQLite catalog: groups, models, argument counts and
types, all problems at once. Groups are catalog records; no replica needs to run."""

from __future__ import annotations

import functools

import pyarrow as pa
import pytest

from chalk.catalog import Catalog
from chalk.engine.validate import GraphProblem, validate_graph
from chalk.features.graph import ClassDef, FeatureDef, FeatureGraph

TEXT_IN = pa.schema({"text": pa.large_string()})
ENTITIES_OUT = pa.schema({"entities": pa.large_string()})


def host(
    catalog: Catalog,
    group: str,
    input_schema: pa.Schema = TEXT_IN,
    output_schema: pa.Schema = ENTITIES_OUT,
) -> None:
    """A group record hosting a new version of model ``group``."""
    version = catalog.models.register(
        group, input_schema=input_schema, output_schema=output_schema, image=f"{group}:latest"
    )
    spec = {"image": f"{group}:latest", "model": {"name": group, "version": version.model_version}}
    catalog.groups.create(group, spec, backend="local")


def doc_graph(*derived: tuple[str, pa.DataType, str]) -> FeatureGraph:
    features = [
        FeatureDef("doc", "id", pa.int64(), primary=True, source="f.py:2"),
        FeatureDef("doc", "text", pa.large_string(), source="f.py:3"),
        FeatureDef("doc", "size", pa.int64(), source="f.py:4"),
    ]
    features += [
        FeatureDef("doc", name, arrow_type, expression=text, source=f"f.py:{10 + n}")
        for n, (name, arrow_type, text) in enumerate(derived)
    ]
    return FeatureGraph.from_classes([ClassDef("Doc", "doc", tuple(features))])


def check(catalog: Catalog, graph: FeatureGraph) -> list[GraphProblem]:
    return validate_graph(graph, functools.partial(catalog.resolve, serving=False))


def test_a_call_to_a_group_hosting_a_fitting_model_is_valid(catalog: Catalog) -> None:
    host(catalog, "ner")
    graph = doc_graph(
        ("entities", pa.large_string(), 'catalog_call("model.ner", _.text)'),
        ("loud", pa.large_string(), 'upper(catalog_call("model.ner", lower(_.text)))'),
    )

    assert check(catalog, graph) == []


def test_a_safe_cast_of_an_argument_is_valid(catalog: Catalog) -> None:
    host(catalog, "score", pa.schema({"n": pa.float64()}), pa.schema({"p": pa.float32()}))

    graph = doc_graph(("p", pa.float64(), 'catalog_call("model.score", _.size)'))

    assert check(catalog, graph) == []


@pytest.mark.parametrize(
    ("expression", "declared", "message"),
    [
        pytest.param(
            'catalog_call("model.nothere", _.text)',
            pa.large_string(),
            "doc.x: cannot call 'model.nothere': there is no scaling group named 'nothere'",
            id="unknown-group",
        ),
        pytest.param(
            'catalog_call("model.ner", _.text, _.text)',
            pa.large_string(),
            "doc.x: catalog_call('model.ner') passes 2 arguments but model ner version 1 takes "
            "1 (text)",
            id="argument-count",
        ),
        pytest.param(
            'catalog_call("model.ner", _.size)',
            pa.large_string(),
            "doc.x: catalog_call('model.ner') argument 1 is int64, but model ner version 1 "
            "takes field 'text' (argument 1) as large_string",
            id="argument-type",
        ),
        pytest.param(
            'catalog_call("model.ner", _.text)',
            pa.int64(),
            "doc.x: its expression gives large_string, but the feature is declared int64",
            id="output-type",
        ),
        pytest.param(
            "abs(_.text)",
            pa.int64(),
            "doc.x: abs() expects a number, got large_string",
            id="expression-without-a-call",
        ),
    ],
)
def test_a_problem_names_the_feature_and_its_line(
    catalog: Catalog, expression: str, declared: pa.DataType, message: str
) -> None:
    host(catalog, "ner")

    [problem] = check(catalog, doc_graph(("x", declared, expression)))

    assert (problem.feature, problem.source) == ("doc.x", "f.py:10")
    assert problem.message.startswith(message)


def test_a_deleted_group_and_a_group_without_a_model_are_named(catalog: Catalog) -> None:
    host(catalog, "gone")
    catalog.groups.delete("gone")
    catalog.groups.create("empty", {"image": "empty:latest"}, backend="local")
    graph = doc_graph(
        ("a", pa.large_string(), 'catalog_call("model.gone", _.text)'),
        ("b", pa.large_string(), 'catalog_call("model.empty", _.text)'),
    )

    problems = check(catalog, graph)

    assert [(p.feature, p.source) for p in problems] == [("doc.a", "f.py:10"), ("doc.b", "f.py:11")]
    assert "scaling group 'gone' was deleted" in problems[0].message
    assert "scaling group 'empty' hosts no model version" in problems[1].message


def test_every_problem_is_reported_at_once(catalog: Catalog) -> None:
    host(catalog, "ner")
    graph = doc_graph(
        ("a", pa.large_string(), 'catalog_call("model.missing", _.text)'),
        ("b", pa.large_string(), 'catalog_call("model.ner", _.size)'),
        ("c", pa.large_string(), 'catalog_call("model.ner", _.text)'),
        ("d", pa.int64(), 'catalog_call("model.ner", _.text)'),
    )

    problems = check(catalog, graph)

    assert [p.feature for p in problems] == ["doc.a", "doc.b", "doc.d"]


def test_a_cycle_among_derived_features_is_a_problem(catalog: Catalog) -> None:
    graph = doc_graph(("a", pa.int64(), "(_.b + 1)"), ("b", pa.int64(), "(_.a + 1)"))

    [problem] = check(catalog, graph)

    assert problem.feature is None
    assert "cycle" in problem.message
