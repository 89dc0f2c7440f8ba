"""A Kubernetes group's status, replicas and events, read from its objects as the API server
returns them (plain JSON). Pure: ``backend`` fetches the objects and calls these.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Final

from chalk.catalog.records import Event, Replica
from chalk.deploy.states import GroupStatus

__all__ = ["event_time", "group_status", "pod_replica", "version_number"]


_G = GroupStatus
# Waiting reasons of a container that mean the group is in trouble, not merely starting, and
# the group status each stands for.
_TROUBLE: Final = {
    "ErrImagePull": _G.IMAGE_PULL_BACK_OFF,
    "ImagePullBackOff": _G.IMAGE_PULL_BACK_OFF,
    "InvalidImageName": _G.IMAGE_PULL_BACK_OFF,
    "CrashLoopBackOff": _G.CRASH_LOOP_BACK_OFF,
    "CreateContainerConfigError": _G.CREATE_CONTAINER_CONFIG_ERROR,
    "CreateContainerError": _G.CREATE_CONTAINER_ERROR,
}
# Warning events that say why pods do not run, and the group status each stands for.
_TROUBLE_EVENTS: Final = {
    "FailedScheduling": _G.PENDING,
    "Failed": _G.IMAGE_PULL_BACK_OFF,
    "ErrImagePull": _G.IMAGE_PULL_BACK_OFF,
    "BackOff": _G.CRASH_LOOP_BACK_OFF,
    "FailedCreate": _G.FAILED,
}


def group_status(
    deployment: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    events: Sequence[Event],
    *,
    idle_seconds: int | None = None,
    scaled_object: bool = True,
) -> tuple[GroupStatus, str]:
    """The group's status and its reason, from the Deployment, then pods, then events.

    A Deployment at 0 replicas of a group that scales to zero (``idle_seconds``: its idle
    time; None when its minimum is not 0) is Idle when its ScaledObject is there
    (``scaled_object``) to wake it, and says so; with a warning from KEDA about it, the reason
    quotes the warning instead of promising a wake. With no ScaledObject nothing wakes it:
    Failed, naming the fix.

    Examples
    --------
    >>> at_zero = {"metadata": {}, "spec": {"replicas": 0}}
    >>> group_status(at_zero, [], [], idle_seconds=120)[1]
    'scaled to zero by KEDA after 120 s with no demand; the next call wakes it'
    >>> group_status(at_zero, [], [], idle_seconds=120, scaled_object=False)[0]
    <GroupStatus.FAILED: 'Failed'>
    """
    if idle_seconds is not None and int(deployment["spec"].get("replicas", 0)) == 0:
        if not scaled_object:
            return GroupStatus.FAILED, (
                "at zero replicas with no KEDA ScaledObject to wake it: expected KEDA installed "
                "and the group's ScaledObject; apply it again with `chalk scaling-group update "
                "--name <group>`, or give --min-replicas 1"
            )
        idle = f"scaled to zero by KEDA after {idle_seconds} s with no demand"
        warning = _keda_warning(events)
        if warning is not None:
            return GroupStatus.IDLE, f"{idle}; but KEDA warns, so a call may not wake it: {warning}"
        return GroupStatus.IDLE, f"{idle}; the next call wakes it"
    return _running_status(deployment, pods, events)


def _keda_warning(events: Sequence[Event]) -> str | None:
    """The latest Warning event about the group's ScaledObject (a scaler that fails, such as
    a Prometheus KEDA cannot reach), as ``reason: message``; None without one."""
    for event in reversed(events):
        about_keda = event.message.startswith(("scaledobject/", "horizontalpodautoscaler/keda-"))
        if event.type == "Warning" and about_keda:
            return f"{event.reason}: {event.message.partition(': ')[2]}"
    return None


def _running_status(
    deployment: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], events: Sequence[Event]
) -> tuple[GroupStatus, str]:
    desired = int(deployment["spec"].get("replicas", 0))
    counts = deployment.get("status") or {}
    ready = int(counts.get("readyReplicas") or 0)
    updated = int(counts.get("updatedReplicas") or 0)
    current = int(counts.get("observedGeneration") or 0) >= int(
        deployment["metadata"].get("generation") or 0
    )
    if current and ready >= desired and updated >= desired:
        return GroupStatus.READY, ""
    for condition in counts.get("conditions") or []:
        if condition.get("reason") == "ProgressDeadlineExceeded":
            return GroupStatus.FAILED, str(
                condition.get("message") or "the rollout made no progress"
            )
    trouble = _pod_trouble(pods)
    if trouble is not None:
        return trouble
    for event in reversed(events):
        if event.type == "Warning" and event.reason in _TROUBLE_EVENTS:
            status = _TROUBLE_EVENTS[event.reason]
            if event.reason == "Failed" and "pull" not in event.message.lower():
                status = GroupStatus.FAILED
            return status, f"{event.reason}: {event.message}"
    if not current:
        return GroupStatus.PROGRESSING, "the Deployment's new spec is not yet rolled out"
    return GroupStatus.PROGRESSING, f"{ready} of {desired} replicas ready"


def _pod_trouble(pods: Sequence[Mapping[str, Any]]) -> tuple[GroupStatus, str] | None:
    for pod in pods:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in _TROUBLE:
                message = waiting.get("message") or reason
                return _TROUBLE[reason], f"pod {name}: {reason}: {message}"
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                why = condition.get("message") or condition.get("reason") or "unschedulable"
                return GroupStatus.PENDING, f"pod {name} cannot be scheduled: {why}"
    return None


def pod_replica(group_id: str, pod: Mapping[str, Any], revisions: Mapping[str, int]) -> Replica:
    metadata = pod["metadata"]
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    owner = next(
        (
            ref["name"]
            for ref in metadata.get("ownerReferences") or []
            if ref["kind"] == "ReplicaSet"
        ),
        "",
    )
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    state = "Terminating" if metadata.get("deletionTimestamp") else status.get("phase", "Pending")
    last_exit = ""
    for container in containers:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            state = waiting["reason"]
        terminated = (container.get("lastState") or {}).get("terminated") or {}
        if terminated:
            last_exit = (
                f"{terminated.get('reason', 'Exited')} (exit code {terminated.get('exitCode')})"
            )
    started = status.get("startTime")
    ip = status.get("podIP")
    ports = [
        port["containerPort"]
        for container in pod.get("spec", {}).get("containers", [])
        for port in container.get("ports") or []
    ]
    port = ports[0] if ports else None
    return Replica(
        group_id=group_id,
        replica_id=metadata["name"],
        revision=revisions.get(owner, 0),
        state=state,
        ready=ready,
        port=port,
        endpoint=f"{ip}:{port}" if ip and port else None,
        restarts=sum(int(c.get("restartCount") or 0) for c in containers),
        last_exit_reason=last_exit,
        started_at=_timestamp(started) if started else None,
    )


def event_time(item: Mapping[str, Any]) -> dt.datetime:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        if item.get(key):
            return _timestamp(str(item[key]))
    return _timestamp(str(item["metadata"].get("creationTimestamp") or "1970-01-01T00:00:00Z"))


def _timestamp(text: str) -> dt.datetime:
    # RFC 3339, as the catalog keeps times: timezone-aware UTC.
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


def version_number(text: object) -> int:
    """A version number such as ``"20"`` or ``"20+"`` (as some providers report minors)."""
    digits = "".join(ch for ch in str(text) if ch.isdigit())
    return int(digits) if digits else 0
