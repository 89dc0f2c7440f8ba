"""KEDA's ScaledObject in a real API server (``kube_cluster``, with our minimal ScaledObject CRD):
created for a group at min 0, switched with the HorizontalPodAutoscaler both ways, re-applied
without a change, deleted; a Deployment KEDA put at 0 observes as Idle."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chalk.catalog import Catalog
from chalk.catalog.resources import AutoScalingSpec
from chalk.catalog.specs import GroupSpec
from chalk.common.config import Project
from chalk.deploy.groups import (
    create_group,
    delete_group,
    observe_group,
    update_group,
    wait_until_serving,
)
from chalk.deploy.kubernetes.backend import KubeError, KubernetesBackend
from tests.deploy.kubernetes.helpers import (
    is_absent,
    kube_project,
    make_event,
    read_object,
    scaling_group,
)
from tests.support.kube import KubeCluster

pytestmark = pytest.mark.kube

IMAGE = "ghcr.io/acme/ner:1"
KEDA = ("keda.sh/v1alpha1", "ScaledObject")
MERGE_PATCH = "application/merge-patch+json"
ZERO = AutoScalingSpec(min_replicas=0, max_replicas=3, idle_seconds=60)
CPU_ONLY = AutoScalingSpec(min_replicas=1, max_replicas=3)


@pytest.fixture
def project(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kube_cluster: KubeCluster,
    kube_namespace: str,
) -> Project:
    return kube_project(
        tmp_path,
        monkeypatch,
        kube_cluster.kubeconfig,
        kube_cluster.context,
        kube_namespace,
        prometheus_url="http://prometheus.monitoring:9090",
    )


def _hpa(kube: KubernetesBackend) -> tuple[str, str]:
    return (kube.features().autoscaling, "HorizontalPodAutoscaler")


def _replicas(kube: KubernetesBackend) -> int:
    return int(read_object(kube, "apps/v1", "Deployment")["spec"]["replicas"])


def test_the_cluster_serves_keda(kube: KubernetesBackend) -> None:
    assert kube.features().keda
    assert KEDA in kube.optional_kinds()


def test_a_group_at_min_zero_gets_a_scaled_object_and_switches_with_the_hpa(
    project: Project, catalog: Catalog, kube: KubernetesBackend
) -> None:
    create_group(project, catalog, "ner", GroupSpec(image=IMAGE, scaling=ZERO), port_given=False)
    scaled = read_object(kube, *KEDA)
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 3)
    assert scaled["spec"]["cooldownPeriod"] == 60
    assert [t["type"] for t in scaled["spec"]["triggers"]] == ["cpu", "prometheus"]
    assert is_absent(kube, *_hpa(kube))
    assert _replicas(kube) == 1  # a new group starts serving

    cpu_only = AutoScalingSpec(min_replicas=1, max_replicas=3)
    update_group(project, catalog, "ner", {"scaling": cpu_only})
    assert is_absent(kube, *KEDA)
    assert read_object(kube, *_hpa(kube))["spec"]["minReplicas"] == 1

    update_group(project, catalog, "ner", {"scaling": ZERO})
    assert is_absent(kube, *_hpa(kube))
    assert read_object(kube, *KEDA)["spec"]["minReplicaCount"] == 0

    delete_group(project, catalog, "ner")
    for api_version, kind in [KEDA, _hpa(kube), ("apps/v1", "Deployment"), ("v1", "Service")]:
        assert is_absent(kube, api_version, kind)


WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
Refuse = Callable[[str, str, str], None]


@pytest.fixture
def refuse(kube: KubernetesBackend, kube_namespace: str) -> Iterator[Refuse]:
    """``refuse(api_group, resources, operation)``: a validating webhook no one answers,
    failing closed, for that request in the test namespace only, so that the API server
    refuses it as a policy webhook would."""
    name = f"refuse-{kube_namespace}"
    kube.request(
        "PATCH",
        f"/api/v1/namespaces/{kube_namespace}",
        body={"metadata": {"labels": {"refuse-requests": name}}},
        content_type=MERGE_PATCH,
    )
    webhooks: list[dict[str, Any]] = []

    def install(api_group: str, resources: str, operation: str) -> None:
        rule = {
            "apiGroups": [api_group],
            "apiVersions": ["*"],
            "operations": [operation],
            "resources": [resources],
        }
        webhooks.append(
            {
                "name": f"refuse{len(webhooks)}.scalegroup.test",
                "clientConfig": {"url": "https://127.0.0.1:1/refuse"},
                "rules": [rule],
                "namespaceSelector": {"matchLabels": {"refuse-requests": name}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 2,
            }
        )
        body = {"metadata": {"name": name}, "webhooks": webhooks}
        kube.request("PUT" if len(webhooks) > 1 else "POST", WEBHOOKS, body=body)
        # The API server reads webhook configurations through a watch: wait until it has it.
        deadline = time.monotonic() + 10
        while not _refused(kube, api_group):
            assert time.monotonic() < deadline, "the API server never called the webhook"
            time.sleep(0.1)

    yield install
    if webhooks:
        kube.request("DELETE", f"{WEBHOOKS}/{name}")


def _refused(kube: KubernetesBackend, api_group: str) -> bool:
    """Whether the server refuses a dry run: an update of Deployment ``ner`` (``apps``), else
    the create of a ScaledObject ``probe``."""
    dry_run = [("dryRun", "All")]
    try:
        if api_group == "apps":
            probe = {"metadata": {"annotations": {"probe": str(time.monotonic())}}}
            path = kube.path("apps/v1", "Deployment", "ner")
            kube.request("PATCH", path, query=dry_run, body=probe, content_type=MERGE_PATCH)
        else:
            api_version, kind = KEDA
            body = {
                "apiVersion": api_version,
                "kind": kind,
                "metadata": {"name": "probe"},
                "spec": {"scaleTargetRef": {"name": "probe"}, "triggers": []},
            }
            kube.request("POST", kube.path(api_version, kind), query=dry_run, body=body)
    except KubeError:
        return True
    return False


def test_a_refused_deployment_leaves_the_old_hpa_in_place(
    project: Project, catalog: Catalog, kube: KubernetesBackend, refuse: Refuse
) -> None:
    create_group(
        project, catalog, "ner", GroupSpec(image=IMAGE, scaling=CPU_ONLY), port_given=False
    )
    refuse("apps", "deployments", "UPDATE")
    with pytest.raises(KubeError, match=r"refused PATCH .*/deployments/ner"):
        kube.apply("ner", GroupSpec(image=IMAGE, env={"MODEL": "large"}, scaling=ZERO))
    assert read_object(kube, *_hpa(kube))["spec"]["minReplicas"] == 1
    assert is_absent(kube, *KEDA)


def test_a_refused_scaled_object_fails_the_group_saying_it_has_no_autoscaler(
    project: Project, catalog: Catalog, kube: KubernetesBackend, refuse: Refuse
) -> None:
    create_group(
        project, catalog, "ner", GroupSpec(image=IMAGE, scaling=CPU_ONLY), port_given=False
    )
    refuse("keda.sh", "scaledobjects", "CREATE")
    says = (
        r"scaling group 'ner' has no autoscaler now \(its HorizontalPodAutoscaler was "
        r"deleted\): its ScaledObject was refused: .*; fix the cause, then apply it again "
        r"with `chalk scaling-group update --name ner`"
    )
    with pytest.raises(KubeError, match=says):
        update_group(project, catalog, "ner", {"scaling": ZERO})
    assert is_absent(kube, *_hpa(kube))
    group = catalog.groups.get("ner")
    assert group.status == "Failed"
    assert re.search(says, group.reason)


def test_reapplying_an_unchanged_scaled_object_changes_nothing(
    project: Project, catalog: Catalog, kube: KubernetesBackend
) -> None:
    create_group(project, catalog, "ner", GroupSpec(image=IMAGE, scaling=ZERO), port_given=False)
    before = read_object(kube, *KEDA)["metadata"]["resourceVersion"]
    # In a new second, where an API server writes a custom resource's no-op apply.
    time.sleep(1.0 - time.time() % 1.0 + 0.05)
    group, _spec, changed = update_group(project, catalog, "ner", {})
    assert group is not None
    assert not changed
    assert read_object(kube, *KEDA)["metadata"]["resourceVersion"] == before


def _scale_to_zero(kube: KubernetesBackend) -> None:
    """What KEDA does after the cooldown: the Deployment's replicas to 0."""
    path = kube.path("apps/v1", "Deployment", "ner")
    kube.request("PATCH", path, body={"spec": {"replicas": 0}}, content_type=MERGE_PATCH)


def test_a_group_keda_put_at_zero_is_idle_and_an_update_keeps_it_there(
    project: Project, catalog: Catalog, kube: KubernetesBackend
) -> None:
    create_group(project, catalog, "ner", GroupSpec(image=IMAGE, scaling=ZERO), port_given=False)
    _scale_to_zero(kube)
    now = dt.datetime.now(dt.UTC)
    keda = {"kind": "Normal", "source": "keda-operator"}
    deactivated = "Deactivated ner from 1 to 0"
    make_event(
        kube, ("ScaledObject", "ner"), "KEDAScaleTargetDeactivated", deactivated, now, **keda
    )
    rescaled = "New size: 1"
    make_event(
        kube, ("HorizontalPodAutoscaler", "keda-hpa-ner"), "SuccessfulRescale", rescaled, now
    )

    view = observe_group(project, catalog, "ner")
    assert view.group.status == "Idle"
    assert "scaled to zero by KEDA" in view.group.reason
    assert {e.reason for e in view.events} >= {"KEDAScaleTargetDeactivated", "SuccessfulRescale"}

    update_group(project, catalog, "ner", {"tags": {"team": "nlp"}})
    assert _replicas(kube) == 0  # an apply never wakes it: the next call does
    # Waiting for the update is over at once: the next call starts the new revision.
    assert wait_until_serving(catalog, "ner", project=project, timeout_s=30).status == "Idle"
    result = scaling_group(project.root, "get", "--name", "ner")
    assert result.returncode == 0, result.stderr
    assert "Idle" in result.stdout
    assert "scaledobject/ner: Deactivated ner from 1 to 0" in result.stdout
