"""What the Kubernetes backend's tests share: a project on a cluster, reading its objects, and
the ``chalk`` console script, run for real."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from chalk.common.config import Project, load_project
from chalk.deploy.kubernetes.backend import KubeError, KubernetesBackend

__all__ = [
    "chalk",
    "is_absent",
    "kube_project",
    "make_event",
    "make_pod",
    "read_object",
    "scaling_group",
]

CHALK = str(Path(sys.executable).with_name("chalk"))
GATEWAY = {"name": "public", "namespace": "infra", "domain": "models.example.com"}
MERGE_PATCH = "application/merge-patch+json"


def kube_project(
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    kubeconfig: Path,
    context: str,
    namespace: str,
    *,
    prometheus_url: str | None = None,
) -> Project:
    """A ``backend: kubernetes`` project at ``root`` on that cluster, with the gateway (and
    ``prometheus_url`` when given), run from outside the cluster (``KUBERNETES_SERVICE_HOST``
    unset) and its catalog in ``root``."""
    kubernetes: dict[str, Any] = {"namespace": namespace, "context": context, "gateway": GATEWAY}
    if prometheus_url is not None:
        kubernetes["prometheus_url"] = prometheus_url
    config = {"project": "demo", "backend": "kubernetes", "kubernetes": kubernetes}
    (root / "chalk.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("CHALK_CATALOG_URL", raising=False)
    monkeypatch.chdir(root)
    return load_project(root / "chalk.yaml")


def read_object(kube: KubernetesBackend, api_version: str, kind: str, name: str = "ner") -> Any:
    """The object ``kind``/``name`` in the backend's namespace, as the server stores it."""
    return kube.request("GET", kube.path(api_version, kind, name))


def is_absent(kube: KubernetesBackend, api_version: str, kind: str, name: str = "ner") -> bool:
    """Whether the server answers 404 for that object."""
    try:
        read_object(kube, api_version, kind, name)
    except KubeError as error:
        return error.status == 404
    return False


def chalk(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``chalk ARGS`` in the project at ``root``, with this process's env."""
    return subprocess.run(
        [CHALK, *args], cwd=root, capture_output=True, text=True, env=dict(os.environ), check=False
    )


def scaling_group(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``chalk scaling-group ARGS`` in the project at ``root``."""
    return chalk(root, "scaling-group", *args)


def make_pod(
    kube: KubernetesBackend,
    name: str,
    status: dict[str, Any],
    *,
    group: str = "ner",
    image: str = "ghcr.io/acme/ner:1",
) -> None:
    """A pod of ``group`` (by its labels) with ``status``, as if a kubelet reported it (our
    API server runs no nodes)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/name": group, "chalk.ai/scaling-group": group},
        },
        "spec": {
            "containers": [{"name": group, "image": image, "ports": [{"containerPort": 8080}]}]
        },
    }
    kube.request("POST", kube.path("v1", "Pod"), body=pod)
    path = kube.path("v1", "Pod", name) + "/status"
    kube.request("PATCH", path, body={"status": status}, content_type=MERGE_PATCH)


def make_event(
    kube: KubernetesBackend,
    about: tuple[str, str],
    reason: str,
    message: str,
    at: dt.datetime,
    *,
    kind: str = "Warning",
    source: str = "kubelet",
) -> None:
    """An Event about the object ``about`` (kind, name), as a controller would write it."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{about[1]}.{reason.lower()}.{at.timestamp():.0f}"},
        "involvedObject": {
            "kind": about[0],
            "name": about[1],
            "namespace": kube.placement.namespace,
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": source},
    }
    kube.request("POST", kube.path("v1", "Event"), body=event)
