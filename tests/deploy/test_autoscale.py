"""The autoscaling policy, driven tick by tick with a fake clock."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalk.catalog import ValidationError
from chalk.deploy.autoscale import AutoscaleContext, AutoscaleDecision, Demand, decide

REQUEST_MILLICORES = 500
TICK_S = 15.0


@dataclass
class FakeClock:
    now_s: float = 0.0

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@dataclass
class Group:
    """A scaling group as the controller sees it: total load spread evenly over its replicas.

    Each tick decides at the clock's time, applies the decision, keeps the state as JSON text
    (as the catalog stores it) and moves the clock on by ``TICK_S``.
    """

    replicas: int
    min_replicas: int = 1
    max_replicas: int = 10
    target_cpu_percent: int | None = 80
    queue_depth_target: int | None = None
    window_s: float = 60.0
    clock: FakeClock = field(default_factory=FakeClock)
    state_json: str = "{}"
    timeline: list[tuple[float, int]] = field(default_factory=list)

    def tick(
        self, *, cpu_millicores: float = 0.0, in_flight_calls: float | None = None
    ) -> AutoscaleDecision:
        context = AutoscaleContext(
            now_s=self.clock.now_s,
            current_replicas=self.replicas,
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            target_cpu_percent=self.target_cpu_percent,
            cpu_millicores_used=[cpu_millicores / self.replicas] * self.replicas,
            cpu_millicores_requested=REQUEST_MILLICORES,
            queue_depth_target=self.queue_depth_target,
            in_flight=(
                None
                if in_flight_calls is None
                else [in_flight_calls / self.replicas] * self.replicas
            ),
            window_s=self.window_s,
        )
        decision, state = decide(context, json.loads(self.state_json))
        self.state_json = json.dumps(state)
        self.timeline.append((self.clock.now_s, decision.desired))
        self.replicas = decision.desired
        self.clock.advance(TICK_S)
        return decision


def _millicores(percent: float, replicas: int) -> float:
    """Total CPU use of ``replicas`` replicas each at ``percent`` of the request."""
    return percent * REQUEST_MILLICORES / 100 * replicas


def _context(
    *,
    current: int = 2,
    cpu_percent: float | None = None,
    in_flight: float | None = None,
    now_s: float = 0.0,
    min_replicas: int = 1,
    max_replicas: int = 10,
    target_cpu_percent: int | None = 80,
    queue_depth_target: int | None = None,
    window_s: float = 60.0,
) -> AutoscaleContext:
    """A context whose ``current`` replicas are all measured at the same per-replica load."""
    used = [] if cpu_percent is None else [cpu_percent * REQUEST_MILLICORES / 100] * current
    return AutoscaleContext(
        now_s=now_s,
        current_replicas=current,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_cpu_percent=target_cpu_percent,
        cpu_millicores_used=used,
        cpu_millicores_requested=REQUEST_MILLICORES,
        queue_depth_target=queue_depth_target,
        in_flight=None if in_flight is None else [in_flight] * current,
        window_s=window_s,
    )


@pytest.mark.parametrize(
    ("replicas", "percent"),
    [(3, 80.0), (3, 85.0), (1, 75.0), (5, 88.0)],
    ids=["on-target", "above-within-tolerance", "below-within-tolerance", "at-tolerance-edge"],
)
def test_steady_load_keeps_the_count(replicas: int, percent: float) -> None:
    group = Group(replicas=replicas)

    decisions = [group.tick(cpu_millicores=_millicores(percent, replicas)) for _ in range(20)]

    assert {decision.desired for decision in decisions} == {replicas}
    assert not any(decision.changed for decision in decisions)


@pytest.mark.parametrize(
    ("max_replicas", "spike_millicores", "expected"),
    [(10, 1600.0, 4), (3, 1600.0, 3), (10, 2000.0, 5)],
    ids=["doubles", "capped-at-max", "two-and-a-half-fold"],
)
def test_a_cpu_spike_scales_up_on_the_tick_it_is_seen(
    max_replicas: int, spike_millicores: float, expected: int
) -> None:
    group = Group(replicas=2, max_replicas=max_replicas)
    for _ in range(3):
        group.tick(cpu_millicores=800.0)

    spike = group.tick(cpu_millicores=spike_millicores)
    after = [group.tick(cpu_millicores=spike_millicores) for _ in range(8)]

    assert (spike.desired, spike.changed) == (expected, True)
    assert {decision.desired for decision in after} == {expected}


def test_a_cpu_spike_names_its_figures() -> None:
    decision, _ = decide(_context(current=2, cpu_percent=160.0), {})

    assert decision == AutoscaleDecision(
        desired=4, reason="cpu 160% of 80% target: 2 -> 4", changed=True
    )


def test_a_load_drop_scales_down_only_after_the_window() -> None:
    group = Group(replicas=4, window_s=60.0)
    for _ in range(3):  # t = 0, 15, 30
        group.tick(cpu_millicores=1600.0)

    for _ in range(6):  # t = 45 .. 120: a quarter of the load from t = 45 on
        group.tick(cpu_millicores=400.0)

    assert group.timeline == [
        (0.0, 4),
        (15.0, 4),
        (30.0, 4),
        (45.0, 4),
        (60.0, 4),
        (75.0, 4),
        (90.0, 4),
        (105.0, 1),
        (120.0, 1),
    ]


def test_a_held_scale_down_says_what_it_waits_for() -> None:
    group = Group(replicas=4)
    group.tick(cpu_millicores=1600.0)

    held = group.tick(cpu_millicores=400.0)

    assert held == AutoscaleDecision(
        desired=4,
        reason="cpu 20% of 80% target: keep 4 (scale-down to 1 waits out the 60s window)",
        changed=False,
    )


def test_a_new_group_also_waits_a_window_before_scaling_down() -> None:
    group = Group(replicas=4, window_s=30.0)

    for _ in range(4):  # t = 0 .. 45
        group.tick(cpu_millicores=400.0)

    # The current count counts as recommended at t = 0, so it holds until it is over 30 s old.
    assert group.timeline == [(0.0, 4), (15.0, 4), (30.0, 4), (45.0, 1)]


def test_a_dip_shorter_than_the_window_changes_nothing() -> None:
    group = Group(replicas=4, window_s=60.0)
    loads = [1600.0] + [400.0] * 4 + [1600.0] * 2  # a 45 s dip from t = 15 to t = 60

    for load in loads:
        group.tick(cpu_millicores=load)

    assert [desired for _, desired in group.timeline] == [4] * len(loads)


def test_a_second_dip_waits_a_whole_window_again() -> None:
    group = Group(replicas=4, window_s=60.0)
    loads = [1600.0] + [400.0] * 3 + [1600.0] + [400.0] * 7  # back up at t = 60

    for load in loads:
        group.tick(cpu_millicores=load)

    # The second dip starts at t = 75: the group shrinks 60 s later, not 60 s after the first.
    assert group.timeline[-3:] == [(135.0, 1), (150.0, 1), (165.0, 1)]
    assert {desired for _, desired in group.timeline[:-3]} == {4}


def test_a_zero_window_scales_down_at_once() -> None:
    group = Group(replicas=4, window_s=0.0)

    decision = group.tick(cpu_millicores=400.0)

    assert (decision.desired, decision.changed) == (1, True)


@pytest.mark.parametrize(
    ("percent", "current", "expected"),
    [
        (85.0, 2, 2),
        (88.0, 10, 10),
        (89.0, 10, 12),
        (72.0, 10, 10),
        (70.0, 10, 9),
    ],
    ids=[
        "85-of-80-stays",
        "88-of-80-on-the-edge-stays",
        "89-of-80-scales-up",
        "72-of-80-on-the-edge-stays",
        "70-of-80-scales-down",
    ],
)
def test_the_tolerance_band(percent: float, current: int, expected: int) -> None:
    context = _context(current=current, cpu_percent=percent, window_s=0.0, max_replicas=20)

    decision, _ = decide(context, {})

    assert decision.desired == expected


def test_within_tolerance_says_so() -> None:
    decision, _ = decide(_context(current=2, cpu_percent=85.0), {})

    assert decision.reason == "cpu 85% of 80% target, within 10% tolerance: keep 2"


@pytest.mark.parametrize(
    ("in_flight", "expected"),
    [(5.0, 5), (2.0, 2), (2.2, 2), (0.5, 2)],
    ids=["busy-scales-up", "on-target-stays", "within-tolerance-stays", "idle-waits-the-window"],
)
def test_the_queue_depth_signal_alone(in_flight: float, expected: int) -> None:
    context = _context(
        current=2, in_flight=in_flight, target_cpu_percent=None, queue_depth_target=2
    )

    decision, _ = decide(context, {})

    assert decision.desired == expected


def test_the_queue_depth_signal_settles_on_the_calls_it_serves() -> None:
    group = Group(replicas=2, target_cpu_percent=None, queue_depth_target=2)

    for _ in range(6):
        group.tick(in_flight_calls=10.0)

    assert [desired for _, desired in group.timeline] == [5] * 6


def test_the_queue_depth_reason() -> None:
    context = _context(current=2, in_flight=5.0, target_cpu_percent=None, queue_depth_target=2)

    decision, _ = decide(context, {})

    assert decision.reason == "in-flight 5.0 per replica of 2 target: 2 -> 5"


@pytest.mark.parametrize(
    ("cpu_percent", "in_flight", "expected", "reason"),
    [
        (
            160.0,
            1.0,
            4,
            "cpu 160% of 80% target -> 4; in-flight 1.0 per replica of 2 target -> 1: 2 -> 4",
        ),
        (
            40.0,
            6.0,
            6,
            "cpu 40% of 80% target -> 1; in-flight 6.0 per replica of 2 target -> 6: 2 -> 6",
        ),
        (
            20.0,
            2.1,
            2,
            "cpu 20% of 80% target -> 1; in-flight 2.1 per replica of 2 target, within 10%"
            " tolerance -> 2: keep 2",
        ),
    ],
    ids=["cpu-wins", "queue-wins", "one-within-tolerance-holds-the-other"],
)
def test_with_both_signals_the_larger_wins(
    cpu_percent: float, in_flight: float, expected: int, reason: str
) -> None:
    context = _context(
        current=2, cpu_percent=cpu_percent, in_flight=in_flight, queue_depth_target=2, window_s=0
    )

    decision, _ = decide(context, {})

    assert (decision.desired, decision.reason) == (expected, reason)


def test_a_replica_without_metrics_leaves_cpu_alone() -> None:
    context = _context(current=2, cpu_percent=160.0, in_flight=None, queue_depth_target=2)

    decision, _ = decide(context, {})

    assert decision.reason == "cpu 160% of 80% target: 2 -> 4"


@pytest.mark.parametrize(
    ("kwargs", "expected", "reason"),
    [
        (
            {"current": 1, "min_replicas": 2, "cpu_percent": 80.0},
            2,
            "cpu 80% of 80% target, within 10% tolerance: 1 -> 2 (clamped to min 2)",
        ),
        (
            {"current": 7, "max_replicas": 4, "cpu_percent": 80.0},
            4,
            "cpu 80% of 80% target, within 10% tolerance: 7 -> 4 (clamped to max 4)",
        ),
        (
            {"current": 3, "max_replicas": 4, "cpu_percent": 400.0},
            4,
            "cpu 400% of 80% target: 3 -> 4 (clamped to max 4)",
        ),
        (
            {"current": 3, "min_replicas": 2, "cpu_percent": 10.0, "window_s": 0.0},
            2,
            "cpu 10% of 80% target: 3 -> 2 (clamped to min 2)",
        ),
    ],
    ids=["below-min", "above-max", "wants-more-than-max", "wants-less-than-min"],
)
def test_the_count_is_clamped(kwargs: dict[str, Any], expected: int, reason: str) -> None:
    decision, _ = decide(_context(**kwargs), {})

    assert (decision.desired, decision.reason) == (expected, reason)


@pytest.mark.parametrize(
    ("kwargs", "expected", "reason"),
    [
        (
            {"current": 3, "cpu_percent": 400.0, "target_cpu_percent": None},
            3,
            "no cpu or queue-depth target: keep 3",
        ),
        ({"current": 3, "cpu_percent": None}, 3, "no replica measured yet: keep 3"),
        (
            {"current": 3, "in_flight": None, "target_cpu_percent": None, "queue_depth_target": 2},
            3,
            "no replica measured yet: keep 3",
        ),
        (
            {"current": 0, "cpu_percent": None},
            1,
            "no replica measured yet: 0 -> 1 (clamped to min 1)",
        ),
        (
            {"current": 5, "max_replicas": 4, "cpu_percent": None},
            4,
            "no replica measured yet: 5 -> 4 (clamped to max 4)",
        ),
    ],
    ids=["no-target", "no-cpu-measured", "no-metrics-port", "none-yet-below-min", "above-max"],
)
def test_without_a_signal_only_clamping_changes_the_count(
    kwargs: dict[str, Any], expected: int, reason: str
) -> None:
    decision, _ = decide(_context(**kwargs), {})

    assert (decision.desired, decision.reason) == (expected, reason)


def test_the_state_round_trips_through_json() -> None:
    group = Group(replicas=4)
    for load in [1600.0, 400.0, 3200.0, 400.0]:
        group.tick(cpu_millicores=load)
    context = _context(current=group.replicas, cpu_percent=10.0, now_s=group.clock.now_s)
    state = json.loads(group.state_json)

    decision, new_state = decide(context, state)
    again, again_state = decide(context, json.loads(json.dumps(state)))

    assert json.loads(json.dumps(new_state)) == new_state
    assert (again, again_state) == (decision, new_state)


def test_the_state_keeps_only_what_the_window_can_use() -> None:
    group = Group(replicas=2, max_replicas=50, window_s=60.0)
    loads = [800.0, 4000.0, 2000.0, 6000.0, 1000.0, 500.0, 700.0, 300.0] * 10

    for load in loads:
        group.tick(cpu_millicores=load)
    entries = json.loads(group.state_json)["recommendations"]

    times = [entry["time_s"] for entry in entries]
    replicas = [entry["replicas"] for entry in entries]
    assert times == sorted(times)
    assert group.clock.now_s - TICK_S - times[0] <= 60.0
    assert replicas == sorted(set(replicas), reverse=True)


@pytest.mark.parametrize(
    "state",
    [
        {"recommendations": [{"time_s": 10_000.0, "replicas": 9}]},
        {"recommendations": [{"time_s": -500.0, "replicas": 9}]},
        {"recommendations": "not a list"},
        {"recommendations": [{"time_s": "soon", "replicas": 9}, {"replicas": 9}, 3]},
        {"recommendations": [{"time_s": 0.0, "replicas": True}]},
        {},
    ],
    ids=["another-clock", "too-old", "not-a-list", "bad-entries", "bool-count", "empty"],
)
def test_unusable_state_is_ignored_and_the_window_starts_now(state: dict[str, Any]) -> None:
    context = _context(current=4, cpu_percent=20.0, now_s=10.0)

    decision, new_state = decide(context, state)

    assert decision.desired == 4
    assert new_state == {
        "recommendations": [{"time_s": 10.0, "replicas": 4}, {"time_s": 10.0, "replicas": 1}]
    }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_replicas": -1}, r"expected min_replicas >= 0, got -1"),
        ({"min_replicas": 0, "max_replicas": 0}, r"expected max_replicas >= 1, got 0"),
        ({"idle_seconds": 0.0}, r"expected idle_seconds > 0, got 0.0"),
        ({"min_replicas": 3, "max_replicas": 2}, r"min_replicas is larger than max_replicas"),
        ({"current_replicas": -1}, r"expected current_replicas >= 0, got -1"),
        ({"target_cpu_percent": 0}, r"expected target_cpu_percent >= 1, got 0"),
        ({"cpu_millicores_requested": 0}, r"expected cpu_millicores_requested >= 1, got 0"),
        ({"queue_depth_target": 0}, r"expected queue_depth_target >= 1, got 0"),
        ({"window_s": -1.0}, r"expected window_s >= 0, got -1.0"),
        ({"tolerance": -0.1}, r"expected tolerance >= 0, got -0.1"),
    ],
    ids=[
        "min-negative",
        "max-zero",
        "idle-zero",
        "min-above-max",
        "negative-current",
        "zero-cpu-target",
        "zero-request",
        "zero-queue-target",
        "negative-window",
        "negative-tolerance",
    ],
)
def test_a_bad_context_is_refused(kwargs: dict[str, Any], match: str) -> None:
    values: dict[str, Any] = {
        "now_s": 0.0,
        "current_replicas": 2,
        "min_replicas": 1,
        "max_replicas": 4,
        "target_cpu_percent": 80,
        "cpu_millicores_used": [100.0],
        "cpu_millicores_requested": 100,
        "queue_depth_target": None,
        "in_flight": None,
        "window_s": 60.0,
    }

    with pytest.raises(ValidationError, match=match):
        AutoscaleContext(**{**values, **kwargs})


_samples = st.lists(st.floats(min_value=0, max_value=10_000, allow_nan=False), max_size=8)


@st.composite
def _contexts_and_states(draw: st.DrawFn) -> tuple[AutoscaleContext, dict[str, Any]]:
    min_replicas = draw(st.integers(1, 5))
    now_s = draw(st.floats(min_value=0, max_value=1e6, allow_nan=False))
    context = AutoscaleContext(
        now_s=now_s,
        current_replicas=draw(st.integers(0, 30)),
        min_replicas=min_replicas,
        max_replicas=draw(st.integers(min_replicas, min_replicas + 10)),
        target_cpu_percent=draw(st.none() | st.integers(1, 100)),
        cpu_millicores_used=draw(_samples),
        cpu_millicores_requested=draw(st.integers(1, 4000)),
        queue_depth_target=draw(st.none() | st.integers(1, 20)),
        in_flight=draw(st.none() | _samples),
        window_s=draw(st.sampled_from([0.0, 15.0, 60.0, 300.0])),
        tolerance=draw(st.sampled_from([0.0, 0.1, 0.5])),
    )
    entries = draw(
        st.lists(st.tuples(st.floats(min_value=-100, max_value=400), st.integers(0, 50)))
    )
    state = {
        "recommendations": [
            {"time_s": now_s - age_s, "replicas": replicas} for age_s, replicas in entries
        ]
    }
    return context, state


@settings(max_examples=300, deadline=None)
@given(_contexts_and_states())
def test_the_decision_always_stays_within_the_bounds(
    context_and_state: tuple[AutoscaleContext, dict[str, Any]],
) -> None:
    context, state = context_and_state

    decision, new_state = decide(context, state)

    assert context.min_replicas <= decision.desired <= context.max_replicas
    assert decision.changed == (decision.desired != context.current_replicas)
    assert json.loads(json.dumps(new_state)) == new_state


@settings(max_examples=300, deadline=None)
@given(
    min_replicas=st.integers(1, 3),
    extra_replicas=st.integers(0, 12),
    start=st.integers(0, 15),
    cpu_millicores=st.integers(0, 20_000),
    target_cpu_percent=st.none() | st.integers(1, 100),
    in_flight_calls=st.none() | st.integers(0, 200),
    queue_depth_target=st.none() | st.integers(1, 10),
    window_s=st.sampled_from([0.0, 30.0, 60.0]),
)
def test_constant_load_never_oscillates(
    min_replicas: int,
    extra_replicas: int,
    start: int,
    cpu_millicores: int,
    target_cpu_percent: int | None,
    in_flight_calls: int | None,
    queue_depth_target: int | None,
    window_s: float,
) -> None:
    max_replicas = min_replicas + extra_replicas
    start = min(max(start, min_replicas), max_replicas)
    group = Group(
        replicas=start,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_cpu_percent=target_cpu_percent,
        queue_depth_target=queue_depth_target,
        window_s=window_s,
    )

    for _ in range(12):
        group.tick(cpu_millicores=float(cpu_millicores), in_flight_calls=in_flight_calls)

    counts = [start, *(desired for _, desired in group.timeline)]
    changes = sum(1 for before, after in itertools.pairwise(counts) if before != after)
    assert changes <= 1, counts


# --- demand and scale to zero ---------------------------------------------------------------

# 12:00:00 UTC on some day: idle reasons show wall times.
NOON_S = 1_767_268_800.0


def _demand_context(
    *,
    current: int,
    demand: Demand | None,
    now_s: float = NOON_S,
    min_replicas: int = 0,
    max_replicas: int = 10,
    queue_depth_target: int | None = 2,
    cpu_percent: float | None = None,
    last_call_s: float | None = None,
    updated_s: float | None = NOON_S - 1_000,
    idle_seconds: float = 300.0,
    window_s: float = 60.0,
) -> AutoscaleContext:
    return replace(
        _context(
            current=current,
            cpu_percent=cpu_percent,
            now_s=now_s,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            queue_depth_target=queue_depth_target,
            window_s=window_s,
        ),
        demand=demand,
        last_call_s=last_call_s,
        updated_s=updated_s,
        idle_seconds=idle_seconds,
    )


def test_demand_over_the_queue_depth_target_scales_out_and_names_each_signal() -> None:
    context = _demand_context(
        current=1, demand=Demand(in_flight=3, waiting=6), cpu_percent=40.0, min_replicas=1
    )

    decision, _ = decide(context, {})

    assert decision.desired == 5
    assert decision.reason == (
        "demand 9 (3 in flight, 6 waiting) / target 2 -> 5; cpu 40% of 80% target -> 1: 1 -> 5"
    )


def test_published_demand_takes_over_from_the_replicas_own_in_flight_figures() -> None:
    context = replace(
        _demand_context(current=2, demand=Demand(in_flight=2, waiting=0), min_replicas=1),
        in_flight=[9.0, 9.0],
        window_s=0.0,
    )

    decision, _ = decide(context, {})

    assert (decision.desired, decision.reason) == (
        1,
        "demand 2 (2 in flight, 0 waiting) / target 2: 2 -> 1",
    )


def test_demand_falling_waits_out_the_window_like_cpu() -> None:
    group_min = 1
    state: dict[str, Any] = {}
    desired = []
    for step, total in enumerate([8, 8, 0, 0, 0, 0, 0]):
        context = _demand_context(
            current=desired[-1] if desired else 1,
            demand=Demand(in_flight=total, waiting=0),
            now_s=NOON_S + step * 15.0,
            min_replicas=group_min,
        )
        decision, state = decide(context, state)
        desired.append(decision.desired)

    assert desired == [4, 4, 4, 4, 4, 4, 1]


def test_a_min_zero_group_goes_to_zero_only_after_the_idle_period() -> None:
    last_call = NOON_S - 299.0
    busy = _demand_context(current=1, demand=Demand(0, 0), last_call_s=last_call, window_s=0.0)
    idle = replace(busy, now_s=NOON_S + 1.0)

    before, state = decide(busy, {})
    after, _ = decide(idle, state)

    assert (before.desired, before.reason) == (
        1,
        "demand 0 (0 in flight, 0 waiting) / target 2: keep 1 (at least 1 until idle for 300 s)",
    )
    assert before.idle_since_s == last_call
    assert (after.desired, after.changed) == (0, True)
    assert after.reason == "idle 300 s (no call since 11:55:01): 1 -> 0"


def test_an_idle_replica_using_a_little_cpu_still_goes_to_zero() -> None:
    context = _demand_context(
        current=1, demand=None, cpu_percent=2.0, queue_depth_target=None, idle_seconds=1.0
    )

    decision, _ = decide(context, {})

    assert decision.desired == 0
    assert decision.reason == "idle 1 s (no call since its last change at 11:43:20): 1 -> 0"


def test_a_new_or_updated_min_zero_group_starts_at_one() -> None:
    context = _demand_context(current=0, demand=None, updated_s=NOON_S - 5.0)

    decision, _ = decide(context, {})

    assert decision.desired == 1
    assert decision.reason == "no replica measured yet: 0 -> 1 (at least 1 until idle for 300 s)"


@pytest.mark.parametrize(
    ("queue_depth_target", "expected", "reason"),
    [
        (2, 3, "demand 5 (0 in flight, 5 waiting) / target 2: 0 -> 3"),
        (None, 1, "demand 5 (0 in flight, 5 waiting) with no replica: 0 -> 1"),
    ],
    ids=["by-the-target", "without-a-target"],
)
def test_from_zero_any_demand_scales_up_at_once(
    queue_depth_target: int | None, expected: int, reason: str
) -> None:
    # Idle for long, then a call is held: no window, no wait.
    state = {"recommendations": [{"time_s": NOON_S - 10.0, "replicas": 0}]}
    context = _demand_context(
        current=0,
        demand=Demand(in_flight=0, waiting=5),
        queue_depth_target=queue_depth_target,
        last_call_s=NOON_S - 10_000,
    )

    decision, new_state = decide(context, state)

    assert (decision.desired, decision.reason) == (expected, reason)
    assert decision.idle_since_s is None
    assert new_state["busy_s"] == NOON_S


def test_demand_seen_restarts_the_idle_period_even_without_a_call_time() -> None:
    seen, state = decide(_demand_context(current=1, demand=Demand(1, 0)), {})
    quiet_now = _demand_context(current=1, demand=Demand(0, 0), now_s=NOON_S + 299.0)
    quiet_later = replace(quiet_now, now_s=NOON_S + 300.0)

    kept, state = decide(quiet_now, state)
    dropped, _ = decide(quiet_later, state)

    assert (seen.desired, kept.desired, dropped.desired) == (1, 1, 0)
    assert dropped.reason == "idle 300 s (no demand since 12:00:00): 1 -> 0"


def test_calls_straight_to_a_replica_keep_a_min_zero_group_busy() -> None:
    context = replace(_demand_context(current=1, demand=None, idle_seconds=1.0), in_flight=[1.0])

    decision, _ = decide(context, {})

    assert decision.desired == 1
    assert decision.idle_since_s is None


def test_a_group_with_a_minimum_never_goes_idle() -> None:
    context = _demand_context(
        current=1, demand=Demand(0, 0), min_replicas=1, idle_seconds=1.0, window_s=0.0
    )

    decision, state = decide(context, {})

    assert decision.desired == 1
    assert decision.idle_since_s is None
    assert "busy_s" not in state
