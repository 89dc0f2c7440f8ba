"""Catalog fixtures: a fresh, empty catalog database per test, in SQLite and in real PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalk.catalog import store
from tests.support.postgres import REQUIRE_ENV, create_database, drop_database, postgres_server


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A PostgreSQL server for the session; skips without one, fails when one is required."""
    with postgres_server() as server:
        if server.url is None:
            if os.environ.get(REQUIRE_ENV) == "1":
                pytest.fail(
                    f"no PostgreSQL server for the catalog tests, and {REQUIRE_ENV}=1 says "
                    f"they may not be skipped: {server.reason}",
                    pytrace=False,
                )
            pytest.skip(f"no PostgreSQL server: {server.reason}")
        yield server.url


@pytest.fixture
def postgres_database_url(postgres_server_url: str) -> Iterator[str]:
    """``postgresql://...`` URL of a new, empty database, dropped after the test."""
    url = create_database(postgres_server_url)
    yield url
    _forget_engine(url)
    drop_database(postgres_server_url, url)


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a new, empty catalog database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        url = str(request.getfixturevalue("postgres_database_url"))
    yield url
    _forget_engine(url)


def _forget_engine(url: str) -> None:
    """Close the catalog's pooled connections to ``url``, so its database can go."""
    with store._engines_lock:
        engine = store._engines.pop(url, None)
    if engine is not None:
        engine.dispose()
