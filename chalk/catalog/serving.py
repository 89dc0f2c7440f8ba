"""Which model versions answer a group's calls now: ``Catalog.resolve`` puts them in the route,
so that the engine caches an answer only under the version that gave it (mid-roll, old
replicas still answer while the group's spec names the new version).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from chalk.catalog.records import Endpoint, Replica, ScalingGroup

__all__ = ["serving_models"]

# The status a backend reports for a group whose current revision serves with every replica
# (``chalk.deploy.states.GroupStatus.READY``; the catalog imports nothing of deploy).
_READY: Final = "Ready"


def serving_models(
    group: ScalingGroup,
    endpoints: Sequence[Endpoint],
    replicas: Callable[[], Sequence[Replica]],
    history: Callable[[], Iterable[tuple[int, dict[str, Any]]]],
) -> tuple[tuple[str, int], ...]:
    """The ``(model, version)`` pairs the group's ready ``endpoints`` run, sorted; empty when
    the catalog cannot tell (no endpoint, a Kubernetes rollout in progress, an endpoint no
    ready replica row claims).

    Locally each endpoint is a replica whose row names its revision (``replicas``, read only
    here), and the group's revisions (``history``: ``(revision, spec)`` pairs, read only when
    some replica runs an older one) give each revision's model version. On Kubernetes the
    endpoint is the group's Service, which reaches whatever pods are ready: only a group its
    backend reported ``Ready`` (every replica of the current revision) runs one version.

    Examples
    --------
    >>> import datetime as dt
    >>> now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    >>> spec = {"model": {"name": "ner", "version": 4}}
    >>> group = ScalingGroup("g1", "ner", "local", spec, 2, "Progressing", "", 2, 2, 2,
    ...                      (), None, now, now)
    >>> rows = [Replica("g1", "ner-1", 1, "Running", True, endpoint="127.0.0.1:7001"),
    ...         Replica("g1", "ner-2", 2, "Running", True, endpoint="127.0.0.1:7002")]
    >>> older = [(1, {"model": {"name": "ner", "version": 2}}), (2, spec)]
    >>> serving_models(group, [Endpoint("127.0.0.1:7001"), Endpoint("127.0.0.1:7002")],
    ...                lambda: rows, lambda: older)
    (('ner', 2), ('ner', 4))
    >>> serving_models(group, [Endpoint("127.0.0.1:7002")], lambda: rows, lambda: older)
    (('ner', 4),)
    """
    current = group.model
    if current is None or not endpoints:
        return ()
    if group.backend != "local":
        return (current,) if group.status == _READY else ()
    ready = {row.endpoint: row.revision for row in replicas() if row.ready and row.endpoint}
    revisions = {ready.get(endpoint.target) for endpoint in endpoints}
    if None in revisions:
        return ()  # an endpoint no ready replica claims: reported before its row, or stale
    if revisions == {group.revision}:
        return (current,)
    models = {revision: _model(spec) for revision, spec in history()}
    models[group.revision] = current
    served = {models.get(revision) for revision in revisions if revision is not None}
    if None in served:
        return ()
    return tuple(sorted(model for model in served if model is not None))


def _model(spec: dict[str, Any]) -> tuple[str, int] | None:
    model = spec.get("model")
    return (str(model["name"]), int(model["version"])) if model else None
