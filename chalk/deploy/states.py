"""The states a scaling group and a local replica can be in, and a replica's transitions.

The values are the strings the catalog stores and ``chalk scaling-group get`` prints; both
enums are ``StrEnum`` so a stored status compares equal to its member.
"""

from __future__ import annotations

from enum import StrEnum, unique
from typing import Final

__all__ = ["GroupStatus", "ReplicaEvent", "ReplicaState", "next_replica_state"]


@unique
class GroupStatus(StrEnum):
    """A scaling group's status as its backend reports it (see ``group_status`` locally)."""

    PENDING = "Pending"  # stored, not yet acted on; or waiting for capacity (GPUs)
    PROGRESSING = "Progressing"  # replicas starting, or a roll to a new revision
    READY = "Ready"  # the current revision serves with every desired replica
    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"  # a replica keeps exiting; restarts back off
    FAILED = "Failed"  # cannot run as stored (a permanent error; on Kubernetes, a stuck rollout)
    STOPPED = "Stopped"  # `chalk down` stopped the controller and every replica
    UNKNOWN = "Unknown"  # what was reported is stale: the controller stopped heartbeating
    # Kubernetes only: a container that cannot be created or whose image cannot be pulled.
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
    CREATE_CONTAINER_ERROR = "CreateContainerError"
    # Scaled to zero after its idle period (min_replicas=0): waiting for demand, not failed.
    IDLE = "Idle"


@unique
class ReplicaState(StrEnum):
    """One local replica's state, as its catalog row stores it."""

    PENDING = "Pending"  # wanted, no process yet (not started, or no GPU free)
    STARTING = "Starting"  # its process runs; its probe has not passed yet
    RUNNING = "Running"  # ready: in the group's endpoints
    UNREADY = "Unready"  # was ready, then failed its probes: out of the endpoints
    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"  # its process exited; it restarts after a back-off
    TERMINATING = "Terminating"  # leaving: out of the endpoints, then SIGTERM, then SIGKILL

    @property
    def serves(self) -> bool:
        """Whether a replica in this state is in the group's endpoints."""
        return self is ReplicaState.RUNNING

    @property
    def has_process(self) -> bool:
        """Whether a replica in this state has a process this controller watches."""
        return self in _WITH_PROCESS


@unique
class ReplicaEvent(StrEnum):
    """What happens to a replica: what the controller did, or what it observed."""

    LAUNCHED = "launched"
    NO_CAPACITY = "no capacity"
    PROBE_PASSED = "probe passed"
    PROBES_FAILED = "probes failed"
    EXITED = "exited"
    STOP = "stop"


_WITH_PROCESS: Final = frozenset(
    {
        ReplicaState.STARTING,
        ReplicaState.RUNNING,
        ReplicaState.UNREADY,
        ReplicaState.TERMINATING,
    }
)

_S, _E = ReplicaState, ReplicaEvent
# Every transition a replica may make; anything else is a bug in the controller. A replica
# without a process that is stopped is simply removed: it has no state to move to.
_TRANSITIONS: Final[dict[tuple[ReplicaState, ReplicaEvent], ReplicaState]] = {
    (_S.PENDING, _E.LAUNCHED): _S.STARTING,
    (_S.PENDING, _E.NO_CAPACITY): _S.PENDING,
    (_S.PENDING, _E.EXITED): _S.CRASH_LOOP_BACK_OFF,  # its command could not be started
    (_S.CRASH_LOOP_BACK_OFF, _E.LAUNCHED): _S.STARTING,
    (_S.CRASH_LOOP_BACK_OFF, _E.NO_CAPACITY): _S.PENDING,
    (_S.CRASH_LOOP_BACK_OFF, _E.EXITED): _S.CRASH_LOOP_BACK_OFF,
    (_S.STARTING, _E.PROBE_PASSED): _S.RUNNING,
    (_S.STARTING, _E.PROBES_FAILED): _S.STARTING,
    (_S.STARTING, _E.EXITED): _S.CRASH_LOOP_BACK_OFF,
    (_S.STARTING, _E.STOP): _S.TERMINATING,
    (_S.RUNNING, _E.PROBE_PASSED): _S.RUNNING,
    (_S.RUNNING, _E.PROBES_FAILED): _S.UNREADY,
    (_S.RUNNING, _E.EXITED): _S.CRASH_LOOP_BACK_OFF,
    (_S.RUNNING, _E.STOP): _S.TERMINATING,
    (_S.UNREADY, _E.PROBE_PASSED): _S.RUNNING,
    (_S.UNREADY, _E.PROBES_FAILED): _S.UNREADY,
    (_S.UNREADY, _E.EXITED): _S.CRASH_LOOP_BACK_OFF,
    (_S.UNREADY, _E.STOP): _S.TERMINATING,
    (_S.TERMINATING, _E.STOP): _S.TERMINATING,
    (_S.TERMINATING, _E.PROBES_FAILED): _S.TERMINATING,
}


def next_replica_state(state: ReplicaState, event: ReplicaEvent) -> ReplicaState:
    """The state a replica in ``state`` moves to on ``event``.

    Raises
    ------
    ValueError
        When the transition is not one a replica makes (a bug in the controller).

    Examples
    --------
    >>> next_replica_state(ReplicaState.STARTING, ReplicaEvent.PROBE_PASSED)
    <ReplicaState.RUNNING: 'Running'>
    >>> next_replica_state(ReplicaState.TERMINATING, ReplicaEvent.LAUNCHED)
    Traceback (most recent call last):
    ...
    ValueError: a Terminating replica cannot be launched
    """
    try:
        return _TRANSITIONS[state, event]
    except KeyError:
        raise ValueError(f"a {state} replica cannot be {event}") from None
