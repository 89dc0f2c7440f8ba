"""``--no-cache`` on ``chalk query`` and ``chalk offline-query``: the query runs with
``use_cache=False``, as ``ChalkClient``'s ``use_cache=False`` does; without it, with the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chalk.cli import main
from chalk.engine import query
from tests.cli.test_query import Memo, apply_graph


@pytest.fixture
def asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The ``use_cache`` of each query the command ran, in a project with ``Memo`` applied."""
    (tmp_path / "chalk.yaml").write_text("project: demo\n")
    apply_graph(tmp_path, Memo)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHALK_CATALOG_URL", raising=False)
    seen: list[Any] = []
    run_query = query.run_query

    def recording(*args: Any, **options: Any) -> pa.Table:
        seen.append(options.get("use_cache", "not given"))
        return run_query(*args, **options)

    monkeypatch.setattr(query, "run_query", recording)
    return seen


@pytest.mark.parametrize(("flags", "use_cache"), [([], True), (["--no-cache"], False)])
def test_chalk_query_no_cache_runs_without_the_cache(
    asked: list[Any], flags: list[str], use_cache: bool
) -> None:
    argv = ["query", "--in", "memo.id=1", "--in", "memo.text=hi", "--out", "memo.shout", *flags]

    with pytest.raises(SystemExit) as ended:
        main(argv)

    assert ended.value.code == 0
    assert asked == [use_cache]


@pytest.mark.parametrize(("flags", "use_cache"), [([], True), (["--no-cache"], False)])
def test_chalk_offline_query_no_cache_runs_without_the_cache(
    asked: list[Any], tmp_path: Path, flags: list[str], use_cache: bool
) -> None:
    pq.write_table(pa.table({"memo.id": [1, 2], "memo.text": ["a", "b"]}), tmp_path / "in.parquet")
    argv = ["offline-query", "--input", "in.parquet", "--output", "out.parquet"]

    with pytest.raises(SystemExit) as ended:
        main([*argv, "--out", "memo.shout", *flags])

    assert ended.value.code == 0
    assert asked == [use_cache]
    assert pq.read_table(tmp_path / "out.parquet").column("memo.shout").to_pylist() == ["A", "B"]
