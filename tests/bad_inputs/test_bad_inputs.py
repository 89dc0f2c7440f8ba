"""Bad inputs, one table: each row is an input a careless user gives, refused with one clear
message, no traceback, and nothing written.

Rows live in ``cases_*.yaml`` beside this module; every file matching that pattern is read, so
another change adds its rows in a file of its own. Each file is a YAML list of rows:

    - id: replicas-huge            # unique across all files (the pytest id)
      surface: cli                 # cli | python | features | chalk_yaml | chalkignore |
                                   # catalog | handler (counted per surface: >= 10 each)
      # exactly one of argv, python, runtime:
      argv: [scaling-group, create, --name, g, --image, ner:latest, --replicas, "100"]
                                   # `chalk ARGV`, run in this process through chalk.cli.main
      python: "client.offline_query({BadInputDoc.id: [1.5]}, [BadInputDoc.shout])"
                                   # an expression that must raise a ChalkError; in scope:
                                   # client (a ChalkClient of the project), BadInputDoc (id: int,
                                   # x: float, flag: bool, text: str, shout = upper(text)),
                                   # AutoScalingSpec, ScalingGroupResourceRequest, pa, dt
      runtime: [--handler, m.f, --workers, "0"]
                                   # chalk-remote-call's flags, read as its config (never serves)
      env: {CHALK_CATALOG_URL: "sqlite:///{project}/x.db"}
                                   # the row's environment; {project} is the project folder
      files: {chalk.yaml: "project: a\n", .chalkignore: !!binary "/w=="}
                                   # written into a fresh copy of the project (bytes as bytes)
      dirs: [.chalkignore]         # folders made in the fresh copy
      sqlite: {.chalk/other.db: "CREATE TABLE users (id int)"}
                                   # SQLite files made in the fresh copy by these statements
      code: 1                      # the exit code (default 1; argparse's usage errors: 2)
      expect: "--replicas is out of range: expected 1 to 1000"
                                   # a regex searched (DOTALL) in stdout + stderr, or in the
                                   # error's message for python rows
      absent: [/nonexistent/dir]   # paths that must not exist afterwards ({project} allowed)

Rows without files, dirs or sqlite share one project (its catalog holds model ``ner`` v1, group
``ner`` hosting it, image ``ner:latest`` and an applied graph with ``document.*``); the others
get a copy of it. Every row asserts the exit code, the message, no "Traceback" in any output,
the project's catalog unchanged (``catalog_digest`` before and after) and the absent paths.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from chalk.catalog import open_catalog
from chalk.catalog.records import LocalImage
from chalk.catalog.resources import AutoScalingSpec, ScalingGroupResourceRequest
from chalk.cli import main
from chalk.common.errors import ChalkError
from chalk.features import dsl
from tests.catalog.conftest import _forget_engine
from tests.support.catalog_digest import catalog_digest
from tests.support.projects import imports_undone, write_files

HERE = Path(__file__).parent
SURFACES = ("cli", "python", "features", "chalk_yaml", "chalkignore", "catalog", "handler")
_KEYS = {"id", "surface", "argv", "python", "runtime", "env", "files", "dirs", "sqlite"}
_KEYS |= {"code", "expect", "absent"}

DOCUMENT = """
    import datetime as dt

    from chalk import functions as F
    from chalk.features import _, features


    @features
    class Document:
        id: int
        x: float
        flag: bool
        text: str
        at: dt.datetime
        on: dt.date
        shout: str = F.upper(_.text)
        entities: str = F.catalog_call("model.ner", _.text)
"""


@dataclass(frozen=True)
class Row:
    id: str
    surface: str
    expect: str
    argv: list[str] | None = None
    python: str | None = None
    runtime: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str | bytes] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)
    sqlite: dict[str, str] = field(default_factory=dict)
    code: int = 1
    absent: list[str] = field(default_factory=list)

    @property
    def own_project(self) -> bool:
        return bool(self.files or self.dirs or self.sqlite)


def _load_rows() -> list[Row]:
    rows: list[Row] = []
    for path in sorted(HERE.glob("cases_*.yaml")):
        for data in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            unknown = set(data) - _KEYS
            assert not unknown, f"{path.name}: row {data.get('id')}: unknown keys {unknown}"
            row = Row(**data)
            assert row.surface in SURFACES, f"{path.name}: {row.id}: surface {row.surface!r}"
            ways = [row.argv, row.python, row.runtime]
            assert sum(w is not None for w in ways) == 1, f"{path.name}: {row.id}: one way"
            rows.append(row)
    return rows


ROWS = _load_rows()


def test_the_table_is_whole() -> None:
    ids = [row.id for row in ROWS]
    assert len(ids) == len(set(ids)), "row ids repeat"
    assert len(ROWS) >= 150
    for surface in SURFACES:
        assert sum(row.surface == surface for row in ROWS) >= 10, surface


@dataclass
class Project:
    root: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The project most rows run in: a model, a group hosting it, an image and a graph."""
    root = tmp_path_factory.mktemp("bad-inputs").resolve() / "project"
    write_files(root, {"chalk.yaml": "project: bad-inputs\n", "features/document.py": DOCUMENT})
    saved = os.environ.pop("CHALK_CATALOG_URL", None)
    catalog = open_catalog(f"sqlite:///{root}/.chalk/catalog.db")
    text = pa.schema({"text": pa.large_string()})
    catalog.models.register("ner", input_schema=text, output_schema=text, image="ner:latest")
    spec = {"image": "ner:latest", "model": {"name": "ner", "version": 1}}
    catalog.groups.create("ner", spec, backend="local")
    image = LocalImage(
        digest="sha256:" + "ab" * 32,
        snapshot_path=str(root / ".chalk" / "images" / "x" / "rootfs"),
        entrypoint=("python", "-m", "server"),
        cmd=(),
        env={},
        workdir="/",
        exposed_port=8000,
        created_at=dt.datetime.now(dt.UTC),
    )
    catalog.images.save(image, ["ner:latest"])
    cwd = Path.cwd()
    os.chdir(root)
    try:
        with imports_undone(root), pytest.raises(SystemExit) as done:
            main(["apply"])
        assert done.value.code in (0, None)
        yield root
    finally:
        os.chdir(cwd)
        if saved is not None:
            os.environ["CHALK_CATALOG_URL"] = saved
        _forget_engine(f"sqlite:///{root}/.chalk/catalog.db")


@pytest.fixture(scope="module")
def python_names(shared: Path) -> Iterator[dict[str, Any]]:
    """The names a python row's expression sees; the feature class is gone afterwards."""
    from chalk import functions as F
    from chalk.client import ChalkClient
    from chalk.features import _, features

    registry = dict(dsl._REGISTRY)

    @features
    class BadInputDoc:
        id: int
        x: float
        flag: bool
        text: str
        shout: str = F.upper(_.text)

    cwd = Path.cwd()
    os.chdir(shared)
    client = ChalkClient()
    try:
        yield {
            "client": client,
            "BadInputDoc": BadInputDoc,
            "AutoScalingSpec": AutoScalingSpec,
            "ScalingGroupResourceRequest": ScalingGroupResourceRequest,
            "pa": pa,
            "dt": dt,
        }
    finally:
        client.close()
        os.chdir(cwd)
        dsl._REGISTRY.clear()
        dsl._REGISTRY.update(registry)


def _project_for(row: Row, shared: Path, tmp_path: Path) -> Path:
    if not row.own_project:
        return shared
    root = tmp_path / "project"
    shutil.copytree(shared, root, ignore=shutil.ignore_patterns("__pycache__"))
    for relative, content in row.files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    for relative in row.dirs:
        target = root / relative
        if target.is_file():
            target.unlink()
        target.mkdir(parents=True, exist_ok=True)
    for relative, statements in row.sqlite.items():
        connection = sqlite3.connect(root / relative)
        connection.executescript(statements)
        connection.close()
    return root


def _run_chalk(argv: list[str], root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    with imports_undone(root), pytest.raises(SystemExit) as done:
        main(argv)
    captured = capsys.readouterr()
    code = done.value.code
    return (
        code if isinstance(code, int) else 0 if code is None else 1
    ), captured.out + captured.err


def _run_runtime(
    argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    from chalk.shim.cli import config_from_args

    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        config_from_args(argv, env)
    captured = capsys.readouterr()
    code = done.value.code
    if isinstance(code, str):  # sys.exit(message): the interpreter prints it, exit code 1
        return 1, captured.out + captured.err + code
    return (code if isinstance(code, int) else 0), captured.out + captured.err


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_a_bad_input_is_refused_clearly(
    row: Row,
    shared: Path,
    python_names: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = _project_for(row, shared, tmp_path)
    env = {name: value.replace("{project}", str(root)) for name, value in row.env.items()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(root)
    database = root / ".chalk" / "catalog.db"
    before = catalog_digest(database)

    if row.argv is not None:
        code, output = _run_chalk(
            [a.replace("{project}", str(root)) for a in row.argv], root, capsys
        )
    elif row.runtime is not None:
        code, output = _run_runtime(row.runtime, env, capsys)
    else:
        with pytest.raises(ChalkError) as raised:
            eval(row.python, dict(python_names))
        code, output = row.code, str(raised.value)

    assert "Traceback" not in output
    assert re.search(row.expect, output, re.DOTALL), f"expected /{row.expect}/ in:\n{output}"
    assert code == row.code, output
    assert catalog_digest(database) == before
    for path in row.absent:
        assert not Path(path.replace("{project}", str(root))).exists(), path
    if row.own_project:
        _forget_engine(f"sqlite:///{database}")
