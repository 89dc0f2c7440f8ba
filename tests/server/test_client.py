"""``ChalkClient(api_server=...)`` against a real ``chalk serve``: the same values and the same
errors as the same query in process, and a 409 for a feature the server defines differently."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from chalk.client import ChalkClient
from chalk.client_http import ApiServerClient, ApiServerError, FeatureMismatchError
from chalk.common.errors import ConfigError
from chalk.engine.errors import ModelCallError
from chalk.engine.query import QueryError
from chalk.features import ClassDef, FeatureDef, FeatureGraph
from tests.server.conftest import OUTPUTS, ROW, Reading, Server, reading_with_loud_redefined
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
    changed = reading_with_loud_redefined()
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


def test_a_client_outside_any_project_needs_only_the_url(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    with ChalkClient(api_server=server.url) as client:
        assert client.query(ROW, [Reading.loud]).get_feature_value(Reading.loud) == "BOB"
        with pytest.raises(ConfigError, match=r"no chalk\.yaml found"):
            client.list_scaling_groups()
    with pytest.raises(ConfigError, match=r"no chalk\.yaml found"):
        ChalkClient()


def test_features_named_as_text_need_no_class_in_the_process(server: Server) -> None:
    client = ApiServerClient(server.url)
    nothing = FeatureGraph.from_classes([])
    try:
        found = client.query(nothing, {"reading.id": 3, "reading.name": "ann"}, ["reading.loud"])
        assert found == {"reading.id": 3, "reading.loud": "ANN"}
        with pytest.raises(QueryError, match=r"there is no feature 'reading\.lod'"):
            client.query(nothing, {"reading.id": 3}, ["reading.lod"])
    finally:
        client.close()


SCRIPT = """
import sys
from chalk.client import ChalkClient

with ChalkClient(api_server=sys.argv[1]) as client:
    result = client.query({"reading.id": 5, "reading.name": "eve"}, ["reading.loud"])
print(result.to_dict())
"""


def test_an_application_outside_the_project_queries_by_name(server: Server, tmp_path: Path) -> None:
    """A process with no chalk.yaml and no feature classes: the URL and the names suffice."""
    env = {k: v for k, v in os.environ.items() if k != "CHALK_API_SERVER"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, server.url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'reading.id': 5, 'reading.loud': 'EVE'}"
