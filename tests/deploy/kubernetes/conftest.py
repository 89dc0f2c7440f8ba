"""Kubernetes fixtures: one real API server for the session, and a fresh namespace per test.

Each test module defines ``project`` (a chalk.yaml pointing at its cluster); ``catalog`` and
``kube`` here build on whichever it defines.

The server is our own etcd + kube-apiserver 1.20 on 127.0.0.1 (``tests/support/kube.py``), or
the cluster of ``$SCALEGROUP_TEST_KUBECONFIG`` (and ``$SCALEGROUP_TEST_KUBE_CONTEXT``) when set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from kubernetes import client

from chalk.catalog import Catalog, open_catalog
from chalk.common.config import Project
from chalk.deploy.kubernetes.backend import KubernetesBackend, connect
from tests.deploy.kubernetes.helpers import kube_project
from tests.support.kube import (
    REQUIRE_ENV,
    KubeCluster,
    KubeUnavailableError,
    create_namespace,
    delete_namespace,
    open_cluster,
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``kube`` every test that uses the cluster, so ``-m "not kube"`` leaves it out."""
    for item in items:
        if "kube_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kube)


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    """The session's API server; skips without one, fails when one is required (CI)."""
    with ExitStack() as stack:
        try:
            cluster = stack.enter_context(open_cluster())
        except KubeUnavailableError as error:
            problem = str(error)
        else:
            problem = None
        if problem is not None:
            if os.environ.get(REQUIRE_ENV) == "1" or os.environ.get("CI") == "true":
                pytest.fail(
                    f"no Kubernetes API server for the tests, and {REQUIRE_ENV}=1 or CI=true "
                    f"says they may not be skipped: {problem}",
                    pytrace=False,
                )
            pytest.skip(f"no Kubernetes API server: {problem}")
        yield cluster


@pytest.fixture(scope="session")
def kube_api_client(kube_cluster: KubeCluster) -> Iterator[client.ApiClient]:
    """An ``ApiClient`` for the session's cluster, shared by the tests."""
    with kube_cluster.api_client() as api_client:
        yield api_client


@pytest.fixture
def kube_namespace(kube_api_client: client.ApiClient) -> Iterator[str]:
    """The name of a new, empty namespace, deleted after the test."""
    name = create_namespace(kube_api_client)
    yield name
    delete_namespace(kube_api_client, name)


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kube_cluster: KubeCluster, kube_namespace: str
) -> Project:
    """A project on the session's cluster, in the test's own namespace (a module with another
    chalk.yaml defines its own ``project``)."""
    return kube_project(
        tmp_path, monkeypatch, kube_cluster.kubeconfig, kube_cluster.context, kube_namespace
    )


@pytest.fixture
def catalog(project: Project) -> Catalog:
    return open_catalog(project)


@pytest.fixture
def kube(project: Project) -> Iterator[KubernetesBackend]:
    backend = connect(project)
    yield backend
    backend.close()
