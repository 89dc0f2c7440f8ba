"""The catalog's records as immutable values: what callers get back from ``Catalog``."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # pyarrow loads where schemas are read (models.py), not with every record
    import pyarrow as pa

__all__ = [
    "REACH_ANY",
    "REACH_CLUSTER",
    "REACH_GATEWAY",
    "ControllerInfo",
    "Endpoint",
    "Event",
    "FeatureGraphRecord",
    "LocalImage",
    "ModelVersion",
    "Replica",
    "ReplicaUsage",
    "Route",
    "ScalingGroup",
    "reachable",
    "runs_in_cluster",
]


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered version of a model: its image and its ordered argument/result schemas."""

    model_name: str
    model_version: int
    image: str
    input_schema: pa.Schema
    output_schema: pa.Schema
    aliases: tuple[str, ...]
    metadata: dict[str, Any]
    created_at: dt.datetime
    # False: the model may answer the same arguments differently, so its calls are never
    # deduplicated, merged or cached.
    deterministic: bool = True

    def to_json(self) -> dict[str, Any]:
        """A JSON-able view (types as their Arrow names) for ``-o json``."""
        return {
            "modelName": self.model_name,
            "modelVersion": self.model_version,
            "image": self.image,
            "inputSchema": _schema_json(self.input_schema),
            "outputSchema": _schema_json(self.output_schema),
            "aliases": list(self.aliases),
            "metadata": self.metadata,
            "createdAt": self.created_at.isoformat(),
            "deterministic": self.deterministic,
        }

    @property
    def digest(self) -> str:
        """16 hex digits naming this registration (all of it but the aliases, which move from
        version to version): the same name and version registered again, or in another
        catalog, digests differently. The answer cache keeps answers by it."""
        registered = {key: value for key, value in self.to_json().items() if key != "aliases"}
        text = json.dumps(registered, sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


# Who can reach an endpoint: every reader of the catalog (a local replica), readers inside the
# Kubernetes cluster (a Service's DNS name), or readers outside it (through the gateway).
REACH_ANY: Final = "any"
REACH_CLUSTER: Final = "cluster"
REACH_GATEWAY: Final = "gateway"
_REACHES: Final = (REACH_ANY, REACH_CLUSTER, REACH_GATEWAY)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A gRPC target serving a group: ``127.0.0.1:7001``, ``dns:///svc...:80``, ``host:443``.

    ``reach`` says which readers can use it (``REACH_*``); ``Catalog.resolve`` hands a reader
    only the ones it reaches.

    Examples
    --------
    >>> Endpoint.from_json({"target": "dns:///ner.ml.svc.cluster.local:6666", "tls": False}).reach
    'cluster'
    >>> Endpoint.from_json(Endpoint("ner.example.com:443", True, REACH_GATEWAY).to_json()).reach
    'gateway'
    """

    target: str
    tls: bool = False
    reach: str = REACH_ANY

    def __post_init__(self) -> None:
        if self.reach not in _REACHES:
            raise ValueError(f"endpoint reach must be one of {_REACHES}, got {self.reach!r}")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"target": self.target, "tls": self.tls}
        if self.reach != REACH_ANY:
            data["reach"] = self.reach
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Endpoint:
        target = str(data["target"])
        reach = data.get("reach")
        if reach is None:
            # Written before endpoints said their reach: one endpoint per group, a Service's
            # DNS name when applied from inside the cluster.
            in_cluster = target.startswith("dns:///") and ".svc.cluster.local:" in target
            reach = REACH_CLUSTER if in_cluster else REACH_ANY
        return cls(target=target, tls=bool(data.get("tls", False)), reach=str(reach))


def runs_in_cluster(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs inside a Kubernetes pod (``KUBERNETES_SERVICE_HOST`` set,
    as the kubelet sets it in every container); ``env`` defaults to ``os.environ``."""
    return bool((os.environ if env is None else env).get("KUBERNETES_SERVICE_HOST"))


def reachable(endpoints: Iterable[Endpoint], *, in_cluster: bool) -> tuple[Endpoint, ...]:
    """The endpoints a reader reaches: inside the cluster the Service's DNS name (the gateway
    only when a group has none), outside it the gateway; local replicas from anywhere.

    Examples
    --------
    >>> both = [Endpoint("dns:///ner.ml.svc.cluster.local:6666", reach=REACH_CLUSTER),
    ...         Endpoint("dev-ner.example.com:443", True, REACH_GATEWAY)]
    >>> [e.target for e in reachable(both, in_cluster=True)]
    ['dns:///ner.ml.svc.cluster.local:6666']
    >>> [e.target for e in reachable(both, in_cluster=False)]
    ['dev-ner.example.com:443']
    """
    endpoints = tuple(endpoints)
    if not in_cluster:
        return tuple(e for e in endpoints if e.reach != REACH_CLUSTER)
    inside = tuple(e for e in endpoints if e.reach != REACH_GATEWAY)
    if any(e.reach == REACH_CLUSTER for e in inside):
        return inside
    return endpoints


@dataclass(frozen=True, slots=True)
class Route:
    """Where and how to call ``model.<group>``: the model's schemas and the live endpoints.

    ``deterministic`` is False for a model version registered as non-deterministic: its calls
    are never deduplicated, merged or cached. A group with no ready replica (starting, scaled
    to zero, crash-looping, waiting for capacity) has no endpoints; ``status`` and ``reason``
    then say why, and ``starting`` counts the replicas it wants that are not ready yet.

    ``serving`` lists the ``(model, version)`` pairs its ready endpoints run, as far as the
    catalog can tell (``chalk.catalog.serving``; empty when it cannot). Mid-roll the old
    version still answers while ``model_version`` names the new one: the route is ``settled``
    only when every ready endpoint is known to run ``model_version``, and only a settled
    route's answers may be cached under it.
    """

    group: str
    model_name: str
    model_version: int
    input_schema: pa.Schema
    output_schema: pa.Schema
    port: int | None
    endpoints: tuple[Endpoint, ...]
    deterministic: bool = True
    # The model version's ``ModelVersion.digest``: the answer cache's keys name it.
    version_digest: str = ""
    # The group's ``batch_max_delay_ms`` in seconds; None keeps the engine's default.
    batch_max_delay_s: float | None = None
    # The group's status and its reason as its backend last reported them (GroupStatus values).
    status: str = ""
    reason: str = ""
    # Replicas the group wants that are not ready yet.
    starting: int = 0
    # The backend running the group (``local``, ``kubernetes``): local callers publish demand.
    backend: str = ""
    # The (model, version) pairs the ready endpoints run, sorted; () when not known.
    serving: tuple[tuple[str, int], ...] = ()

    @property
    def settled(self) -> bool:
        """Whether every ready endpoint is known to run this route's model version."""
        return self.serving == ((self.model_name, self.model_version),)


@dataclass(frozen=True, slots=True)
class ScalingGroup:
    """A scaling group's record: its desired spec and the status its backend reports."""

    id: str
    name: str
    backend: str
    spec: dict[str, Any]
    revision: int
    status: str
    reason: str
    desired_replicas: int
    ready_replicas: int
    available_replicas: int
    endpoints: tuple[Endpoint, ...]
    url: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None = None

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.spec.get("tags") or {})

    @property
    def model(self) -> tuple[str, int] | None:
        """``(model_name, model_version)`` when the group hosts a model version."""
        model = self.spec.get("model")
        if not model:
            return None
        return str(model["name"]), int(model["version"])


@dataclass(frozen=True, slots=True)
class Replica:
    """One replica of a group as its backend last saw it."""

    group_id: str
    replica_id: str
    revision: int
    state: str
    ready: bool = False
    pid: int | None = None
    port: int | None = None
    endpoint: str | None = None
    restarts: int = 0
    last_exit_reason: str = ""
    started_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    # Where the replica serves its Prometheus metrics (the runtime's), and its CPU use and
    # resident memory as its backend last sampled them (``usage_at``); None where unknown.
    metrics_port: int | None = None
    cpu_millicores: float | None = None
    memory_bytes: int | None = None
    usage_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class ReplicaUsage:
    """One replica's CPU use (millicores) and resident memory (bytes), as just sampled."""

    group_id: str
    replica_id: str
    cpu_millicores: float | None
    memory_bytes: int | None


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a group (``type`` is ``Normal`` or ``Warning``)."""

    group_id: str
    time: dt.datetime
    type: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class ControllerInfo:
    """The running controller of a backend, as its heartbeat tells."""

    backend: str
    pid: int
    host: str
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    # The port of the controller's own Prometheus metrics on 127.0.0.1, when it serves them.
    metrics_port: int | None = None


@dataclass(frozen=True, slots=True)
class FeatureGraphRecord:
    """One applied feature graph."""

    version: int
    graph: dict[str, Any]
    active: bool
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class LocalImage:
    """A build context snapshotted into the project's local image store."""

    digest: str
    snapshot_path: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: dict[str, str]
    workdir: str
    exposed_port: int | None
    created_at: dt.datetime
    tags: tuple[str, ...] = field(default=())


def _schema_json(schema: pa.Schema) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]
