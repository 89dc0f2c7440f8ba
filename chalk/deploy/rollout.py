"""A local group's rollout as its replicas show it: the revision the catalog names may not be
the one serving (a new version that keeps crashing while the old replicas serve).

``chalk scaling-group get`` and ``chalk model deploy --wait`` say it, so the catalog never
seems to claim that a version serves when an older one does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chalk.catalog import ScalingGroup
from chalk.catalog.records import Replica
from chalk.deploy.states import GroupStatus

__all__ = ["Rollout", "rollout_of", "serving_revision"]


@dataclass(frozen=True, slots=True)
class Rollout:
    """The current revision has no ready replica while older revisions' replicas serve."""

    group: str
    revision: int
    serving_revision: int
    serving_replicas: int
    target: str
    serving: str
    failing_reason: str | None

    @property
    def message(self) -> str:
        """One line for ``get``.

        Examples
        --------
        >>> Rollout("ner", 3, 2, 2, "model ner version 2", "model ner version 1",
        ...         "replica ner-3 exited (code 1)").message
        'rollout of model ner version 2 (revision 3) failing: replica ner-3 exited (code 1); serving model ner version 1 (revision 2) from 2 replicas'
        """  # noqa: E501
        how = "in progress" if self.failing_reason is None else f"failing: {self.failing_reason}"
        count = "1 replica" if self.serving_replicas == 1 else f"{self.serving_replicas} replicas"
        return (
            f"rollout of {self.target} (revision {self.revision}) {how}; serving {self.serving} "
            f"(revision {self.serving_revision}) from {count}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "target": self.target,
            "failing": self.failing_reason is not None,
            "reason": self.failing_reason,
            "servingRevision": self.serving_revision,
            "serving": self.serving,
            "servingReplicas": self.serving_replicas,
        }


def rollout_of(
    group: ScalingGroup, replicas: Sequence[Replica], specs: Mapping[int, Mapping[str, Any]]
) -> Rollout | None:
    """The group's unfinished rollout, or None when its current revision serves (or nothing
    older does). ``specs`` maps revisions to their stored specs (``catalog.groups.history``)."""
    current = [r for r in replicas if r.revision == group.revision]
    older = [r for r in replicas if r.revision != group.revision and r.ready]
    if not older or any(r.ready for r in current):
        return None
    serving_revision = max(r.revision for r in older)
    return Rollout(
        group=group.name,
        revision=group.revision,
        serving_revision=serving_revision,
        serving_replicas=sum(1 for r in older if r.revision == serving_revision),
        target=_what(specs.get(group.revision), group.revision),
        serving=_what(specs.get(serving_revision), serving_revision),
        failing_reason=_failing(group, current),
    )


def serving_revision(group: ScalingGroup, replicas: Sequence[Replica]) -> int:
    """The revision whose replicas answer the group's calls: its own, unless its rollout is
    unfinished (``rollout_of``: none of its replicas ready while an older revision's are)."""
    rollout = rollout_of(group, replicas, {})
    return group.revision if rollout is None else rollout.serving_revision


def _what(spec: Mapping[str, Any] | None, revision: int) -> str:
    model = (spec or {}).get("model")
    if model:
        return f"model {model['name']} version {model['version']}"
    image = (spec or {}).get("image")
    return f"image {image}" if image else f"revision {revision}"


def _failing(group: ScalingGroup, current: Iterable[Replica]) -> str | None:
    """Why the new revision is not coming up, when it is not merely starting."""
    crashed = [r for r in current if r.restarts > 0 and r.last_exit_reason]
    if crashed:
        return crashed[-1].last_exit_reason.splitlines()[0]
    if group.status in (GroupStatus.CRASH_LOOP_BACK_OFF, GroupStatus.FAILED) and group.reason:
        return group.reason.splitlines()[0]
    return None
