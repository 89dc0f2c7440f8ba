"""How ``chalk scaling-group`` shows a group: ``-o json|yaml`` documents and the text of
``get``, with its replicas and events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from chalk.catalog import ScalingGroup
from chalk.catalog.records import Event, Replica
from chalk.catalog.specs import GroupSpec

__all__ = [
    "TIME_FORMAT",
    "autoscaler_text",
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


def autoscaler_text(signals: Mapping[str, Any] | None) -> str:
    """What the local autoscaler last saw and decided (its state's ``signals``), as lines:
    each signal's value, then the reason of this pass and of the last change; empty when
    there is none (a group that does not autoscale, or one on Kubernetes)."""
    if not signals:
        return ""
    parts = []
    demand = signals.get("demand")
    if isinstance(demand, Mapping):
        parts.append(
            f"demand {demand.get('total')} ({demand.get('inFlight')} in flight, "
            f"{demand.get('waiting')} waiting)"
        )
    elif signals.get("replicaInFlight") is not None:
        parts.append(
            f"{signals['replicaInFlight']:g} in flight at the replicas (no caller publishes)"
        )
    else:
        parts.append("no demand published")
    if signals.get("queueDepthTarget") is not None:
        parts.append(f"queue depth target {signals['queueDepthTarget']}")
    target_cpu = signals.get("targetCpuPercent")
    if signals.get("cpuPercent") is not None:
        parts.append(f"cpu {signals['cpuPercent']}% of {target_cpu}%")
    elif target_cpu is not None:
        parts.append(f"cpu not measured (target {target_cpu}%)")
    idle_seconds = signals.get("idleSeconds")
    if idle_seconds is not None:
        since = _clock(signals.get("idleSince"))
        parts.append(
            f"idle since {since} (to zero after {idle_seconds} s)"
            if since
            else f"busy (to zero after {idle_seconds} s without calls)"
        )
    lines = ["; ".join(parts), f"now: {signals.get('reason', '')}"]
    last = signals.get("lastDecision")
    if isinstance(last, Mapping) and last.get("reason"):
        lines.append(f"last change at {_clock(last.get('at'))}: {last['reason']}")
    return "\n".join(lines)


def _clock(iso: object) -> str:
    """An ISO time as ``HH:MM:SS`` UTC; empty for none."""
    if not isinstance(iso, str):
        return ""
    try:
        return f"{dt.datetime.fromisoformat(iso):%H:%M:%S}"
    except ValueError:
        return iso


def print_group(
    group: ScalingGroup,
    spec: GroupSpec,
    *,
    rollout: str | None = None,
    autoscaler: str = "",
) -> None:
    """The group's header lines; ``rollout`` says which version serves while a new one is
    not (yet) up, so the Model line does not read as if it served; ``autoscaler`` is
    ``autoscaler_text``."""
    scaling = spec.scaling
    replicas = f"min {scaling.min_replicas}, max {scaling.max_replicas}"
    if scaling.effective_target_cpu is not None:
        replicas += f", target CPU {scaling.effective_target_cpu}%"
    if scaling.queue_depth_target is not None:
        replicas += f", queue depth target {scaling.queue_depth_target}"
    if scaling.scales_to_zero:
        replicas += f", to zero after {scaling.effective_idle_seconds} s idle"
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
        "Autoscaler": autoscaler,
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
    for key in ("Reason", "Rollout", "Autoscaler"):
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
