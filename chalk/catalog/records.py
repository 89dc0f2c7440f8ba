"""The catalog's records as immutable values: what callers get back from ``Catalog``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pyarrow loads where schemas are read (models.py), not with every record
    import pyarrow as pa

__all__ = [
    "ControllerInfo",
    "Endpoint",
    "Event",
    "FeatureGraphRecord",
    "LocalImage",
    "ModelVersion",
    "Replica",
    "Route",
    "ScalingGroup",
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
        }


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A gRPC target serving a group: ``127.0.0.1:7001``, ``dns:///svc...:80``, ``host:443``."""

    target: str
    tls: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "tls": self.tls}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Endpoint:
        return cls(target=str(data["target"]), tls=bool(data.get("tls", False)))


@dataclass(frozen=True, slots=True)
class Route:
    """Where and how to call ``model.<group>``: the model's schemas and the live endpoints."""

    group: str
    model_name: str
    model_version: int
    input_schema: pa.Schema
    output_schema: pa.Schema
    port: int | None
    endpoints: tuple[Endpoint, ...]
    # Whether the model answers the same rows the same way: only then are its rows merged.
    deterministic: bool = True
    # The group's ``batch_max_delay_ms`` in seconds; None keeps the engine's default.
    batch_max_delay_s: float | None = None


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
