"""The dashboard on Kubernetes reads groups and pods from a real API server (deploy's read-only
``observe``): a pod that cannot pull its image breaks its group, with the reason.

It tests ``chalk.server.dashboard.views`` but lives here, beside the cluster this part of the
suite starts anyway (under tests/server it would start a second API server). So do the
figures of now Prometheus gives on Kubernetes, and the pages when it does not answer."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette

from chalk.catalog import Catalog, open_catalog
from chalk.catalog.specs import GroupSpec
from chalk.common.config import Project, load_project
from chalk.deploy.groups import create_group
from chalk.deploy.kubernetes.backend import KubernetesBackend
from chalk.server.dashboard.routes import Dashboard, dashboard_routes
from chalk.server.dashboard.views import Live, group_document, overview_document
from tests.deploy.kubernetes.helpers import make_pod
from tests.support.runtime_process import free_port

pytestmark = pytest.mark.kube

IMAGE = "ghcr.io/acme/ner:1"
POD = "ner-5d9c7-abcde"
RUNNING = {
    "phase": "Running",
    "containerStatuses": [
        {
            "name": "ner", "image": IMAGE, "imageID": "", "ready": True, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-01-02T03:04:05Z"}},
        }
    ],
}  # fmt: skip


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


def test_prometheus_figures_of_now_fill_the_group_and_its_pods(
    project: Project, catalog: Catalog, kube: KubernetesBackend
) -> None:
    create_group(project, catalog, "ner", GroupSpec(image=IMAGE), port_given=False)
    make_pod(kube, POD, RUNNING)
    key = ("ner", POD)
    live = Live(
        "prometheus",
        calls_per_second={"ner": 2.5},
        in_flight={key: 3.0},
        cpu_millicores={key: 120.4},
        memory_bytes={key: 5e8},
    )

    overview = overview_document(project, catalog, live)
    detail = group_document(project, catalog, "ner", live)

    assert overview["groups"][0]["callsPerSecond"] == 2.5
    (replica,) = detail["replicas"]
    assert (replica["inFlight"], replica["cpuMillicores"], replica["memoryBytes"]) == (
        3,
        120,
        500_000_000,
    )


def test_a_prometheus_that_does_not_answer_leaves_the_figures_unknown_and_pages_answer(
    project: Project, catalog: Catalog, kube: KubernetesBackend
) -> None:
    create_group(project, catalog, "ner", GroupSpec(image=IMAGE), port_given=False)
    make_pod(kube, POD, RUNNING)
    config = yaml.safe_load(project.config_path.read_text())
    away = f"http://127.0.0.1:{free_port()}"
    config["kubernetes"]["prometheus_url"] = away
    project.config_path.write_text(yaml.safe_dump(config))
    dashboard = Dashboard(load_project(project.config_path), catalog)

    async def pages() -> tuple[Any, Any]:
        await dashboard.start()
        app = Starlette(routes=dashboard_routes(dashboard, lambda _name, handler: handler))
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
                overview = await http.get("/api/dashboard/overview")
                detail = await http.get("/api/dashboard/groups/ner")
        finally:
            await dashboard.stop()
        assert (overview.status_code, detail.status_code) == (200, 200), detail.text
        return overview.json(), detail.json()

    overview, detail = asyncio.run(pages())

    assert overview["series"]["source"] == "prometheus"
    assert overview["series"]["note"].startswith(f"Prometheus at {away} did not answer")
    assert overview["groups"][0]["callsPerSecond"] is None
    (replica,) = detail["replicas"]
    assert (replica["inFlight"], replica["cpuMillicores"], replica["memoryBytes"]) == (
        None,
        None,
        None,
    )
