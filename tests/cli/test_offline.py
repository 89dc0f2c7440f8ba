"""``chalk offline-query``: Parquet in (a file or a folder), Parquet out, in process and through
``chalk serve``; rows in input order; clear errors; an interrupted run leaves no output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from chalk import functions as F
from chalk.catalog import open_catalog
from chalk.features import _, features, graph_of

CHALK = str(Path(sys.executable).with_name("chalk"))
OUTS = ["--out", "item.loud", "--out", "item.twice"]


@features
class Item:
    id: int
    name: str | None
    x: float
    loud: str | None = F.upper(_.name)
    twice: float = _.x * 2


def chalk(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHALK, *args], cwd=root, capture_output=True, text=True, env={**_env(), **env},
        check=False,
    )  # fmt: skip


def _env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if k not in {"CHALK_CATALOG_URL", "CHALK_API_SERVER"}
    }


def items(start: int, rows: int) -> pa.Table:
    ids = pa.array(range(start, start + rows), pa.int64())
    names = pa.array(
        [None if i % 7 == 0 else f"n{i}" for i in range(start, start + rows)], pa.string()
    )
    return pa.table({"item.id": ids, "item.name": names, "item.x": pc.multiply(ids, 0.5)})


def expected(table: pa.Table) -> pa.Table:
    """What the graph computes for ``table``: the key, then the outputs asked for."""
    return pa.table(
        {
            "item.id": table["item.id"],
            "item.loud": pc.utf8_upper(table["item.name"]).cast(pa.large_string()),
            "item.twice": pc.multiply(table["item.x"], 2.0),
        }
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("offline")
    (root / "chalk.yaml").write_text("project: offline\n")
    catalog = open_catalog(f"sqlite:///{root}/.chalk/catalog.db")
    catalog.graphs.apply(graph_of([Item]).to_json())
    return root


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[str]:
    from tests.server.conftest import start_server

    running = start_server(project, "--max-body-bytes", "200000")
    yield running.url
    running.stop()


@pytest.mark.parametrize("remote", [False, True], ids=["in_process", "server"])
def test_a_file_in_gives_its_rows_out_in_order(
    project: Path, server: str, tmp_path: Path, remote: bool
) -> None:
    table = items(0, 50_000)
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=7_000)
    out = tmp_path / "out.parquet"
    where = ["--server", server] if remote else []

    # rich draws its bar on a terminal only; FORCE_COLOR makes stderr count as one.
    run = chalk(project, "offline-query", "--input", str(tmp_path / "in.parquet"),
                "--output", str(out), *OUTS, *where, "--block-rows", "9000",
                FORCE_COLOR="1")  # fmt: skip

    assert run.returncode == 0, run.stderr
    assert "wrote 50,000 rows" in run.stdout
    assert "offline query" in run.stderr  # the progress bar
    assert pq.read_table(out).equals(expected(table))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "out.parquet"]


@pytest.mark.parametrize("remote", [False, True], ids=["in_process", "server"])
def test_a_folder_in_is_read_in_path_order(
    project: Path, server: str, tmp_path: Path, remote: bool
) -> None:
    folder = tmp_path / "parts"
    (folder / "b").mkdir(parents=True)
    parts = [items(0, 3_000), items(3_000, 10), items(3_010, 4_000), items(7_010, 0)]
    for name, part in zip(
        ["a.parquet", "b/1.parquet", "b/2.parquet", "c.parquet"], parts, strict=True
    ):
        pq.write_table(part, folder / name)
    out = tmp_path / "out.parquet"
    where = ["--server", server] if remote else []

    run = chalk(project, "offline-query", "--input", str(folder), "--output", str(out), *OUTS,
                *where)  # fmt: skip

    assert run.returncode == 0, run.stderr
    assert pq.read_table(out).equals(expected(pa.concat_tables(parts)))


def test_no_rows_give_an_empty_file_with_the_columns(project: Path, tmp_path: Path) -> None:
    pq.write_table(items(0, 0), tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"

    run = chalk(project, "offline-query", "--input", str(tmp_path / "in.parquet"),
                "--output", str(out), *OUTS)  # fmt: skip

    assert run.returncode == 0, run.stderr
    assert pq.read_table(out).equals(expected(items(0, 0)))


@pytest.mark.parametrize(
    ("inputs", "args", "message"),
    [
        pytest.param(None, ["--input", "missing.parquet"],
                     "--input missing.parquet: no such file or folder", id="missing_input"),
        pytest.param({"item.id": [1], "item.colour": ["red"]}, [],
                     "column 'item.colour' is not an input feature", id="unknown_column"),
        pytest.param({"item.id": [1]}, ["--out", "item.lowd"],
                     "--out item.lowd: there is no feature 'item.lowd'", id="unknown_out"),
        pytest.param({"item.id": [1]}, ["--output", "nowhere/out.parquet"],
                     "the folder nowhere does not exist", id="no_output_folder"),
    ],
)  # fmt: skip
def test_a_bad_run_says_what_in_one_line_and_writes_nothing(
    project: Path, tmp_path: Path, inputs: dict[str, list[object]] | None, args: list[str],
    message: str,
) -> None:  # fmt: skip
    if inputs is not None:
        pq.write_table(pa.table(inputs), tmp_path / "in.parquet")
    given = {"--input": str(tmp_path / "in.parquet"), "--output": str(tmp_path / "out.parquet"),
             "--out": "item.loud"}  # fmt: skip
    for flag, value in zip(args[::2], args[1::2], strict=True):
        given[flag] = value

    run = chalk(tmp_path if "missing" in message or "nowhere" in message else project,
                "offline-query", *[w for pair in given.items() for w in pair])  # fmt: skip

    assert run.returncode == 1
    assert message in run.stderr
    assert run.stderr.startswith("error: ")
    assert run.stderr.count("\n") == 1
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupted_run_leaves_no_output(
    project: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    pq.write_table(items(0, 400_000), tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    process = subprocess.Popen(
        [CHALK, "offline-query", "--input", str(tmp_path / "in.parquet"), "--output", str(out),
         *OUTS, "--block-rows", "1000"],
        cwd=project, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    give_up = time.monotonic() + 60
    while not list(tmp_path.glob(".out.parquet.*.partial")) and process.poll() is None:
        assert time.monotonic() < give_up, "the run wrote no block within 60 s"
        time.sleep(0.01)

    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert stderr == "interrupted\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]
