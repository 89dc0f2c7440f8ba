"""Where a SQLite catalog file may be created, with which mode, and which files are refused."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalk.catalog import open_catalog
from chalk.catalog.errors import CatalogError
from tests.catalog.conftest import _forget_engine


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / ".chalk"
    yield folder
    _forget_engine(f"sqlite:///{folder / 'catalog.db'}")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_catalog_and_its_folder_are_readable_by_their_owner_only(state_dir: Path) -> None:
    open_catalog(f"sqlite:///{state_dir / 'catalog.db'}")

    assert _mode(state_dir) == 0o700
    assert _mode(state_dir / "catalog.db") == 0o600
    assert sorted(p.name for p in state_dir.iterdir() if ".new" in p.name) == []


def test_an_existing_catalog_is_tightened_when_opened(state_dir: Path) -> None:
    url = f"sqlite:///{state_dir / 'catalog.db'}"
    open_catalog(url)
    _forget_engine(url)
    state_dir.chmod(0o755)
    (state_dir / "catalog.db").chmod(0o644)

    open_catalog(url)

    assert (_mode(state_dir), _mode(state_dir / "catalog.db")) == (0o700, 0o600)


def test_a_read_of_a_project_catalog_not_made_yet_is_empty_and_makes_nothing(
    state_dir: Path,
) -> None:
    catalog = open_catalog(f"sqlite:///{state_dir / 'catalog.db'}", create=False)

    assert catalog.groups.list() == []
    assert not state_dir.exists()


@pytest.mark.parametrize("create", [True, False], ids=["write", "read"])
def test_no_folder_but_the_project_one_is_made(tmp_path: Path, create: bool) -> None:
    path = tmp_path / "missing" / "catalog.db"

    with pytest.raises(CatalogError, match=f"{tmp_path / 'missing'}"):
        open_catalog(f"sqlite:///{path}", create=create)

    assert not path.parent.exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param(b"", r"is empty \(0 bytes\)", id="truncated"),
        pytest.param(b"x" * 100, r"is not a SQLite database", id="not_sqlite"),
    ],
)
def test_a_damaged_catalog_file_is_refused_and_left_as_it_is(
    tmp_path: Path, content: bytes, match: str
) -> None:
    path = tmp_path / "catalog.db"
    path.write_bytes(content)

    with pytest.raises(CatalogError, match=match):
        open_catalog(f"sqlite:///{path}")

    assert path.read_bytes() == content


def test_another_programs_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE users (id integer)")
    connection.close()

    with pytest.raises(CatalogError, match=r"not a scalegroup catalog \(it holds the tables users"):
        open_catalog(f"sqlite:///{path}")

    with sqlite3.connect(path) as connection:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master")]
    connection.close()
    assert tables == ["users"]


def test_a_url_that_is_not_one_is_said_in_our_words() -> None:
    with pytest.raises(CatalogError, match=r"the catalog URL 'notaurl' is not a database URL"):
        open_catalog("notaurl")


def test_the_umask_cannot_loosen_a_new_catalog(state_dir: Path) -> None:
    old = os.umask(0)
    try:
        open_catalog(f"sqlite:///{state_dir / 'catalog.db'}")
    finally:
        os.umask(old)

    assert _mode(state_dir / "catalog.db") == 0o600


def test_a_project_folder_made_before_the_catalog_is_tightened(state_dir: Path) -> None:
    state_dir.mkdir(mode=0o755)
    state_dir.chmod(0o755)

    open_catalog(f"sqlite:///{state_dir / 'catalog.db'}")

    assert _mode(state_dir) == 0o700
