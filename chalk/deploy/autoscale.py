"""The autoscaling policy: a pure function from what was measured to how many replicas to run.

The local controller calls ``decide`` on each pass, keeps the returned state in the catalog
(``catalog.state.save_autoscaler_state``) and records each decision's reason as an event.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from chalk.common.quantities import invalid_value

__all__ = ["DEFAULT_TOLERANCE", "AutoscaleContext", "AutoscaleDecision", "decide"]

DEFAULT_TOLERANCE: Final = 0.1

_RECOMMENDATIONS: Final = "recommendations"
# Float arithmetic must not move a value across a boundary it sits on: 88% of an 80% target is
# exactly 10% off, and 2 replicas at 160% of 80% want exactly 4, not 5.
_EPSILON: Final = 1e-9
_DIGITS: Final = 9


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
        The bounds the decision stays within, ``1 <= min_replicas <= max_replicas``.
    target_cpu_percent
        CPU use to aim for, as a percentage of the requested CPU; ``None`` to not scale on CPU.
    cpu_millicores_used
        Measured CPU use of each ready replica, in millicores.
    cpu_millicores_requested
        CPU requested per replica, in millicores (>= 1 when ``target_cpu_percent`` is set).
    queue_depth_target
        In-flight calls per replica to aim for; ``None`` to not scale on them.
    in_flight
        In-flight calls of each replica that exposes our runtime's metrics; ``None`` when none
        does.
    window_s
        Scale-down stabilisation window in seconds, >= 0: the group shrinks only to the
        highest count recommended within it.
    tolerance
        Relative distance from a target, >= 0, within which the count is kept.

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

    def __post_init__(self) -> None:
        _check_at_least("current_replicas", self.current_replicas, 0)
        _check_at_least("min_replicas", self.min_replicas, 1)
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


@dataclass(frozen=True)
class AutoscaleDecision:
    """The replica count to run and why.

    Parameters
    ----------
    desired
        Replicas to run, within ``[min_replicas, max_replicas]``.
    reason
        One human-readable line, e.g. ``"cpu 160% of 80% target: 2 -> 4"``.
    changed
        Whether ``desired`` differs from the current count.

    Examples
    --------
    >>> AutoscaleDecision(desired=3, reason="no replica measured yet: keep 3", changed=False)
    AutoscaleDecision(desired=3, reason='no replica measured yet: keep 3', changed=False)
    """

    desired: int
    reason: str
    changed: bool


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

    Each signal recommends ``ceil(current * utilisation / target)``, or the current count when
    its utilisation is within ``tolerance`` of the target: CPU use as a share of the requested
    CPU against ``target_cpu_percent``, and the mean in-flight calls per replica against
    ``queue_depth_target``. The larger recommendation wins; with no signal configured or
    measured, the current count stays. A larger count takes effect at once; a smaller one only
    down to the highest count recommended within the last ``window_s`` seconds, so a dip
    shorter than the window changes nothing. The result is clamped to
    ``[min_replicas, max_replicas]``.

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
    >>> decision
    AutoscaleDecision(desired=4, reason='cpu 160% of 80% target: 2 -> 4', changed=True)
    >>> state
    {'recommendations': [{'time_s': 0.0, 'replicas': 4}]}
    """
    signals = [
        signal for signal in (_cpu_signal(context), _queue_signal(context)) if signal is not None
    ]
    recommended = _recommended_replicas(context.current_replicas, signals)
    history = _recent_recommendations(state, context.now_s, context.window_s)
    if not history and context.window_s > 0:
        # With no recent recommendation, the current count stands in for one made now, so a
        # new group (or one whose state is stale) also waits a whole window before shrinking.
        history = [_Recommendation(context.now_s, context.current_replicas)]
    history.append(_Recommendation(context.now_s, recommended))
    stabilised = _stabilised_replicas(context.current_replicas, recommended, history)
    desired = _clamp_replicas(stabilised, context.min_replicas, context.max_replicas)
    reason = _reason(context, signals, recommended, stabilised, desired)
    decision = AutoscaleDecision(
        desired=desired, reason=reason, changed=desired != context.current_replicas
    )
    return decision, _state(_compact(history))


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
    target = context.queue_depth_target
    per_replica = _in_flight_per_replica(context.in_flight)
    if target is None or per_replica is None:
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
    stabilised: int,
    desired: int,
) -> str:
    current = context.current_replicas
    outcome = f"keep {current}" if desired == current else f"{current} -> {desired}"
    notes = []
    if stabilised > recommended:
        notes.append(f"scale-down to {recommended} waits out the {context.window_s:g}s window")
    if desired != stabilised:
        bound = "max" if desired < stabilised else "min"
        notes.append(f"clamped to {bound} {desired}")
    text = f"{_signals_text(context, signals)}: {outcome}"
    return f"{text} ({'; '.join(notes)})" if notes else text


def _signals_text(context: AutoscaleContext, signals: Sequence[_Signal]) -> str:
    if not signals:
        configured = context.target_cpu_percent is not None or (
            context.queue_depth_target is not None
        )
        return "no replica measured yet" if configured else "no cpu or queue-depth target"
    parts = []
    for signal in signals:
        part = signal.description
        if len(signals) > 1:
            part = f"{part} wants {signal.replicas}"
        if signal.within_tolerance:
            part = f"{part}, within {context.tolerance:.0%} tolerance"
        parts.append(part)
    return ", ".join(parts)


def _check_at_least(name: str, value: float, minimum: float) -> None:
    if value < minimum:
        error = invalid_value(
            f"{name} is out of range", expected=f"{name} >= {minimum}", got=f"{value!r}"
        )
        raise error
