"""The feature server on Kubernetes: ``chalk serve`` as a Deployment, a Service, an HPA and the
Secret holding its catalog URL and token, with the scaling groups' labels and apply machinery.

``server_manifests`` is pure (``chalk server deploy --dry-run`` prints it); ``KubernetesServer``
applies, reads and deletes the objects through ``backend.KubernetesBackend``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from chalk.catalog.errors import NotFoundError, ValidationError
from chalk.catalog.resources import AutoScalingSpec, ScalingGroupResourceRequest
from chalk.common.bounds import check_bound
from chalk.deploy.errors import DeployError
from chalk.deploy.kubernetes.manifests import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    NAME_LABEL,
    Owner,
    ServerFeatures,
    cpu_autoscaler,
    is_owned,
    replica_count,
)
from chalk.deploy.kubernetes.observed import group_status

if TYPE_CHECKING:  # the backend imports the kubernetes client: not for a dry run
    from chalk.deploy.kubernetes.backend import KubernetesBackend

__all__ = [
    "CATALOG_URL_KEY",
    "DEFAULT_SERVER_NAME",
    "SERVER_LABEL",
    "SERVER_PORT",
    "SERVICE_PORT",
    "TOKEN_KEY",
    "KubernetesServer",
    "ServerSecret",
    "ServerSpec",
    "ServerState",
    "server_labels",
    "server_manifests",
]

DEFAULT_SERVER_NAME: Final = "chalk-server"
SERVER_LABEL: Final = "chalk.ai/feature-server"
COMPONENT_LABEL: Final = "app.kubernetes.io/component"
COMPONENT: Final = "feature-server"
# The container's port, and the Service's (plain HTTP inside the cluster, as kubectl's habit).
SERVER_PORT: Final = 8000
SERVICE_PORT: Final = 80
PORT_NAME: Final = "http"
# The keys of the Secret; a Secret the user names must hold both.
CATALOG_URL_KEY: Final = "catalog-url"
TOKEN_KEY: Final = "token"
TOKEN_DIR: Final = "/var/run/secrets/chalk"
# Changes with the managed Secret's values, so that rotating the token rolls the pods (an env
# var or a mounted file read at start-up would keep the old value otherwise).
CHECKSUM_ANNOTATION: Final = "chalk.ai/secret-checksum"
_READY_PERIOD_S: Final = 5
_LIVE_PERIOD_S: Final = 10
_PROBE_TIMEOUT_S: Final = 5


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """What ``chalk server deploy`` runs: the image, replicas, resources, workers, and the
    Secret it reads (``existing_secret``: one the user manages; None: the command's own,
    named like the server).

    Examples
    --------
    >>> ServerSpec(image="ghcr.io/acme/features:1").secret_name("chalk-server")
    'chalk-server'
    >>> ServerSpec(image="x:1", resources=ScalingGroupResourceRequest(gpu="1"))
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: the feature server takes no GPU: expected --cpu and \
--memory only, got gpu '1'
    """

    image: str
    scaling: AutoScalingSpec = field(default_factory=AutoScalingSpec)
    resources: ScalingGroupResourceRequest = field(default_factory=ScalingGroupResourceRequest)
    workers: int = 1
    existing_secret: str | None = None
    # chalk serve's --deadline and --hold-timeout (None: its defaults). A call to a group KEDA
    # keeps at zero is held for the smaller of the two while the group wakes.
    deadline_s: float | None = None
    hold_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.resources.gpu is not None:
            raise ValidationError(
                f"the feature server takes no GPU: expected --cpu and --memory only, got gpu "
                f"{self.resources.gpu!r}"
            )
        if self.scaling.scales_to_zero:
            raise ValidationError(
                "the feature server does not scale to zero: expected --min-replicas 1 or more, "
                "got 0"
            )
        if type(self.workers) is not int:
            raise ValidationError(f"--workers is not a whole number: got {self.workers!r}")
        check_bound("workers", self.workers, what="--workers")
        if self.deadline_s is not None:
            check_bound("deadline_seconds", self.deadline_s, what="--deadline")
        if self.hold_timeout_s is not None:
            check_bound("hold_timeout_seconds", self.hold_timeout_s, what="--hold-timeout")

    def serve_flags(self) -> list[str]:
        """The ``chalk serve`` flags this spec adds to the server's fixed ones.

        Examples
        --------
        >>> ServerSpec(image="x:1", deadline_s=90, hold_timeout_s=75.5).serve_flags()
        ['--deadline', '90', '--hold-timeout', '75.5']
        """
        flags = []
        if self.deadline_s is not None:
            flags += ["--deadline", f"{self.deadline_s:g}"]
        if self.hold_timeout_s is not None:
            flags += ["--hold-timeout", f"{self.hold_timeout_s:g}"]
        return flags

    def secret_name(self, name: str) -> str:
        return self.existing_secret or name


@dataclass(frozen=True, slots=True)
class ServerSecret:
    """The values of the Secret ``chalk server deploy`` writes (not shown in reprs)."""

    catalog_url: str = field(repr=False)
    token: str = field(repr=False)

    def data(self) -> dict[str, str]:
        """The Secret's ``data``: each value base64-encoded, as the API stores it."""
        values = {CATALOG_URL_KEY: self.catalog_url, TOKEN_KEY: self.token}
        return {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}

    def checksum(self) -> str:
        text = "\0".join((self.catalog_url, self.token))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def server_selector(name: str) -> dict[str, str]:
    """The labels that pick the server's pods."""
    return {NAME_LABEL: name, SERVER_LABEL: name}


def server_labels(name: str) -> dict[str, str]:
    """Every label of the server's objects: name, manager, server and component.

    Examples
    --------
    >>> server_labels("chalk-server")["app.kubernetes.io/managed-by"]
    'scalegroup'
    """
    return {**server_selector(name), MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: COMPONENT}


def server_manifests(
    name: str,
    spec: ServerSpec,
    namespace: str,
    features: ServerFeatures | None = None,
    *,
    secret: ServerSecret | None = None,
    live_replicas: int | None = None,
) -> list[dict[str, Any]]:
    """The server's objects in apply order: its Secret (with ``secret``, the values the
    command manages), Deployment, Service, and a HorizontalPodAutoscaler when it autoscales.

    Examples
    --------
    >>> spec = ServerSpec(image="ghcr.io/acme/features:1",
    ...                   scaling=AutoScalingSpec(min_replicas=2, max_replicas=5))
    >>> objects = server_manifests("chalk-server", spec, "ml", secret=ServerSecret("db", "t"))
    >>> [obj["kind"] for obj in objects]
    ['Secret', 'Deployment', 'Service', 'HorizontalPodAutoscaler']
    """
    features = features or ServerFeatures()
    objects = []
    if secret is not None:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": _metadata(spec.secret_name(name), namespace, name),
                "type": "Opaque",
                "data": secret.data(),
            }
        )
    objects += [
        _deployment(name, spec, namespace, secret, live_replicas),
        _service(name, namespace),
    ]
    hpa = cpu_autoscaler(name, spec.scaling, _metadata(name, namespace, name), features)
    if hpa is not None:
        objects.append(hpa)
    return objects


def _metadata(name: str, namespace: str, server: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": server_labels(server)}


def _deployment(
    name: str,
    spec: ServerSpec,
    namespace: str,
    secret: ServerSecret | None,
    live_replicas: int | None,
) -> dict[str, Any]:
    """``chalk serve`` on every address with the token required; the catalog URL from the
    Secret as ``CHALK_CATALOG_URL``, the token as a file mounted from it."""
    secret_name = spec.secret_name(name)
    command = ["chalk", "serve", "--host", "0.0.0.0", "--port", str(SERVER_PORT)]
    command += ["--workers", str(spec.workers), "--token-file", f"{TOKEN_DIR}/{TOKEN_KEY}"]
    command += spec.serve_flags()
    catalog_url = {"secretKeyRef": {"name": secret_name, "key": CATALOG_URL_KEY}}
    container = {
        "name": "server",
        "image": spec.image,
        "command": command,
        "ports": [{"name": PORT_NAME, "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "env": [{"name": "CHALK_CATALOG_URL", "valueFrom": catalog_url}],
        "volumeMounts": [{"name": "chalk-token", "mountPath": TOKEN_DIR, "readOnly": True}],
        "resources": spec.resources.requests_and_limits(),
        "readinessProbe": _probe("/readyz", _READY_PERIOD_S),
        "livenessProbe": _probe("/healthz", _LIVE_PERIOD_S),
    }
    token_volume = {
        "name": "chalk-token",
        "secret": {"secretName": secret_name, "items": [{"key": TOKEN_KEY, "path": TOKEN_KEY}]},
    }
    # No prometheus.io/scrape annotations: /metrics needs the token, which the annotations'
    # scrape job never sends (a 401 each scrape). README, "Prometheus for KEDA": a job with it.
    template: dict[str, Any] = {"labels": server_labels(name)}
    if secret is not None:
        template["annotations"] = {CHECKSUM_ANNOTATION: secret.checksum()}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, namespace, name),
        "spec": {
            "replicas": replica_count(spec.scaling, live_replicas),
            "selector": {"matchLabels": server_selector(name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": template,
                "spec": {
                    "containers": [container],
                    "volumes": [token_volume],
                    "terminationGracePeriodSeconds": spec.scaling.effective_shutdown_delay_seconds,
                },
            },
        },
    }


def _probe(path: str, period_s: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period_s,
        "timeoutSeconds": _PROBE_TIMEOUT_S,
        "failureThreshold": 3,
    }


def _service(name: str, namespace: str) -> dict[str, Any]:
    port = {"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, namespace, name),
        "spec": {"type": "ClusterIP", "selector": server_selector(name), "ports": [port]},
    }


@dataclass(frozen=True, slots=True)
class ServerState:
    """The server as the cluster shows it, for ``chalk server get``."""

    name: str
    namespace: str
    status: str
    reason: str
    image: str
    desired: int
    ready: int
    min_replicas: int | None
    max_replicas: int | None
    address: str | None
    secret: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "status": self.status,
            "reason": self.reason,
            "image": self.image,
            "desiredReplicas": self.desired,
            "readyReplicas": self.ready,
            "minReplicas": self.min_replicas,
            "maxReplicas": self.max_replicas,
            "address": self.address,
            "secret": self.secret,
        }


class KubernetesServer:
    """Applies, reads and deletes one namespace's feature servers.

    Parameters
    ----------
    backend
        The connected backend of the project (its placement names the namespace).
    """

    def __init__(self, backend: KubernetesBackend) -> None:
        self._backend = backend
        self.namespace = backend.placement.namespace

    def _owner(self, name: str) -> Owner:
        return Owner(SERVER_LABEL, name, "feature server")

    def current_token(self, name: str) -> str | None:
        """The token in the server's own Secret, when it has one: a deploy keeps it."""
        current = self._backend.read_path(self._backend.path("v1", "Secret", name))
        if current is None or not is_owned(self._owner(name), current):
            return None  # none yet, or a Secret of yours that happens to have this name
        encoded = (current.get("data") or {}).get(TOKEN_KEY)
        return None if encoded is None else base64.b64decode(encoded).decode()

    def manifests(
        self, name: str, spec: ServerSpec, secret: ServerSecret | None
    ) -> list[dict[str, Any]]:
        """The objects for this server, keeping the replica count its autoscaler set."""
        current = self._backend.read_path(self._backend.path("apps/v1", "Deployment", name))
        live = None if current is None else current.get("spec", {}).get("replicas")
        features = self._backend.features()
        return server_manifests(
            name, spec, self.namespace, features, secret=secret, live_replicas=live
        )

    def deploy(
        self, name: str, spec: ServerSpec, secret: ServerSecret | None
    ) -> list[dict[str, Any]]:
        """Server-side apply the objects (an unchanged spec changes nothing) and remove the
        autoscaler once the server stops autoscaling; the objects as the server stored them."""
        if spec.existing_secret is not None:
            self._require_secret(name, spec.existing_secret)
        objects = self.manifests(name, spec, secret)
        owner = self._owner(name)
        self._backend.check_owned(owner, objects)
        stored = [self._backend.apply_object(obj) for obj in objects]
        kinds = {(obj["apiVersion"], obj["kind"]) for obj in objects}
        for api_version, kind in self._backend.optional_kinds():
            if kind == "HorizontalPodAutoscaler" and (api_version, kind) not in kinds:
                self._backend.delete_owned(owner, api_version, kind)
        if spec.existing_secret not in (None, name) and self._owns(name, "v1", "Secret"):
            # Its own Secret, written before it was told to use yours.
            self._backend.delete_owned(owner, "v1", "Secret")
        return stored

    def _owns(self, name: str, api_version: str, kind: str) -> bool:
        current = self._backend.read_path(self._backend.path(api_version, kind, name))
        return current is not None and is_owned(self._owner(name), current)

    def observe(self, name: str) -> ServerState:
        """Read the server's Deployment, pods, Service and autoscaler."""
        backend = self._backend
        deployment = backend.read_path(backend.path("apps/v1", "Deployment", name))
        if deployment is None or not is_owned(self._owner(name), deployment):
            raise NotFoundError(self._missing(name))
        selector = ",".join(f"{k}={v}" for k, v in server_selector(name).items())
        pods = backend.request(
            "GET", backend.path("v1", "Pod"), query=[("labelSelector", selector)]
        ).get("items")
        status, reason = group_status(deployment, pods or [], [])
        hpa = None
        for api_version, kind in backend.optional_kinds():
            if kind == "HorizontalPodAutoscaler":
                hpa = backend.read_path(backend.path(api_version, kind, name))
        pod = deployment["spec"]["template"]["spec"]
        volumes = [v for v in pod.get("volumes") or [] if "secret" in v]
        service = backend.read_path(backend.path("v1", "Service", name))
        address = None
        if service is not None:
            port = service["spec"]["ports"][0]["port"]
            address = f"http://{name}.{self.namespace}.svc.cluster.local:{port}"
        counts = deployment.get("status") or {}
        desired = int(deployment["spec"].get("replicas", 0))
        return ServerState(
            name=name,
            namespace=self.namespace,
            status=status.value,
            reason=reason,
            image=pod["containers"][0]["image"],
            desired=desired,
            ready=int(counts.get("readyReplicas") or 0),
            min_replicas=None if hpa is None else int(hpa["spec"].get("minReplicas", 1)),
            max_replicas=None if hpa is None else int(hpa["spec"]["maxReplicas"]),
            address=address,
            secret=volumes[0]["secret"]["secretName"] if volumes else "",
        )

    def delete(self, name: str) -> list[str]:
        """Delete the server's objects, its own Secret included (a Secret the user named is
        left alone); ``Kind/name`` of each deleted."""
        owner = self._owner(name)
        kinds = [kind for kind in self._backend.optional_kinds() if kind[1] != "HTTPRoute"]
        kinds += [("v1", "Service"), ("apps/v1", "Deployment")]
        deleted = [
            f"{kind}/{name}"
            for api_version, kind in kinds
            if self._backend.delete_owned(owner, api_version, kind)
        ]
        if self._owns(name, "v1", "Secret"):
            self._backend.delete_owned(owner, "v1", "Secret")
            deleted.append(f"Secret/{name}")
        if not deleted:
            raise NotFoundError(self._missing(name))
        return deleted

    def _require_secret(self, name: str, secret_name: str) -> None:
        current = self._backend.read_path(self._backend.path("v1", "Secret", secret_name))
        where = f"{self.namespace}/{secret_name}"
        if current is None:
            raise DeployError(
                f"feature server {name!r}: --existing-secret {secret_name} names no Secret in "
                f"namespace {self.namespace}: expected a Secret {where} with the keys "
                f"{CATALOG_URL_KEY!r} and {TOKEN_KEY!r}; create it first, or leave out "
                f"--existing-secret to have the command write one"
            )
        data = current.get("data") or {}
        missing = [key for key in (CATALOG_URL_KEY, TOKEN_KEY) if key not in data]
        if missing:
            raise DeployError(
                f"feature server {name!r}: Secret {where} has no key "
                f"{' and no key '.join(map(repr, missing))}: expected the keys "
                f"{CATALOG_URL_KEY!r} (the catalog's database URL) and {TOKEN_KEY!r} (the "
                f"bearer token clients send)"
            )

    def _missing(self, name: str) -> str:
        return (
            f"no feature server named {name!r} in namespace {self.namespace}: deploy one with "
            f"`chalk server deploy --image <registry image>`"
            + ("" if name == DEFAULT_SERVER_NAME else f" --name {name}")
        )
