"""ChalkClient queries that call models: the product documents' Document and Request, with
real runtime processes on 127.0.0.1 whose endpoints the test writes into the catalog."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from chalk import functions as F
from chalk.catalog import Endpoint, open_catalog
from chalk.client import ChalkClient
from chalk.engine.errors import ModelHandlerError
from chalk.features import _, features
from chalk.shim.client import wait_until_serving
from tests.support.runtime_process import RuntimeProcess, start_runtime

HANDLERS = Path(__file__).parent / "engine"


@features
class Document:
    id: int
    text: str
    entities: str = F.catalog_call("model.ner", _.text)
    first_label: str = F.json_value(F.catalog_call("model.ner", _.text), "$.entities[0].label")


@features
class Request:
    id: int
    input_a: int
    input_b: int
    output: int = F.catalog_call("model.diff", _.input_a, _.input_b)


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ChalkClient]:
    (tmp_path / "chalk.yaml").write_text("project: demo\n")
    monkeypatch.delenv("CHALK_CATALOG_URL", raising=False)
    client = ChalkClient(project_dir=tmp_path)
    yield client
    client.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    started: list[RuntimeProcess] = []

    def _serve(
        client: ChalkClient,
        group: str,
        handler: str,
        inputs: pa.Schema,
        output: pa.Schema,
        cwd: Path = HANDLERS,
    ) -> None:
        runtime = start_runtime(
            handler,
            log_path=tmp_path / f"{group}.log",
            cwd=cwd,
            env={"CHALK_INPUT_ARGS": ",".join(inputs.names)},
        )
        started.append(runtime)
        asyncio.run(wait_until_serving(runtime.target, timeout_s=20))
        catalog = open_catalog(client.project)
        version = catalog.models.register(
            group, input_schema=inputs, output_schema=output, image="x"
        )
        model = {"name": version.model_name, "version": version.model_version}
        created = catalog.groups.create(
            group, {"image": "x", "port": 8080, "model": model}, backend="kubernetes"
        )
        catalog.groups.report(
            created.id,
            status="Ready",
            desired=1,
            ready=1,
            available=1,
            endpoints=[Endpoint(runtime.target)],
        )

    yield _serve
    for runtime in started:
        runtime.stop()


def ner(client: ChalkClient, serve: object) -> None:
    serve(  # type: ignore[operator]
        client,
        "ner",
        "call_handlers.entities",
        pa.schema([("text", pa.large_string())]),
        pa.schema([("entities", pa.large_string())]),
    )


def test_the_document_example_calls_its_model(client: ChalkClient, serve: object) -> None:
    ner(client, serve)

    result = client.query(
        input={Document.id: 1, Document.text: "Alice met Bob in Paris"},
        output=[Document.entities, Document.first_label],
    )

    entities = json.loads(result.get_feature_value(Document.entities))["entities"]
    assert [e["text"] for e in entities] == ["Alice", "Bob", "Paris"]
    assert result.get_feature_value(Document.first_label) == "NAME"
    assert result.to_dict()["document.id"] == 1


def test_the_request_example_passes_two_arguments_in_order(
    client: ChalkClient, serve: object
) -> None:
    serve(  # type: ignore[operator]
        client,
        "diff",
        "call_handlers.difference",
        pa.schema([("a", pa.int64()), ("b", pa.int64())]),
        pa.schema([("d", pa.int64())]),
    )

    dataset = client.offline_query(
        input={Request.id: [1, 2, 3], Request.input_a: [10, 5, None], Request.input_b: [1, 7, 2]},
        output=[Request.output],
    )

    assert dataset.to_polars()["request.output"].to_list() == [9, -2, None]


def test_a_handler_error_names_the_feature_and_carries_the_remote_traceback(
    client: ChalkClient, serve: object
) -> None:
    serve(  # type: ignore[operator]
        client,
        "ner",
        "model_handlers.boom",
        pa.schema([("text", pa.large_string())]),
        pa.schema([("entities", pa.large_string())]),
        cwd=Path(__file__).parent / "shim",
    )

    with pytest.raises(ModelHandlerError, match=r"document\.entities") as info:
        client.query(input={Document.id: 1, Document.text: "x"}, output=[Document.entities])

    assert info.value.kind == "ValueError"
    assert "in _validate" in info.value.remote_traceback


def test_queries_from_four_threads_at_once(client: ChalkClient, serve: object) -> None:
    ner(client, serve)
    answers: dict[int, str] = {}
    errors: list[BaseException] = []

    def ask(worker: int) -> None:
        try:
            for round_ in range(5):
                text = f"Worker{worker} round {round_} Zed"
                result = client.query(
                    input={Document.id: worker, Document.text: text}, output=[Document.entities]
                )
                names = [
                    e["text"]
                    for e in json.loads(result.get_feature_value(Document.entities))["entities"]
                ]
                assert names == [f"Worker{worker}", "Zed"]
            answers[worker] = "ok"
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(answers) == 4


@features
class Measurement:
    id: int
    x: float
    doubled: float = F.catalog_call("model.doubler", _.x)


@pytest.mark.slow
def test_a_one_million_row_offline_query(client: ChalkClient, serve: object) -> None:
    serve(  # type: ignore[operator]
        client,
        "doubler",
        "model_handlers.double",
        pa.schema([("x", pa.float64())]),
        pa.schema([("y", pa.float64())]),
        cwd=Path(__file__).parent / "shim",
    )
    rows = 1_000_000

    dataset = client.offline_query(
        input=pa.table(
            {"measurement.id": range(rows), "measurement.x": pa.array(range(rows), pa.float64())}
        ),
        output=[Measurement.doubled],
        show_progress=False,
    )

    frame = dataset.to_polars()
    assert frame.height == rows
    assert frame["measurement.id"].to_list()[:3] == [0, 1, 2]
    assert frame["measurement.doubled"].sum() == float(rows * (rows - 1))
