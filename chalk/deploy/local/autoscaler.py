"""The local controller's autoscaler: feeds ``autoscale.decide`` each group's CPU and demand,
keeps its state between passes, and records what it saw for ``chalk scaling-group get``.

Demand (calls in flight and waiting) comes from ``catalog.demand``, read once per pass and,
while a group is at zero, every ``demand_poll_s`` between passes (``groups_to_wake``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from chalk.catalog import Catalog, ScalingGroup
from chalk.catalog.demand import GroupDemand
from chalk.catalog.resources import DEFAULT_CPU_REQUEST
from chalk.catalog.specs import GroupSpec
from chalk.common.quantities import parse_cpu
from chalk.deploy.autoscale import AutoscaleContext, AutoscaleDecision, Demand, decide
from chalk.deploy.local.controller_metrics import ControllerMetrics, signals_measured
from chalk.deploy.local.probes import scrape_in_flight
from chalk.deploy.local.processes import ReplicaHandle
from chalk.deploy.local.replicas import Slot
from chalk.deploy.local.settings import ControllerSettings
from chalk.deploy.states import ReplicaState

__all__ = ["SIGNALS_KEY", "LocalAutoscaler"]

logger = logging.getLogger("chalk.deploy.local.autoscaler")

# The autoscaler state's entry with what the last pass measured and decided (for ``get``);
# ``decide`` ignores it.
SIGNALS_KEY: Final = "signals"

ScaledHook = Callable[[ScalingGroup, str], None]


class LocalAutoscaler:
    """Each group's replica count, pass by pass; see the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        settings: ControllerSettings,
        metrics: ControllerMetrics,
        *,
        scaled: ScaledHook,
        monotonic: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self._catalog = catalog
        self._settings = settings
        self._metrics = metrics
        self._scaled = scaled
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._demand: dict[str, GroupDemand] = {}
        # Per group id: the state decide returned last, and when it was last saved.
        self._states: dict[str, dict[str, Any]] = {}
        self._saved_at: dict[str, float] = {}
        # Per group id: (revision, when it was stored, wall seconds).
        self._revision_times: dict[str, tuple[int, float]] = {}
        # Names of the groups at zero, and of those woken from zero with no replica ready yet.
        self._at_zero: set[str] = set()
        self._waking: set[str] = set()
        # Per group name: its ready replicas at the last pass, and when one last became ready
        # (wall seconds): the idle period starts no earlier.
        self._ready_ids: dict[str, frozenset[str]] = {}
        self._ready_at: dict[str, float] = {}

    # --- demand between passes ------------------------------------------------------------

    def read_demand(self) -> None:
        """Each group's demand, for this pass (a catalog that fails to answer: none)."""
        try:
            self._demand = self._catalog.demand.totals()
        except Exception:  # a busy catalog costs the demand signal of one pass
            logger.exception("reading the groups' demand failed")
            self._demand = {}

    def watching(self) -> bool:
        """Whether a group is at zero or waking from it, so demand is polled between passes."""
        return bool(self._at_zero or self._waking)

    def groups_to_wake(self) -> set[str]:
        """The groups to reconcile now: those at zero that have demand (read afresh), and
        those woken from zero whose replica is not ready yet (to see it ready at once)."""
        if self._at_zero:
            self.read_demand()
        wanted = {name for name in self._at_zero if self._total(name) > 0}
        return wanted | self._waking

    # --- one group's count ----------------------------------------------------------------

    async def desired(
        self,
        group: ScalingGroup,
        spec: GroupSpec,
        current: Sequence[Slot],
        running: int,
        *,
        rolling: bool = False,
    ) -> int:
        """The count for the group's revision; ``current`` are its replicas, ``running`` how
        many the group runs (those of an older revision, mid-roll). Mid-roll (``rolling``) it
        measures only the new revision's replicas, so it shrinks nothing below ``running``
        (within max_replicas) until the roll is over: no fewer serve than when it started."""
        scaling = spec.scaling
        if not scaling.autoscales:
            self._forget_zero(group.name)
            return scaling.min_replicas
        floor = scaling.min_replicas
        if rolling:
            floor = max(floor, min(running, scaling.max_replicas))
        ready = [s.handle for s in current if s.handle is not None and s.state.serves]
        ready_s = self._became_ready(group.name, current)
        demand = self._demand_of(group.name)
        in_flight = None
        if demand is None and spec.model is not None and scaling.queue_depth_target is not None:
            in_flight = await self._in_flight(ready)  # no caller publishes: ask the replicas
        context = AutoscaleContext(
            now_s=self._wall_clock(),
            current_replicas=running,
            min_replicas=floor,
            max_replicas=scaling.max_replicas,
            target_cpu_percent=scaling.effective_target_cpu,
            cpu_millicores_used=[h.cpu_millicores for h in ready if h.cpu_millicores is not None],
            cpu_millicores_requested=(
                spec.resources.cpu_millicores or parse_cpu(DEFAULT_CPU_REQUEST)
            ),
            queue_depth_target=scaling.queue_depth_target,
            in_flight=in_flight,
            window_s=float(scaling.effective_window_seconds),
            demand=demand,
            last_call_s=self._last_call_s(group.name),
            updated_s=self._revision_time(group) if scaling.scales_to_zero else None,
            idle_seconds=float(scaling.effective_idle_seconds),
            ready_s=ready_s,
            # A replica finishes its start (callers that gave up do not stop it), and a
            # crash-looping one stays, so the group reads CrashLoopBackOff, not Idle.
            not_ready=sum(1 for slot in current if slot.state in _NOT_READY),
        )
        previous = self._state_of(group.id)
        decision, state = decide(context, previous)
        desired = decision.desired
        if decision.changed:
            self._scaled(group, decision.reason)
            self._metrics.scaled(
                group.name,
                current=running,
                desired=desired,
                reason=signals_measured(context),
            )
        self._track_zero(group.name, running, desired, ready)
        self._remember(group.id, previous, state, context, decision)
        return desired

    def idle_reason(self, spec: GroupSpec) -> str:
        """The reason an Idle group shows."""
        return f"no call for {spec.scaling.effective_idle_seconds} s"

    def forget(self, group_id: str, name: str) -> None:
        """A group that is gone."""
        self._states.pop(group_id, None)
        self._saved_at.pop(group_id, None)
        self._revision_times.pop(group_id, None)
        self._ready_ids.pop(name, None)
        self._ready_at.pop(name, None)
        self._forget_zero(name)

    # --- helpers --------------------------------------------------------------------------

    def _total(self, name: str) -> int:
        found = self._demand.get(name)
        return 0 if found is None else found.total

    def _demand_of(self, name: str) -> Demand | None:
        """The group's published demand; None when no caller published lately."""
        found = self._demand.get(name)
        if found is None or found.processes == 0:
            return None
        return Demand(in_flight=found.in_flight, waiting=found.waiting)

    def _last_call_s(self, name: str) -> float | None:
        found = self._demand.get(name)
        if found is None or found.last_call_at is None:
            return None
        return found.last_call_at.timestamp()

    def _became_ready(self, name: str, current: Sequence[Slot]) -> float | None:
        """When a replica of the group last became ready (wall seconds; None: none has since
        this controller started)."""
        ready = frozenset(s.replica_id for s in current if s.state.serves)
        if ready - self._ready_ids.get(name, frozenset()):
            self._ready_at[name] = self._wall_clock()
        self._ready_ids[name] = ready
        return self._ready_at.get(name)

    def _revision_time(self, group: ScalingGroup) -> float:
        """When the group's revision was stored: a new or updated group is busy from then."""
        known = self._revision_times.get(group.id)
        if known is not None and known[0] == group.revision:
            return known[1]
        when = group.created_at
        for revision in self._catalog.groups.history(group.name):
            if revision.revision == group.revision:
                when = revision.created_at
        self._revision_times[group.id] = (group.revision, when.timestamp())
        return when.timestamp()

    def _track_zero(
        self, name: str, running: int, desired: int, ready: Sequence[ReplicaHandle]
    ) -> None:
        if desired == 0:
            self._at_zero.add(name)
            self._waking.discard(name)
            return
        if name in self._at_zero and running == 0:
            self._waking.add(name)
        self._at_zero.discard(name)
        if ready:
            self._waking.discard(name)

    def _forget_zero(self, name: str) -> None:
        self._at_zero.discard(name)
        self._waking.discard(name)

    def _state_of(self, group_id: str) -> dict[str, Any]:
        state = self._states.get(group_id)
        if state is None:
            state = self._states[group_id] = self._catalog.state.autoscaler_state(group_id)
        return state

    def _remember(
        self,
        group_id: str,
        previous: Mapping[str, Any],
        state: dict[str, Any],
        context: AutoscaleContext,
        decision: AutoscaleDecision,
    ) -> None:
        """Keep the new state; save it (with the signals) when the count changed, and at most
        every ``usage_interval_s`` otherwise (each pass would be a catalog write)."""
        now = self._monotonic()
        signals = _signals(context, decision, self._wall_clock())
        last = previous.get(SIGNALS_KEY)
        if not decision.changed and isinstance(last, Mapping):
            signals["lastDecision"] = last.get("lastDecision")
        state[SIGNALS_KEY] = signals
        self._states[group_id] = state
        saved_at = self._saved_at.get(group_id)
        due = saved_at is None or now - saved_at >= self._settings.usage_interval_s
        if decision.changed or due:
            self._catalog.state.save_autoscaler_state(group_id, state)
            self._saved_at[group_id] = now

    async def _in_flight(self, handles: Iterable[ReplicaHandle]) -> list[float] | None:
        ports = [h.metrics_port for h in handles if h.metrics_port is not None]
        timeout_s = self._settings.metrics_timeout_s
        readings = await asyncio.gather(
            *(asyncio.to_thread(scrape_in_flight, port, timeout_s) for port in ports)
        )
        answered = [value for value in readings if value is not None]
        # Replicas whose metrics do not answer are scaled on CPU alone.
        return answered or None


_NOT_READY: Final = frozenset({ReplicaState.STARTING, ReplicaState.CRASH_LOOP_BACK_OFF})


def _signals(
    context: AutoscaleContext, decision: AutoscaleDecision, now_s: float
) -> dict[str, Any]:
    """What ``get`` shows of the autoscaler: each signal's value and the decision."""
    used = context.cpu_millicores_used
    cpu_percent = None
    if used and context.cpu_millicores_requested > 0:
        cpu_percent = round(sum(used) / len(used) / context.cpu_millicores_requested * 100)
    demand = context.demand
    at = _iso(now_s)
    return {
        "at": at,
        "demand": None
        if demand is None
        else {"inFlight": demand.in_flight, "waiting": demand.waiting, "total": demand.total},
        "replicaInFlight": None if context.in_flight is None else sum(context.in_flight),
        "queueDepthTarget": context.queue_depth_target,
        "cpuPercent": cpu_percent,
        "targetCpuPercent": context.target_cpu_percent,
        "lastCallAt": None if context.last_call_s is None else _iso(context.last_call_s),
        "idleSince": None if decision.idle_since_s is None else _iso(decision.idle_since_s),
        "idleSeconds": int(context.idle_seconds) if context.min_replicas == 0 else None,
        "reason": decision.reason,
        "lastDecision": {"reason": decision.reason, "at": at} if decision.changed else None,
    }


def _iso(time_s: float) -> str:
    return dt.datetime.fromtimestamp(time_s, dt.UTC).isoformat()
