"""Scaling group records: create, update with history, soft delete, reported status."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chalk.catalog import Catalog, ConflictError, Endpoint, NotFoundError, open_catalog
from chalk.catalog.errors import ValidationError
from chalk.catalog.groups import validate_group_name

SPEC = {"image": "ner:latest", "port": 8080, "tags": {"team": "nlp"}}


@pytest.fixture
def catalog(catalog_url: str) -> Catalog:
    return open_catalog(catalog_url)


def test_create_then_get(catalog: Catalog) -> None:
    created = catalog.groups.create("ner", SPEC, backend="local")

    fetched = catalog.groups.get("ner")

    assert fetched == created
    assert (fetched.revision, fetched.status, fetched.tags) == (1, "Pending", {"team": "nlp"})
    assert fetched.id.startswith("sg-")


def test_creating_a_live_name_is_a_conflict(catalog: Catalog) -> None:
    catalog.groups.create("ner", SPEC, backend="local")

    with pytest.raises(ConflictError, match=r"scaling group 'ner' already exists.*update"):
        catalog.groups.create("ner", SPEC, backend="local")

    assert len(catalog.groups.list()) == 1


def test_update_stores_a_revision_and_an_unchanged_spec_stores_nothing(catalog: Catalog) -> None:
    catalog.groups.create("ner", SPEC, backend="local")

    updated, changed = catalog.groups.update("ner", {**SPEC, "image": "ner:v2"})
    again, changed_again = catalog.groups.update("ner", {**SPEC, "image": "ner:v2"})

    assert (updated.revision, changed) == (2, True)
    assert (again.revision, changed_again) == (2, False)
    assert [r.spec["image"] for r in catalog.groups.history("ner")] == ["ner:latest", "ner:v2"]


def test_delete_is_soft_and_frees_the_name(catalog: Catalog) -> None:
    first = catalog.groups.create("ner", SPEC, backend="local")
    catalog.groups.report(
        first.id, status="Ready", desired=1, ready=1, available=1, endpoints=[Endpoint("a:1")]
    )

    deleted = catalog.groups.delete("ner")
    second = catalog.groups.create("ner", SPEC, backend="local")

    assert deleted.deleted_at is not None
    assert (deleted.status, deleted.endpoints) == ("Deleted", ())
    assert second.id != first.id
    assert [g.id for g in catalog.groups.list()] == [second.id]
    assert {g.id for g in catalog.groups.list(include_deleted=True)} == {first.id, second.id}


def test_a_deleted_group_says_so(catalog: Catalog) -> None:
    catalog.groups.create("ner", SPEC, backend="local")
    catalog.groups.delete("ner")

    with pytest.raises(NotFoundError, match="scaling group 'ner' was deleted at"):
        catalog.groups.get("ner")


def test_an_unknown_group_suggests_a_close_name(catalog: Catalog) -> None:
    catalog.groups.create("sentiment", SPEC, backend="local")

    with pytest.raises(NotFoundError, match="did you mean 'sentiment'"):
        catalog.groups.get("sentimnt")


def test_report_keeps_endpoints_unless_given(catalog: Catalog) -> None:
    group = catalog.groups.create("ner", SPEC, backend="local")
    catalog.groups.report(
        group.id,
        status="Ready",
        desired=2,
        ready=2,
        available=2,
        endpoints=[Endpoint("127.0.0.1:7001"), Endpoint("127.0.0.1:7002")],
        url="http://127.0.0.1:9000",
    )

    catalog.groups.report(
        group.id, status="Scaling", reason="CPU 95%", desired=3, ready=2, available=2
    )

    stored = catalog.groups.get("ner")
    assert (stored.status, stored.reason, stored.desired_replicas) == ("Scaling", "CPU 95%", 3)
    assert [e.target for e in stored.endpoints] == ["127.0.0.1:7001", "127.0.0.1:7002"]
    assert stored.url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("name", "environment", "message"),
    [
        pytest.param("Ner", "dev", "not valid: expected a DNS-1123 label", id="uppercase"),
        pytest.param("-ner", "dev", "not valid", id="leading_dash"),
        pytest.param("ner_v2", "dev", "not valid", id="underscore"),
        pytest.param("a" * 60, "dev", "too long: 'dev-a", id="too_long"),
        pytest.param("a" * 50, "production-eu", "at most 49", id="too_long_env"),
    ],
)
def test_group_names_must_be_dns_labels_that_fit(name: str, environment: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_group_name(name, environment)


def test_a_new_group_name_starts_with_a_letter_an_existing_one_may_not() -> None:
    with pytest.raises(ValidationError, match=r"expected it to start with a letter.*'m-1abc'"):
        validate_group_name("1abc", new=True)
    assert validate_group_name("1abc") == "1abc"


def test_a_name_that_fits_exactly_is_accepted() -> None:
    assert validate_group_name("a" * 59, "dev") == "a" * 59


def test_an_update_prepared_against_an_old_revision_is_a_conflict(catalog: Catalog) -> None:
    catalog.groups.create("ner", SPEC, backend="local")
    catalog.groups.update("ner", {**SPEC, "image": "ner:v2"}, expected_revision=1)

    with pytest.raises(ConflictError, match="expected revision 1, found 2"):
        catalog.groups.update("ner", {**SPEC, "image": "ner:v3"}, expected_revision=1)

    assert catalog.groups.get("ner").spec["image"] == "ner:v2"


def test_a_spec_stored_before_a_field_existed_counts_as_unchanged(catalog: Catalog) -> None:
    full = {**SPEC, "port_from_image": True}
    catalog.groups.create("ner", SPEC, backend="local")

    group, changed = catalog.groups.update("ner", full)

    assert (group.revision, changed) == (1, False)


# Each worker changes the group's env to its own value, re-reading and retrying on a conflict
# as `chalk scaling-group update` tells a user to, and prints the revision it stored.
CONCURRENT_UPDATER = """
import sys
from chalk.catalog import ConflictError, open_catalog

catalog = open_catalog(sys.argv[1])
conflicts = 0
while True:
    read = catalog.groups.get("ner")
    spec = {**read.spec, "env": {"WHO": sys.argv[2]}}
    try:
        stored, changed = catalog.groups.update("ner", spec, expected_revision=read.revision)
        break
    except ConflictError:
        conflicts += 1
print(stored.revision, conflicts, changed)
"""


def test_concurrent_updates_from_processes_are_serialised(catalog_url: str) -> None:
    catalog = open_catalog(catalog_url)
    catalog.groups.create("ner", SPEC, backend="local")
    workers = 4

    running = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_UPDATER, catalog_url, f"w{i}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    outputs = [worker.communicate(timeout=120)[0].split() for worker in running]

    assert [worker.returncode for worker in running] == [0] * workers
    revisions = sorted(int(revision) for revision, _, _ in outputs)
    # One revision each, none lost and none twice: 2..workers+1 after the create's 1.
    assert revisions == list(range(2, workers + 2))
    assert all(changed == "True" for _, _, changed in outputs)
    history = catalog.groups.history("ner")
    assert [r.revision for r in history] == list(range(1, workers + 2))
    assert sorted(r.spec["env"]["WHO"] for r in history[1:]) == [f"w{i}" for i in range(workers)]
    latest = catalog.groups.get("ner")
    assert (latest.revision, latest.spec) == (history[-1].revision, history[-1].spec)
