"""Which of a group's endpoints ``resolve`` hands a reader: inside a Kubernetes cluster
(``KUBERNETES_SERVICE_HOST`` set) the Service's DNS name, outside it the gateway."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from chalk.catalog import Catalog, Endpoint, open_catalog
from chalk.catalog.errors import UnreachableGroupError
from chalk.catalog.records import REACH_ANY, REACH_CLUSTER, REACH_GATEWAY, reachable

TEXT = pa.schema([("text", pa.large_string())])
INSIDE = Endpoint("dns:///ner.ml.svc.cluster.local:6666", reach=REACH_CLUSTER)
GATEWAY = Endpoint("dev-ner.models.example.com:443", tls=True, reach=REACH_GATEWAY)
IN_CLUSTER = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return open_catalog(f"sqlite:///{tmp_path}/catalog.db")


def _kube_group(catalog: Catalog, endpoints: list[Endpoint]) -> None:
    catalog.models.register("ner-model", input_schema=TEXT, output_schema=TEXT, image="ner:1")
    model = {"name": "ner-model", "version": 1}
    spec = {"image": "ghcr.io/acme/ner:1", "port": 6666, "model": model}
    group = catalog.groups.create("ner", spec, backend="kubernetes")
    catalog.groups.report(
        group.id, status="Ready", desired=1, ready=1, available=1, endpoints=endpoints
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [(IN_CLUSTER, (INSIDE,)), ({}, (GATEWAY,))],
    ids=["in-cluster", "outside"],
)
def test_resolve_picks_by_where_the_reader_runs(
    catalog: Catalog, env: dict[str, str], expected: tuple[Endpoint, ...]
) -> None:
    _kube_group(catalog, [INSIDE, GATEWAY])
    assert catalog.resolve("model.ner", env=env).endpoints == expected


def test_resolve_reads_the_process_environment(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    _kube_group(catalog, [INSIDE, GATEWAY])
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    assert catalog.resolve("model.ner").endpoints == (INSIDE,)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert catalog.resolve("model.ner").endpoints == (GATEWAY,)


def test_a_group_without_a_gateway_is_unreachable_from_outside(catalog: Catalog) -> None:
    _kube_group(catalog, [INSIDE])
    assert catalog.resolve("model.ner", env=IN_CLUSTER).endpoints == (INSIDE,)
    with pytest.raises(UnreachableGroupError) as caught:
        catalog.resolve("model.ner", env={})
    message = str(caught.value)
    assert "scaling group 'ner' is reachable only inside its Kubernetes cluster" in message
    assert "ner.ml.svc.cluster.local:6666" in message
    assert "kubernetes.gateway" in message
    assert "\n" not in message
    # What chalk apply validates against needs no endpoint.
    assert catalog.resolve("model.ner", serving=False, env={}).endpoints == ()


def test_inside_the_cluster_a_gateway_alone_still_serves(catalog: Catalog) -> None:
    _kube_group(catalog, [GATEWAY])
    assert catalog.resolve("model.ner", env=IN_CLUSTER).endpoints == (GATEWAY,)


@pytest.mark.parametrize(
    ("stored", "reach"),
    [
        ({"target": "dns:///ner.ml.svc.cluster.local:6666", "tls": False}, REACH_CLUSTER),
        ({"target": "dev-ner.models.example.com:443", "tls": True}, REACH_ANY),
        ({"target": "127.0.0.1:7001", "tls": False}, REACH_ANY),
        ({"target": "x:443", "tls": True, "reach": "gateway"}, REACH_GATEWAY),
    ],
    ids=["old-in-cluster", "old-gateway", "local", "new"],
)
def test_stored_endpoints_keep_or_infer_their_reach(stored: dict[str, object], reach: str) -> None:
    endpoint = Endpoint.from_json(stored)
    assert endpoint.reach == reach
    assert Endpoint.from_json(endpoint.to_json()) == endpoint


def test_local_endpoints_are_reachable_from_anywhere() -> None:
    local = (Endpoint("127.0.0.1:7001"), Endpoint("127.0.0.1:7002"))
    assert reachable(local, in_cluster=True) == local
    assert reachable(local, in_cluster=False) == local
    assert Endpoint("127.0.0.1:7001").to_json() == {"target": "127.0.0.1:7001", "tls": False}
