"""ChalkClient.query and offline_query over the process's feature classes; the offline
query's progress bar and call stats against a real (slow) runtime."""

from __future__ import annotations

import gc
import importlib.util
import io
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from chalk import functions as F
from chalk.catalog import open_catalog
from chalk.client import _SHAPES, ChalkClient, Dataset, GroupCalls
from chalk.engine.query import (
    QueryError,
    input_table,
    online_shape,
    run_online,
    run_query,
)
from chalk.features import _, features, graph_for
from tests.engine.conftest import SHIM_HANDLERS, deploy_group, runtimes


@features
class Shop:
    id: int
    name: str
    loud: str = F.upper(_.name)
    score: float = F.length(_.name) * 1.5


@features
class Paced:
    id: int
    x: int
    y: int = F.catalog_call("model.paced", _.x)


# Eight chunks of 320 rows on one replica, four at a time: two waves of SLOW_SECONDS each.
PACED_ROWS = 2560


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ChalkClient]:
    (tmp_path / "chalk.yaml").write_text("project: demo\n")
    monkeypatch.delenv("CHALK_CATALOG_URL", raising=False)
    client = ChalkClient(project_dir=tmp_path)
    yield client
    client.close()


@pytest.fixture
def paced(client: ChalkClient, tmp_path: Path) -> Iterator[str]:
    """Scaling group ``paced``: one runtime answering each call after 0.6 s; its target."""
    with runtimes(tmp_path) as start:
        model = start("model_handlers.slow", cwd=SHIM_HANDLERS, env={"SLOW_SECONDS": "0.6"})
        deploy_group(
            open_catalog(client.project),
            "paced",
            [model.target],
            inputs=pa.schema({"x": pa.int64()}),
            output=pa.schema({"y": pa.int64()}),
        )
        yield model.target


def paced_query(client: ChalkClient, show_progress: bool | Console) -> Dataset:
    rows = list(range(PACED_ROWS))
    dataset = client.offline_query(
        input={Paced.id: rows, Paced.x: rows}, output=[Paced.y], show_progress=show_progress
    )
    assert dataset.to_arrow().column("paced.y").to_pylist() == rows
    return dataset


def test_a_slow_offline_query_shows_its_bar_advancing_by_chunks(
    client: ChalkClient, paced: str
) -> None:
    screen = io.StringIO()

    dataset = paced_query(client, Console(file=screen, force_terminal=True, width=100))

    drawn = screen.getvalue()
    assert "offline query" in drawn
    shown = {int(done) for done in re.findall(rf"(\d+)/{PACED_ROWS}", drawn)}
    assert any(0 < done < PACED_ROWS for done in shown), shown
    assert dataset.model_calls == {
        "paced": GroupCalls(
            "paced", 8, PACED_ROWS, (paced,), 0, rows_asked=PACED_ROWS, rows_sent=PACED_ROWS
        )
    }


@pytest.mark.parametrize(
    "terminal", [pytest.param(True, id="turned_off"), pytest.param(False, id="not_a_terminal")]
)
def test_no_bar_when_turned_off_or_not_on_a_terminal(
    client: ChalkClient, paced: str, terminal: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=terminal, width=100)

    paced_query(client, False if terminal else console)
    paced_query(client, True)

    assert screen.getvalue() == ""
    assert capsys.readouterr().err == ""


def test_an_online_query_returns_plain_values(client: ChalkClient) -> None:
    result = client.query(
        input={Shop.id: 7, "shop.name": "bakery"}, output=[Shop.loud, "shop.score"]
    )

    assert result.get_feature_value(Shop.loud) == "BAKERY"
    assert result.get_feature_value("shop.score") == 9.0
    assert result.to_dict() == {"shop.id": 7, "shop.loud": "BAKERY", "shop.score": 9.0}


@pytest.mark.parametrize(
    "make_input",
    [
        pytest.param(lambda names: {Shop.id: [1, 2, 3], Shop.name: names}, id="dict"),
        pytest.param(
            lambda names: pl.DataFrame({"shop.id": [1, 2, 3], "shop.name": names}), id="polars"
        ),
        pytest.param(
            lambda names: pa.table({"shop.id": [1, 2, 3], "shop.name": names}), id="arrow"
        ),
    ],
)
def test_an_offline_query_keeps_input_order_with_the_key_first(
    client: ChalkClient, make_input: object
) -> None:
    names = ["b", None, "ccc"]

    dataset = client.offline_query(input=make_input(names), output=[Shop.loud])  # type: ignore[operator]

    assert dataset.to_arrow().column_names == ["shop.id", "shop.loud"]
    assert dataset.to_polars()["shop.loud"].to_list() == ["B", None, "CCC"]
    assert len(dataset) == 3


def test_a_large_offline_query_runs_in_blocks_and_stays_in_order(client: ChalkClient) -> None:
    rows = 120_000

    dataset = client.offline_query(
        input={Shop.id: list(range(rows)), Shop.name: ["x" * (i % 5) for i in range(rows)]},
        output=[Shop.score],
        show_progress=False,
    )

    frame = dataset.to_polars()
    assert frame["shop.id"].to_list() == list(range(rows))
    assert frame["shop.score"][7] == 2 * 1.5


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        pytest.param(
            {"shop.nme": "x"}, [Shop.loud], "did you mean 'shop.name'", id="unknown_input"
        ),
        pytest.param({Shop.name: "x"}, ["shop.lod"], "did you mean 'shop.loud'", id="unknown_out"),
        pytest.param({Shop.name: ["a", "b"]}, [Shop.loud], "one value per feature", id="list"),
        pytest.param({Shop.id: "seven"}, [Shop.loud], "shop.id: the input does not fit", id="type"),
        pytest.param({}, [Shop.loud], "a query needs inputs", id="no_inputs"),
        pytest.param(
            {Shop.id: 1, Shop.name: "bad \udc80 text"},
            [Shop.loud],
            "shop.name: the input does not fit",
            id="lone_surrogate",
        ),
    ],
)
def test_bad_queries_name_the_feature(
    client: ChalkClient, inputs: dict[object, object], outputs: list[object], message: str
) -> None:
    with pytest.raises(QueryError, match=message):
        client.query(input=inputs, output=outputs)


def test_bad_queries_raise_the_same_once_their_shape_was_seen(client: ChalkClient) -> None:
    # A one-row query of a shape seen before takes the cached shape's path: same errors.
    client.query(input={Shop.id: 1, Shop.name: "x"}, output=[Shop.loud])
    assert _SHAPES.of({Shop.id: "seven", Shop.name: "x"}, [Shop.loud]) is not None
    with pytest.raises(QueryError, match=r"shop\.id: the input does not fit"):
        client.query(input={Shop.id: "seven", Shop.name: "x"}, output=[Shop.loud])
    with pytest.raises(QueryError, match=r"shop\.name: the input does not fit"):
        client.query(input={Shop.id: 1, Shop.name: "bad \udc80 text"}, output=[Shop.loud])
    with pytest.raises(QueryError, match="one value per feature"):
        client.query(input={Shop.id: 1, Shop.name: ["a", "b"]}, output=[Shop.loud])


_SHOP_KEYS = st.sampled_from([Shop.id, "shop.id", Shop.name, "shop.name"])
_SHOP_OUTPUTS = st.sampled_from([Shop.loud, "shop.loud", Shop.score, Shop.id, Shop.name])
_SHOP_VALUES = st.one_of(
    st.none(), st.integers(-(2**70), 2**70), st.text(max_size=6), st.floats(), st.booleans()
)


@settings(max_examples=150, deadline=None)
@given(
    inputs=st.dictionaries(_SHOP_KEYS, _SHOP_VALUES, min_size=1, max_size=4),
    outputs=st.lists(_SHOP_OUTPUTS, min_size=1, max_size=4),
)
def test_a_cached_shape_answers_as_the_general_path(
    inputs: dict[object, object], outputs: list[object]
) -> None:
    graph = graph_for(frozenset({"shop"}))

    def general() -> object:
        try:
            table = run_query(graph, input_table(graph, inputs, online=True), outputs)
        except Exception as error:
            return type(error), str(error)
        columns = zip(table.column_names, table.columns, strict=True)
        return {name: column[0].as_py() for name, column in columns}

    try:
        shape = online_shape(graph, inputs, outputs)
    except Exception:
        # Names or a plan that do not fit: the client takes the general path, which raises.
        assert isinstance(general(), tuple)
        return
    try:
        answered: object = run_online(shape, inputs.values())
    except Exception as error:
        answered = type(error), str(error)
    assert answered == general()


def test_offline_columns_of_different_lengths_are_refused(client: ChalkClient) -> None:
    with pytest.raises(QueryError, match="different lengths"):
        client.offline_query(input={Shop.id: [1, 2], Shop.name: ["a"]}, output=[Shop.loud])


@pytest.mark.skipif(importlib.util.find_spec("pandas") is not None, reason="pandas is installed")
def test_to_pandas_without_pandas_says_what_to_install(client: ChalkClient) -> None:
    dataset = client.offline_query(input={Shop.id: [1], Shop.name: ["a"]}, output=[Shop.loud])

    with pytest.raises(ImportError, match="pip install pandas"):
        dataset.to_pandas()


def test_a_redefined_class_is_queried_as_redefined(client: ChalkClient) -> None:
    # A notebook redefining a class: the client reuses graphs, never a stale one.
    @features
    class Kiosk:
        id: int
        name: str
        shown: str = F.upper(_.name)

    first = client.query(input={Kiosk.id: 1, Kiosk.name: "tea"}, output=[Kiosk.shown])

    @features  # type: ignore[no-redef]
    class Kiosk:
        id: int
        name: str
        shown: str = F.lower(_.name)

    again = client.query(input={Kiosk.id: 1, Kiosk.name: "Tea"}, output=[Kiosk.shown])

    assert first.get_feature_value("kiosk.shown") == "TEA"
    assert again.get_feature_value("kiosk.shown") == "tea"


def _model_call_threads() -> int:
    return sum(t.name == "chalk-model-calls" for t in threading.enumerate())


def test_a_client_used_as_a_context_manager_stops_its_model_call_thread(
    client: ChalkClient, paced: str
) -> None:
    before = _model_call_threads()

    with ChalkClient(project_dir=client.project.root) as other:
        assert other.query(input={Paced.id: 1, Paced.x: 7}, output=[Paced.y]).to_dict()
        during = _model_call_threads()

    assert (during, _model_call_threads()) == (before + 1, before)


def test_a_client_dropped_without_close_stops_its_model_call_thread(
    client: ChalkClient, paced: str
) -> None:
    before = _model_call_threads()
    other = ChalkClient(project_dir=client.project.root)
    other.query(input={Paced.id: 1, Paced.x: 7}, output=[Paced.y])
    during = _model_call_threads()

    del other
    gc.collect()

    assert (during, _model_call_threads()) == (before + 1, before)
