"""``rollout_of``: which revision serves while the one the catalog names is not up."""

from __future__ import annotations

import datetime as dt

import pytest

from chalk.catalog import ScalingGroup
from chalk.catalog.records import Replica
from chalk.deploy.rollout import rollout_of

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SPECS = {
    1: {"image": "m:v1", "model": {"name": "m", "version": 1}},
    2: {"image": "m:v2", "model": {"name": "m", "version": 2}},
}


def group(status: str = "Running", reason: str = "") -> ScalingGroup:
    return ScalingGroup(
        id="g1", name="g", backend="local", spec=SPECS[2], revision=2, status=status,
        reason=reason, desired_replicas=1, ready_replicas=1, available_replicas=1, endpoints=(),
        url=None, created_at=NOW, updated_at=NOW,
    )  # fmt: skip


def replica(revision: int, *, ready: bool, restarts: int = 0, reason: str = "") -> Replica:
    return Replica(
        group_id="g1", replica_id=f"g-{revision}-{restarts}", revision=revision,
        state="Running" if ready else "CrashLoopBackOff", ready=ready, restarts=restarts,
        last_exit_reason=reason,
    )  # fmt: skip


@pytest.mark.parametrize(
    "replicas",
    [
        [],
        [replica(2, ready=True)],
        [replica(1, ready=True), replica(2, ready=True)],
        [replica(2, ready=False)],
    ],
    ids=["none", "current_serves", "both_serve", "nothing_older_serves"],
)
def test_no_rollout_is_shown_unless_an_older_revision_alone_serves(
    replicas: list[Replica],
) -> None:
    assert rollout_of(group(), replicas, SPECS) is None


def test_a_crashing_new_revision_is_failing_and_names_the_serving_version() -> None:
    replicas = [
        replica(1, ready=True),
        replica(1, ready=True),
        replica(2, ready=False, restarts=3, reason="exit code 1: RuntimeError: weights"),
    ]

    rollout = rollout_of(group("CrashLoopBackOff", "replica crashed"), replicas, SPECS)

    assert rollout is not None
    assert rollout.message == (
        "rollout of model m version 2 (revision 2) failing: exit code 1: RuntimeError: weights; "
        "serving model m version 1 (revision 1) from 2 replicas"
    )


def test_a_new_revision_still_starting_is_in_progress() -> None:
    rollout = rollout_of(group(), [replica(1, ready=True), replica(2, ready=False)], SPECS)

    assert rollout is not None
    assert rollout.failing_reason is None
    assert rollout.message.startswith("rollout of model m version 2 (revision 2) in progress;")
