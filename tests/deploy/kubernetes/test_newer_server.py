"""The Kubernetes backend against a newer server than our kube-apiserver 1.20: kmock's stateful
emulator (``tests/support/kube_fake.py``) reporting 1.31 (or the version a test asks for) and
serving ``autoscaling/v2``, so the v2 HorizontalPodAutoscaler, the gRPC readiness probe and the
preStop sleep are applied through discovery, as on a real cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalk.catalog import Catalog
from chalk.catalog.resources import AutoScalingSpec
from chalk.catalog.specs import GroupSpec, ModelRef
from chalk.common.config import Project
from chalk.deploy.groups import create_group, delete_group, update_group
from chalk.deploy.kubernetes.backend import KubernetesBackend
from tests.deploy.kubernetes.helpers import is_absent as _absent
from tests.deploy.kubernetes.helpers import kube_project, scaling_group
from tests.deploy.kubernetes.helpers import read_object as _read
from tests.support.kube_fake import FakeKube, fake_kube

IMAGE = "ghcr.io/acme/ner:1"
V2 = "autoscaling/v2"
HPA = (V2, "HorizontalPodAutoscaler")
KINDS = [
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    HPA,
]


@pytest.fixture
def fake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeKube]:
    version = getattr(request, "param", (1, 31))
    with fake_kube(tmp_path, version) as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeKube) -> Project:
    return kube_project(tmp_path, monkeypatch, fake.kubeconfig, fake.context, "ml")


def test_discovery_finds_autoscaling_v2_and_the_version(kube: KubernetesBackend) -> None:
    served = kube.served()
    assert V2 in served
    assert "autoscaling/v2beta2" not in served
    features = kube.features()
    assert features.autoscaling == V2
    assert features.grpc_probe


def test_an_autoscaling_group_gets_a_v2_autoscaler(
    project: Project, catalog: Catalog, kube: KubernetesBackend
) -> None:
    scaling = AutoScalingSpec(
        min_replicas=2, max_replicas=5, target_cpu_utilization_percentage=70, window_seconds=30
    )
    create_group(project, catalog, "ner", GroupSpec(image=IMAGE, scaling=scaling), port_given=False)
    hpa = _read(kube, *HPA)
    assert hpa["apiVersion"] == V2
    assert hpa["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "scalegroup"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ner"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 5)
    (metric,) = spec["metrics"]
    assert (metric["type"], metric["resource"]["name"]) == ("Resource", "cpu")
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert spec["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 30}}
    # A new group starts at its minimum; the autoscaler takes it from there.
    assert _read(kube, "apps/v1", "Deployment")["spec"]["replicas"] == 2


def test_defaults_are_80_percent_cpu_and_a_60_second_window(
    project: Project, catalog: Catalog, kube: KubernetesBackend
) -> None:
    scaling = AutoScalingSpec(min_replicas=1, max_replicas=3)
    create_group(project, catalog, "ner", GroupSpec(image=IMAGE, scaling=scaling), port_given=False)
    spec = _read(kube, *HPA)["spec"]
    assert spec["metrics"][0]["resource"]["target"]["averageUtilization"] == 80
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 60


def test_an_update_changes_the_autoscaler_and_a_fixed_count_removes_it(
    project: Project, catalog: Catalog, kube: KubernetesBackend
) -> None:
    scaling = AutoScalingSpec(min_replicas=1, max_replicas=3)
    create_group(project, catalog, "ner", GroupSpec(image=IMAGE, scaling=scaling), port_given=False)
    before = _read(kube, *HPA)
    wider = AutoScalingSpec(
        min_replicas=2, max_replicas=8, target_cpu_utilization_percentage=50, window_seconds=120
    )
    _group, _spec, changed = update_group(project, catalog, "ner", {"scaling": wider})
    assert changed
    after = _read(kube, *HPA)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert (after["spec"]["minReplicas"], after["spec"]["maxReplicas"]) == (2, 8)
    assert after["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 50
    assert after["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 120
    fixed = AutoScalingSpec(min_replicas=4, max_replicas=4)
    update_group(project, catalog, "ner", {"scaling": fixed})
    assert _absent(kube, *HPA)
    assert _read(kube, "apps/v1", "Deployment")["spec"]["replicas"] == 4


def test_delete_removes_every_object(
    project: Project, catalog: Catalog, kube: KubernetesBackend
) -> None:
    scaling = AutoScalingSpec(min_replicas=1, max_replicas=4)
    create_group(project, catalog, "ner", GroupSpec(image=IMAGE, scaling=scaling), port_given=False)
    assert not any(_absent(kube, v, kind) for v, kind in KINDS)
    delete_group(project, catalog, "ner")
    assert all(_absent(kube, v, kind) for v, kind in KINDS)


@pytest.mark.parametrize(
    ("fake", "check", "sleep"),
    [
        ((1, 31), "grpc", {"preStop": {"sleep": {"seconds": 5}}}),
        ((1, 30), "grpc", {"preStop": {"sleep": {"seconds": 5}}}),
        ((1, 29), "grpc", None),
        ((1, 24), "grpc", None),
        ((1, 23), "tcpSocket", None),
    ],
    indirect=["fake"],
    ids=["1.31", "1.30", "1.29", "1.24", "1.23"],
)
def test_the_probe_and_the_prestop_sleep_follow_the_server_version(
    project: Project,
    catalog: Catalog,
    kube: KubernetesBackend,
    check: str,
    sleep: dict[str, Any] | None,
) -> None:
    spec = GroupSpec(image=IMAGE, model=ModelRef("ner", 1), port=6666)
    create_group(project, catalog, "ner", spec, port_given=True)
    container = _read(kube, "apps/v1", "Deployment")["spec"]["template"]["spec"]["containers"][0]
    probe = container["readinessProbe"]
    assert probe[check] == {"port": 6666}
    (other,) = {"grpc", "tcpSocket"} - {check}
    assert other not in probe
    assert container.get("lifecycle") == sleep


def test_the_cli_creates_an_autoscaling_group(project: Project, kube: KubernetesBackend) -> None:
    created = scaling_group(
        project.root,
        "create",
        "--name",
        "ner",
        "--image",
        IMAGE,
        "--min-replicas",
        "1",
        "--max-replicas",
        "6",
        "--target-cpu",
        "65",
    )
    assert created.returncode == 0, created.stderr
    hpa = _read(kube, *HPA)
    assert (hpa["spec"]["maxReplicas"], hpa["apiVersion"]) == (6, V2)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 65
    deleted = scaling_group(project.root, "delete", "--name", "ner")
    assert deleted.returncode == 0, deleted.stderr
    assert _absent(kube, *HPA)
