"""The feature server's manifests, validated offline against the Kubernetes schemas
(kubernetes-validate, strict): probes, resources, the Secret and its references."""

from __future__ import annotations

import base64
from typing import Any

import kubernetes_validate
import pytest

from chalk.catalog.resources import AutoScalingSpec, ScalingGroupResourceRequest
from chalk.common.errors import ValidationError
from chalk.deploy.kubernetes.manifests import ServerFeatures
from chalk.deploy.kubernetes.server import ServerSecret, ServerSpec, server_manifests

IMAGE = "ghcr.io/acme/features:1"
NEW_SERVER = ServerFeatures()
OLD_SERVER = ServerFeatures.from_discovery((1, 20), {"autoscaling/v1", "autoscaling/v2beta2"})
SECRET = ServerSecret("postgresql://chalk:pw@db.ml:5432/chalk", "s3cret")
SPECS = {
    "fixed": ServerSpec(image=IMAGE),
    "autoscaling": ServerSpec(
        image=IMAGE,
        scaling=AutoScalingSpec(min_replicas=2, max_replicas=6),
        resources=ScalingGroupResourceRequest(cpu="2", memory="4Gi"),
        workers=4,
    ),
    "existing-secret": ServerSpec(image=IMAGE, existing_secret="features-secrets"),
}


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objects}


def _manifests(spec: ServerSpec, **kwargs: Any) -> dict[str, dict[str, Any]]:
    secret = None if spec.existing_secret else SECRET
    return _by_kind(server_manifests("chalk-server", spec, "ml", secret=secret, **kwargs))


def _pod(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return dict(objects["Deployment"]["spec"]["template"]["spec"])


@pytest.mark.parametrize(
    ("features", "schemas"), [(NEW_SERVER, "1.31"), (OLD_SERVER, "1.25")], ids=["1.31", "1.20"]
)
@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_every_manifest_is_valid(spec: ServerSpec, features: ServerFeatures, schemas: str) -> None:
    for obj in _manifests(spec, features=features).values():
        kubernetes_validate.validate(obj, schemas, strict=True)


def test_the_container_serves_on_every_address_with_the_token_required() -> None:
    (container,) = _pod(_manifests(SPECS["autoscaling"]))["containers"]
    assert container["image"] == IMAGE
    assert container["command"] == [
        *("chalk", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "4"),
        *("--token-file", "/var/run/secrets/chalk/token"),
    ]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }


def test_default_resources_are_a_groups_defaults() -> None:
    (container,) = _pod(_manifests(SPECS["fixed"]))["containers"]
    assert container["resources"] == ScalingGroupResourceRequest().requests_and_limits()


@pytest.mark.parametrize(
    ("spec", "secret_name"),
    [(SPECS["fixed"], "chalk-server"), (SPECS["existing-secret"], "features-secrets")],
    ids=["own-secret", "existing-secret"],
)
def test_the_catalog_url_and_token_come_from_the_secret(spec: ServerSpec, secret_name: str) -> None:
    objects = _manifests(spec)
    pod = _pod(objects)
    (container,) = pod["containers"]
    assert container["env"] == [
        {
            "name": "CHALK_CATALOG_URL",
            "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "catalog-url"}},
        }
    ]
    (volume,) = pod["volumes"]
    assert volume["secret"] == {
        "secretName": secret_name,
        "items": [{"key": "token", "path": "token"}],
    }
    assert container["volumeMounts"][0]["name"] == volume["name"]
    assert ("Secret" in objects) is (spec.existing_secret is None)


def test_the_own_secret_holds_both_values_and_its_checksum_rolls_the_pods() -> None:
    objects = _manifests(SPECS["fixed"])
    data = objects["Secret"]["data"]
    decoded = {key: base64.b64decode(value).decode() for key, value in data.items()}
    assert decoded == {"catalog-url": SECRET.catalog_url, "token": "s3cret"}
    before = objects["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    rotated = server_manifests(
        "chalk-server", SPECS["fixed"], "ml", secret=ServerSecret(SECRET.catalog_url, "new")
    )
    after = _by_kind(rotated)["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert before != after
    assert "s3cret" not in repr(SECRET)


def test_labels_name_the_server_and_the_manager() -> None:
    for obj in _manifests(SPECS["autoscaling"]).values():
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "scalegroup"
        assert labels["chalk.ai/feature-server"] == "chalk-server"
        assert obj["metadata"]["namespace"] == "ml"


def test_the_service_fronts_the_pods_on_port_80() -> None:
    objects = _manifests(SPECS["fixed"])
    service = objects["Service"]["spec"]
    assert service["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("features", [NEW_SERVER, OLD_SERVER], ids=["v2", "v2beta2"])
def test_an_autoscaling_server_gets_an_hpa_and_keeps_its_live_count(
    features: ServerFeatures,
) -> None:
    objects = _manifests(SPECS["autoscaling"], features=features, live_replicas=9)
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == features.autoscaling
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "chalk-server"
    assert objects["Deployment"]["spec"]["replicas"] == 6
    assert "HorizontalPodAutoscaler" not in _manifests(SPECS["fixed"])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"resources": ScalingGroupResourceRequest(gpu="1")}, "takes no GPU"),
        ({"workers": 0}, "--workers is out of range: expected 1 to 256"),
    ],
    ids=["gpu", "no-workers"],
)
def test_a_spec_the_server_cannot_run_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServerSpec(image=IMAGE, **fields)
