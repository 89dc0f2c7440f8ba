"""The apply guard: model registration and group writes refused, recorded with the caller's
file and line, before anything is written, even when the caller catches the error."""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from chalk.catalog import Catalog, open_catalog
from chalk.common.apply_guard import WriteDuringApplyError, check_write, refusing_writes
from tests.catalog.conftest import _forget_engine

HERE = Path(__file__).resolve()
SCHEMA = pa.schema({"text": pa.large_string()})


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    yield open_catalog(url)
    _forget_engine(url)


def register(catalog: Catalog) -> None:
    catalog.models.register("ner", input_schema=SCHEMA, output_schema=SCHEMA, image="ner:1")


def register_line() -> int:
    """The line of ``register``'s call to the registry."""
    return inspect.getsourcelines(register)[1] + 1


def test_outside_apply_writes_go_through(catalog: Catalog) -> None:
    check_write("anything")
    register(catalog)

    assert [v.model_version for v in catalog.models.list("ner")] == [1]


def test_a_registration_is_refused_recorded_and_writes_nothing(catalog: Catalog) -> None:
    refused = pytest.raises(WriteDuringApplyError, match=r"registering model 'ner' while")
    with refusing_writes(HERE.parent) as guard, refused:
        register(catalog)

    location = f"{HERE.name}:{register_line()}"
    assert [(v.action, v.location) for v in guard.violations] == [
        ("registering model 'ner'", location)
    ]
    assert guard.violations[0].message.startswith(f"{location}: registering model 'ner'")
    assert ".chalkignore" in guard.violations[0].message
    assert catalog.models.list("ner") == []


def test_a_caught_refusal_is_still_recorded(catalog: Catalog) -> None:
    # The refusal swallowed, as a project's code might.
    with refusing_writes(HERE.parent) as guard, contextlib.suppress(WriteDuringApplyError):
        register(catalog)

    assert len(guard.violations) == 1
    assert catalog.models.list() == []


def test_group_writes_are_refused_and_change_nothing(catalog: Catalog) -> None:
    register(catalog)
    catalog.groups.create("ner", {"image": "ner:1"}, backend="local")
    attempts = {
        "creating scaling group 'other'": lambda: catalog.groups.create(
            "other", {"image": "x"}, backend="local"
        ),
        "updating scaling group 'ner'": lambda: catalog.groups.update("ner", {"image": "y"}),
        "deleting scaling group 'ner'": lambda: catalog.groups.delete("ner"),
    }

    with refusing_writes(HERE.parent) as guard:
        for attempt in attempts.values():
            with pytest.raises(WriteDuringApplyError):
                attempt()

    assert [v.action for v in guard.violations] == list(attempts)
    assert [(g.name, g.revision, g.spec) for g in catalog.groups.list()] == [
        ("ner", 1, {"image": "ner:1"})
    ]


def test_a_thread_started_by_the_project_is_refused_too(catalog: Catalog) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            register(catalog)
        except WriteDuringApplyError as error:
            errors.append(error)

    with refusing_writes(HERE.parent) as guard:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()

    assert len(errors) == len(guard.violations) == 1
    assert catalog.models.list() == []


def test_the_guard_ends_with_its_block(catalog: Catalog) -> None:
    with refusing_writes(HERE.parent):
        pass

    register(catalog)

    assert len(catalog.models.list("ner")) == 1


def test_a_call_from_outside_the_project_names_the_outside_file(catalog: Catalog) -> None:
    with refusing_writes(HERE.parent / "elsewhere") as guard, pytest.raises(WriteDuringApplyError):
        register(catalog)

    assert guard.violations[0].location.startswith(f"{HERE}:")


def test_two_applies_at_once_in_one_process_are_refused(tmp_path: Path) -> None:
    with (
        refusing_writes(tmp_path),
        pytest.raises(RuntimeError, match="already importing"),
        refusing_writes(tmp_path),
    ):
        pass
