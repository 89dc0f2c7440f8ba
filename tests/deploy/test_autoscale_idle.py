"""The idle rule never stops a replica that is starting, and counts from readiness; the
decision's reason says what holds the count, and only what is true."""

from __future__ import annotations

from dataclasses import replace

from chalk.deploy.autoscale import AutoscaleContext, Demand, decide

NOON_S = 1_700_049_600.0  # 12:00:00 UTC


def _min_zero(**changes: object) -> AutoscaleContext:
    """A min-0 group of one replica, no call and no demand, updated long ago (idle 5 s)."""
    context = AutoscaleContext(
        now_s=NOON_S,
        current_replicas=1,
        min_replicas=0,
        max_replicas=2,
        target_cpu_percent=None,
        cpu_millicores_used=[],
        cpu_millicores_requested=100,
        queue_depth_target=None,
        in_flight=None,
        window_s=0.0,
        demand=Demand(0, 0),
        updated_s=NOON_S - 1_000,
        idle_seconds=5.0,
    )
    return replace(context, **changes)  # type: ignore[arg-type]


def test_a_starting_replica_is_never_stopped_by_the_idle_rule() -> None:
    # QA's case: the group changed 6 s ago and its replica (9 s start-up) is still starting.
    starting = _min_zero(updated_s=NOON_S - 6.0, not_ready=1)

    decision, _ = decide(starting, {})

    assert (decision.desired, decision.changed) == (1, False)
    assert decision.reason == (
        "no cpu or queue-depth target: keep 1 "
        "(1 replica not ready yet: the 5 s idle period starts once ready)"
    )


def test_a_replica_woken_for_callers_that_gave_up_finishes_its_start() -> None:
    # Demand seen long ago (the callers gave up), the replica started from zero still starting.
    state = {"busy_s": NOON_S - 60.0}

    decision, _ = decide(_min_zero(current_replicas=1, not_ready=1), state)

    assert decision.desired == 1


def test_the_idle_period_counts_from_when_a_replica_became_ready() -> None:
    became_ready = NOON_S - 4.0
    just_ready = _min_zero(updated_s=NOON_S - 13.0, ready_s=became_ready)

    kept, state = decide(just_ready, {})
    dropped, _ = decide(replace(just_ready, now_s=NOON_S + 1.0), state)

    assert (kept.desired, kept.idle_since_s) == (1, became_ready)
    assert kept.reason == "no cpu or queue-depth target: keep 1 (at least 1 until idle for 5 s)"
    assert dropped.desired == 0
    assert dropped.reason == "idle 5 s (no call since it became ready at 11:59:56): 1 -> 0"


def test_a_crash_looping_min_zero_group_shows_no_decision_it_does_not_take() -> None:
    decision, _ = decide(_min_zero(not_ready=1), {})

    assert (decision.desired, decision.changed) == (1, False)
    assert "idle 5 s" not in decision.reason
    assert "1 -> 0" not in decision.reason


def test_a_min_one_group_never_speaks_of_scaling_down_to_zero() -> None:
    # No demand at a queue-depth target recommends 0; the minimum holds 1, not the window.
    context = _min_zero(min_replicas=1, queue_depth_target=2, window_s=60.0)

    decision, _ = decide(context, {})

    assert (
        decision.reason == "demand 0 (0 in flight, 0 waiting) / target 2: keep 1 (clamped to min 1)"
    )


def test_the_window_note_names_the_count_it_holds_back_from() -> None:
    context = _min_zero(
        min_replicas=2, max_replicas=6, current_replicas=4, queue_depth_target=2, window_s=60.0
    )

    decision, _ = decide(context, {})

    assert decision.reason == (
        "demand 0 (0 in flight, 0 waiting) / target 2: keep 4 "
        "(scale-down to 2 waits out the 60s window)"
    )
