"""Smoke tests of the Kubernetes test fixture: the API server the backend's tests run against.

Each one checks a fact the backend relies on: the server's version and API groups, server-side
apply through the official client, the HTTPRoute schema, and reading a Service delete's reply.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.kube import KubeCluster, strip_empty_defaults

APPLY = "application/apply-patch+yaml"
FIELD_MANAGER = "scalegroup"


def _ours_only(cluster: KubeCluster) -> None:
    if cluster.runs_controllers:
        pytest.skip("a fact about our own kube-apiserver 1.20, not about the given cluster")


def _deployment(name: str, image: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "model", "image": image}]},
            },
        },
    }


def _apply_deployment(
    api_client: client.ApiClient, namespace: str, body: dict[str, Any]
) -> client.V1Deployment:
    return client.AppsV1Api(api_client).patch_namespaced_deployment(
        name=body["metadata"]["name"],
        namespace=namespace,
        body=body,
        field_manager=FIELD_MANAGER,
        force=True,
        _content_type=APPLY,
    )


def _httproute(name: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "scalegroup-gateway"}],
            "hostnames": [f"{name}.models.example.com"],
            "rules": [{"backendRefs": [{"name": name, "port": port}]}],
        },
    }


def test_the_server_is_kubernetes_1_20(kube_cluster: KubeCluster) -> None:
    _ours_only(kube_cluster)
    with kube_cluster.api_client() as api_client:
        version = client.VersionApi(api_client).get_code()
    assert (version.major, version.minor, version.git_version) == ("1", "20", "v1.20.2")


def test_discovery_serves_autoscaling_v2beta2_and_not_v2(kube_cluster: KubeCluster) -> None:
    _ours_only(kube_cluster)
    with kube_cluster.api_client() as api_client:
        groups = client.ApisApi(api_client).get_api_versions().groups
    autoscaling = next(group for group in groups if group.name == "autoscaling")
    versions = {version.version for version in autoscaling.versions}
    assert "v2beta2" in versions
    assert "v2" not in versions


def test_a_client_from_the_kubeconfig_sees_the_tests_namespace(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    with kube_cluster.api_client() as api_client:
        namespace = client.CoreV1Api(api_client).read_namespace(name=kube_namespace)
    assert namespace.status.phase == "Active"


def test_server_side_apply_of_a_deployment_then_reapplying_changes_nothing(
    kube_api_client: client.ApiClient, kube_namespace: str
) -> None:
    body = _deployment("ner", "registry.example.com/ner:1")
    first = _apply_deployment(kube_api_client, kube_namespace, body)
    again = _apply_deployment(kube_api_client, kube_namespace, body)

    assert first.spec.template.spec.containers[0].image == "registry.example.com/ner:1"
    assert again.metadata.resource_version == first.metadata.resource_version
    managers = {(entry.manager, entry.operation) for entry in again.metadata.managed_fields}
    assert (FIELD_MANAGER, "Apply") in managers


def test_server_side_apply_of_a_changed_deployment_updates_it(
    kube_api_client: client.ApiClient, kube_namespace: str
) -> None:
    first = _apply_deployment(
        kube_api_client, kube_namespace, _deployment("ner", "registry.example.com/ner:1")
    )
    second = _apply_deployment(
        kube_api_client, kube_namespace, _deployment("ner", "registry.example.com/ner:2")
    )

    assert second.metadata.resource_version != first.metadata.resource_version
    assert second.spec.template.spec.containers[0].image == "registry.example.com/ner:2"


def test_a_test_writes_the_status_a_deployment_controller_would(
    kube_api_client: client.ApiClient, kube_namespace: str
) -> None:
    apps = client.AppsV1Api(kube_api_client)
    _apply_deployment(kube_api_client, kube_namespace, _deployment("ner", "ner:1"))
    status = {"status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}}
    apps.patch_namespaced_deployment_status(name="ner", namespace=kube_namespace, body=status)

    read = apps.read_namespaced_deployment_status(name="ner", namespace=kube_namespace)
    assert (read.status.replicas, read.status.ready_replicas) == (2, 2)


def test_the_httproute_crd_accepts_a_valid_route(
    kube_api_client: client.ApiClient, kube_namespace: str
) -> None:
    routes = client.CustomObjectsApi(kube_api_client)
    routes.create_namespaced_custom_object(
        group="gateway.networking.k8s.io",
        version="v1",
        namespace=kube_namespace,
        plural="httproutes",
        body=_httproute("ner", 8080),
    )

    read = routes.get_namespaced_custom_object(
        group="gateway.networking.k8s.io",
        version="v1",
        namespace=kube_namespace,
        plural="httproutes",
        name="ner",
    )
    assert read["spec"]["rules"][0]["backendRefs"][0]["port"] == 8080


@pytest.mark.parametrize(
    ("route", "complaint"),
    [
        pytest.param(_httproute("ner", 70000), "port", id="port-above-65535"),
        pytest.param(
            {**_httproute("ner", 8080), "spec": {"hostnames": ["Not A Hostname!"]}},
            "hostnames",
            id="bad-hostname",
        ),
    ],
)
def test_the_httproute_crd_rejects_an_invalid_route(
    kube_api_client: client.ApiClient, kube_namespace: str, route: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ApiException, match=complaint) as raised:
        client.CustomObjectsApi(kube_api_client).create_namespaced_custom_object(
            group="gateway.networking.k8s.io",
            version="v1",
            namespace=kube_namespace,
            plural="httproutes",
            body=route,
        )
    assert raised.value.status == 422


def test_a_service_delete_reply_is_read_without_preloading(
    kube_api_client: client.ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_api_client)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ner"},
        "spec": {
            "selector": {"app.kubernetes.io/name": "ner"},
            "ports": [{"name": "grpc", "port": 8080, "appProtocol": "kubernetes.io/h2c"}],
        },
    }
    core.create_namespaced_service(namespace=kube_namespace, body=service)

    reply = core.delete_namespaced_service(
        name="ner", namespace=kube_namespace, _preload_content=False
    )

    assert reply.status == 200
    assert json.loads(reply.data)["kind"] in {"Status", "Service"}
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_service(name="ner", namespace=kube_namespace)
    assert raised.value.status == 404


@pytest.mark.parametrize(
    ("schema", "stripped"),
    [
        pytest.param({"default": "", "type": "string"}, {"type": "string"}, id="empty-default"),
        pytest.param({"default": "Exact"}, {"default": "Exact"}, id="other-default-kept"),
        pytest.param(
            {"items": [{"properties": {"a": {"default": ""}}}]},
            {"items": [{"properties": {"a": {}}}]},
            id="nested",
        ),
        pytest.param({"properties": {"default": {}}}, {"properties": {"default": {}}}, id="field"),
    ],
)
def test_strip_empty_defaults(schema: dict[str, Any], stripped: dict[str, Any]) -> None:
    assert strip_empty_defaults(schema) == stripped
