"""``chalk query`` against the graph stored in the catalog."""

from __future__ import annotations

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


def chalk(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
    return subprocess.run(
        [CHALK, *args], cwd=root, capture_output=True, text=True, env=env, check=False
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "chalk.yaml").write_text("project: demo\n")
    return tmp_path


def test_a_query_runs_on_the_active_graph(project: Path) -> None:
    open_catalog(f"sqlite:///{project}/.chalk/catalog.db").graphs.apply(graph_of([Memo]).to_json())

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
    open_catalog(f"sqlite:///{project}/.chalk/catalog.db").graphs.apply(graph_of([Memo]).to_json())

    result = chalk(project, "query", "--in", "memo.txt=x", "--out", "memo.shout")

    assert result.returncode == 1
    assert "did you mean 'memo.text'" in result.stderr
