"""KEDA without a cluster: the ScaledObject a group renders, validated against KEDA's own models
(``cloudcoil-models-keda``); the demand query; the refusals; ``--dry-run -o yaml``; Idle at 0."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject

from chalk.catalog import open_catalog
from chalk.catalog.errors import ValidationError
from chalk.catalog.records import Event
from chalk.catalog.resources import AutoScalingSpec
from chalk.catalog.specs import GroupSpec, ModelRef
from chalk.common.config import load_project
from chalk.deploy.kubernetes.keda import (
    METRICS_PORT,
    WAKE_ONLY_THRESHOLD,
    demand_query,
    refuse_what_needs_keda,
)
from chalk.deploy.kubernetes.manifests import Placement, ServerFeatures, group_manifests
from chalk.deploy.kubernetes.observed import group_status
from chalk.deploy.states import GroupStatus
from tests.deploy.kubernetes.helpers import scaling_group

PROMETHEUS = "http://prometheus.monitoring:9090"
PLACEMENT = Placement("ml", "dev", prometheus_url=PROMETHEUS)
IMAGE = "ghcr.io/acme/ner:1"
MODEL = ModelRef("ner", 3)
# Every shape of ScaledObject we render.
KEDA_SCALINGS = {
    "zero-on-cpu": AutoScalingSpec(min_replicas=0, max_replicas=3),
    "zero-on-demand": AutoScalingSpec(
        min_replicas=0, max_replicas=8, queue_depth_target=4, idle_seconds=60
    ),
    "demand-from-one": AutoScalingSpec(
        min_replicas=1,
        max_replicas=5,
        queue_depth_target=2,
        target_cpu_utilization_percentage=50,
        window_seconds=0,
    ),
}


def _scaled_object(scaling: AutoScalingSpec, placement: Placement = PLACEMENT) -> dict[str, Any]:
    spec = GroupSpec(image=IMAGE, model=MODEL, scaling=scaling)
    (found,) = [m for m in group_manifests("ner", spec, placement) if m["kind"] == "ScaledObject"]
    return found


@pytest.mark.parametrize("scaling", KEDA_SCALINGS.values(), ids=KEDA_SCALINGS.keys())
def test_every_scaled_object_is_valid_for_kedas_models(scaling: AutoScalingSpec) -> None:
    rendered = _scaled_object(scaling)
    model = ScaledObject.model_validate(rendered)
    # Strict: a field KEDA's models do not know would be dropped, so the round trip differs.
    assert model.model_dump(mode="json", by_alias=True, exclude_none=True) == rendered


def test_the_round_trip_catches_a_field_keda_does_not_know() -> None:
    rendered = _scaled_object(KEDA_SCALINGS["zero-on-cpu"])
    rendered["spec"]["triggers"][0]["threshold"] = "80"  # a HPA habit, not a trigger field
    model = ScaledObject.model_validate(rendered)
    assert model.model_dump(mode="json", by_alias=True, exclude_none=True) != rendered


def test_a_group_at_zero_scales_on_cpu_and_wakes_on_demand() -> None:
    scaling = AutoScalingSpec(min_replicas=0, max_replicas=3, idle_seconds=120, window_seconds=30)
    obj = _scaled_object(scaling)
    assert obj["metadata"]["labels"]["chalk.ai/scaling-group"] == "ner"
    spec = obj["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ner"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 3)
    assert (spec["cooldownPeriod"], spec["pollingInterval"]) == (120, 5)
    # A new ScaledObject has no last active trigger: it waits idle_seconds all the same.
    assert spec["initialCooldownPeriod"] == 120
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == {"scaleDown": {"stabilizationWindowSeconds": 30}}
    cpu, demand = spec["triggers"]
    assert cpu == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "80"}}
    assert demand["type"] == "prometheus"
    assert demand["name"] == "demand"
    assert demand["metadata"] == {
        "serverAddress": PROMETHEUS,
        "query": demand_query("ml", "ner"),
        "threshold": str(WAKE_ONLY_THRESHOLD),
        "activationThreshold": "0",
    }


def test_a_queue_depth_target_is_the_demand_triggers_threshold() -> None:
    (cpu, demand) = _scaled_object(KEDA_SCALINGS["demand-from-one"])["spec"]["triggers"]
    assert cpu["metadata"] == {"value": "50"}
    assert (demand["metricType"], demand["metadata"]["threshold"]) == ("AverageValue", "2")


def test_the_demand_query_counts_waiting_plus_the_larger_in_flight_figure() -> None:
    query = demand_query("ml", "ner")
    assert 'sum(chalk_server_model_calls_waiting{namespace="ml",group="ner"}) or vector(0)' in query
    servers = 'sum(chalk_server_model_calls_in_flight{namespace="ml",group="ner"})'
    runtimes = 'sum(chalk_remote_call_in_flight{namespace="ml",pod=~"ner-[a-z0-9]+-[a-z0-9]+"})'
    assert f'max(label_replace({servers}, "from", "server", "", "")' in query
    assert f'or label_replace({runtimes}, "from", "runtime", "", ""))' in query
    assert query.count("or vector(0)") == 2  # one element even when nothing reports


@pytest.mark.parametrize(
    ("scaling", "placement", "features", "last"),
    [
        (KEDA_SCALINGS["zero-on-cpu"], PLACEMENT, ServerFeatures(), "ScaledObject"),
        (AutoScalingSpec(max_replicas=3), PLACEMENT, ServerFeatures(), "HorizontalPodAutoscaler"),
        (AutoScalingSpec(queue_depth_target=3), PLACEMENT, ServerFeatures(), "Service"),
        # A queue-depth target stored before, where KEDA or Prometheus is missing: the CPU HPA.
        (
            KEDA_SCALINGS["demand-from-one"],
            PLACEMENT,
            ServerFeatures(keda=False),
            "HorizontalPodAutoscaler",
        ),
        (
            KEDA_SCALINGS["demand-from-one"],
            Placement("ml", "dev"),
            ServerFeatures(),
            "HorizontalPodAutoscaler",
        ),
    ],
    ids=["zero", "cpu-only", "fixed-count-target", "stored-target-no-keda", "stored-target-no-url"],
)
def test_a_group_gets_a_scaled_object_only_when_it_needs_and_may_have_one(
    scaling: AutoScalingSpec, placement: Placement, features: ServerFeatures, last: str
) -> None:
    spec = GroupSpec(image=IMAGE, scaling=scaling)
    kinds = [m["kind"] for m in group_manifests("ner", spec, placement, features)]
    assert kinds[-1] == last
    assert not {"ScaledObject", "HorizontalPodAutoscaler"} <= set(kinds)


@pytest.mark.parametrize(
    ("placement", "features", "missing"),
    [
        (PLACEMENT, ServerFeatures(keda=False), r"the cluster serves no KEDA ScaledObject"),
        (Placement("ml", "dev"), ServerFeatures(keda=True), r"chalk\.yaml names no Prometheus"),
    ],
    ids=["no-keda", "no-prometheus-url"],
)
def test_zero_never_renders_without_keda_and_says_what_is_missing(
    placement: Placement, features: ServerFeatures, missing: str
) -> None:
    spec = GroupSpec(image=IMAGE, scaling=KEDA_SCALINGS["zero-on-cpu"])
    with pytest.raises(ValidationError, match=rf"scaling group 'ner' scales to zero.*{missing}"):
        group_manifests("ner", spec, placement, features)


def test_a_new_group_at_min_zero_starts_at_one_and_an_apply_keeps_zero() -> None:
    spec = GroupSpec(image=IMAGE, scaling=KEDA_SCALINGS["zero-on-cpu"])

    def replicas(live: int | None) -> int:
        return int(
            group_manifests("ner", spec, PLACEMENT, live_replicas=live)[0]["spec"]["replicas"]
        )

    assert (replicas(None), replicas(0), replicas(2), replicas(9)) == (1, 0, 2, 3)


@pytest.mark.parametrize("port", [8080, METRICS_PORT], ids=["usual", "group-on-9464"])
def test_every_pod_exports_its_runtimes_metrics_for_prometheus(port: int) -> None:
    spec = GroupSpec(image=IMAGE, model=MODEL, port=port)
    deployment = group_manifests("ner", spec, PLACEMENT)[0]
    template = deployment["spec"]["template"]
    (container,) = template["spec"]["containers"]
    metrics = METRICS_PORT if port != METRICS_PORT else METRICS_PORT + 1
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["CHALK_REMOTE_CALL_METRICS_PORT"] == str(metrics)
    assert {"name": "metrics", "containerPort": metrics, "protocol": "TCP"} in container["ports"]
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(metrics),
        "prometheus.io/path": "/metrics",
    }


KEDA_MISSING = "the cluster of context 'prod' serves no KEDA ScaledObject (keda.sh/v1alpha1)"
URL_MISSING = "/p/chalk.yaml names no Prometheus server"


@pytest.mark.parametrize(
    ("scaling", "keda", "url", "wanted"),
    [
        (
            AutoScalingSpec(min_replicas=0, max_replicas=2),
            False,
            PROMETHEUS,
            f"scaling group 'ner' scales to zero (min_replicas=0), which on Kubernetes needs KEDA "
            f"reading the group's demand from Prometheus, and {KEDA_MISSING}: expected KEDA "
            f"installed in the cluster of context 'prod'; install KEDA "
            f"(https://keda.sh/docs/latest/deploy/), or give --min-replicas 1 or more and "
            f"--queue-depth-target none",
        ),
        (
            AutoScalingSpec(max_replicas=3, queue_depth_target=4),
            True,
            None,
            f"scaling group 'ner' scales on demand (queue_depth_target=4), which on Kubernetes "
            f"needs KEDA reading the group's demand from Prometheus, and {URL_MISSING}: expected "
            f"kubernetes.prometheus_url in /p/chalk.yaml (e.g. http://prometheus.monitoring:9090)"
            f"; set it, or give --min-replicas 1 or more and --queue-depth-target none",
        ),
        (
            AutoScalingSpec(min_replicas=0, max_replicas=3, queue_depth_target=4),
            False,
            None,
            f"scaling group 'ner' scales to zero (min_replicas=0) and scales on demand "
            f"(queue_depth_target=4), which on Kubernetes needs KEDA reading the group's demand "
            f"from Prometheus, and {KEDA_MISSING} and {URL_MISSING}: expected KEDA installed in "
            f"the cluster of context 'prod' and kubernetes.prometheus_url in /p/chalk.yaml (e.g. "
            f"http://prometheus.monitoring:9090); install KEDA "
            f"(https://keda.sh/docs/latest/deploy/) and set kubernetes.prometheus_url, or give "
            f"--min-replicas 1 or more and --queue-depth-target none",
        ),
    ],
    ids=["no-keda", "no-url", "neither"],
)
def test_the_refusal_names_the_group_what_it_asked_what_is_missing_and_the_fix(
    scaling: AutoScalingSpec, keda: bool, url: str | None, wanted: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        refuse_what_needs_keda(
            "ner",
            scaling,
            keda=keda,
            prometheus_url=url,
            cluster="the cluster of context 'prod'",
            config_path="/p/chalk.yaml",
        )
    assert str(caught.value) == wanted


@pytest.mark.parametrize(
    ("scaling", "stored"),
    [
        (AutoScalingSpec(max_replicas=3), None),
        (AutoScalingSpec(queue_depth_target=4), None),  # a fixed count: no KEDA needed
        (
            AutoScalingSpec(max_replicas=3, queue_depth_target=8),
            AutoScalingSpec(max_replicas=3, queue_depth_target=4),
        ),
    ],
    ids=["cpu-only", "fixed-count-target", "stored-target"],
)
def test_what_needs_no_keda_or_was_stored_before_is_not_refused(
    scaling: AutoScalingSpec, stored: AutoScalingSpec | None
) -> None:
    refuse_what_needs_keda(
        "ner", scaling, keda=False, prometheus_url=None, cluster="c", config_path="p", stored=stored
    )


def test_a_stored_min_zero_is_refused_all_the_same() -> None:
    scaling = AutoScalingSpec(min_replicas=0, max_replicas=3)
    with pytest.raises(ValidationError, match=r"scales to zero \(min_replicas=0\)"):
        refuse_what_needs_keda(
            "ner",
            scaling,
            keda=False,
            prometheus_url="http://p",
            cluster="c",
            config_path="p",
            stored=scaling,
        )


def _deployment(replicas: int) -> dict[str, Any]:
    return {
        "metadata": {"generation": 2},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": 2},
    }


def test_a_deployment_at_zero_is_idle_only_for_a_group_that_scales_to_zero() -> None:
    status, reason = group_status(_deployment(0), [], [], idle_seconds=120)
    assert status is GroupStatus.IDLE
    assert reason == "scaled to zero by KEDA after 120 s with no demand; the next call wakes it"
    assert group_status(_deployment(0), [], [])[0] is GroupStatus.READY
    assert group_status(_deployment(1), [], [], idle_seconds=120)[0] is not GroupStatus.IDLE


def test_at_zero_without_its_scaled_object_nothing_wakes_it() -> None:
    status, reason = group_status(_deployment(0), [], [], idle_seconds=60, scaled_object=False)
    assert status is GroupStatus.FAILED
    assert "no KEDA ScaledObject to wake it" in reason


def test_at_zero_a_warning_from_keda_is_quoted_instead_of_a_promise() -> None:
    failed = Event(
        group_id="g",
        time=dt.datetime.now(dt.UTC),
        type="Warning",
        reason="KEDAScalerFailed",
        message="scaledobject/ner: lookup prometheus.monitoring: no such host",
    )
    status, reason = group_status(_deployment(0), [], [failed], idle_seconds=60)
    assert status is GroupStatus.IDLE
    assert "the next call wakes it" not in reason
    assert "KEDAScalerFailed: lookup prometheus.monitoring: no such host" in reason


K8S_YAML = """\
project: demo
backend: kubernetes
kubernetes:
  namespace: ml
"""
ZERO = ("create", "--name", "ner", "--image", IMAGE, "--min-replicas", "0", "--max-replicas", "3")


def _kube_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str = "") -> Path:
    (tmp_path / "chalk.yaml").write_text(K8S_YAML + extra)
    monkeypatch.delenv("CHALK_CATALOG_URL", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))  # no cluster
    return tmp_path


def test_a_dry_run_prints_the_scaled_object_and_no_hpa(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _kube_root(tmp_path, monkeypatch, f"  prometheus_url: {PROMETHEUS}\n")
    result = scaling_group(root, *ZERO, "--dry-run", "-o", "yaml")
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in documents] == ["Deployment", "Service", "ScaledObject"]
    scaled = documents[-1]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["minReplicaCount"] == 0
    assert documents[0]["spec"]["replicas"] == 1


def test_a_dry_run_without_prometheus_url_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _kube_root(tmp_path, monkeypatch)
    result = scaling_group(root, *ZERO, "--dry-run", "-o", "yaml")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "scaling group 'ner' scales to zero (min_replicas=0)" in result.stderr
    assert f"{root / 'chalk.yaml'} names no Prometheus server" in result.stderr
    assert "KEDA" in result.stderr
    assert "serves no KEDA" not in result.stderr  # a dry run assumes KEDA


@pytest.mark.parametrize(
    ("stored", "flags", "deleted"),
    [
        pytest.param(
            AutoScalingSpec(min_replicas=1, max_replicas=3),
            ("--min-replicas", "0"),
            "HorizontalPodAutoscaler 'ner'",
            id="hpa-to-scaled-object",
        ),
        pytest.param(
            AutoScalingSpec(min_replicas=0, max_replicas=3),
            ("--min-replicas", "1"),
            "ScaledObject 'ner'",
            id="scaled-object-to-hpa",
        ),
    ],
)
def test_an_update_dry_run_that_swaps_the_autoscaler_says_which_it_deletes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stored: AutoScalingSpec,
    flags: tuple[str, ...],
    deleted: str,
) -> None:
    root = _kube_root(tmp_path, monkeypatch, f"  prometheus_url: {PROMETHEUS}\n")
    catalog = open_catalog(load_project(root / "chalk.yaml"))
    spec = GroupSpec(image=IMAGE, model=MODEL, scaling=stored)
    catalog.groups.create("ner", spec.to_dict(), backend="kubernetes")

    result = scaling_group(root, "update", "--name", "ner", *flags, "--dry-run", "-o", "yaml")
    unchanged = scaling_group(root, "update", "--name", "ner", "--dry-run", "-o", "yaml")

    assert result.returncode == 0, result.stderr
    kinds = [document["kind"] for document in yaml.safe_load_all(result.stdout)]
    assert deleted.split(maxsplit=1)[0] not in kinds
    assert result.stderr == (
        f"note: scaling group 'ner': applying this deletes its {deleted} (the objects above "
        f"have none)\n"
    )
    assert unchanged.returncode == 0, unchanged.stderr
    assert "deletes" not in unchanged.stderr
