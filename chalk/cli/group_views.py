"""How ``chalk scaling-group`` shows a group: ``-o json|yaml`` documents and the text of
``get``, with its replicas and events.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from chalk.catalog import ScalingGroup
from chalk.catalog.records import Event, Replica
from chalk.catalog.specs import GroupSpec

__all__ = [
    "TIME_FORMAT",
    "event_json",
    "group_json",
    "image_text",
    "one_line",
    "print_group",
    "replica_json",
    "replica_row",
]

TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"


def one_line(message: str) -> str:
    """A multi-line event message (a crash with its log's last lines) as its first line and
    its last, the one that usually says what went wrong; -o json/yaml keep it whole."""
    lines = [line for line in message.splitlines() if line.strip()]
    if len(lines) <= 1:
        return message.strip()
    return f"{lines[0]} ... {lines[-1]}"


def group_json(group: ScalingGroup) -> dict[str, Any]:
    """A scaling group as ``-o json|yaml`` shows it: status and counts, then the stored spec."""
    return {
        "id": group.id,
        "name": group.name,
        "status": group.status,
        "reason": group.reason,
        "image": group.spec.get("image"),
        "imageDigest": group.spec.get("image_digest"),
        "port": group.spec.get("port"),
        "desiredReplicas": group.desired_replicas,
        "readyReplicas": group.ready_replicas,
        "availableReplicas": group.available_replicas,
        "url": group.url,
        "tags": group.tags,
        "revision": group.revision,
        "backend": group.backend,
        "createdAt": group.created_at.isoformat(),
        "updatedAt": group.updated_at.isoformat(),
        "deletedAt": None if group.deleted_at is None else group.deleted_at.isoformat(),
        "spec": group.spec,
    }


def replica_json(replica: Replica) -> dict[str, Any]:
    return {
        "replica": replica.replica_id,
        "revision": replica.revision,
        "state": replica.state,
        "ready": replica.ready,
        "restarts": replica.restarts,
        "pid": replica.pid,
        "port": replica.port,
        "endpoint": replica.endpoint,
        "lastExitReason": replica.last_exit_reason,
        "startedAt": None if replica.started_at is None else replica.started_at.isoformat(),
    }


def event_json(event: Event) -> dict[str, Any]:
    return {
        "time": event.time.isoformat(),
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
    }


def print_group(group: ScalingGroup, spec: GroupSpec, *, rollout: str | None = None) -> None:
    """The group's header lines; ``rollout`` says which version serves while a new one is
    not (yet) up, so the Model line does not read as if it served."""
    scaling = spec.scaling
    replicas = f"min {scaling.min_replicas}, max {scaling.max_replicas}"
    if scaling.effective_target_cpu is not None:
        replicas += f", target CPU {scaling.effective_target_cpu}%"
    amounts = spec.resources.requests_and_limits()
    resources = "; ".join(
        f"{kind} " + ", ".join(f"{name}={value}" for name, value in values.items())
        for kind, values in amounts.items()
    )
    gpu = spec.resources.gpu_request
    if gpu is not None and gpu.type is not None:
        resources += f" (GPU type {gpu.type})"
    lines = {
        "Name": group.name,
        "ID": group.id,
        "Status": group.status,
        "Reason": group.reason,
        "Rollout": rollout or "",
        "URL": group.url or "<none yet>",
        "Replicas": (
            f"{group.desired_replicas} desired, {group.ready_replicas} ready, "
            f"{group.available_replicas} available ({replicas})"
        ),
        "Image": image_text(spec),
        "Port": str(spec.port),
        "Resources": resources,
        "Entrypoint": ",".join(spec.entrypoint) if spec.entrypoint else "(the image's)",
        "Env": ", ".join(f"{k}={v}" for k, v in sorted(spec.env.items())) or "<none>",
        "Tags": ", ".join(f"{k}={v}" for k, v in sorted(spec.tags.items())) or "<none>",
        "Model": "<none>"
        if spec.model is None
        else f"{spec.model.name} version {spec.model.version}"
        + (" (not serving yet: see Rollout)" if rollout else ""),
        "Revision": str(group.revision),
        "Created": f"{group.created_at:{TIME_FORMAT}} UTC",
    }
    for key in ("Reason", "Rollout"):
        if not lines[key]:
            del lines[key]
    width = max(len(key) for key in lines) + 2
    for key, value in lines.items():
        first, *rest = value.splitlines() or [""]
        print(f"{key + ':':<{width}}{first}".rstrip())
        for line in rest:
            print(f"{'':<{width}}{line}".rstrip())


def replica_row(replica: Replica, now: dt.datetime) -> dict[str, Any]:
    return {
        "REPLICA": replica.replica_id,
        "STATE": replica.state,
        "READY": "yes" if replica.ready else "no",
        "RESTARTS": replica.restarts,
        "PORT": replica.port,
        "AGE": None if replica.started_at is None else _age(now - replica.started_at),
        "LAST EXIT REASON": replica.last_exit_reason.splitlines()[0]
        if replica.last_exit_reason
        else "",
    }


def _age(elapsed: dt.timedelta) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: the largest whole unit, as kubectl shows ages."""
    seconds = max(0, int(elapsed.total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def image_text(spec: GroupSpec) -> str:
    if spec.image_digest is None:
        return spec.image
    return f"{spec.image} @ {spec.image_digest}"
