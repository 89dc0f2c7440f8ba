"""A local group's replicas: their bookkeeping, and starting, watching and stopping them.

``Replicas`` does what the controller's plan asks for one replica at a time (start, stop)
and observes what happened to each (exits, probes, memory); every change of a replica's
state goes through ``Slot.move`` and is written to its catalog row.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from chalk.catalog import Catalog, ScalingGroup
from chalk.catalog.records import LocalImage, Replica, ReplicaUsage
from chalk.catalog.specs import GroupSpec
from chalk.common.backoff import capped_backoff
from chalk.common.quantities import parse_memory
from chalk.deploy.local.controller_metrics import ControllerMetrics
from chalk.deploy.local.gpus import GpuAllocator, gpu_environment
from chalk.deploy.local.image_runtime import replica_cwd
from chalk.deploy.local.launching import replica_argv, replica_environment
from chalk.deploy.local.listeners import wildcard_listeners
from chalk.deploy.local.logs import append_line, replica_log
from chalk.deploy.local.plan import ReplicaView
from chalk.deploy.local.probes import is_ready
from chalk.deploy.local.processes import ReplicaHandle, free_port, launch, log_tail
from chalk.deploy.local.proxy import GroupProxy
from chalk.deploy.local.settings import ControllerSettings
from chalk.deploy.log_lines import restart_line
from chalk.deploy.states import ReplicaEvent, ReplicaState, next_replica_state

__all__ = ["DEFAULT_GRACE_S", "Failure", "Replicas", "Slot", "TrackedGroup"]

logger = logging.getLogger("chalk.deploy.local.controller")

DEFAULT_GRACE_S: Final = 30.0
# A replica that ran this long before crashing starts its back-off afresh, as Kubernetes does.
_BACKOFF_RESET_S: Final = 600.0


@dataclass
class Slot:
    """A replica the group should have: its state, its process, its back-off."""

    replica_id: str
    revision: int
    state: ReplicaState = ReplicaState.PENDING
    handle: ReplicaHandle | None = None
    restarts: int = 0
    # Crashes in a row (reset after a long run): the exponent of the restart back-off.
    crash_streak: int = 0
    last_exit_reason: str = ""
    restart_at: float = 0.0
    last_checked: float = 0.0
    pending_reason: str = ""
    # Resident memory of its process tree at the last observation (None: not running).
    memory_bytes: int | None = None

    def move(self, event: ReplicaEvent) -> None:
        self.state = next_replica_state(self.state, event)

    def view(self) -> ReplicaView:
        return ReplicaView(
            replica_id=self.replica_id,
            revision=self.revision,
            state=self.state,
            restarts=self.restarts,
            restart_at=self.restart_at,
            last_exit_reason=self.last_exit_reason,
            pending_reason=self.pending_reason,
            pid=self.handle.pid if self.handle is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """A permanent error: the group stays Failed until its revision changes."""

    revision: int
    reason: str


@dataclass
class TrackedGroup:
    """What the controller keeps of one group between passes."""

    name: str
    grace_s: float = DEFAULT_GRACE_S
    slots: dict[str, Slot] = field(default_factory=dict)
    leaving: list[ReplicaHandle] = field(default_factory=list)
    proxy: GroupProxy | None = None
    last_report: tuple[Any, ...] = ()
    # The revision last reconciled and what its replicas run (``_replica_template``).
    template: tuple[int, str] | None = None
    failure: Failure | None = None
    # Temporary errors in a row, the last one said, and when to try the group again.
    retries: int = 0
    last_error: str = ""
    retry_at: float = 0.0

    def handles(self) -> list[ReplicaHandle]:
        return [s.handle for s in self.slots.values() if s.handle is not None]

    def serving(self) -> list[ReplicaHandle]:
        return [s.handle for s in self.slots.values() if s.handle and s.state.serves]

    def usage(self, group_id: str) -> list[ReplicaUsage]:
        """Each replica's last CPU and memory reading (none for one not running)."""
        return [
            ReplicaUsage(
                group_id=group_id,
                replica_id=slot.replica_id,
                cpu_millicores=None if slot.handle is None else slot.handle.cpu_millicores,
                memory_bytes=slot.memory_bytes,
            )
            for slot in self.slots.values()
        ]


class Replicas:
    """Starts, watches and stops the replicas of every local group for the controller."""

    def __init__(
        self,
        catalog: Catalog,
        settings: ControllerSettings,
        metrics: ControllerMetrics,
        *,
        monotonic: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self.gpus = GpuAllocator([])
        self._catalog = catalog
        self._settings = settings
        self._metrics = metrics
        self._monotonic = monotonic
        self._wall_clock = wall_clock

    def start(self, group: ScalingGroup, spec: GroupSpec, image: LocalImage, slot: Slot) -> None:
        gpu_env = self._gpu_env(spec, slot)
        if gpu_env is None:
            slot.move(ReplicaEvent.NO_CAPACITY)
            return
        port = free_port()
        metrics_port = free_port()
        argv = replica_argv(image, spec, port)
        env = replica_environment(
            image,
            spec,
            port=port,
            metrics_port=metrics_port,
            interpreter_bin=self._settings.interpreter_bin,
        )
        env.update(gpu_env)
        log_path = self.log_path(group.name, slot.replica_id)
        if slot.restarts:
            self._mark_restart(log_path, slot)
        try:
            handle = launch(
                replica_id=slot.replica_id,
                group_id=group.id,
                revision=slot.revision,
                argv=argv,
                env=env,
                cwd=replica_cwd(image),
                port=port,
                metrics_port=metrics_port,
                log_path=log_path,
            )
        except OSError as error:
            self._crashed(group, slot, f"cannot start {argv[0]!r}: {error.strerror or error}")
            return
        handle.restarts = slot.restarts
        handle.last_exit_reason = slot.last_exit_reason
        slot.handle = handle
        slot.last_checked = 0.0
        slot.move(ReplicaEvent.LAUNCHED)
        self.save_row(slot, handle)
        self.event(group, "Normal", "Started", f"replica {slot.replica_id} started on port {port}")

    def _mark_restart(self, log_path: Path, slot: Slot) -> None:
        """One line in the replica's log between its runs, so `chalk logs` shows the restart."""
        at = dt.datetime.fromtimestamp(self._wall_clock(), dt.UTC)
        with contextlib.suppress(OSError):  # the log is a help; the replica starts regardless
            append_line(log_path, restart_line(at, slot.restarts, slot.last_exit_reason))

    def _gpu_env(self, spec: GroupSpec, slot: Slot) -> dict[str, str] | None:
        request = spec.resources.gpu_request
        if request is None:
            # No GPU asked for: none visible, as in a container without the device.
            return {"CUDA_VISIBLE_DEVICES": ""} if self.gpus.total else {}
        gpus = self.gpus.allocate(slot.replica_id, request.count)
        if gpus is None:
            slot.pending_reason = self.gpus.shortfall_reason(request.count, request.type)
            return None
        slot.pending_reason = ""
        return gpu_environment(gpus)

    def observe(self, group: ScalingGroup, spec: GroupSpec, state: TrackedGroup) -> None:
        """Exits (restart after back-off), CPU use, and memory over the limit (OOMKilled)."""
        limit_bytes = parse_memory(spec.resources.requests_and_limits()["limits"]["memory"])
        now = self._monotonic()
        for slot in state.slots.values():
            handle = slot.handle
            if handle is None:
                continue
            reason = handle.exit_reason()
            if reason is not None:
                handle.kill_leftovers()
                if self._wall_clock() - handle.started_at.timestamp() > _BACKOFF_RESET_S:
                    slot.crash_streak = 0
                slot.handle = None
                slot.memory_bytes = None
                tail = log_tail(handle.log_path)
                self._crashed(group, slot, reason, tail, endpoint=handle.endpoint)
                continue
            handle.sample_cpu(now)
            rss = handle.rss_bytes()
            slot.memory_bytes = rss
            if rss > limit_bytes and handle.oom_reason is None:
                handle.oom_reason = (
                    f"OOMKilled: memory {rss / 2**20:.0f}Mi over the limit of "
                    f"{limit_bytes / 2**20:.0f}Mi"
                )
                handle.signal_group(signal.SIGKILL)
                self._metrics.oom_killed(group.name)
                self.event(
                    group, "Warning", "OOMKilled", f"replica {slot.replica_id} {handle.oom_reason}"
                )

    def _crashed(
        self,
        group: ScalingGroup,
        slot: Slot,
        reason: str,
        tail: str = "",
        *,
        endpoint: str | None = None,
    ) -> None:
        """Record the replica's exit; its row keeps the ``endpoint`` it served at until it
        restarts, so a caller whose connection it lost can learn its exit (``chalk.engine``)."""
        slot.move(ReplicaEvent.EXITED)
        slot.restarts += 1
        self._metrics.restarted(group.name)
        slot.crash_streak += 1
        slot.last_exit_reason = reason
        delay = capped_backoff(
            slot.crash_streak,
            initial_s=self._settings.backoff_initial_s,
            max_s=self._settings.backoff_max_s,
        )
        slot.restart_at = self._monotonic() + delay
        detail = f"; last log lines:\n{tail}" if tail else ""
        self.event(
            group,
            "Warning",
            "BackOff",
            f"replica {slot.replica_id} {reason}; restart {slot.restarts} in {delay:.0f}s{detail}",
        )
        self._catalog.state.save_replica(
            Replica(
                group_id=group.id,
                replica_id=slot.replica_id,
                revision=slot.revision,
                state=slot.state.value,
                endpoint=endpoint,
                restarts=slot.restarts,
                last_exit_reason=reason + (f"\n{tail}" if tail else ""),
            )
        )

    async def check_readiness(
        self, group: ScalingGroup, spec: GroupSpec, state: TrackedGroup
    ) -> None:
        now = self._monotonic()
        checks = []
        for slot in state.slots.values():
            handle = slot.handle
            if handle is None or handle.leaving:
                continue
            if slot.state.serves and now - slot.last_checked < self._settings.ready_recheck_s:
                continue
            slot.last_checked = now
            checks.append((slot, handle))
        results = await asyncio.gather(
            *(is_ready(h.endpoint, hosts_model=spec.model is not None) for _, h in checks)
        )
        for (slot, handle), ok in zip(checks, results, strict=True):
            handle.probe_failures = 0 if ok else handle.probe_failures + 1
            if ok and not slot.state.serves:
                slot.move(ReplicaEvent.PROBE_PASSED)
                handle.mark_ready()
                self.save_row(slot, handle)
                self.event(group, "Normal", "Ready", f"replica {slot.replica_id} is ready")
                self._warn_wildcards(group, slot.replica_id, handle.pid)
            elif (
                slot.state.serves and handle.probe_failures >= self._settings.unready_after_failures
            ):
                slot.move(ReplicaEvent.PROBES_FAILED)
                self.save_row(slot, handle)
                self.event(
                    group, "Warning", "Unready", f"replica {slot.replica_id} failed its probes"
                )

    def _warn_wildcards(self, group: ScalingGroup, replica_id: str, pid: int) -> None:
        """Local replicas stay on loopback (DESIGN.md): say so when one listens on every
        interface, which an image binding 0.0.0.0 itself does."""
        addresses = wildcard_listeners(pid)
        if addresses:
            self.event(
                group,
                "Warning",
                "WildcardListener",
                f"replica {replica_id} listens on {', '.join(addresses)}, reachable from every "
                f"network interface: expected local replicas to listen on 127.0.0.1 only; make "
                f"the image bind $CHALK_REMOTE_CALL_HOST or 127.0.0.1",
            )

    def stop(self, group: ScalingGroup, state: TrackedGroup, slot: Slot, *, reason: str) -> None:
        state.slots.pop(slot.replica_id, None)
        if slot.handle is None:
            self.gpus.release(slot.replica_id)
            self._catalog.state.remove_replica(group.id, slot.replica_id)
            return
        slot.move(ReplicaEvent.STOP)
        self.schedule_stop(
            slot.handle, grace_s=state.grace_s, drain_s=self._settings.endpoint_drain_s
        )
        state.leaving.append(slot.handle)
        self.save_row(slot, slot.handle)
        self.event(group, "Normal", "Stopping", f"replica {slot.replica_id}: {reason}")

    def schedule_stop(self, handle: ReplicaHandle, *, grace_s: float, drain_s: float) -> None:
        """Out of the endpoints now; SIGTERM after ``drain_s``; SIGKILL ``grace_s`` later."""
        if handle.terminate_at is None:
            handle.terminate_at = self._monotonic() + drain_s
            handle.terminate_deadline = handle.terminate_at + grace_s

    def reap_leaving(self, group_id: str, state: TrackedGroup) -> None:
        now = self._monotonic()
        for handle in list(state.leaving):
            if handle.exit_reason() is not None:
                handle.kill_leftovers()
                state.leaving.remove(handle)
                self.gpus.release(handle.replica_id)
                with contextlib.suppress(Exception):
                    self._catalog.state.remove_replica(group_id, handle.replica_id)
            else:
                handle.signal_when_due(now)

    def save_row(self, slot: Slot, handle: ReplicaHandle) -> None:
        self._catalog.state.save_replica(
            Replica(
                group_id=handle.group_id,
                replica_id=slot.replica_id,
                revision=slot.revision,
                state=slot.state.value,
                ready=slot.state.serves,
                pid=handle.pid,
                port=handle.port,
                endpoint=handle.endpoint,
                restarts=slot.restarts,
                last_exit_reason=slot.last_exit_reason,
                started_at=handle.started_at,
                metrics_port=handle.metrics_port,
            )
        )

    def event(self, group: ScalingGroup, kind: str, reason: str, message: str) -> None:
        logger.info("%s %s: %s", group.name, reason, message)
        self._catalog.state.add_event(group.id, type=kind, reason=reason, message=message)

    def log_path(self, group: str, replica_id: str) -> Path:
        return replica_log(self._settings.logs_dir, group, replica_id)
