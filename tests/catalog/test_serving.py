"""``Catalog.resolve``'s ``Route.serving``: the model versions a group's ready endpoints run,
from a local group's replica rows and history, and from a Kubernetes group's status."""

from __future__ import annotations

import pyarrow as pa
import pytest

from chalk.catalog import Catalog, Endpoint, open_catalog
from chalk.catalog.records import Replica

TEXT = pa.schema([("text", pa.large_string())])
OLD, NEW = "127.0.0.1:7001", "127.0.0.1:7002"


@pytest.fixture
def catalog(catalog_url: str) -> Catalog:
    found = open_catalog(catalog_url)
    found.state.heartbeat("local", pid=1, host="laptop")
    for _ in range(2):
        found.models.register("ner", input_schema=TEXT, output_schema=TEXT, image="ner:1")
    return found


def group(catalog: Catalog, backend: str) -> str:
    spec = {"image": "ner:1", "port": 8080, "model": {"name": "ner", "version": 1}}
    return catalog.groups.create("ner", spec, backend=backend).id


def to_version_2(catalog: Catalog) -> None:
    spec = catalog.groups.get("ner").spec
    catalog.groups.update("ner", {**spec, "model": {"name": "ner", "version": 2}})


def report(catalog: Catalog, group_id: str, status: str, endpoints: list[str]) -> None:
    count = len(endpoints)
    catalog.groups.report(
        group_id,
        status=status,
        desired=count,
        ready=count,
        available=count,
        endpoints=[Endpoint(target) for target in endpoints],
    )


def replica(catalog: Catalog, group_id: str, name: str, revision: int, endpoint: str) -> None:
    catalog.state.save_replica(
        Replica(group_id, name, revision, "Running", True, endpoint=endpoint)
    )


def test_a_local_group_mid_roll_serves_both_versions_then_the_new_one(catalog: Catalog) -> None:
    group_id = group(catalog, "local")
    replica(catalog, group_id, "ner-1", 1, OLD)
    report(catalog, group_id, "Ready", [OLD])
    assert catalog.resolve("model.ner").serving == (("ner", 1),)
    assert catalog.resolve("model.ner").settled

    to_version_2(catalog)
    replica(catalog, group_id, "ner-2", 2, NEW)
    report(catalog, group_id, "Progressing", [OLD, NEW])
    mixed = catalog.resolve("model.ner")
    assert (mixed.model_version, mixed.serving, mixed.settled) == (
        2,
        (("ner", 1), ("ner", 2)),
        False,
    )

    catalog.state.remove_replica(group_id, "ner-1")
    report(catalog, group_id, "Ready", [NEW])
    assert catalog.resolve("model.ner").serving == (("ner", 2),)
    assert catalog.resolve("model.ner").settled


def test_an_endpoint_no_ready_replica_claims_is_not_known(catalog: Catalog) -> None:
    group_id = group(catalog, "local")
    report(catalog, group_id, "Ready", [OLD])

    route = catalog.resolve("model.ner")

    assert (route.serving, route.settled) == ((), False)


def test_a_kubernetes_group_runs_one_version_only_once_reported_ready(catalog: Catalog) -> None:
    group_id = group(catalog, "kubernetes")
    report(catalog, group_id, "Ready", ["ner.example.com:443"])
    assert catalog.resolve("model.ner").settled

    to_version_2(catalog)
    report(catalog, group_id, "Progressing", ["ner.example.com:443"])
    rolling = catalog.resolve("model.ner")
    assert (rolling.model_version, rolling.serving, rolling.settled) == (2, (), False)

    report(catalog, group_id, "Ready", ["ner.example.com:443"])
    assert catalog.resolve("model.ner").serving == (("ner", 2),)
