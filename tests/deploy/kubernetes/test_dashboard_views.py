"""The dashboard on Kubernetes reads groups and pods from a real API server (deploy's read-only
``observe``): a pod that cannot pull its image breaks its group, with the reason.

It tests ``chalk.server.dashboard.views`` but lives here, beside the cluster this part of the
suite starts anyway (under tests/server it would start a second API server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalk.catalog import Catalog, open_catalog
from chalk.catalog.specs import GroupSpec
from chalk.common.config import Project
from chalk.deploy.groups import create_group
from chalk.deploy.kubernetes.backend import KubernetesBackend
from chalk.server.dashboard.views import Live, group_document, overview_document
from tests.deploy.kubernetes.helpers import kube_project, make_pod
from tests.support.kube import KubeCluster

pytestmark = pytest.mark.kube

IMAGE = "ghcr.io/acme/ner:1"


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kube_cluster: KubeCluster, kube_namespace: str
) -> Project:
    return kube_project(
        tmp_path, monkeypatch, kube_cluster.kubeconfig, kube_cluster.context, kube_namespace
    )


@pytest.fixture
def catalog(project: Project) -> Catalog:
    return open_catalog(project)


def test_a_pod_that_cannot_pull_its_image_breaks_its_group(
    project: Project, catalog: Catalog, kube: KubernetesBackend
) -> None:
    create_group(project, catalog, "ner", GroupSpec(image=IMAGE), port_given=False)
    waiting = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{IMAGE}"'}
    container = {
        "name": "ner", "image": IMAGE, "imageID": "", "ready": False, "restartCount": 0,
        "state": {"waiting": waiting},
    }  # fmt: skip
    make_pod(kube, "ner-5d9c7-abcde", {"phase": "Pending", "containerStatuses": [container]})
    live = Live("none", "no Prometheus")

    overview = overview_document(project, catalog, live)
    detail = group_document(project, catalog, "ner", live)

    assert (overview["backend"], overview["series"]) == (
        "kubernetes",
        {"source": "none", "note": "no Prometheus"},
    )
    (group,) = overview["groups"]
    assert (group["status"], group["broken"]) == ("ImagePullBackOff", True)
    assert group["brokenReason"].startswith("ImagePullBackOff: ")
    assert "Back-off pulling image" in group["brokenReason"]
    (replica,) = detail["replicas"]
    assert (replica["name"], replica["state"], replica["ready"]) == (
        "ner-5d9c7-abcde",
        "ImagePullBackOff",
        False,
    )
    assert replica["inFlight"] is None
