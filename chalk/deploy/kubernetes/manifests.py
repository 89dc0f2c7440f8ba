"""A scaling group's Kubernetes objects as plain dicts: pure functions of its spec.

The Kubernetes backend applies what ``group_manifests`` returns; ``--dry-run -o yaml`` prints
it. Nothing here talks to a cluster: what the server supports comes in as ``ServerFeatures``.
Over 500 lines: every object of a group (Deployment, Service, HPA, routes) renders here so
that one pure function is what `--dry-run` prints and what is applied (KEDA's ScaledObject in
``keda``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from chalk.catalog.records import REACH_CLUSTER, REACH_GATEWAY, Endpoint, runs_in_cluster
from chalk.catalog.resources import GPU_RESOURCE_NAME, AutoScalingSpec
from chalk.catalog.specs import GroupSpec
from chalk.common.config import Project
from chalk.common.errors import ConfigError
from chalk.deploy.kubernetes.keda import (
    KEDA_API_VERSION,
    METRICS_PORT_ENV,
    METRICS_PORT_NAME,
    metrics_port,
    needs_keda,
    refuse_what_needs_keda,
    scaled_object,
    scrape_annotations,
)

__all__ = [
    "AUTOSCALING_V2",
    "AUTOSCALING_V2BETA2",
    "FIELD_MANAGER",
    "GATEWAY_API_VERSION",
    "GKE_ACCELERATOR_LABEL",
    "GROUP_LABEL",
    "H2C",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "NAME_LABEL",
    "PRESTOP_SLEEP_S",
    "PRESTOP_SLEEP_SINCE",
    "Owner",
    "Placement",
    "ServerFeatures",
    "autoscaler",
    "cpu_autoscaler",
    "deployment",
    "group_endpoints",
    "group_labels",
    "group_manifests",
    "http_route",
    "is_owned",
    "placement_of",
    "replica_count",
    "selector_labels",
    "service",
]

FIELD_MANAGER: Final = "scalegroup"
MANAGED_BY: Final = "scalegroup"
NAME_LABEL: Final = "app.kubernetes.io/name"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
GROUP_LABEL: Final = "chalk.ai/scaling-group"
GKE_ACCELERATOR_LABEL: Final = "cloud.google.com/gke-accelerator"
H2C: Final = "kubernetes.io/h2c"
AUTOSCALING_V2: Final = "autoscaling/v2"
AUTOSCALING_V2BETA2: Final = "autoscaling/v2beta2"
GATEWAY_API_VERSION: Final = "gateway.networking.k8s.io/v1"
PORT_NAME: Final = "serve"
# gRPC readiness probes are on by default from Kubernetes 1.24 (GRPCContainerProbe beta).
GRPC_PROBE_SINCE: Final = (1, 24)
# The preStop sleep action is on by default from Kubernetes 1.30 (PodLifecycleSleepAction beta).
PRESTOP_SLEEP_SINCE: Final = (1, 30)
# How long a leaving pod waits, still serving, for its endpoint removal to reach every client
# before it gets SIGTERM; at most half the grace period, which the wait counts against.
PRESTOP_SLEEP_S: Final = 5
_PROBE_PERIOD_S: Final = 5


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a project's groups go: the namespace, the environment id and the gateway; and
    the Prometheus server KEDA reads a group's demand from.

    ``gateway_name`` and ``gateway_domain`` are both set or both None (no HTTPRoute then).

    Examples
    --------
    >>> Placement("ml", "dev", "public", "infra", "models.example.com").hostname("ner")
    'dev-ner.models.example.com'
    >>> Placement("ml", "dev").hostname("ner") is None
    True
    """

    namespace: str
    environment: str
    gateway_name: str | None = None
    gateway_namespace: str | None = None
    gateway_domain: str | None = None
    prometheus_url: str | None = None

    def __post_init__(self) -> None:
        if (self.gateway_name is None) != (self.gateway_domain is None):
            given, missing = ("name", "domain")
            if self.gateway_name is None:
                given, missing = missing, given
            raise ConfigError(
                f"kubernetes.gateway has a {given} but no {missing}: expected both "
                f"kubernetes.gateway.name and kubernetes.gateway.domain, or neither (no URL "
                f"outside the cluster)"
            )

    @property
    def has_gateway(self) -> bool:
        return self.gateway_name is not None

    def hostname(self, name: str) -> str | None:
        """``<environment>-<name>.<gateway domain>``; None without a gateway."""
        if self.gateway_domain is None:
            return None
        return f"{self.environment}-{name}.{self.gateway_domain}"

    def url(self, name: str) -> str | None:
        """The group's HTTPS URL through the gateway; None without one."""
        host = self.hostname(name)
        return None if host is None else f"https://{host}"

    def service_dns(self, name: str) -> str:
        """The headless Service's name inside the cluster."""
        return f"{name}.{self.namespace}.svc.cluster.local"


def placement_of(project: Project) -> Placement:
    """Where ``project``'s groups go, from chalk.yaml's ``environment`` and ``kubernetes``."""
    kubernetes = project.config.kubernetes
    try:
        return Placement(
            namespace=kubernetes.namespace,
            environment=project.config.environment,
            gateway_name=kubernetes.gateway.name,
            gateway_namespace=kubernetes.gateway.namespace,
            gateway_domain=kubernetes.gateway.domain,
            prometheus_url=kubernetes.prometheus_url,
        )
    except ConfigError as error:
        raise ConfigError(f"{project.config_path}: {error}") from None


@dataclass(frozen=True, slots=True)
class ServerFeatures:
    """What the API server serves that changes the manifests.

    Examples
    --------
    >>> ServerFeatures.from_discovery((1, 20), {"autoscaling/v1", "autoscaling/v2beta2"})
    ServerFeatures(grpc_probe=False, autoscaling='autoscaling/v2beta2', prestop_sleep=False, \
keda=False)
    >>> ServerFeatures.from_discovery((1, 31), {"autoscaling/v2", "keda.sh/v1alpha1"})
    ServerFeatures(grpc_probe=True, autoscaling='autoscaling/v2', prestop_sleep=True, keda=True)
    """

    grpc_probe: bool = True
    autoscaling: str = AUTOSCALING_V2
    prestop_sleep: bool = True
    # KEDA's ScaledObject (keda.sh/v1alpha1) is served: assumed by a dry run, as the newest.
    keda: bool = True

    @classmethod
    def from_discovery(
        cls, version: tuple[int, int], group_versions: Iterable[str]
    ) -> ServerFeatures:
        """From the server's version and the ``group/version`` names its discovery lists."""
        served = set(group_versions)
        autoscaling = AUTOSCALING_V2 if AUTOSCALING_V2 in served else AUTOSCALING_V2BETA2
        return cls(
            grpc_probe=version >= GRPC_PROBE_SINCE,
            autoscaling=autoscaling,
            prestop_sleep=version >= PRESTOP_SLEEP_SINCE,
            keda=KEDA_API_VERSION in served,
        )


def group_endpoints(
    name: str, spec: GroupSpec, placement: Placement, env: Mapping[str, str]
) -> tuple[list[Endpoint], str | None, str]:
    """The group's endpoints for the catalog, its URL, and a note when it has no endpoint
    the command's own process reaches.

    Both endpoints are stored, so that every reader finds its own (``Catalog.resolve``): the
    headless Service by DNS inside the cluster, for round-robin over its pods, and the
    gateway's hostname on 443 with TLS outside it (none without a gateway). The note is for
    a command run outside the cluster (``KUBERNETES_SERVICE_HOST`` unset in ``env``) on a
    project with no gateway.

    Examples
    --------
    >>> spec = GroupSpec(image="ghcr.io/acme/ner:1", port=6666)
    >>> endpoints, url, note = group_endpoints("ner", spec, Placement("ml", "dev"), {})
    >>> [(e.target, e.reach) for e in endpoints], url
    ([('dns:///ner.ml.svc.cluster.local:6666', 'cluster')], None)
    """
    inside = f"{placement.service_dns(name)}:{spec.port}"
    endpoints = [Endpoint(f"dns:///{inside}", reach=REACH_CLUSTER)]
    host = placement.hostname(name)
    if host is not None:
        endpoints.append(Endpoint(f"{host}:443", tls=True, reach=REACH_GATEWAY))
        return endpoints, placement.url(name), ""
    note = ""
    if not runs_in_cluster(env):
        note = (
            f"no kubernetes.gateway in chalk.yaml: reachable only inside the cluster, at {inside}"
        )
    return endpoints, None, note


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose objects these are: the label naming the owner on each of them, its name, and
    what it is, for messages.

    Examples
    --------
    >>> str(Owner.group("ner"))
    "scaling group 'ner'"
    """

    label: str
    name: str
    noun: str

    @classmethod
    def group(cls, name: str) -> Owner:
        return cls(GROUP_LABEL, name, "scaling group")

    def __str__(self) -> str:
        return f"{self.noun} {self.name!r}"


def is_owned(owner: Owner, obj: Mapping[str, Any]) -> bool:
    """Whether ``obj`` (as the server returns it) is labelled as ``owner``'s, managed by us."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(owner.label) == owner.name


def selector_labels(name: str) -> dict[str, str]:
    """The labels that pick a group's pods (the Deployment's and the Service's selector)."""
    return {NAME_LABEL: name, GROUP_LABEL: name}


def group_labels(name: str, spec: GroupSpec) -> dict[str, str]:
    """Every label of a group's objects: name, manager, group, then its tags.

    Examples
    --------
    >>> group_labels("ner", GroupSpec(image="ner:1", tags={"team": "nlp"}))["chalk.ai/tag-team"]
    'nlp'
    """
    return {**selector_labels(name), MANAGED_BY_LABEL: MANAGED_BY, **spec.labels()}


def replica_count(scaling: AutoScalingSpec, live_replicas: int | None) -> int:
    """The Deployment's ``replicas``: for a new one (``live_replicas`` None) the minimum but at
    least one (a group that scales to zero starts serving, and goes to zero only when idle);
    else the minimum, or for an autoscaling Deployment the count in the cluster now kept within
    min and max (see ``deployment``), so an apply never wakes a group its autoscaler put to 0.

    Examples
    --------
    >>> scaling = AutoScalingSpec(min_replicas=0, max_replicas=3)
    >>> replica_count(scaling, None), replica_count(scaling, 0), replica_count(scaling, 5)
    (1, 0, 3)
    """
    if live_replicas is None:
        return max(scaling.min_replicas, 1)
    if not scaling.autoscales:
        return scaling.min_replicas
    return min(max(live_replicas, scaling.min_replicas), scaling.max_replicas)


def group_manifests(
    name: str,
    spec: GroupSpec,
    placement: Placement,
    features: ServerFeatures | None = None,
    *,
    live_replicas: int | None = None,
) -> list[dict[str, Any]]:
    """The objects a group becomes, in apply order: Deployment, Service, HTTPRoute, then its
    autoscaler: a HorizontalPodAutoscaler, or KEDA's ScaledObject for a group that needs KEDA.

    The HTTPRoute comes only with a gateway, an autoscaler only when the group autoscales. A
    group that needs KEDA (``keda.needs_keda``) gets the ScaledObject where the server serves
    it and ``placement`` names a Prometheus server; ``keda.refuse_what_needs_keda`` refuses it
    before this otherwise, except a queue-depth target stored before, which renders the CPU
    HorizontalPodAutoscaler. ``live_replicas``: the Deployment's replica count in the cluster
    now, if it exists (see ``deployment``).

    Examples
    --------
    >>> spec = GroupSpec(image="ghcr.io/acme/ner:1")
    >>> [m["kind"] for m in group_manifests("ner", spec, Placement("ml", "dev"))]
    ['Deployment', 'Service']
    >>> spec = GroupSpec(image="ghcr.io/acme/ner:1", scaling=AutoScalingSpec(max_replicas=2,
    ...     min_replicas=0))
    >>> placement = Placement("ml", "dev", prometheus_url="http://prometheus.monitoring:9090")
    >>> [m["kind"] for m in group_manifests("ner", spec, placement)]
    ['Deployment', 'Service', 'ScaledObject']
    """
    features = features or ServerFeatures()
    if spec.scaling.scales_to_zero and not _renders_keda(spec.scaling, placement, features):
        # Refused with the reason before this too (groups.py): an HPA cannot go to zero.
        refuse_what_needs_keda(
            name,
            spec.scaling,
            keda=features.keda,
            prometheus_url=placement.prometheus_url,
            cluster="the cluster",
            config_path="chalk.yaml",
        )
    objects = [
        deployment(name, spec, placement, features, live_replicas=live_replicas),
        service(name, spec, placement),
    ]
    route = http_route(name, spec, placement)
    if route is not None:
        objects.append(route)
    scaler = autoscaler(name, spec, placement, features)
    if scaler is not None:
        objects.append(scaler)
    return objects


def _renders_keda(scaling: AutoScalingSpec, placement: Placement, features: ServerFeatures) -> bool:
    return needs_keda(scaling) and features.keda and placement.prometheus_url is not None


def deployment(
    name: str,
    spec: GroupSpec,
    placement: Placement,
    features: ServerFeatures,
    *,
    live_replicas: int | None = None,
) -> dict[str, Any]:
    """The group's Deployment: rolling update with no replica down, resources, probe, GPUs.

    ``replicas`` is always stated, so that no apply ever drops it: a field an applier stops
    stating goes back to its default (1), which scaled a group that started autoscaling down
    to one pod. For an autoscaling group it is the count in the cluster (``live_replicas``,
    what the HorizontalPodAutoscaler or KEDA last set) kept within min and max, so an apply
    never undoes the autoscaler's scaling nor wakes a group at zero; a new group starts at its
    minimum, but at one at least (``replica_count``). The pod template asks Prometheus to scrape
    the runtime's metrics port, where KEDA's demand comes from.
    """
    labels = group_labels(name, spec)
    pod: dict[str, Any] = {
        "containers": [_container(name, spec, features)],
        "terminationGracePeriodSeconds": spec.scaling.effective_shutdown_delay_seconds,
    }
    gpu = spec.resources.gpu_request
    if gpu is not None:
        pod["tolerations"] = [
            {"key": GPU_RESOURCE_NAME, "operator": "Exists", "effect": "NoSchedule"}
        ]
        if gpu.type is not None:
            pod["nodeSelector"] = {GKE_ACCELERATOR_LABEL: gpu.type}
    body: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(name)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": {
            "metadata": {
                "labels": labels,
                "annotations": scrape_annotations(metrics_port(spec.port)),
            },
            "spec": pod,
        },
    }
    body = {"replicas": replica_count(spec.scaling, live_replicas), **body}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, placement, labels),
        "spec": body,
    }


def _container(name: str, spec: GroupSpec, features: ServerFeatures) -> dict[str, Any]:
    # The port variables first, so a user's own value for one wins, as on the local backend.
    # The metrics port lets Prometheus scrape our runtime's figures (the pod's annotations).
    metrics = metrics_port(spec.port)
    env = {
        "PORT": str(spec.port),
        "CHALK_REMOTE_CALL_PORT": str(spec.port),
        METRICS_PORT_ENV: str(metrics),
        **spec.env,
    }
    container: dict[str, Any] = {"name": name, "image": spec.image}
    if spec.entrypoint is not None:
        # Replaces ENTRYPOINT and drops CMD: the entrypoint override's meaning everywhere.
        container["command"] = list(spec.entrypoint)
    container["ports"] = [
        {"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"},
        {"name": METRICS_PORT_NAME, "containerPort": metrics, "protocol": "TCP"},
    ]
    container["env"] = [{"name": key, "value": value} for key, value in env.items()]
    container["resources"] = spec.resources.requests_and_limits()
    container["readinessProbe"] = _readiness_probe(spec, features)
    lifecycle = _lifecycle(spec, features)
    if lifecycle is not None:
        container["lifecycle"] = lifecycle
    return container


def _lifecycle(spec: GroupSpec, features: ServerFeatures) -> dict[str, Any] | None:
    """A preStop sleep, so a leaving pod is removed from the endpoints before its SIGTERM
    (endpoints first, then SIGTERM). Older servers get none: an exec of ``sleep`` would need
    the image to have one."""
    seconds = min(PRESTOP_SLEEP_S, spec.scaling.effective_shutdown_delay_seconds // 2)
    if not features.prestop_sleep or seconds < 1:
        return None
    return {"preStop": {"sleep": {"seconds": seconds}}}


def _readiness_probe(spec: GroupSpec, features: ServerFeatures) -> dict[str, Any]:
    check: dict[str, Any]
    if spec.model is not None and features.grpc_probe:
        # The standard gRPC health service, overall status (service ""), which our runtime
        # and the reference both serve.
        check = {"grpc": {"port": spec.port}}
    else:
        check = {"tcpSocket": {"port": spec.port}}
    return {**check, "periodSeconds": _PROBE_PERIOD_S, "failureThreshold": 3}


def service(name: str, spec: GroupSpec, placement: Placement) -> dict[str, Any]:
    """The group's headless Service: one DNS name resolving to every ready pod."""
    port: dict[str, Any] = {
        "name": PORT_NAME,
        "port": spec.port,
        "targetPort": spec.port,
        "protocol": "TCP",
    }
    if spec.model is not None:
        port["appProtocol"] = H2C
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, placement, group_labels(name, spec)),
        "spec": {"clusterIP": "None", "selector": selector_labels(name), "ports": [port]},
    }


def http_route(name: str, spec: GroupSpec, placement: Placement) -> dict[str, Any] | None:
    """The HTTPRoute giving the group ``https://<environment>-<name>.<domain>``; None
    without a gateway."""
    hostname = placement.hostname(name)
    if hostname is None or placement.gateway_name is None:
        return None
    parent: dict[str, Any] = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": placement.gateway_name,
    }
    if placement.gateway_namespace is not None:
        parent["namespace"] = placement.gateway_namespace
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": _metadata(name, placement, group_labels(name, spec)),
        "spec": {
            "parentRefs": [parent],
            "hostnames": [hostname],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"kind": "Service", "name": name, "port": spec.port}],
                }
            ],
        },
    }


def autoscaler(
    name: str, spec: GroupSpec, placement: Placement, features: ServerFeatures
) -> dict[str, Any] | None:
    """The group's autoscaler: KEDA's ScaledObject where it needs and may have one (see
    ``group_manifests``), else the HorizontalPodAutoscaler on CPU; None when it does not
    autoscale. ``autoscaling/v2`` and ``v2beta2`` share the HorizontalPodAutoscaler's shape.
    """
    metadata = _metadata(name, placement, group_labels(name, spec))
    if placement.prometheus_url is not None and _renders_keda(spec.scaling, placement, features):
        return scaled_object(name, spec.scaling, metadata, placement.prometheus_url)
    return cpu_autoscaler(name, spec.scaling, metadata, features)


def cpu_autoscaler(
    name: str, scaling: AutoScalingSpec, metadata: dict[str, Any], features: ServerFeatures
) -> dict[str, Any] | None:
    """A HorizontalPodAutoscaler of the Deployment ``name`` on CPU, within ``scaling``'s
    bounds and scale-down window; None when ``scaling`` does not autoscale."""
    target_cpu = scaling.effective_target_cpu
    if not scaling.autoscales or target_cpu is None:
        return None
    return {
        "apiVersion": features.autoscaling,
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": target_cpu},
                    },
                }
            ],
            "behavior": {
                "scaleDown": {"stabilizationWindowSeconds": scaling.effective_window_seconds}
            },
        },
    }


def _metadata(name: str, placement: Placement, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": placement.namespace, "labels": dict(labels)}
