"""A group's manifests, validated offline: the Kubernetes schemas (kubernetes-validate, strict)
and the Gateway API's own HTTPRoute CRD schema (jsonschema)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from chalk.catalog.resources import AutoScalingSpec, ScalingGroupResourceRequest
from chalk.catalog.specs import GroupSpec, ModelRef
from chalk.common.errors import ConfigError
from chalk.deploy.kubernetes.manifests import (
    AUTOSCALING_V2,
    AUTOSCALING_V2BETA2,
    Placement,
    ServerFeatures,
    group_manifests,
)

CRD = Path(__file__).parents[2] / "data" / "k8s" / "gateway-api-httproute-crd.yaml"
# The newest release whose schemas still hold autoscaling/v2beta2 (removed in 1.26).
V2BETA2_SCHEMAS = "1.25"
SCHEMAS = "1.31"

PLACEMENT = Placement("ml", "dev", "public", "infra", "models.example.com")
NEW_SERVER = ServerFeatures()
V2 = AUTOSCALING_V2
OLD_SERVER = ServerFeatures.from_discovery((1, 20), {"autoscaling/v1", "autoscaling/v2beta2"})
MODEL = ModelRef("ner", 3)
MODEL_ENV = {"CHALK_INPUT_ARGS": "text,lang"}

SPECS = {
    "model-group": GroupSpec(image="ghcr.io/acme/ner:1", model=MODEL, env=MODEL_ENV, port=6666),
    "plain-group": GroupSpec(image="registry.local:5000/web:2", port=8000),
    "gpu-type-count": GroupSpec(
        image="ghcr.io/acme/llm:1",
        model=MODEL,
        resources=ScalingGroupResourceRequest(gpu="nvidia-tesla-t4:2"),
    ),
    "gpu-count": GroupSpec(
        image="ghcr.io/acme/llm:1", resources=ScalingGroupResourceRequest(gpu="1")
    ),
    "given-resources": GroupSpec(
        image="ghcr.io/acme/ner:1",
        resources=ScalingGroupResourceRequest(cpu="0.5", memory="4Gi"),
    ),
    "tags-and-entrypoint": GroupSpec(
        image="ghcr.io/acme/ner:1",
        tags={"team": "nlp", "tier": "gold"},
        entrypoint=("python", "-m", "server", "--port", "8080"),
    ),
    "autoscaling": GroupSpec(
        image="ghcr.io/acme/ner:1",
        model=MODEL,
        scaling=AutoScalingSpec(
            min_replicas=2,
            max_replicas=6,
            target_cpu_utilization_percentage=65,
            window_seconds=120,
            shutdown_delay_seconds=45,
        ),
    ),
    "autoscaling-defaults": GroupSpec(
        image="ghcr.io/acme/ner:1", scaling=AutoScalingSpec(min_replicas=1, max_replicas=3)
    ),
}


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objects}


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = _by_kind(objects)["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


@functools.cache
def _httproute_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return _closed(copy.deepcopy(version["schema"]["openAPIV3Schema"]))


def _closed(schema: Any) -> Any:
    """The CRD schema made strict: an unknown field, which the server would silently prune,
    fails validation instead (as kubernetes-validate's strict schemas do)."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _closed(value)
    elif isinstance(schema, list):
        for value in schema:
            _closed(value)
    return schema


def _validate(obj: dict[str, Any], *, version: str = SCHEMAS) -> None:
    if obj["kind"] == "HTTPRoute":
        jsonschema.validate(obj, _httproute_schema())
    else:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("features", [NEW_SERVER, OLD_SERVER], ids=["k8s-1.31", "k8s-1.20"])
@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_every_manifest_is_valid(spec: GroupSpec, features: ServerFeatures) -> None:
    objects = group_manifests("ner", spec, PLACEMENT, features)
    version = V2BETA2_SCHEMAS if features is OLD_SERVER else SCHEMAS
    for obj in objects:
        _validate(obj, version=version)
    assert [obj["kind"] for obj in objects][:3] == ["Deployment", "Service", "HTTPRoute"]


def test_the_validators_reject_a_broken_manifest() -> None:
    objects = _by_kind(group_manifests("ner", SPECS["model-group"], PLACEMENT))
    deployment = copy.deepcopy(objects["Deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpcc"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="grpcc"):
        _validate(deployment)
    route = copy.deepcopy(objects["HTTPRoute"])
    route["spec"]["hostnames"] = ["Not A Host"]
    with pytest.raises(jsonschema.ValidationError, match="Not A Host"):
        _validate(route)
    route = copy.deepcopy(objects["HTTPRoute"])
    route["spec"]["parentRefs"][0]["gateway"] = "public"
    with pytest.raises(jsonschema.ValidationError, match="gateway"):
        _validate(route)


def test_a_model_group_serves_grpc() -> None:
    objects = _by_kind(group_manifests("ner", SPECS["model-group"], PLACEMENT))
    container = _container(list(objects.values()))
    assert container["image"] == "ghcr.io/acme/ner:1"
    assert container["ports"] == [
        {"name": "serve", "containerPort": 6666, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9464, "protocol": "TCP"},
    ]
    assert container["readinessProbe"]["grpc"] == {"port": 6666}
    assert "tcpSocket" not in container["readinessProbe"]
    assert {"name": "CHALK_INPUT_ARGS", "value": "text,lang"} in container["env"]
    assert {"name": "CHALK_REMOTE_CALL_PORT", "value": "6666"} in container["env"]
    assert "command" not in container
    service = objects["Service"]["spec"]
    assert service["clusterIP"] == "None"
    assert service["ports"] == [
        {
            "name": "serve",
            "port": 6666,
            "targetPort": 6666,
            "protocol": "TCP",
            "appProtocol": "kubernetes.io/h2c",
        }
    ]
    assert service["selector"] == {
        "app.kubernetes.io/name": "ner",
        "chalk.ai/scaling-group": "ner",
    }


def test_a_plain_group_gets_a_tcp_probe_and_no_h2c() -> None:
    objects = _by_kind(group_manifests("web", SPECS["plain-group"], PLACEMENT))
    assert _container(list(objects.values()))["readinessProbe"]["tcpSocket"] == {"port": 8000}
    assert "appProtocol" not in objects["Service"]["spec"]["ports"][0]


def test_an_old_server_gets_a_tcp_probe_for_a_model_group() -> None:
    assert OLD_SERVER.autoscaling == AUTOSCALING_V2BETA2
    assert not OLD_SERVER.grpc_probe
    probe = _container(group_manifests("ner", SPECS["model-group"], PLACEMENT, OLD_SERVER))[
        "readinessProbe"
    ]
    assert probe["tcpSocket"] == {"port": 6666}
    assert "grpc" not in probe


@pytest.mark.parametrize(
    ("version", "served", "expected"),
    [
        (
            (1, 20),
            {"autoscaling/v2beta2"},
            ServerFeatures(False, AUTOSCALING_V2BETA2, False, keda=False),
        ),
        (
            (1, 23),
            {"autoscaling/v2", "autoscaling/v2beta2"},
            ServerFeatures(False, V2, False, keda=False),
        ),
        ((1, 24), {"autoscaling/v2"}, ServerFeatures(True, V2, False, keda=False)),
        ((1, 29), {"autoscaling/v2"}, ServerFeatures(True, V2, False, keda=False)),
        ((1, 30), {"autoscaling/v2"}, ServerFeatures(True, V2, True, keda=False)),
        ((1, 31), {"autoscaling/v1", "autoscaling/v2"}, ServerFeatures(True, V2, True, keda=False)),
        (
            (1, 31),
            {"autoscaling/v2", "keda.sh/v1alpha1"},
            ServerFeatures(True, V2, True, keda=True),
        ),
    ],
    ids=["1.20", "1.23", "1.24", "1.29", "1.30", "1.31", "1.31-keda"],
)
def test_server_features_follow_discovery(
    version: tuple[int, int], served: set[str], expected: ServerFeatures
) -> None:
    assert ServerFeatures.from_discovery(version, served) == expected


@pytest.mark.parametrize(
    ("version", "grace_s", "sleep_s"),
    [
        ((1, 31), None, 5),
        ((1, 30), 30, 5),
        ((1, 31), 6, 3),
        ((1, 31), 2, 1),
        ((1, 31), 1, None),
        ((1, 31), 0, None),
        ((1, 29), 30, None),
        ((1, 20), 30, None),
    ],
    ids=[
        "1.31-default-grace",
        "1.30",
        "half-of-6s",
        "half-of-2s",
        "no-room-in-1s",
        "no-grace",
        "1.29",
        "1.20",
    ],
)
def test_a_leaving_pod_sleeps_before_sigterm_from_1_30(
    version: tuple[int, int], grace_s: int | None, sleep_s: int | None
) -> None:
    features = ServerFeatures.from_discovery(version, {"autoscaling/v2"})
    spec = GroupSpec(
        image="ghcr.io/acme/ner:1",
        model=MODEL,
        scaling=AutoScalingSpec(shutdown_delay_seconds=grace_s),
    )
    deployment = group_manifests("ner", spec, PLACEMENT, features)[0]
    container = _container([deployment])
    if sleep_s is None:
        assert "lifecycle" not in container
    else:
        assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": sleep_s}}}
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == (
        30 if grace_s is None else grace_s
    )
    # 1.31's schema knows the sleep action; 1.25's (strict) would refuse it, as older servers do.
    _validate(deployment, version=SCHEMAS if version >= (1, 30) else V2BETA2_SCHEMAS)


def test_labels_name_the_group_the_manager_and_the_tags() -> None:
    objects = group_manifests("ner", SPECS["tags-and-entrypoint"], PLACEMENT)
    expected = {
        "app.kubernetes.io/name": "ner",
        "app.kubernetes.io/managed-by": "scalegroup",
        "chalk.ai/scaling-group": "ner",
        "chalk.ai/tag-team": "nlp",
        "chalk.ai/tag-tier": "gold",
    }
    for obj in objects:
        assert obj["metadata"] == {"name": "ner", "namespace": "ml", "labels": expected}
    template = _by_kind(objects)["Deployment"]["spec"]["template"]
    assert template["metadata"]["labels"] == expected


def test_an_entrypoint_is_the_command_and_drops_the_images_cmd() -> None:
    container = _container(group_manifests("ner", SPECS["tags-and-entrypoint"], PLACEMENT))
    assert container["command"] == ["python", "-m", "server", "--port", "8080"]
    assert "args" not in container


def test_default_resources_request_less_than_their_limit() -> None:
    container = _container(group_manifests("ner", SPECS["plain-group"], PLACEMENT))
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }


def test_given_resources_are_both_request_and_limit() -> None:
    container = _container(group_manifests("ner", SPECS["given-resources"], PLACEMENT))
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "4Gi"},
        "limits": {"cpu": "500m", "memory": "4Gi"},
    }


def test_a_gpu_type_and_count_selects_the_accelerator() -> None:
    objects = group_manifests("llm", SPECS["gpu-type-count"], PLACEMENT)
    pod = _by_kind(objects)["Deployment"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "2"


def test_a_gpu_count_alone_selects_no_node() -> None:
    pod = _by_kind(group_manifests("llm", SPECS["gpu-count"], PLACEMENT))["Deployment"]["spec"][
        "template"
    ]["spec"]
    assert "nodeSelector" not in pod
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_no_gpu_means_no_toleration() -> None:
    pod = _by_kind(group_manifests("ner", SPECS["plain-group"], PLACEMENT))["Deployment"]["spec"][
        "template"
    ]["spec"]
    assert "tolerations" not in pod
    assert "nodeSelector" not in pod
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]


@pytest.mark.parametrize(
    ("live", "expected"),
    [
        pytest.param(None, 2, id="new"),
        pytest.param(1, 2, id="below-min"),
        pytest.param(4, 4, id="autoscaler-set"),
        pytest.param(9, 6, id="above-max"),
    ],
)
def test_an_autoscaling_group_keeps_its_live_count_within_bounds(
    live: int | None, expected: int
) -> None:
    objects = group_manifests("ner", SPECS["autoscaling"], PLACEMENT, live_replicas=live)
    assert _by_kind(objects)["Deployment"]["spec"]["replicas"] == expected


def test_a_fixed_size_group_ignores_the_live_count() -> None:
    fixed = GroupSpec(
        image="ghcr.io/acme/ner:1", scaling=AutoScalingSpec(min_replicas=3, max_replicas=3)
    )
    objects = group_manifests("ner", fixed, PLACEMENT, live_replicas=5)
    assert _by_kind(objects)["Deployment"]["spec"]["replicas"] == 3


def test_a_fixed_size_group_has_replicas_and_no_autoscaler() -> None:
    fixed = AutoScalingSpec(min_replicas=3, max_replicas=3)
    spec = GroupSpec(image="ghcr.io/acme/ner:1", scaling=fixed)
    objects = _by_kind(group_manifests("ner", spec, PLACEMENT))
    assert "HorizontalPodAutoscaler" not in objects
    deployment = objects["Deployment"]["spec"]
    assert deployment["replicas"] == 3
    assert deployment["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    assert deployment["template"]["spec"]["terminationGracePeriodSeconds"] == 30


@pytest.mark.parametrize(
    "features", [NEW_SERVER, OLD_SERVER], ids=[AUTOSCALING_V2, AUTOSCALING_V2BETA2]
)
def test_an_autoscaling_group_gets_an_hpa(features: ServerFeatures) -> None:
    objects = _by_kind(group_manifests("ner", SPECS["autoscaling"], PLACEMENT, features))
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == features.autoscaling
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ner"},
        "minReplicas": 2,
        "maxReplicas": 6,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 65},
                },
            }
        ],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120}},
    }
    # A new group starts at its minimum.
    assert objects["Deployment"]["spec"]["replicas"] == 2
    assert objects["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45


def test_an_autoscaler_defaults_to_80_percent_cpu_and_a_60s_window() -> None:
    hpa = _by_kind(group_manifests("ner", SPECS["autoscaling-defaults"], PLACEMENT))[
        "HorizontalPodAutoscaler"
    ]["spec"]
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 80
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 60


def test_the_route_names_the_gateway_and_the_hostname() -> None:
    route = _by_kind(group_manifests("ner", SPECS["model-group"], PLACEMENT))["HTTPRoute"]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["hostnames"] == ["dev-ner.models.example.com"]
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "public",
            "namespace": "infra",
        }
    ]
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"kind": "Service", "name": "ner", "port": 6666}
    ]
    assert PLACEMENT.url("ner") == "https://dev-ner.models.example.com"


def test_a_gateway_in_the_groups_namespace_names_none() -> None:
    placement = Placement("ml", "prod", "public", None, "models.example.com")
    route = _by_kind(group_manifests("ner", SPECS["plain-group"], placement))["HTTPRoute"]
    assert "namespace" not in route["spec"]["parentRefs"][0]
    assert route["spec"]["hostnames"] == ["prod-ner.models.example.com"]
    _validate(route)


def test_no_gateway_means_no_route() -> None:
    placement = Placement("ml", "dev")
    kinds = [obj["kind"] for obj in group_manifests("ner", SPECS["autoscaling"], placement)]
    assert kinds == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    assert placement.url("ner") is None


@pytest.mark.parametrize(
    ("name", "domain", "missing"),
    [("public", None, "domain"), (None, "models.example.com", "name")],
    ids=["no-domain", "no-name"],
)
def test_half_a_gateway_is_a_config_error(
    name: str | None, domain: str | None, missing: str
) -> None:
    with pytest.raises(ConfigError, match=rf"kubernetes\.gateway has a .* but no {missing}"):
        Placement("ml", "dev", name, None, domain)
