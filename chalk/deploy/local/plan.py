"""The local controller's decisions as pure functions: what to do with one group, and its status.

``plan(group, observed, now)`` turns what one pass observed of a group into actions (start a
replica, stop one); ``group_status`` says what the group's status is once they are applied.
Neither touches a process or the catalog, so tests drive them tick by tick with a fake clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chalk.catalog import ScalingGroup
from chalk.deploy.states import GroupStatus, ReplicaState

__all__ = [
    "Action",
    "Observed",
    "ReplicaView",
    "StartReplica",
    "StopReplica",
    "group_status",
    "plan",
]


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """One replica of a group as a pass sees it (leaving replicas are not shown)."""

    replica_id: str
    revision: int
    state: ReplicaState
    restarts: int = 0
    # When a replica without a process may next start (its back-off), on the monotonic clock.
    restart_at: float = 0.0
    last_exit_reason: str = ""
    # Why it cannot start now (no GPU free); empty when nothing holds it back.
    pending_reason: str = ""
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class Observed:
    """What one pass observed of a group: its replicas and how many it should run.

    ``desired`` is the autoscaler's count for the group's current revision; it weighs the
    demand and the idle time (``autoscaler.py``), and is 0 for a group scaled to zero.
    """

    desired: int
    replicas: tuple[ReplicaView, ...] = ()


@dataclass(frozen=True, slots=True)
class StartReplica:
    """Start a process for the replica ``replica_id``; None means a new replica."""

    replica_id: str | None
    revision: int


@dataclass(frozen=True, slots=True)
class StopReplica:
    """Take ``replica_id`` out of the endpoints and stop it with its grace period."""

    replica_id: str
    reason: str


Action = StartReplica | StopReplica


def plan(group: ScalingGroup, observed: Observed, now: float) -> list[Action]:
    """The actions that bring ``group`` from what was ``observed`` towards its spec at ``now``.

    Replicas of the current revision beyond ``desired`` stop, those that serve least first;
    missing ones start as new replicas; replicas without a process start once their back-off
    (``restart_at``) has passed. Replicas of an older revision leave one for one as the
    current one's replicas serve (``_replaced``), so a roll never serves from fewer replicas
    than ``desired``; all of them at once when none of them runs any more.
    """
    revision = group.revision
    current = [r for r in observed.replicas if r.revision == revision]
    outdated = [r for r in observed.replicas if r.revision != revision]
    actions: list[Action] = []
    surplus = len(current) - observed.desired
    if surplus > 0:
        leaving = sorted(current, key=_stop_order)[:surplus]
        actions += [StopReplica(r.replica_id, "scaled down") for r in leaving]
        current = [r for r in current if r not in leaving]
    actions += [
        StartReplica(r.replica_id, revision)
        for r in current
        if not r.state.has_process and now >= r.restart_at
    ]
    actions += [StartReplica(None, revision) for _ in range(-surplus)]
    ready_new = sum(1 for r in current if r.state.serves)
    reason = f"replaced by revision {revision}"
    replaced = _replaced(outdated, keep=observed.desired - ready_new)
    actions += [StopReplica(r.replica_id, reason) for r in replaced]
    return actions


def group_status(
    revision: int, desired: int, replicas: Sequence[ReplicaView], *, idle_reason: str = ""
) -> tuple[GroupStatus, str]:
    """The group's status and its reason, from its replicas after a pass's actions.

    The first that holds wins: a replica waiting for capacity (Pending), a replica backing
    off after exits (CrashLoopBackOff, naming the one restarted most), a roll in progress
    (Progressing), scaled to zero with no replica left (Idle, with ``idle_reason``), every
    desired replica ready (Ready), else Progressing.
    """
    current = [r for r in replicas if r.revision == revision]
    ready_new = sum(1 for r in current if r.state.serves)
    pending = [r for r in current if r.state is ReplicaState.PENDING and r.pending_reason]
    if pending:
        return GroupStatus.PENDING, pending[0].pending_reason
    backing_off = [r for r in current if r.state is ReplicaState.CRASH_LOOP_BACK_OFF]
    if backing_off:
        worst = max(backing_off, key=lambda r: r.restarts)
        reason = f"replica {worst.replica_id} {worst.last_exit_reason} ({worst.restarts} restarts)"
        return GroupStatus.CRASH_LOOP_BACK_OFF, reason
    if any(r.revision != revision for r in replicas):
        return (
            GroupStatus.PROGRESSING,
            f"rolling to revision {revision}: {ready_new} of {desired} new replicas ready",
        )
    if desired == 0 and not replicas:
        return GroupStatus.IDLE, idle_reason or "scaled to zero"
    if ready_new >= desired:
        return GroupStatus.READY, ""
    return GroupStatus.PROGRESSING, f"{ready_new} of {desired} replicas ready"


def _replaced(outdated: Sequence[ReplicaView], *, keep: int) -> list[ReplicaView]:
    """The older revision's replicas that leave now when ``keep`` of them are still needed.

    Each new replica that serves lets one old one go (``keep`` is the desired count less the
    new replicas serving), those that serve least first. An old replica without a process
    leaves at once (it is never restarted), and all of them do when none runs any more.
    """
    alive = [r for r in outdated if r.state.has_process]
    if not alive:
        return list(outdated)
    surplus = len(alive) - max(keep, 0)
    leaving = sorted(alive, key=_stop_order)[: max(surplus, 0)]
    return [r for r in outdated if not r.state.has_process or r in leaving]


def _stop_order(replica: ReplicaView) -> tuple[bool, int]:
    # Scale down the replicas that serve least first: not ready, then the newest process.
    return (replica.state.serves, -(replica.pid or 0))
