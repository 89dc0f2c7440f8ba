"""``chalk query`` against the graph stored in the catalog."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chalk import functions as F
from chalk.catalog import open_catalog
from chalk.features import _, features, graph_of

CHALK = str(Path(sys.executable).with_name("chalk"))


@features
class Memo:
    id: int
    text: str
    shout: str = F.upper(_.text)


@features
class Stamp:
    id: int
    at: dt.datetime
    on: dt.date
    same_at: dt.datetime = _.at
    same_on: dt.date = _.on


def chalk(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
    return subprocess.run(
        [CHALK, *args], cwd=root, capture_output=True, text=True, env=env, check=False
    )


def apply_graph(project: Path, *classes: type) -> None:
    """What `chalk apply` stores for ``classes``."""
    catalog = open_catalog(f"sqlite:///{project}/.chalk/catalog.db")
    catalog.graphs.apply(graph_of(list(classes)).to_json())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "chalk.yaml").write_text("project: demo\n")
    return tmp_path


def test_a_query_runs_on_the_active_graph(project: Path) -> None:
    apply_graph(project, Memo)

    result = chalk(
        project,
        "query",
        "--in",
        "memo.id=4",
        "--in",
        "memo.text=hi there",
        "--out",
        "memo.shout",
        "-o",
        "json",
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"memo.id": 4, "memo.shout": "HI THERE"}


def test_without_an_applied_graph_the_error_says_to_apply(project: Path) -> None:
    result = chalk(project, "query", "--in", "memo.text=x", "--out", "memo.shout")

    assert result.returncode == 1
    assert "run `chalk apply` first" in result.stderr


def test_an_unknown_feature_is_named(project: Path) -> None:
    apply_graph(project, Memo)

    result = chalk(project, "query", "--in", "memo.txt=x", "--out", "memo.shout")

    assert result.returncode == 1
    assert "did you mean 'memo.text'" in result.stderr


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("12345", "12345", id="digits"),
        pytest.param("true", "true", id="true"),
        pytest.param("null", "null", id="null"),
        pytest.param('"quoted"', "quoted", id="json-string"),
        pytest.param("", "", id="empty"),
    ],
)
def test_a_string_feature_takes_its_text_as_given(project: Path, given: str, expected: str) -> None:
    apply_graph(project, Memo)

    result = chalk(
        project,
        "query",
        "--in",
        "memo.id=1",
        "--in",
        f"memo.text={given}",
        "--out",
        "memo.shout",
        "-o",
        "json",
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["memo.shout"] == expected.upper()


def test_timestamps_and_dates_are_read_as_iso_8601(project: Path) -> None:
    apply_graph(project, Stamp)

    result = chalk(
        project,
        "query",
        "--in",
        "stamp.id=1",
        "--in",
        "stamp.at=2024-01-01T12:00:00+05:30",
        "--in",
        "stamp.on=2024-02-29",
        "--out",
        "stamp.same_at",
        "--out",
        "stamp.same_on",
        "-o",
        "json",
    )

    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert dt.datetime.fromisoformat(row["stamp.same_at"]) == dt.datetime(
        2024, 1, 1, 6, 30, tzinfo=dt.UTC
    )
    assert row["stamp.same_on"] == "2024-02-29"


def test_a_timestamp_that_is_not_iso_8601_names_the_feature(project: Path) -> None:
    apply_graph(project, Stamp)

    result = chalk(
        project,
        "query",
        "--in",
        "stamp.id=1",
        "--in",
        "stamp.at=yesterday",
        "--out",
        "stamp.same_at",
    )

    assert result.returncode == 1
    assert "--in stamp.at: expected an ISO 8601 timestamp" in result.stderr
    assert "'yesterday'" in result.stderr
