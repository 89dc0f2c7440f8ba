"""When the dashboard calls a group broken, and why: one rule per case, on plain records."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from chalk.catalog import ScalingGroup
from chalk.catalog.records import Event, Replica
from chalk.server.dashboard.views import broken_reason, rfc3339, serving_model_version

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
SPECS = {
    1: {"image": "m:v1", "model": {"name": "m", "version": 1}},
    2: {"image": "m:v2", "model": {"name": "m", "version": 2}},
}


def group(status: str, reason: str = "") -> ScalingGroup:
    return ScalingGroup(
        id="g1", name="ner", backend="local", spec=SPECS[2], revision=2, status=status,
        reason=reason, desired_replicas=1, ready_replicas=1, available_replicas=1, endpoints=(),
        url=None, created_at=NOW, updated_at=NOW,
    )  # fmt: skip


def replica(
    name: str,
    revision: int,
    state: str,
    *,
    restarts: int = 0,
    exit_reason: str = "",
    started_minutes_ago: float = 1,
) -> Replica:
    return Replica(
        group_id="g1", replica_id=name, revision=revision, state=state,
        ready=state == "Running", restarts=restarts, last_exit_reason=exit_reason,
        started_at=NOW - dt.timedelta(minutes=started_minutes_ago), updated_at=NOW,
    )  # fmt: skip


def oom(minutes_ago: float) -> Event:
    return Event(
        "g1",
        NOW - dt.timedelta(minutes=minutes_ago),
        "Warning",
        "OOMKilled",
        "replica ner-1 OOMKilled: memory 300Mi over the limit of 256Mi",
    )


@pytest.mark.parametrize(
    ("status", "reason", "replicas", "expected"),
    [
        pytest.param(
            "CrashLoopBackOff", "replica ner-2 exit code 1 (3 restarts)",
            [replica("ner-2", 2, "CrashLoopBackOff", restarts=3,
                     exit_reason="exit code 1: RuntimeError\nTraceback ...")],
            "CrashLoopBackOff: replica ner-2 exit code 1: RuntimeError (3 restarts)",
            id="crash_loop",
        ),
        pytest.param(
            "Unknown", "the local controller is not running (chalk up); it last reported Ready",
            [], "Unknown: the local controller is not running (chalk up); it last reported Ready",
            id="controller_stale",
        ),
        pytest.param(
            "ImagePullBackOff", "Back-off pulling image \"m:v2\"", [],
            "ImagePullBackOff: Back-off pulling image \"m:v2\"", id="image_pull",
        ),
        pytest.param("Failed", "", [], "Failed: no reason given", id="failed_without_reason"),
        pytest.param(
            "Progressing", "rolling to revision 2",
            [replica("ner-1", 1, "Running"),
             replica("ner-2", 2, "Starting", restarts=2, exit_reason="exit code 1")],
            "rollout to v2 failing: exit code 1; v1 serves",
            id="rollout_failing_between_restarts",
        ),
        pytest.param(
            "CrashLoopBackOff", "",
            [replica("ner-1", 1, "Running"),
             replica("ner-2", 2, "CrashLoopBackOff", restarts=3, exit_reason="exit code 1")],
            "rollout to v2 failing: CrashLoopBackOff: replica ner-2 exit code 1 (3 restarts); "
            "v1 serves",
            id="rollout_crash_looping",
        ),
    ],
)  # fmt: skip
def test_a_broken_group_says_why_in_one_line(
    status: str, reason: str, replicas: list[Replica], expected: str
) -> None:
    assert broken_reason(group(status, reason), replicas, [], SPECS, NOW) == expected


@pytest.mark.parametrize(
    ("status", "replicas"),
    [
        pytest.param("Ready", [replica("ner-1", 2, "Running")], id="ready"),
        pytest.param("Pending", [], id="pending"),
        pytest.param(
            "Progressing",
            [replica("ner-1", 1, "Running"), replica("ner-2", 2, "Starting")],
            id="rollout_still_starting",
        ),
    ],
)
def test_a_healthy_or_starting_group_is_not_broken(status: str, replicas: list[Replica]) -> None:
    assert broken_reason(group(status), replicas, [], SPECS, NOW) is None


@pytest.mark.parametrize(
    ("ready", "replicas", "expected"),
    [
        pytest.param(1, [replica("ner-1", 2, "Running")], 2, id="its_own"),
        pytest.param(
            1, [replica("ner-1", 1, "Running"), replica("ner-2", 2, "CrashLoopBackOff")], 1,
            id="old_one_mid_rollout",
        ),
        pytest.param(
            2, [replica("ner-1", 1, "Running"), replica("ner-2", 2, "Running")], 2,
            id="both_ready",
        ),
        pytest.param(0, [replica("ner-2", 2, "CrashLoopBackOff")], None, id="none_ready"),
    ],
)  # fmt: skip
def test_the_serving_version_is_the_one_whose_replicas_are_ready(
    ready: int, replicas: list[Replica], expected: int | None
) -> None:
    shown = dataclasses.replace(group("Progressing"), ready_replicas=ready)

    assert serving_model_version(shown, replicas, SPECS) == expected


def test_an_oom_kill_breaks_a_group_for_15_minutes() -> None:
    ready = [replica("ner-1", 2, "Running")]

    recent = broken_reason(group("Ready"), ready, [oom(14)], SPECS, NOW)
    old = broken_reason(group("Ready"), ready, [oom(16)], SPECS, NOW)

    assert recent == "OOMKilled: replica ner-1 OOMKilled: memory 300Mi over the limit of 256Mi"
    assert old is None


@pytest.mark.parametrize(
    ("started_minutes_ago", "expected"),
    [(2, "OOMKilled: replica ner-1 OOMKilled: memory"), (60, None)],
    ids=["restarted_since", "long_ago"],
)
def test_a_replica_restarted_after_an_oom_kill_breaks_its_group_for_15_minutes(
    started_minutes_ago: float, expected: str | None
) -> None:
    replicas = [
        replica("ner-1", 2, "Running", restarts=1, exit_reason="OOMKilled: memory",
                started_minutes_ago=started_minutes_ago)
    ]  # fmt: skip

    assert broken_reason(group("Ready"), replicas, [], SPECS, NOW) == expected


def test_times_are_rfc3339_in_utc() -> None:
    east = dt.timezone(dt.timedelta(hours=2))

    assert rfc3339(dt.datetime(2026, 1, 1, 14, 0, tzinfo=east)) == "2026-01-01T12:00:00Z"
    assert rfc3339(dt.datetime(2026, 1, 1, 12, 0)) == "2026-01-01T12:00:00Z"
    assert rfc3339(None) is None
