"""The autoscaling policy: a pure function from what was measured to how many replicas to run.

The local controller calls ``decide`` on each pass with the group's CPU and demand (calls in
flight and waiting, summed over the calling processes), keeps the returned state in the catalog
(``catalog.state.save_autoscaler_state``) and records each decision's reason as an event.
Over 500 lines: one policy, its rules (CPU, demand, window, idle) and their doctests together.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from chalk.catalog.resources import DEFAULT_IDLE_SECONDS
from chalk.common.quantities import invalid_value

__all__ = [
    "DEFAULT_TOLERANCE",
    "AutoscaleContext",
    "AutoscaleDecision",
    "Demand",
    "decide",
]

DEFAULT_TOLERANCE: Final = 0.1

_RECOMMENDATIONS: Final = "recommendations"
# When demand was last seen (now_s's clock): an idle period starts no earlier.
_BUSY: Final = "busy_s"
# Float arithmetic must not move a value across a boundary it sits on: 88% of an 80% target is
# exactly 10% off, and 2 replicas at 160% of 80% want exactly 4, not 5.
_EPSILON: Final = 1e-9
_DIGITS: Final = 9


@dataclass(frozen=True)
class Demand:
    """A group's demand summed over the processes that call it: calls sent and not answered
    (``in_flight``) and calls queued or held for lack of a ready replica (``waiting``).

    Examples
    --------
    >>> Demand(in_flight=3, waiting=6).total
    9
    """

    in_flight: int
    waiting: int

    @property
    def total(self) -> int:
        """Calls in flight plus waiting: what the queue-depth rule divides."""
        return self.in_flight + self.waiting

    def describe(self) -> str:
        """``demand 9 (3 in flight, 6 waiting)``."""
        return f"demand {self.total} ({self.in_flight} in flight, {self.waiting} waiting)"


@dataclass(frozen=True)
class AutoscaleContext:
    """What the policy knows about one scaling group at one moment.

    Parameters
    ----------
    now_s
        The time of this decision in seconds, on a clock the caller picks (monotonic or wall)
        and keeps using with the same state.
    current_replicas
        Replicas the group runs now, >= 0.
    min_replicas, max_replicas
        The bounds the decision stays within, ``0 <= min_replicas <= max_replicas`` and
        ``max_replicas >= 1``. With 0 the group goes to zero replicas only once idle (below).
    target_cpu_percent
        CPU use to aim for, as a percentage of the requested CPU; ``None`` to not scale on CPU.
    cpu_millicores_used
        Measured CPU use of each ready replica, in millicores.
    cpu_millicores_requested
        CPU requested per replica, in millicores (>= 1 when ``target_cpu_percent`` is set).
    queue_depth_target
        Calls (in flight plus waiting) per replica to aim for; ``None`` to not scale on them.
    in_flight
        In-flight calls of each replica that exposes our runtime's metrics; ``None`` when none
        does. Used only when ``demand`` is ``None`` (calls straight to a replica's port).
    demand
        The group's demand as its callers published it; ``None`` when no caller publishes.
    window_s
        Scale-down stabilisation window in seconds, >= 0: the group shrinks only to the
        highest count recommended within it.
    tolerance
        Relative distance from a target, >= 0, within which the count is kept.
    last_call_s
        When any caller last called the group (``now_s``'s clock); ``None``: never.
    updated_s
        When the group was created or last updated (``now_s``'s clock): a new or updated
        group is busy from then, so it starts at ``max(min_replicas, 1)``.
    idle_seconds
        With ``min_replicas=0``: how long without a call and without demand before the group
        goes to zero, > 0.
    ready_s
        When a replica of the group last became ready (``now_s``'s clock); ``None``: none yet.
        The idle period starts no earlier: a group that has not served since it (re)started
        is not idle.
    not_ready
        Replicas started and not ready yet (starting, or backing off after a crash), >= 0.
        While there is one, the idle rule does not apply: a replica finishes its start.

    Raises
    ------
    ValidationError
        When a count, bound, target, window or tolerance is out of range.

    Examples
    --------
    >>> AutoscaleContext(
    ...     now_s=0.0, current_replicas=1, min_replicas=2, max_replicas=1,
    ...     target_cpu_percent=80, cpu_millicores_used=[], cpu_millicores_requested=100,
    ...     queue_depth_target=None, in_flight=None, window_s=60.0,
    ... )
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: min_replicas is larger than max_replicas: expected \
min_replicas <= max_replicas, got min_replicas=2, max_replicas=1
    """

    now_s: float
    current_replicas: int
    min_replicas: int
    max_replicas: int
    target_cpu_percent: int | None
    cpu_millicores_used: Sequence[float]
    cpu_millicores_requested: int
    queue_depth_target: int | None
    in_flight: Sequence[float] | None
    window_s: float
    tolerance: float = DEFAULT_TOLERANCE
    demand: Demand | None = None
    last_call_s: float | None = None
    updated_s: float | None = None
    idle_seconds: float = DEFAULT_IDLE_SECONDS
    ready_s: float | None = None
    not_ready: int = 0

    def __post_init__(self) -> None:
        _check_at_least("current_replicas", self.current_replicas, 0)
        _check_at_least("not_ready", self.not_ready, 0)
        _check_at_least("min_replicas", self.min_replicas, 0)
        _check_at_least("max_replicas", self.max_replicas, 1)
        if self.min_replicas > self.max_replicas:
            error = invalid_value(
                "min_replicas is larger than max_replicas",
                expected="min_replicas <= max_replicas",
                got=f"min_replicas={self.min_replicas}, max_replicas={self.max_replicas}",
            )
            raise error
        if self.target_cpu_percent is not None:
            _check_at_least("target_cpu_percent", self.target_cpu_percent, 1)
            _check_at_least("cpu_millicores_requested", self.cpu_millicores_requested, 1)
        if self.queue_depth_target is not None:
            _check_at_least("queue_depth_target", self.queue_depth_target, 1)
        _check_at_least("window_s", self.window_s, 0)
        _check_at_least("tolerance", self.tolerance, 0)
        if not self.idle_seconds > 0:
            error = invalid_value(
                "idle_seconds is out of range",
                expected="idle_seconds > 0",
                got=f"{self.idle_seconds!r}",
            )
            raise error


@dataclass(frozen=True)
class AutoscaleDecision:
    """The replica count to run and why.

    Parameters
    ----------
    desired
        Replicas to run, within ``[min_replicas, max_replicas]``; 0 only for a group with
        ``min_replicas=0`` that is idle.
    reason
        One human-readable line, e.g. ``"cpu 160% of 80% target: 2 -> 4"``.
    changed
        Whether ``desired`` differs from the current count.
    idle_since_s
        For a group with ``min_replicas=0``: since when it has had no call and no demand
        (``now_s``'s clock); ``None`` while it has demand, and for other groups.

    Examples
    --------
    >>> AutoscaleDecision(desired=3, reason="no replica measured yet: keep 3", changed=False)
    AutoscaleDecision(desired=3, reason='no replica measured yet: keep 3', changed=False, \
idle_since_s=None)
    """

    desired: int
    reason: str
    changed: bool
    idle_since_s: float | None = None


@dataclass(frozen=True)
class _Signal:
    """One metric's view: its description and the count it recommends."""

    description: str
    replicas: int
    within_tolerance: bool


@dataclass(frozen=True)
class _Recommendation:
    time_s: float
    replicas: int


def decide(
    context: AutoscaleContext, state: Mapping[str, Any]
) -> tuple[AutoscaleDecision, dict[str, Any]]:
    """The replica count a group should run now, and the state to pass to the next call.

    CPU recommends ``ceil(current * utilisation / target)`` (CPU use as a share of the
    requested CPU against ``target_cpu_percent``); demand recommends
    ``ceil((in flight + waiting) / queue_depth_target)``, or, when no caller publishes demand,
    the replicas' own mean in-flight calls are held against ``queue_depth_target`` as CPU is.
    A signal within ``tolerance`` of its target keeps the current count. The larger
    recommendation wins; with no signal configured or measured, the current count stays. A
    larger count takes effect at once; a smaller one only down to the highest count
    recommended within the last ``window_s`` seconds, so a dip shorter than the window changes
    nothing. The result is clamped to ``[max(min_replicas, 1), max_replicas]``.

    A group with ``min_replicas=0`` goes to 0 once it has had no call and no demand for
    ``idle_seconds`` (counted from its last call, the last demand seen, its last change, or
    the moment a replica of it last became ready, whichever is latest), whatever its CPU; not
    while a replica is starting or backing off (``not_ready``); from 0, any demand wants at
    least one replica at once.

    Parameters
    ----------
    context
        The measurements and settings of this moment.
    state
        What the previous call returned (``{}`` on the first call). Entries from another
        clock (in the future of ``now_s``) or older than the window are ignored.

    Returns
    -------
    tuple[AutoscaleDecision, dict[str, Any]]
        The decision, and the new state: a JSON-able dict for the catalog.

    Examples
    --------
    Two replicas each using 160m of a 100m request against an 80% target double:

    >>> context = AutoscaleContext(
    ...     now_s=0.0, current_replicas=2, min_replicas=1, max_replicas=5,
    ...     target_cpu_percent=80, cpu_millicores_used=[160.0, 160.0],
    ...     cpu_millicores_requested=100, queue_depth_target=None, in_flight=None,
    ...     window_s=60.0,
    ... )
    >>> decision, state = decide(context, {})
    >>> decision.desired, decision.reason
    (4, 'cpu 160% of 80% target: 2 -> 4')
    >>> state
    {'recommendations': [{'time_s': 0.0, 'replicas': 4}]}
    """
    signals = [
        signal
        for signal in (_demand_signal(context), _cpu_signal(context), _queue_signal(context))
        if signal is not None
    ]
    recommended = _recommended_replicas(context.current_replicas, signals)
    busy_s, idle_since_s = _idle_since(context, state)
    idle = (
        idle_since_s is not None
        and context.not_ready == 0
        and context.now_s - idle_since_s >= context.idle_seconds
    )
    history = _recent_recommendations(state, context.now_s, context.window_s)
    if not history and context.window_s > 0:
        # With no recent recommendation, the current count stands in for one made now, so a
        # new group (or one whose state is stale) also waits a whole window before shrinking.
        history = [_Recommendation(context.now_s, context.current_replicas)]
    if idle:
        # Idle for the whole period: no rule's count matters (an idle process still uses a
        # little CPU, which the CPU rule would round up to a replica).
        recommended = 0
    history.append(_Recommendation(context.now_s, recommended))
    stabilised = 0 if idle else _stabilised_replicas(context.current_replicas, recommended, history)
    floor = context.min_replicas if idle else max(context.min_replicas, 1)
    desired = _clamp_replicas(stabilised, floor, context.max_replicas)
    if idle:
        reason = _idle_reason(context, idle_since_s, busy_s, desired)
    else:
        reason = _reason(context, signals, recommended, desired)
    decision = AutoscaleDecision(
        desired=desired,
        reason=reason,
        changed=desired != context.current_replicas,
        idle_since_s=idle_since_s,
    )
    new_state = _state(_compact(history))
    if busy_s is not None:
        new_state[_BUSY] = busy_s
    return decision, new_state


def _idle_since(
    context: AutoscaleContext, state: Mapping[str, Any]
) -> tuple[float | None, float | None]:
    """When demand was last seen (to keep in the state), and since when a group that may go
    to zero has had no call and no demand (None: it has demand now, or it may not go to 0)."""
    if context.min_replicas > 0:
        return None, None
    now = context.now_s
    if _busy(context):
        return now, None
    stored = state.get(_BUSY)
    busy_s = None
    if isinstance(stored, int | float) and not isinstance(stored, bool) and stored <= now:
        busy_s = float(stored)
    times = (context.last_call_s, context.updated_s, busy_s, context.ready_s)
    known = [t for t in times if t is not None]
    if not known:  # nothing known yet: the idle period starts now
        return now, now
    return busy_s, min(now, max(known))


def _busy(context: AutoscaleContext) -> bool:
    """Whether the group has calls in flight or waiting now, by what its callers published,
    or else by what its replicas report."""
    if context.demand is not None:
        return context.demand.total > 0
    return any(value > 0 for value in context.in_flight or ())


def _idle_reason(
    context: AutoscaleContext, idle_since_s: float | None, busy_s: float | None, desired: int
) -> str:
    """``idle 300 s (no call since 12:01:05): 1 -> 0``; times are shown as UTC wall times."""
    current = context.current_replicas
    outcome = f"keep {current}" if desired == current else f"{current} -> {desired}"
    since = idle_since_s if idle_since_s is not None else context.now_s
    at = _clock_time(since)
    if since == context.last_call_s:
        what = f"no call since {at}"
    elif since == busy_s:
        what = f"no demand since {at}"
    elif since == context.ready_s:
        what = f"no call since it became ready at {at}"
    else:
        what = f"no call since its last change at {at}"
    return f"idle {context.idle_seconds:g} s ({what}): {outcome}"


def _clock_time(time_s: float) -> str:
    return dt.datetime.fromtimestamp(time_s, dt.UTC).strftime("%H:%M:%S")


def _demand_signal(context: AutoscaleContext) -> _Signal | None:
    """ceil(demand / queue_depth_target) replicas; from zero, any demand wants one at once."""
    demand, target, current = context.demand, context.queue_depth_target, context.current_replicas
    if demand is None:
        return None
    if target is None:
        if current == 0 and demand.total > 0:
            return _Signal(f"{demand.describe()} with no replica", 1, False)
        return None
    wanted = math.ceil(demand.total / target)
    if current > 0 and _within_tolerance(demand.total / (current * target), context.tolerance):
        return _Signal(f"{demand.describe()} / target {target}", current, True)
    return _Signal(f"{demand.describe()} / target {target}", wanted, False)


def _cpu_signal(context: AutoscaleContext) -> _Signal | None:
    target_percent = context.target_cpu_percent
    used_percent = _cpu_percent(context.cpu_millicores_used, context.cpu_millicores_requested)
    if target_percent is None or used_percent is None:
        return None
    ratio = used_percent / target_percent
    return _signal(
        f"cpu {used_percent:.0f}% of {target_percent}% target",
        context.current_replicas,
        ratio,
        context.tolerance,
    )


def _queue_signal(context: AutoscaleContext) -> _Signal | None:
    """The replicas' own in-flight calls, when no caller publishes demand."""
    target = context.queue_depth_target
    per_replica = _in_flight_per_replica(context.in_flight)
    if target is None or per_replica is None or context.demand is not None:
        return None
    return _signal(
        f"in-flight {per_replica:.1f} per replica of {target} target",
        context.current_replicas,
        per_replica / target,
        context.tolerance,
    )


def _cpu_percent(used_millicores: Sequence[float], requested_millicores: int) -> float | None:
    """Mean CPU use of the measured replicas as a percentage of the request (None: none)."""
    if not used_millicores or requested_millicores <= 0:
        return None
    return statistics.fmean(used / requested_millicores for used in used_millicores) * 100


def _in_flight_per_replica(in_flight: Sequence[float] | None) -> float | None:
    if not in_flight:
        return None
    return statistics.fmean(in_flight)


def _signal(description: str, current_replicas: int, ratio: float, tolerance: float) -> _Signal:
    within = _within_tolerance(ratio, tolerance)
    replicas = current_replicas if within else _hpa_replicas(current_replicas, ratio)
    return _Signal(description, replicas, within)


def _within_tolerance(ratio: float, tolerance: float) -> bool:
    return abs(ratio - 1.0) <= tolerance + _EPSILON


def _hpa_replicas(current_replicas: int, ratio: float) -> int:
    """The HPA rule: ``ceil(current * utilisation / target)``."""
    return math.ceil(round(current_replicas * ratio, _DIGITS))


def _recommended_replicas(current_replicas: int, signals: Sequence[_Signal]) -> int:
    return max((signal.replicas for signal in signals), default=current_replicas)


def _recent_recommendations(
    state: Mapping[str, Any], now_s: float, window_s: float
) -> list[_Recommendation]:
    """The stored recommendations made within ``window_s`` before ``now_s``, oldest first."""
    entries = state.get(_RECOMMENDATIONS, [])
    if not isinstance(entries, list):
        return []
    recent = [
        entry
        for entry in map(_parse_recommendation, entries)
        if entry is not None and 0 <= now_s - entry.time_s <= window_s
    ]
    return sorted(recent, key=lambda entry: entry.time_s)


def _parse_recommendation(entry: object) -> _Recommendation | None:
    """One stored entry, or None when it is not one we wrote (the state is only advice)."""
    if not isinstance(entry, Mapping):
        return None
    time_s, replicas = entry.get("time_s"), entry.get("replicas")
    if not isinstance(time_s, int | float) or isinstance(time_s, bool):
        return None
    if not isinstance(replicas, int) or isinstance(replicas, bool):
        return None
    return _Recommendation(float(time_s), replicas)


def _stabilised_replicas(
    current_replicas: int, recommended: int, history: Sequence[_Recommendation]
) -> int:
    """Up at once; down only to the highest recommendation in the window (history)."""
    if recommended > current_replicas:
        return recommended
    highest = max((entry.replicas for entry in history), default=recommended)
    return min(current_replicas, highest)


def _clamp_replicas(replicas: int, min_replicas: int, max_replicas: int) -> int:
    return max(min_replicas, min(replicas, max_replicas))


def _compact(history: Sequence[_Recommendation]) -> list[_Recommendation]:
    """Drop entries a later, no smaller one outlasts: they can never be the window's highest.

    What is left strictly decreases in replicas from oldest to newest, so the state holds at
    most one entry per distinct count however often ``decide`` runs.
    """
    kept: list[_Recommendation] = []
    for entry in reversed(history):
        if not kept or entry.replicas > kept[-1].replicas:
            kept.append(entry)
    return kept[::-1]


def _state(history: Sequence[_Recommendation]) -> dict[str, Any]:
    return {
        _RECOMMENDATIONS: [
            {"time_s": entry.time_s, "replicas": entry.replicas} for entry in history
        ]
    }


def _reason(
    context: AutoscaleContext,
    signals: Sequence[_Signal],
    recommended: int,
    desired: int,
) -> str:
    current = context.current_replicas
    outcome = f"keep {current}" if desired == current else f"{current} -> {desired}"
    floor = max(context.min_replicas, 1)
    target = _clamp_replicas(recommended, floor, context.max_replicas)
    notes = []
    # desired >= target always: the window only ever holds a count up.
    if desired > target:
        notes.append(f"scale-down to {target} waits out the {context.window_s:g}s window")
    elif recommended > context.max_replicas:
        notes.append(f"clamped to max {desired}")
    elif recommended < floor and context.min_replicas == 0:  # a group not idle runs one
        notes.append(_not_idle_note(context))
    elif recommended < floor:
        notes.append(f"clamped to min {desired}")
    elif context.min_replicas == 0 and desired == floor and (context.not_ready or not signals):
        notes.append(_not_idle_note(context))
    if current == 0 and desired > 0 and not signals and context.last_call_s is not None:
        # Woken from zero by a call whose demand row came after its last-call time.
        text = f"a call at {_clock_time(context.last_call_s)} with no replica: {outcome}"
        return f"{text} ({'; '.join(notes)})" if notes else text
    text = f"{_signals_text(context, signals)}: {outcome}"
    return f"{text} ({'; '.join(notes)})" if notes else text


def _not_idle_note(context: AutoscaleContext) -> str:
    """Why a group that may go to zero keeps a replica."""
    if context.not_ready:
        waiting = "replica" if context.not_ready == 1 else "replicas"
        return (
            f"{context.not_ready} {waiting} not ready yet: the {context.idle_seconds:g} s idle "
            "period starts once ready"
        )
    return f"at least 1 until idle for {context.idle_seconds:g} s"


def _signals_text(context: AutoscaleContext, signals: Sequence[_Signal]) -> str:
    if not signals:
        configured = context.target_cpu_percent is not None or (
            context.queue_depth_target is not None
        )
        return "no replica measured yet" if configured else "no cpu or queue-depth target"
    parts = []
    for signal in signals:
        part = signal.description
        if signal.within_tolerance:
            part = f"{part}, within {context.tolerance:.0%} tolerance"
        if len(signals) > 1:  # which count each signal wants
            part = f"{part} -> {signal.replicas}"
        parts.append(part)
    return "; ".join(parts)


def _check_at_least(name: str, value: float, minimum: float) -> None:
    if value < minimum:
        error = invalid_value(
            f"{name} is out of range", expected=f"{name} >= {minimum}", got=f"{value!r}"
        )
        raise error
