"""The dashboard's JSON: the overview of every group, one group's replicas, events and rollout,
the model versions and the applied graph (``routes`` answers them; the page polls them).

Locally the groups' state comes from the catalog, on Kubernetes from the backend's read-only
``observe``; what a replica holds in flight comes from the series scraper's last reading, on
Kubernetes from Prometheus (with calls/s, CPU and memory: ``Live``, filled by ``routes``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from chalk.catalog import Catalog, ScalingGroup
from chalk.catalog.records import Event, Replica
from chalk.catalog.specs import GroupSpec
from chalk.common.config import Project
from chalk.deploy.backends import backend_for
from chalk.deploy.rollout import rollout_of
from chalk.deploy.states import GroupStatus
from chalk.deploy.usage import fresh_usage, group_limits
from chalk.deploy.views import Backend, GroupView
from chalk.engine.callers import groups_called
from chalk.engine.parse import parse
from chalk.features.expr import ExpressionError, features_used
from chalk.features.graph import FeatureGraph, GraphError
from chalk.features.types import type_to_text

__all__ = [
    "EVENTS_SHOWN",
    "OOM_RECENT",
    "Live",
    "broken_reason",
    "graph_document",
    "group_document",
    "models_document",
    "overview_document",
    "rfc3339",
    "serving_model_version",
]

EVENTS_SHOWN: Final = 200
# An OOM kill this recent marks its group broken (the window of the dashboard's charts).
OOM_RECENT: Final = dt.timedelta(minutes=15)
# Statuses that are broken by themselves; the reason is the status and what the backend said.
_BROKEN_STATUSES: Final = frozenset(
    {
        GroupStatus.CRASH_LOOP_BACK_OFF,
        GroupStatus.FAILED,
        GroupStatus.UNKNOWN,
        GroupStatus.IMAGE_PULL_BACK_OFF,
        GroupStatus.CREATE_CONTAINER_CONFIG_ERROR,
        GroupStatus.CREATE_CONTAINER_ERROR,
    }
)
_OOM: Final = "OOMKilled"


@dataclass(frozen=True, slots=True)
class Live:
    """What the series source knows now: where series come from (``source``, with a ``note``
    when there are none or some figures are missing), calls per second by group, calls in
    flight by (group, replica); on Kubernetes also CPU millicores and resident bytes by
    (group, replica), which locally come from the catalog's samples instead."""

    source: str = "none"
    note: str | None = None
    calls_per_second: Mapping[str, float] = field(default_factory=dict)
    in_flight: Mapping[tuple[str, str], float] = field(default_factory=dict)
    cpu_millicores: Mapping[tuple[str, str], float] = field(default_factory=dict)
    memory_bytes: Mapping[tuple[str, str], float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Observed:
    """One group as the backend shows it, with what the dashboard derives from it."""

    view: GroupView
    specs: Mapping[int, Mapping[str, Any]]
    events: tuple[Event, ...]
    broken: str | None
    broken_at: dt.datetime


def rfc3339(moment: dt.datetime | None) -> str | None:
    """A catalog time as RFC 3339 in UTC (``Z``); a naive time is taken as UTC.

    Examples
    --------
    >>> rfc3339(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    '2026-01-02T03:04:05Z'
    """
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def overview_document(
    project: Project, catalog: Catalog, live: Live, *, backend: Backend | None = None
) -> dict[str, Any]:
    """``GET /api/dashboard/overview``: every live group, broken ones first (the most recent
    break first), then by name."""
    now = catalog.clock()
    backend = backend or backend_for(project)
    observed = [_observe(backend, catalog, group, now) for group in catalog.groups.list()]
    broken = sorted((o for o in observed if o.broken), key=lambda o: o.broken_at, reverse=True)
    healthy = sorted((o for o in observed if not o.broken), key=lambda o: o.view.group.name)
    active = catalog.graphs.active()
    return {
        "generatedAt": rfc3339(now),
        "backend": project.config.backend,
        "project": project.config.project,
        "graphVersion": None if active is None else active.version,
        "series": {"source": live.source, "note": live.note},
        "groups": [_group_json(o, live) for o in [*broken, *healthy]],
    }


def group_document(
    project: Project,
    catalog: Catalog,
    name: str,
    live: Live,
    *,
    backend: Backend | None = None,
) -> dict[str, Any]:
    """``GET /api/dashboard/groups/{name}``: the group, its replicas, its events (newest
    first) and its rollout; an unknown ``name`` raises the catalog's NotFoundError."""
    now = catalog.clock()
    observed = _observe(backend or backend_for(project), catalog, catalog.groups.get(name), now)
    group, replicas = observed.view.group, observed.view.replicas
    rollout = rollout_of(group, replicas, observed.specs)
    return {
        "generatedAt": rfc3339(now),
        "group": _group_json(observed, live),
        "replicas": [_replica_json(group, r, now, live) for r in replicas],
        "events": [_event_json(e) for e in reversed(observed.events)],
        "rollout": None if rollout is None else _rollout_json(group, replicas, observed.specs),
    }


def models_document(
    project: Project, catalog: Catalog, *, backend: Backend | None = None
) -> dict[str, Any]:
    """``GET /api/dashboard/models``: each model's versions with the groups running them (by
    their live replicas: an old version a failing rollout left serving lists its group)."""
    running: dict[tuple[str, int], list[str]] = {}
    backend = backend or backend_for(project)
    for group in catalog.groups.list():
        view = backend.observe(catalog, group)
        specs = {r.revision: r.spec for r in catalog.groups.history(group.name)}
        for model in _models_running(view.group, view.replicas, specs):
            running.setdefault(model, []).append(group.name)
    models: dict[str, list[dict[str, Any]]] = {}
    for version in catalog.models.list():
        key = (version.model_name, version.model_version)
        shown = version.to_json()
        models.setdefault(version.model_name, []).append(
            {
                "version": version.model_version,
                "image": version.image,
                "inputSchema": _schema(shown["inputSchema"]),
                "outputSchema": _schema(shown["outputSchema"]),
                "aliases": list(version.aliases),
                "deterministic": version.deterministic,
                "createdAt": rfc3339(version.created_at),
                "groups": sorted(running.get(key, [])),
            }
        )
    return {
        "generatedAt": rfc3339(catalog.clock()),
        "models": [
            {"name": name, "versions": sorted(versions, key=lambda v: v["version"])}
            for name, versions in sorted(models.items())
        ],
    }


def graph_document(catalog: Catalog) -> dict[str, Any]:
    """``GET /api/dashboard/graph``: the applied graph's classes and features, and which
    feature calls which group (``applied`` False, empty lists, when none is applied)."""
    generated = rfc3339(catalog.clock())
    record = catalog.graphs.active()
    graph = None
    if record is not None:
        try:
            graph = FeatureGraph.from_json(record.graph)
        except (GraphError, KeyError, TypeError, ValueError):
            graph = None  # written by another version of chalk: shown as not applied
    if record is None or graph is None:
        return {
            "generatedAt": generated,
            "applied": False,
            "graphVersion": None,
            "classes": [],
            "edges": [],
        }
    calls = {fqn: group for group, fqns in groups_called(graph).items() for fqn in fqns}
    classes = [
        {
            "name": cls.namespace,
            "features": [
                {
                    "name": f.name,
                    "type": type_to_text(f.arrow_type),
                    "primary": f.primary,
                    "callsGroup": calls.get(f.fqn),
                    "dependsOn": _depends_on(f.namespace, f.expression),
                }
                for f in cls.features
            ],
        }
        for cls in graph.classes
    ]
    return {
        "generatedAt": generated,
        "applied": True,
        "graphVersion": record.version,
        "classes": classes,
        "edges": [{"feature": fqn, "group": group} for fqn, group in sorted(calls.items())],
    }


def broken_reason(
    group: ScalingGroup,
    replicas: Sequence[Replica],
    events: Sequence[Event],
    specs: Mapping[int, Mapping[str, Any]],
    now: dt.datetime,
) -> str | None:
    """Why the group is broken, as one line, or None while it is not.

    Broken: a status that says so by itself (CrashLoopBackOff, Failed, Unknown, an image or
    container error), a rollout whose new revision has no ready replica while old ones serve
    and is failing, or an OOM kill in the last 15 minutes. A failing rollout's reason says
    which version still serves: ``rollout to v2 failing: CrashLoopBackOff: ...; v1 serves``.
    """
    status = group.status
    rollout = rollout_of(group, replicas, specs)
    why = None
    if status in _BROKEN_STATUSES:
        why = f"{status}: {_broken_detail(group, replicas)}"
    elif rollout is not None and rollout.failing_reason is not None:
        why = rollout.failing_reason
    if why is not None and rollout is not None:
        asked = _version_text(specs, rollout.revision)
        serving = _version_text(specs, rollout.serving_revision)
        return f"rollout to {asked} failing: {why}; {serving} serves"
    if why is not None:
        return why
    oom = _recent_oom(group, replicas, events, now)
    if oom is not None:
        return f"{_OOM}: {oom}"
    return None


def serving_model_version(
    group: ScalingGroup, replicas: Sequence[Replica], specs: Mapping[int, Mapping[str, Any]]
) -> int | None:
    """The model version whose replicas are ready and answer calls: an unfinished rollout's
    old one (``rollout_of``), else the group's own while any replica is ready, else None."""
    rollout = rollout_of(group, replicas, specs)
    if rollout is not None:
        model = (specs.get(rollout.serving_revision) or {}).get("model") or {}
        return model.get("version")
    if group.ready_replicas > 0 or any(r.ready for r in replicas):
        return None if group.model is None else group.model[1]
    return None


def _models_running(
    group: ScalingGroup, replicas: Sequence[Replica], specs: Mapping[int, Mapping[str, Any]]
) -> set[tuple[str, int]]:
    """The (model, version) pairs the group's ready replicas run; with none ready, the one it
    asks for (what it is starting or failing to start)."""
    found = set()
    for revision in {r.revision for r in replicas if r.ready}:
        model = (specs.get(revision) or {}).get("model")
        if model:
            found.add((str(model["name"]), int(model["version"])))
    if not found and group.model is not None:
        found.add(group.model)
    return found


def _version_text(specs: Mapping[int, Mapping[str, Any]], revision: int) -> str:
    """A revision as the overview names it: ``v2`` for a model's, else its image."""
    spec = specs.get(revision) or {}
    model = spec.get("model")
    if model:
        return f"v{model['version']}"
    return f"image {spec['image']}" if spec.get("image") else f"revision {revision}"


def _broken_detail(group: ScalingGroup, replicas: Sequence[Replica]) -> str:
    if group.status == GroupStatus.CRASH_LOOP_BACK_OFF:
        crashing = [r for r in replicas if r.state == GroupStatus.CRASH_LOOP_BACK_OFF]
        if crashing:
            replica = max(crashing, key=lambda r: r.restarts)
            exit_text = _first_line(replica.last_exit_reason) or "exited"
            restarts = "1 restart" if replica.restarts == 1 else f"{replica.restarts} restarts"
            return f"replica {replica.replica_id} {exit_text} ({restarts})"
    return _first_line(group.reason) or "no reason given"


def _recent_oom(
    group: ScalingGroup, replicas: Sequence[Replica], events: Sequence[Event], now: dt.datetime
) -> str | None:
    since = now - OOM_RECENT
    for event in reversed(events):
        if event.reason == _OOM and _aware(event.time) >= since:
            return _first_line(event.message)
    for replica in replicas:
        # Restarted after the kill: its start is the kill's time, give or take the back-off.
        moment = replica.started_at
        if replica.last_exit_reason.startswith(_OOM) and moment and _aware(moment) >= since:
            return f"replica {replica.replica_id} {_first_line(replica.last_exit_reason)}"
    return None


def _observe(
    backend: Backend, catalog: Catalog, group: ScalingGroup, now: dt.datetime
) -> _Observed:
    view = backend.observe(catalog, group)
    if view.group.backend == "local":
        events = tuple(catalog.state.events(group.id, limit=EVENTS_SHOWN))
    else:
        events = view.events[-EVENTS_SHOWN:]
    specs = {r.revision: r.spec for r in catalog.groups.history(group.name)}
    broken = broken_reason(view.group, view.replicas, events, specs, now)
    warnings = [_aware(e.time) for e in events if e.type == "Warning"]
    broken_at = max(warnings, default=_aware(view.group.updated_at))
    return _Observed(view, specs, events, broken, broken_at)


def _group_json(observed: _Observed, live: Live) -> dict[str, Any]:
    group = observed.view.group
    spec = GroupSpec.from_dict(group.spec)
    model = group.model
    limits = spec.resources.requests_and_limits()["limits"]
    scaling = spec.scaling
    return {
        "name": group.name,
        "status": group.status,
        "broken": observed.broken is not None,
        "brokenReason": observed.broken,
        "readyReplicas": group.ready_replicas,
        "desiredReplicas": group.desired_replicas,
        "image": spec.image,
        "model": None if model is None else model[0],
        "modelVersion": None if model is None else model[1],
        "servingModelVersion": serving_model_version(group, observed.view.replicas, observed.specs),
        "url": group.url,
        "tags": group.tags,
        "resources": {"cpu": limits["cpu"], "memory": limits["memory"], "gpu": spec.resources.gpu},
        "autoscaling": {
            "min": scaling.min_replicas,
            "max": scaling.max_replicas,
            "targetCpu": scaling.effective_target_cpu,
            "decision": _decision(group, observed.events),
        },
        "callsPerSecond": live.calls_per_second.get(group.name),
    }


def _decision(group: ScalingGroup, events: Sequence[Event]) -> dict[str, Any] | None:
    """The autoscaler's last decision: its newest ``Scaled`` event (it records each change
    with its reason there) and the count it wants now."""
    for event in reversed(events):
        if event.reason == "Scaled":
            return {
                "desired": group.desired_replicas,
                "reason": event.message,
                "at": rfc3339(event.time),
            }
    return None


def _replica_json(
    group: ScalingGroup, replica: Replica, now: dt.datetime, live: Live
) -> dict[str, Any]:
    cpu_limit, memory_limit = group_limits(group.spec)
    key = (group.name, replica.replica_id)
    sampled_cpu, sampled_memory = fresh_usage(replica, now)
    cpu = live.cpu_millicores.get(key) if sampled_cpu is None else sampled_cpu
    memory = live.memory_bytes.get(key) if sampled_memory is None else sampled_memory
    in_flight = live.in_flight.get(key)
    started = replica.started_at
    return {
        "name": replica.replica_id,
        "revision": replica.revision,
        "state": replica.state,
        "ready": replica.ready,
        "restarts": replica.restarts,
        "cpuMillicores": None if cpu is None else round(cpu),
        "cpuLimitMillicores": cpu_limit,
        "memoryBytes": None if memory is None else round(memory),
        "memoryLimitBytes": memory_limit,
        "inFlight": None if in_flight is None else round(in_flight),
        "startedAt": rfc3339(started),
        "ageSeconds": None if started is None else (now - _aware(started)).total_seconds(),
        "lastExit": _first_line(replica.last_exit_reason) or None,
        "endpoint": replica.endpoint,
    }


def _event_json(event: Event) -> dict[str, Any]:
    return {
        "at": rfc3339(event.time),
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
    }


def _rollout_json(
    group: ScalingGroup, replicas: Sequence[Replica], specs: Mapping[int, Mapping[str, Any]]
) -> dict[str, Any]:
    """Every revision that has replicas, the oldest first: the group's own is ``new``."""
    revisions = sorted({r.revision for r in replicas} | {group.revision})
    shown = []
    for revision in revisions:
        spec = specs.get(revision) or {}
        model = spec.get("model") or {}
        mine = [r for r in replicas if r.revision == revision]
        shown.append(
            {
                "revision": revision,
                "modelVersion": model.get("version"),
                "image": spec.get("image"),
                "readyReplicas": sum(1 for r in mine if r.ready),
                "replicas": len(mine),
                "role": "new" if revision == group.revision else "old",
            }
        )
    return {"inProgress": True, "revisions": shown}


def _depends_on(namespace: str, expression: str | None) -> list[str]:
    if expression is None:
        return []
    try:
        node = parse(expression)
    except ExpressionError:
        return []
    return [f"{namespace}.{name}" for name in sorted(features_used(node))]


def _schema(fields: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": f["name"], "type": f["type"]} for f in fields]


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
