"""KEDA's ScaledObject for a group that scales to zero or on demand, the PromQL of a group's
demand it reads, and the refusal of such a group where KEDA or Prometheus is missing.

``manifests.group_manifests`` renders the ScaledObject in the HorizontalPodAutoscaler's place;
the dashboard's queries share ``pod_selector``. Pure: nothing here asks a cluster or Prometheus.
"""

from __future__ import annotations

from typing import Any, Final

from chalk.catalog.resources import AutoScalingSpec
from chalk.common.errors import ValidationError

__all__ = [
    "DEMAND_TRIGGER",
    "KEDA_API_VERSION",
    "METRICS_PATH",
    "METRICS_PORT",
    "METRICS_PORT_ENV",
    "METRICS_PORT_NAME",
    "POLLING_INTERVAL_S",
    "SCALED_OBJECT",
    "SCALED_OBJECTS",
    "WAKE_ONLY_THRESHOLD",
    "demand_query",
    "metrics_port",
    "needs_keda",
    "pod_selector",
    "refuse_what_needs_keda",
    "scaled_object",
    "scrape_annotations",
]

KEDA_API_VERSION: Final = "keda.sh/v1alpha1"
SCALED_OBJECT: Final = "ScaledObject"
# The resource discovery lists in keda.sh/v1alpha1 when KEDA's operator is installed.
SCALED_OBJECTS: Final = "scaledobjects"
# How often KEDA asks Prometheus (seconds): a call held at zero waits for this poll, then for
# Prometheus' next scrape and the pod's start, within the engine's hold bound.
POLLING_INTERVAL_S: Final = 5
DEMAND_TRIGGER: Final = "demand"
# The prometheus trigger's target (calls per replica) for a group with no queue-depth target (a
# min-0 group scaling on CPU): far above any real demand, so the trigger only wakes the group
# from zero (any demand > 0 activates it) and never adds a replica beyond the CPU rule's.
WAKE_ONLY_THRESHOLD: Final = 1_000_000
# Where every group pod's runtime serves its metrics (CHALK_REMOTE_CALL_METRICS_PORT): the port
# OpenTelemetry's Prometheus exporter made a convention; the next one if the group's own port.
METRICS_PORT: Final = 9464
METRICS_PORT_ENV: Final = "CHALK_REMOTE_CALL_METRICS_PORT"
METRICS_PORT_NAME: Final = "metrics"
METRICS_PATH: Final = "/metrics"


def needs_keda(scaling: AutoScalingSpec) -> bool:
    """Whether the group scales in a way only KEDA does on Kubernetes: to zero, or on demand
    (a queue-depth target on a group whose count may change).

    Examples
    --------
    >>> needs_keda(AutoScalingSpec(min_replicas=0)), needs_keda(AutoScalingSpec(max_replicas=3))
    (True, False)
    >>> needs_keda(AutoScalingSpec(max_replicas=3, queue_depth_target=4))
    True
    >>> needs_keda(AutoScalingSpec(queue_depth_target=4))  # a fixed count: the target waits
    False
    """
    return scaling.scales_to_zero or (scaling.queue_depth_target is not None and scaling.autoscales)


def metrics_port(port: int) -> int:
    """The runtime's metrics port in a pod whose group serves on ``port``.

    Examples
    --------
    >>> metrics_port(8080), metrics_port(9464)
    (9464, 9465)
    """
    return METRICS_PORT + 1 if port == METRICS_PORT else METRICS_PORT


def scrape_annotations(port: int) -> dict[str, str]:
    """A pod template's annotations asking Prometheus to scrape ``port``'s ``/metrics`` (the
    convention of the community Prometheus chart's ``kubernetes-pods`` job).

    Examples
    --------
    >>> scrape_annotations(9464)["prometheus.io/port"]
    '9464'
    """
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": METRICS_PATH,
    }


def pod_selector(namespace: str, group: str) -> str:
    """The PromQL label selector of a group's pods (``<group>-<hash>-<id>``, the Deployment's),
    by the labels Prometheus' Kubernetes discovery gives.

    Examples
    --------
    >>> pod_selector("ml", "ner")
    '{namespace="ml",pod=~"ner-[a-z0-9]+-[a-z0-9]+"}'
    """
    # A group's name is a DNS-1123 label (letters, digits, '-'), nothing PromQL's string or
    # regex would read otherwise: written as it is (re.escape's "\-" is no escape PromQL knows).
    return f'{{namespace="{namespace}",pod=~"{group}-[a-z0-9]+-[a-z0-9]+"}}'


def demand_query(namespace: str, group: str) -> str:
    """The PromQL of a group's demand: calls waiting at the feature servers plus calls in
    flight, always one element (0 when nothing reports).

    In flight is the larger of the servers' count and the group's runtimes' count, not their
    sum: a runtime also serves callers that are not servers, and a server's call in flight
    is in flight at a runtime too. ``label_replace`` tells the two sums apart so that ``or``
    keeps both for ``max``.

    Examples
    --------
    >>> print(demand_query("ml", "ner").replace("ner-[a-z0-9]+-[a-z0-9]+", "<pod>"))
    (sum(chalk_server_model_calls_waiting{namespace="ml",group="ner"}) or vector(0))
    + (max(label_replace(sum(chalk_server_model_calls_in_flight{namespace="ml",group="ner"}), \
"from", "server", "", "")
     or label_replace(sum(chalk_remote_call_in_flight{namespace="ml",pod=~"<pod>"}), \
"from", "runtime", "", "")) or vector(0))
    """
    servers = f'{{namespace="{namespace}",group="{group}"}}'
    waiting = f"sum(chalk_server_model_calls_waiting{servers})"
    at_servers = f"sum(chalk_server_model_calls_in_flight{servers})"
    at_runtimes = f"sum(chalk_remote_call_in_flight{pod_selector(namespace, group)})"
    in_flight = (
        f'max(label_replace({at_servers}, "from", "server", "", "")\n'
        f' or label_replace({at_runtimes}, "from", "runtime", "", ""))'
    )
    return f"({waiting} or vector(0))\n+ ({in_flight} or vector(0))"


def scaled_object(
    name: str, scaling: AutoScalingSpec, metadata: dict[str, Any], prometheus_url: str
) -> dict[str, Any]:
    """The ScaledObject scaling the Deployment ``name`` within ``scaling``'s bounds: on CPU
    (when the group has a CPU target) and on its demand read from ``prometheus_url``.

    KEDA owns the HorizontalPodAutoscaler it makes of this (``keda-hpa-<name>``) and takes the
    Deployment to zero after ``idle_seconds`` (its cooldown) with no demand, and back to one at
    the first demand (the prometheus trigger's activation above 0). A new group waits
    ``idle_seconds`` too before its first scale to zero (``initialCooldownPeriod``, KEDA 2.14).

    Examples
    --------
    >>> obj = scaled_object("ner", AutoScalingSpec(min_replicas=0, max_replicas=3), {}, "http://p")
    >>> [t["type"] for t in obj["spec"]["triggers"]], obj["spec"]["cooldownPeriod"]
    (['cpu', 'prometheus'], 300)
    >>> obj["spec"]["initialCooldownPeriod"]
    300
    """
    triggers = []
    target_cpu = scaling.effective_target_cpu
    if target_cpu is not None:
        triggers.append(
            {"type": "cpu", "metricType": "Utilization", "metadata": {"value": str(target_cpu)}}
        )
    target = scaling.queue_depth_target or WAKE_ONLY_THRESHOLD
    triggers.append(
        {
            "type": "prometheus",
            "name": DEMAND_TRIGGER,
            # desired = ceil(demand / target): the local backend's rule.
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": prometheus_url,
                "query": demand_query(metadata.get("namespace", ""), name),
                "threshold": str(target),
                "activationThreshold": "0",
            },
        }
    )
    window = scaling.effective_window_seconds
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": SCALED_OBJECT,
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "pollingInterval": POLLING_INTERVAL_S,
            "cooldownPeriod": scaling.effective_idle_seconds,
            # KEDA >= 2.14: the cooldown counts from the last active trigger, which a new
            # ScaledObject has none of, so without this a new group would go to zero at once.
            "initialCooldownPeriod": scaling.effective_idle_seconds,
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": window}}
                }
            },
            "triggers": triggers,
        },
    }


def refuse_what_needs_keda(
    name: str,
    scaling: AutoScalingSpec,
    *,
    keda: bool,
    prometheus_url: str | None,
    cluster: str,
    config_path: str,
    stored: AutoScalingSpec | None = None,
) -> None:
    """Refuse a create or update of a group that needs KEDA (``needs_keda``) where the cluster
    serves no ScaledObject (``keda`` False) or chalk.yaml names no Prometheus server.

    ``cluster`` says which cluster (``the cluster of context 'prod'``), ``config_path`` where
    chalk.yaml is. ``stored``: the group's scaling before an update; a queue-depth target it
    already had stays (rendered as the HorizontalPodAutoscaler on CPU alone), while going to
    zero is never possible without KEDA.

    Examples
    --------
    >>> refuse_what_needs_keda("ner", AutoScalingSpec(min_replicas=0), keda=True,
    ...     prometheus_url=None, cluster="the cluster of context 'kind'",
    ...     config_path="/p/chalk.yaml")
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: scaling group 'ner' scales to zero (min_replicas=0), \
which on Kubernetes needs KEDA reading the group's demand from Prometheus, and /p/chalk.yaml \
names no Prometheus server: expected kubernetes.prometheus_url in /p/chalk.yaml (e.g. \
http://prometheus.monitoring:9090); set it, or give --min-replicas 1 or more and \
--queue-depth-target none
    >>> stored = AutoScalingSpec(max_replicas=3, queue_depth_target=4)
    >>> refuse_what_needs_keda("ner", AutoScalingSpec(max_replicas=3, queue_depth_target=8),
    ...     keda=False, prometheus_url=None, cluster="", config_path="", stored=stored)
    >>> unused = AutoScalingSpec(min_replicas=2, max_replicas=2, queue_depth_target=4)
    >>> refuse_what_needs_keda("ner", AutoScalingSpec(min_replicas=2, max_replicas=4,
    ...     queue_depth_target=4), keda=True, prometheus_url=None, cluster="",
    ...     config_path="/p/chalk.yaml", stored=unused)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: scaling group 'ner' scales on demand \
(queue_depth_target=4), which on Kubernetes needs KEDA reading ...
    """
    asks = []
    if scaling.scales_to_zero:
        asks.append("scales to zero (min_replicas=0)")
    # Only a target the stored group already scaled on (min < max): one stored unused on a
    # fixed count starts to need KEDA when an update lets the count change.
    had_target = stored is not None and stored.queue_depth_target is not None and stored.autoscales
    if scaling.queue_depth_target is not None and scaling.autoscales and not had_target:
        asks.append(f"scales on demand (queue_depth_target={scaling.queue_depth_target})")
    missing, expected, fixes = [], [], []
    if not keda:
        missing.append(f"{cluster} serves no KEDA ScaledObject ({KEDA_API_VERSION})")
        expected.append(f"KEDA installed in {cluster}")
        fixes.append("install KEDA (https://keda.sh/docs/latest/deploy/)")
    if prometheus_url is None:
        missing.append(f"{config_path} names no Prometheus server")
        expected.append(
            f"kubernetes.prometheus_url in {config_path} (e.g. http://prometheus.monitoring:9090)"
        )
        fixes.append("set it" if keda else "set kubernetes.prometheus_url")
    if not asks or not missing:
        return
    raise ValidationError(
        f"scaling group {name!r} {' and '.join(asks)}, which on Kubernetes needs KEDA reading "
        f"the group's demand from Prometheus, and {' and '.join(missing)}: expected "
        f"{' and '.join(expected)}; {' and '.join(fixes)}, or give --min-replicas 1 or more "
        f"and --queue-depth-target none"
    )
