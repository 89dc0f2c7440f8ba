"""``ChalkClient(api_server=...)`` against a real ``chalk serve``: the same values and the same
errors as the same query in process, and a 409 for a feature the server defines differently."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from chalk.client import ChalkClient
from chalk.client_http import ApiServerClient, ApiServerError, FeatureMismatchError
from chalk.engine.errors import ModelCallError
from chalk.engine.query import QueryError
from chalk.features import ClassDef, FeatureDef, FeatureGraph, graph_of
from tests.server.conftest import OUTPUTS, ROW, Reading, Server
from tests.support.runtime_process import free_port


@pytest.fixture(scope="module")
def clients(project: Path, server: Server) -> Iterator[tuple[ChalkClient, ChalkClient]]:
    """An in-process client and one of the server, on the same project."""
    local = ChalkClient(project_dir=project)
    remote = ChalkClient(project_dir=project, api_server=server.url)
    yield local, remote
    local.close()
    remote.close()


@pytest.mark.parametrize("output", OUTPUTS, ids=[o.split(".")[1] for o in OUTPUTS])
def test_each_feature_type_comes_back_as_in_process(
    clients: tuple[ChalkClient, ChalkClient], output: str
) -> None:
    local, remote = clients

    expected = local.query(ROW, [output]).to_dict()
    found = remote.query(ROW, [output]).to_dict()

    assert found == expected
    assert {type(v) for v in found.values()} == {type(v) for v in expected.values()}


@pytest.mark.parametrize(
    ("inputs", "outputs", "error", "match"),
    [
        pytest.param(ROW, ["reading.nope"], QueryError, "there is no feature 'reading.nope'",
                     id="unknown_feature"),
        pytest.param({**ROW, Reading.x: "many"}, [Reading.doubled], QueryError,
                     "reading.x: the input does not fit its type double", id="wrong_type"),
        pytest.param({**ROW, Reading.x: -1.0}, [Reading.doubled], ModelCallError,
                     "negative input", id="model_failure"),
    ],
)  # fmt: skip
def test_errors_are_the_in_process_ones(
    clients: tuple[ChalkClient, ChalkClient],
    inputs: dict[object, object],
    outputs: list[object],
    error: type[Exception],
    match: str,
) -> None:
    local, remote = clients

    with pytest.raises(error, match=match):
        local.query(inputs, outputs)
    with pytest.raises(error, match=match):
        remote.query(inputs, outputs)


def test_the_api_server_comes_from_the_environment(
    project: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHALK_API_SERVER", server.url)

    with ChalkClient(project_dir=project) as client:
        assert client.query(ROW, [Reading.loud]).get_feature_value(Reading.loud) == "BOB"


def test_a_feature_defined_differently_on_the_server_is_a_409_naming_it(server: Server) -> None:
    applied = graph_of([Reading])
    changed = FeatureGraph.from_classes(
        [
            ClassDef(
                "Reading",
                "reading",
                tuple(
                    FeatureDef("reading", f.name, f.arrow_type, f.nullable, f.primary,
                               "lower(_.name)" if f.name == "loud" else f.expression)
                    for f in applied.classes[0].features
                ),
            )
        ]
    )  # fmt: skip
    client = ApiServerClient(server.url)
    try:
        with pytest.raises(FeatureMismatchError, match=r"reading\.loud is defined differently"):
            client.query(changed, {"reading.id": 1, "reading.name": "a"}, ["reading.loud"])
        missing = FeatureGraph.from_classes(
            [ClassDef("Memo", "memo", (FeatureDef("memo", "id", pa.int64(), primary=True),))]
        )
        with pytest.raises(FeatureMismatchError, match=r"has no feature 'memo\.id'"):
            client.query(missing, {"memo.id": 1}, ["memo.id"])
    finally:
        client.close()


def test_a_server_that_does_not_answer_is_named(project: Path) -> None:
    with (
        ChalkClient(project_dir=project, api_server=f"http://127.0.0.1:{free_port()}") as client,
        pytest.raises(ApiServerError, match="cannot reach the feature server at http://127"),
    ):
        client.query(ROW, [Reading.loud])
