"""The local controller's pure decisions, tick by tick on a fake clock, without processes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from chalk.catalog import ScalingGroup
from chalk.deploy.local.plan import (
    Action,
    Observed,
    ReplicaView,
    StartReplica,
    StopReplica,
    group_status,
    plan,
)
from chalk.deploy.states import GroupStatus, ReplicaEvent, ReplicaState, next_replica_state

S = ReplicaState


def group(revision: int = 1) -> ScalingGroup:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return ScalingGroup(
        id="sg-1",
        name="g",
        backend="local",
        spec={"image": "m:latest"},
        revision=revision,
        status="Pending",
        reason="",
        desired_replicas=0,
        ready_replicas=0,
        available_replicas=0,
        endpoints=(),
        url=None,
        created_at=now,
        updated_at=now,
    )


def replica(name: str, state: ReplicaState, revision: int = 1, **more: Any) -> ReplicaView:
    return ReplicaView(replica_id=name, revision=revision, state=state, **more)


@dataclass
class World:
    """A group's replicas as a tiny simulation: actions applied, processes that pass probes."""

    revision: int = 1
    replicas: dict[str, ReplicaView] = field(default_factory=dict)
    started: int = 0

    def apply(self, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, StopReplica):
                del self.replicas[action.replica_id]
                continue
            name = action.replica_id
            if name is None:
                self.started += 1
                name = f"r{self.started}"
                self.replicas[name] = replica(name, S.PENDING, action.revision)
            view = self.replicas[name]
            self.replicas[name] = replace(
                view, state=next_replica_state(view.state, ReplicaEvent.LAUNCHED)
            )

    def probe_all(self) -> None:
        for name, view in self.replicas.items():
            if view.state is S.STARTING:
                self.replicas[name] = replace(view, state=S.RUNNING)

    def observed(self, desired: int) -> Observed:
        return Observed(desired=desired, replicas=tuple(self.replicas.values()))


def test_a_new_group_starts_its_replicas_then_reports_ready_tick_by_tick() -> None:
    world = World()
    g = group()

    first = plan(g, world.observed(desired=2), now=0.0)
    assert first == [StartReplica(None, 1), StartReplica(None, 1)]
    world.apply(first)
    assert group_status(1, 2, list(world.replicas.values())) == (
        GroupStatus.PROGRESSING,
        "0 of 2 replicas ready",
    )

    # Starting replicas are neither restarted nor doubled while their probes are pending.
    assert plan(g, world.observed(desired=2), now=0.5) == []

    world.probe_all()
    assert plan(g, world.observed(desired=2), now=1.0) == []
    assert group_status(1, 2, list(world.replicas.values())) == (GroupStatus.READY, "")


def test_a_crashed_replica_restarts_only_once_its_back_off_has_passed() -> None:
    crashed = replica(
        "r1", S.CRASH_LOOP_BACK_OFF, restarts=2, restart_at=10.0, last_exit_reason="exit code 1"
    )
    observed = Observed(desired=1, replicas=(crashed,))

    assert plan(group(), observed, now=9.9) == []
    assert group_status(1, 1, [crashed]) == (
        GroupStatus.CRASH_LOOP_BACK_OFF,
        "replica r1 exit code 1 (2 restarts)",
    )
    assert plan(group(), observed, now=10.0) == [StartReplica("r1", 1)]


def test_scaling_down_stops_replicas_that_serve_least_first() -> None:
    replicas = (
        replica("old-ready", S.RUNNING, pid=100),
        replica("new-ready", S.RUNNING, pid=300),
        replica("starting", S.STARTING, pid=200),
    )

    actions = plan(group(), Observed(desired=1, replicas=replicas), now=0.0)

    assert actions == [
        StopReplica("starting", "scaled down"),
        StopReplica("new-ready", "scaled down"),
    ]


def test_a_roll_keeps_the_old_revision_until_the_new_one_serves_in_full() -> None:
    world = World(replicas={"old": replica("old", S.RUNNING, revision=1, pid=1)})
    g = group(revision=2)

    world.apply(step := plan(g, world.observed(desired=1), now=0.0))
    assert step == [StartReplica(None, 2)]
    assert group_status(2, 1, list(world.replicas.values())) == (
        GroupStatus.PROGRESSING,
        "rolling to revision 2: 0 of 1 new replicas ready",
    )
    # The new replica is starting: the old one keeps serving.
    assert plan(g, world.observed(desired=1), now=1.0) == []

    world.probe_all()
    assert plan(g, world.observed(desired=1), now=2.0) == [
        StopReplica("old", "replaced by revision 2")
    ]


def test_a_roll_replaces_old_replicas_one_for_one_as_new_ones_serve() -> None:
    old = {f"old{i}": replica(f"old{i}", S.RUNNING, revision=1, pid=i) for i in (1, 2, 3)}
    world = World(replicas=dict(old))
    g = group(revision=2)

    def serving() -> int:
        return sum(1 for r in world.replicas.values() if r.state.serves)

    world.apply(step := plan(g, world.observed(desired=3), now=0.0))
    assert step == [StartReplica(None, 2)] * 3
    assert serving() == 3
    stopped: list[list[str]] = []
    for tick, name in enumerate(["r2", "r1", "r3"], start=1):
        # One new replica passes its probe: exactly one old one leaves, newest process first.
        world.replicas[name] = replace(world.replicas[name], state=S.RUNNING)
        step = plan(g, world.observed(desired=3), now=float(tick))
        assert all(isinstance(action, StopReplica) for action in step)
        world.apply(step)
        stopped.append([action.replica_id for action in step])  # type: ignore[union-attr]
        assert serving() == 3

    assert stopped == [["old3"], ["old2"], ["old1"]]
    assert all(r.revision == 2 for r in world.replicas.values())


def test_a_roll_lets_old_replicas_that_serve_nobody_go_first() -> None:
    replicas = (
        replica("old-ready", S.RUNNING, revision=1, pid=1),
        replica("old-starting", S.STARTING, revision=1, pid=2),
        replica("old-crashed", S.CRASH_LOOP_BACK_OFF, revision=1, restart_at=99.0),
        replica("new-ready", S.RUNNING, revision=2, pid=3),
        replica("new-starting", S.STARTING, revision=2, pid=4),
    )

    actions = plan(group(revision=2), Observed(desired=2, replicas=replicas), now=0.0)

    # One new replica serves, so one old one is still needed: the one that serves stays.
    assert actions == [
        StopReplica("old-starting", "replaced by revision 2"),
        StopReplica("old-crashed", "replaced by revision 2"),
    ]


def test_old_replicas_that_no_longer_run_leave_at_once() -> None:
    old = replica("old", S.CRASH_LOOP_BACK_OFF, revision=1, restart_at=99.0)

    actions = plan(group(revision=2), Observed(desired=1, replicas=(old,)), now=0.0)

    assert actions == [StartReplica(None, 2), StopReplica("old", "replaced by revision 2")]


def test_a_replica_waiting_for_gpus_is_retried_each_pass_and_the_group_is_pending() -> None:
    waiting = replica("r1", S.PENDING, pending_reason="needs 2 GPUs, 1 free")

    assert plan(group(), Observed(desired=1, replicas=(waiting,)), now=0.0) == [
        StartReplica("r1", 1)
    ]
    assert group_status(1, 1, [waiting]) == (GroupStatus.PENDING, "needs 2 GPUs, 1 free")


def test_an_unready_replica_counts_as_not_ready_but_is_not_replaced() -> None:
    unready = replica("r1", S.UNREADY, pid=7)

    assert plan(group(), Observed(desired=1, replicas=(unready,)), now=0.0) == []
    assert group_status(1, 1, [unready]) == (GroupStatus.PROGRESSING, "0 of 1 replicas ready")


@pytest.mark.parametrize(
    ("state", "event", "expected"),
    [
        (S.PENDING, ReplicaEvent.LAUNCHED, S.STARTING),
        (S.PENDING, ReplicaEvent.NO_CAPACITY, S.PENDING),
        (S.STARTING, ReplicaEvent.PROBE_PASSED, S.RUNNING),
        (S.RUNNING, ReplicaEvent.PROBES_FAILED, S.UNREADY),
        (S.UNREADY, ReplicaEvent.PROBE_PASSED, S.RUNNING),
        (S.RUNNING, ReplicaEvent.EXITED, S.CRASH_LOOP_BACK_OFF),
        (S.CRASH_LOOP_BACK_OFF, ReplicaEvent.LAUNCHED, S.STARTING),
        (S.RUNNING, ReplicaEvent.STOP, S.TERMINATING),
    ],
)
def test_replica_transitions(state: S, event: ReplicaEvent, expected: S) -> None:
    assert next_replica_state(state, event) is expected


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (S.TERMINATING, ReplicaEvent.LAUNCHED),
        (S.TERMINATING, ReplicaEvent.PROBE_PASSED),
        (S.PENDING, ReplicaEvent.PROBE_PASSED),
        (S.PENDING, ReplicaEvent.STOP),
    ],
)
def test_a_transition_no_replica_makes_is_refused(state: S, event: ReplicaEvent) -> None:
    with pytest.raises(ValueError, match=f"a {state} replica cannot be {event}"):
        next_replica_state(state, event)


def test_states_print_and_compare_as_the_strings_the_catalog_stores() -> None:
    assert str(GroupStatus.CRASH_LOOP_BACK_OFF) == "CrashLoopBackOff"
    assert GroupStatus("Failed") is GroupStatus.FAILED
    assert isinstance(GroupStatus.FAILED, str)
    assert ReplicaState("Terminating") is S.TERMINATING
    assert f"{S.RUNNING}" == "Running"


def test_a_group_scaled_to_zero_is_idle_once_no_replica_is_left() -> None:
    crashed = ReplicaView(
        "g-1", 1, ReplicaState.CRASH_LOOP_BACK_OFF, restarts=3, last_exit_reason="exit code 3"
    )

    assert group_status(1, 0, [], idle_reason="no call for 300 s") == (
        GroupStatus.IDLE,
        "no call for 300 s",
    )
    assert group_status(1, 0, [crashed])[0] is GroupStatus.CRASH_LOOP_BACK_OFF
