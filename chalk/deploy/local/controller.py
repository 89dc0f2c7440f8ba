"""The local controller: reconciles the catalog's scaling groups into replica processes.

One pass: observe every replica (exits, readiness, CPU, memory), diff against each group's
spec and autoscaling decision, act (launch, restart after back-off, roll, stop), then write
replica rows, endpoints and status back to the catalog. A failing group records its outcome
and the pass goes on. ``chalk up`` runs it (``chalk.deploy.local.daemon``); the CLI and the
controller talk only through the catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from chalk.catalog import Catalog, Endpoint, ScalingGroup
from chalk.catalog.records import LocalImage, Replica
from chalk.catalog.resources import DEFAULT_CPU_REQUEST
from chalk.catalog.specs import GroupSpec
from chalk.common.errors import ChalkError
from chalk.common.quantities import parse_memory
from chalk.deploy.autoscale import AutoscaleContext, decide
from chalk.deploy.local.gpus import (
    GpuAllocator,
    GpuError,
    gpu_environment,
    parse_cuda_visible_devices,
)
from chalk.deploy.local.images import image_argv, replica_cwd, replica_env
from chalk.deploy.local.logs import tidy_logs
from chalk.deploy.local.processes import (
    ReplicaHandle,
    adopt,
    free_port,
    launch,
    log_tail,
    substitute_port,
)
from chalk.deploy.local.proxy import GroupProxy
from chalk.shim.client import health_status

__all__ = ["BACKEND", "ControllerSettings", "LocalController"]

logger = logging.getLogger("chalk.deploy.local.controller")

BACKEND: Final = "local"
# Variables a replica takes from the controller's environment; the rest comes from the image
# and the group, as in a container.
_INHERITED_ENV: Final = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER", "LOGNAME", "TERM")
_METRICS_PORT_ENV: Final = "CHALK_REMOTE_CALL_METRICS_PORT"
_IN_FLIGHT_METRIC: Final = "chalk_remote_call_in_flight"
# A replica that ran this long before crashing starts its back-off afresh, as Kubernetes does.
_BACKOFF_RESET_S: Final = 600.0
_MAX_BACKOFF_STEP: Final = 30
# Spec fields a running replica does not depend on: changing only these restarts nothing.
_NOT_IN_REPLICAS: Final = frozenset({"scaling", "tags"})


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """Timings and places; tests shorten the timings."""

    logs_dir: Path
    pass_interval_s: float = 0.5
    heartbeat_interval_s: float = 2.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    ready_recheck_s: float = 2.0
    # A Running replica is unready only after this many failed probes in a row.
    unready_after_failures: int = 3
    # How long a leaving replica stays out of the endpoints before its SIGTERM.
    endpoint_drain_s: float = 1.0
    metrics_timeout_s: float = 0.5
    # Each log under logs_dir is cut back (to <name>.1) past this size; logs of replicas gone
    # and unchanged for log_keep_unused_s are removed. Checked every log_check_interval_s.
    log_max_bytes: int = 10 * 2**20
    log_keep_unused_s: float = 7 * 24 * 3600.0
    log_check_interval_s: float = 30.0
    interpreter_bin: Path = field(default_factory=lambda: Path(sys.executable).parent)
    nvidia_smi_path: str | None = None


@dataclass
class _Slot:
    """A replica the group should have: its process, or the back-off before its next start."""

    replica_id: str
    revision: int
    handle: ReplicaHandle | None = None
    restarts: int = 0
    backoff_step: int = 0
    last_exit_reason: str = ""
    restart_at: float = 0.0
    last_checked: float = 0.0
    pending_reason: str = ""


@dataclass
class _GroupState:
    name: str
    grace_s: float = 30.0
    slots: dict[str, _Slot] = field(default_factory=dict)
    leaving: list[ReplicaHandle] = field(default_factory=list)
    proxy: GroupProxy | None = None
    last_error: str = ""
    last_report: tuple[Any, ...] = ()
    # The revision last reconciled and what its replicas run (``_replica_template``).
    template: tuple[int, str] | None = None


class LocalController:
    """Runs the local backend's groups as processes; see the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        settings: ControllerSettings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._catalog = catalog
        self._settings = settings
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._groups: dict[str, _GroupState] = {}
        self._host = socket.gethostname()
        self._gpus = GpuAllocator([])
        self._logs_tidied_at: float | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Adopt what an earlier controller left running, then reconcile until ``stop``."""
        self._gpus = GpuAllocator.detect(path=self._settings.nvidia_smi_path)
        self._beat()
        await self.adopt_running()
        heartbeat = asyncio.create_task(self._heartbeat_until(stop))
        try:
            while not stop.is_set():
                try:
                    await self.reconcile_once()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the catalog hiccuped: try again next pass
                    logger.exception("a reconcile pass failed")
                await self._tidy_logs_when_due()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._settings.pass_interval_s)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await self.shutdown()

    async def adopt_running(self) -> None:
        """Take over replicas whose processes still run; forget rows whose processes are gone.

        Replicas of deleted groups, and replicas that were leaving, are adopted as leaving.
        """
        for group in self._catalog.groups.list(include_deleted=True):
            rows = self._catalog.state.replicas(group.id)
            if not rows:
                continue
            state = self._groups.setdefault(group.id, _GroupState(group.name))
            state.grace_s = _grace_of(group)
            for row in rows:
                handle = self._adopt_row(group, row)
                if handle is None:
                    self._catalog.state.remove_replica(group.id, row.replica_id)
                    continue
                logger.info("adopted replica %s (pid %d)", row.replica_id, handle.pid)
                if group.deleted_at is not None or row.state == "Terminating":
                    self._schedule_stop(handle, grace_s=state.grace_s, drain_s=0)
                    state.leaving.append(handle)
                    continue
                state.slots[row.replica_id] = _Slot(
                    replica_id=row.replica_id,
                    revision=row.revision,
                    handle=handle,
                    restarts=row.restarts,
                    last_exit_reason=row.last_exit_reason,
                )

    def _adopt_row(self, group: ScalingGroup, row: Replica) -> ReplicaHandle | None:
        handle = adopt(row, self._log_path(group.name, row.replica_id))
        if handle is None:
            return None
        environ = handle.environ()
        metrics_port = environ.get(_METRICS_PORT_ENV, "")
        handle.metrics_port = int(metrics_port) if metrics_port.isdigit() else None
        visible = environ.get("CUDA_VISIBLE_DEVICES")
        if visible:
            try:
                self._gpus.claim(row.replica_id, parse_cuda_visible_devices(visible))
            except GpuError as error:
                logger.warning("replica %s: %s", row.replica_id, error)
        return handle

    async def reconcile_once(self) -> None:
        """One pass over every group; one group's failure never stops the others."""
        live = {group.id: group for group in self._catalog.groups.list()}
        for group_id in [gid for gid in self._groups if gid not in live]:
            await self._retire(group_id)
        for group in live.values():
            state = self._groups.setdefault(group.id, _GroupState(group.name))
            try:
                await self._reconcile_group(group, state)
                state.last_error = ""
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a pass never raises for one group's failure
                self._fail(group, state, error)

    async def shutdown(self) -> None:
        """Stop every replica (endpoints first, then SIGTERM, then SIGKILL) and every URL."""
        for group_id, state in self._groups.items():
            with contextlib.suppress(Exception):
                self._catalog.groups.report(
                    group_id, status="Stopped", desired=0, ready=0, available=0, endpoints=[]
                )
            for slot in state.slots.values():
                if slot.handle is not None:
                    self._schedule_stop(slot.handle, grace_s=state.grace_s, drain_s=0)
                    state.leaving.append(slot.handle)
            state.slots.clear()
            if state.proxy is not None:
                await state.proxy.close()
                state.proxy = None
        while any(state.leaving for state in self._groups.values()):
            for group_id, state in self._groups.items():
                self._reap_leaving(group_id, state)
            await asyncio.sleep(0.05)
        self._groups.clear()
        with contextlib.suppress(Exception):
            self._catalog.state.clear_controller(BACKEND)

    async def _tidy_logs_when_due(self) -> None:
        now = self._monotonic()
        due = self._logs_tidied_at is None or (
            now - self._logs_tidied_at >= self._settings.log_check_interval_s
        )
        if not due:
            return
        self._logs_tidied_at = now
        in_use = [
            self._log_path(state.name, replica_id)
            for state in self._groups.values()
            for replica_id in [*state.slots, *(h.replica_id for h in state.leaving)]
        ]
        try:
            await asyncio.to_thread(
                tidy_logs,
                self._settings.logs_dir,
                max_bytes=self._settings.log_max_bytes,
                keep_unused_s=self._settings.log_keep_unused_s,
                in_use=in_use,
                now_s=self._wall_clock(),
            )
        except OSError:  # a full or read-only disk must not stop the controller
            logger.exception("tidying the logs in %s failed", self._settings.logs_dir)

    # --- one group ------------------------------------------------------------------------

    async def _reconcile_group(self, group: ScalingGroup, state: _GroupState) -> None:
        spec = GroupSpec.from_dict(group.spec)
        state.grace_s = float(spec.scaling.effective_shutdown_delay_seconds)
        await self._ensure_proxy(group, state)
        self._observe(group, spec, state)
        self._carry_over(group, state)
        self._reap_leaving(group.id, state)
        await self._check_readiness(group, spec, state)
        current = [s for s in state.slots.values() if s.revision == group.revision]
        desired = await self._desired(group, spec, current)
        for _ in range(desired - len(current)):
            slot = _Slot(replica_id=f"{group.name}-{secrets.token_hex(3)}", revision=group.revision)
            state.slots[slot.replica_id] = slot
            current.append(slot)
        for slot in sorted(current, key=_stop_order)[: max(0, len(current) - desired)]:
            self._stop_slot(group, state, slot, reason="scaled down")
            current.remove(slot)
        self._start_due(group, spec, current)
        self._retire_outdated(group, state, current, desired)
        self._report(group, state, desired)

    def _carry_over(self, group: ScalingGroup, state: _GroupState) -> None:
        """A revision that changed nothing its replicas run (only scaling or tags) keeps the
        replicas of the one before, instead of restarting every warm model."""
        template = _replica_template(group.spec)
        previous = state.template
        state.template = (group.revision, template)
        if previous is None or previous[0] == group.revision or previous[1] != template:
            return
        for slot in state.slots.values():
            if slot.revision == previous[0]:
                slot.revision = group.revision
                if slot.handle is not None:
                    running = "Running" if slot.handle.ready else "Starting"
                    self._save_row(slot, slot.handle, state=running)

    def _start_due(self, group: ScalingGroup, spec: GroupSpec, slots: list[_Slot]) -> None:
        now = self._monotonic()
        due = [s for s in slots if s.handle is None and now >= s.restart_at]
        if not due:
            return
        image = self._catalog.images.get(spec.image_digest or spec.image)
        for slot in due:
            self._start(group, spec, image, slot)

    def _retire_outdated(
        self, group: ScalingGroup, state: _GroupState, current: list[_Slot], desired: int
    ) -> None:
        outdated = [s for s in state.slots.values() if s.revision != group.revision]
        if not outdated:
            return
        ready_new = sum(1 for s in current if s.handle is not None and s.handle.ready)
        old_alive = any(s.handle is not None for s in outdated)
        # Old replicas leave once the new revision serves in full, or at once when none of them
        # runs any more (they crashed): keeping them would serve nobody.
        if ready_new >= desired or not old_alive:
            for slot in outdated:
                self._stop_slot(group, state, slot, reason=f"replaced by revision {group.revision}")

    def _start(self, group: ScalingGroup, spec: GroupSpec, image: LocalImage, slot: _Slot) -> None:
        gpu_env = self._gpu_env(spec, slot)
        if gpu_env is None:
            return
        port = free_port()
        metrics_port = free_port()
        argv = substitute_port(image_argv(image, spec.entrypoint), spec.port, port)
        env = self._replica_env(image, spec, port, metrics_port)
        env.update(gpu_env)
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
                log_path=self._log_path(group.name, slot.replica_id),
            )
        except OSError as error:
            self._crashed(group, slot, f"cannot start {argv[0]!r}: {error.strerror or error}")
            return
        handle.restarts = slot.restarts
        handle.last_exit_reason = slot.last_exit_reason
        slot.handle = handle
        slot.last_checked = 0.0
        self._save_row(slot, handle, state="Starting")
        self._event(group, "Normal", "Started", f"replica {slot.replica_id} started on port {port}")

    def _gpu_env(self, spec: GroupSpec, slot: _Slot) -> dict[str, str] | None:
        request = spec.resources.gpu_request
        if request is None:
            # No GPU asked for: none visible, as in a container without the device.
            return {"CUDA_VISIBLE_DEVICES": ""} if self._gpus.total else {}
        gpus = self._gpus.allocate(slot.replica_id, request.count)
        if gpus is None:
            slot.pending_reason = self._gpus.shortfall_reason(request.count, request.type)
            return None
        slot.pending_reason = ""
        return gpu_environment(gpus)

    def _replica_env(
        self, image: LocalImage, spec: GroupSpec, port: int, metrics_port: int
    ) -> dict[str, str]:
        env = {name: os.environ[name] for name in _INHERITED_ENV if name in os.environ}
        env.update(replica_env(image))
        env.update(spec.env)
        path = [str(self._settings.interpreter_bin)]
        path += [p for p in (env.get("PATH") or os.environ.get("PATH", "")).split(os.pathsep) if p]
        env.update(
            PATH=os.pathsep.join(path),
            PORT=str(port),
            CHALK_REMOTE_CALL_PORT=str(port),
            CHALK_REMOTE_CALL_HOST="127.0.0.1",
        )
        env[_METRICS_PORT_ENV] = str(metrics_port)
        return env

    def _observe(self, group: ScalingGroup, spec: GroupSpec, state: _GroupState) -> None:
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
                ran_s = self._wall_clock() - handle.started_at.timestamp()
                if ran_s > _BACKOFF_RESET_S:
                    slot.backoff_step = 0
                slot.handle = None
                self._crashed(group, slot, reason, log_tail(handle.log_path))
                continue
            handle.sample_cpu(now)
            rss = handle.rss_bytes()
            if rss > limit_bytes and handle.oom_reason is None:
                handle.oom_reason = (
                    f"OOMKilled: memory {rss / 2**20:.0f}Mi over the limit of "
                    f"{limit_bytes / 2**20:.0f}Mi"
                )
                handle.signal_group(signal.SIGKILL)
                self._event(
                    group, "Warning", "OOMKilled", f"replica {slot.replica_id} {handle.oom_reason}"
                )

    def _crashed(self, group: ScalingGroup, slot: _Slot, reason: str, tail: str = "") -> None:
        slot.restarts += 1
        slot.backoff_step = min(slot.backoff_step + 1, _MAX_BACKOFF_STEP)
        slot.last_exit_reason = reason
        delay = min(
            self._settings.backoff_max_s,
            self._settings.backoff_initial_s * 2 ** (slot.backoff_step - 1),
        )
        slot.restart_at = self._monotonic() + delay
        detail = f"; last log lines:\n{tail}" if tail else ""
        self._event(
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
                state="CrashLoopBackOff",
                restarts=slot.restarts,
                last_exit_reason=reason + (f"\n{tail}" if tail else ""),
            )
        )

    async def _check_readiness(
        self, group: ScalingGroup, spec: GroupSpec, state: _GroupState
    ) -> None:
        now = self._monotonic()
        checks = []
        for slot in state.slots.values():
            handle = slot.handle
            if handle is None or handle.leaving:
                continue
            if handle.ready and now - slot.last_checked < self._settings.ready_recheck_s:
                continue
            slot.last_checked = now
            checks.append((slot, handle))
        results = await asyncio.gather(
            *(_is_ready(h.endpoint, hosts_model=spec.model is not None) for _, h in checks)
        )
        for (slot, handle), ok in zip(checks, results, strict=True):
            handle.probe_failures = 0 if ok else handle.probe_failures + 1
            was_ready = handle.ready
            if ok and not was_ready:
                handle.mark_ready()
                self._save_row(slot, handle, state="Running")
                self._event(group, "Normal", "Ready", f"replica {slot.replica_id} is ready")
            elif was_ready and handle.probe_failures >= self._settings.unready_after_failures:
                handle.ready = False
                self._save_row(slot, handle, state="Unready")
                self._event(
                    group, "Warning", "Unready", f"replica {slot.replica_id} failed its probes"
                )

    async def _desired(self, group: ScalingGroup, spec: GroupSpec, current: list[_Slot]) -> int:
        scaling = spec.scaling
        if not scaling.autoscales:
            return scaling.min_replicas
        ready = [s.handle for s in current if s.handle is not None and s.handle.ready]
        in_flight = None
        if spec.model is not None and scaling.queue_depth_target is not None:
            in_flight = await self._in_flight(ready)
        context = AutoscaleContext(
            now_s=self._wall_clock(),
            current_replicas=len(current),
            min_replicas=scaling.min_replicas,
            max_replicas=scaling.max_replicas,
            target_cpu_percent=scaling.effective_target_cpu,
            cpu_millicores_used=[h.cpu_millicores for h in ready if h.cpu_millicores is not None],
            cpu_millicores_requested=(
                spec.resources.cpu_millicores or _millicores(DEFAULT_CPU_REQUEST)
            ),
            queue_depth_target=scaling.queue_depth_target,
            in_flight=in_flight,
            window_s=float(scaling.effective_window_seconds),
        )
        previous = self._catalog.state.autoscaler_state(group.id)
        decision, state = decide(context, previous)
        if state != previous:
            self._catalog.state.save_autoscaler_state(group.id, state)
        if decision.changed:
            self._event(group, "Normal", "Scaled", decision.reason)
        return decision.desired

    async def _in_flight(self, handles: Iterable[ReplicaHandle]) -> list[float] | None:
        ports = [h.metrics_port for h in handles if h.metrics_port is not None]
        readings = await asyncio.gather(
            *(asyncio.to_thread(_scrape, port, self._settings.metrics_timeout_s) for port in ports)
        )
        answered = [value for value in readings if value is not None]
        # Replicas whose metrics do not answer are scaled on CPU alone.
        return answered or None

    def _stop_slot(
        self, group: ScalingGroup, state: _GroupState, slot: _Slot, *, reason: str
    ) -> None:
        state.slots.pop(slot.replica_id, None)
        if slot.handle is None:
            self._gpus.release(slot.replica_id)
            self._catalog.state.remove_replica(group.id, slot.replica_id)
            return
        self._schedule_stop(
            slot.handle, grace_s=state.grace_s, drain_s=self._settings.endpoint_drain_s
        )
        state.leaving.append(slot.handle)
        self._save_row(slot, slot.handle, state="Terminating")
        self._event(group, "Normal", "Stopping", f"replica {slot.replica_id}: {reason}")

    def _schedule_stop(self, handle: ReplicaHandle, *, grace_s: float, drain_s: float) -> None:
        """Out of the endpoints now; SIGTERM after ``drain_s``; SIGKILL ``grace_s`` later."""
        handle.ready = False
        if handle.terminate_at is None:
            handle.terminate_at = self._monotonic() + drain_s
            handle.terminate_deadline = handle.terminate_at + grace_s

    def _reap_leaving(self, group_id: str, state: _GroupState) -> None:
        now = self._monotonic()
        for handle in list(state.leaving):
            if handle.exit_reason() is not None:
                handle.kill_leftovers()
                state.leaving.remove(handle)
                self._gpus.release(handle.replica_id)
                with contextlib.suppress(Exception):
                    self._catalog.state.remove_replica(group_id, handle.replica_id)
            elif (
                not handle.signalled
                and handle.terminate_at is not None
                and now >= handle.terminate_at
            ):
                handle.signal_group(signal.SIGTERM)
                handle.signalled = True
            elif (
                not handle.killed
                and handle.terminate_deadline is not None
                and now >= handle.terminate_deadline
            ):
                handle.signal_group(signal.SIGKILL)
                handle.killed = True

    async def _retire(self, group_id: str) -> None:
        """A group that was deleted: its URL goes now, its replicas leave with their grace."""
        state = self._groups[group_id]
        for slot in list(state.slots.values()):
            if slot.handle is not None:
                self._schedule_stop(slot.handle, grace_s=state.grace_s, drain_s=0)
                state.leaving.append(slot.handle)
            else:
                self._gpus.release(slot.replica_id)
                self._catalog.state.remove_replica(group_id, slot.replica_id)
        state.slots.clear()
        if state.proxy is not None:
            await state.proxy.close()
            state.proxy = None
        self._reap_leaving(group_id, state)
        if not state.leaving:
            del self._groups[group_id]

    async def _ensure_proxy(self, group: ScalingGroup, state: _GroupState) -> None:
        if state.proxy is not None:
            return
        proxy = GroupProxy(group.name)
        await proxy.start(_port_of(group.url))
        state.proxy = proxy

    def _report(self, group: ScalingGroup, state: _GroupState, desired: int) -> None:
        ready = [s.handle for s in state.slots.values() if s.handle is not None and s.handle.ready]
        if state.proxy is not None:
            state.proxy.set_backends([handle.port for handle in ready])
        current = [s for s in state.slots.values() if s.revision == group.revision]
        ready_new = sum(1 for s in current if s.handle is not None and s.handle.ready)
        rolling = any(s.revision != group.revision for s in state.slots.values())
        pending = [s for s in current if s.pending_reason]
        backing_off = [
            s for s in current if s.handle is None and s.restarts and not s.pending_reason
        ]
        if pending:
            status, reason = "Pending", pending[0].pending_reason
        elif backing_off:
            worst = max(backing_off, key=lambda s: s.restarts)
            status = "CrashLoopBackOff"
            reason = (
                f"replica {worst.replica_id} {worst.last_exit_reason} ({worst.restarts} restarts)"
            )
        elif rolling:
            status = "Progressing"
            reason = (
                f"rolling to revision {group.revision}: {ready_new} of {desired} new replicas ready"
            )
        elif ready_new >= desired:
            status, reason = "Ready", ""
        else:
            status, reason = "Progressing", f"{ready_new} of {desired} replicas ready"
        endpoints = [Endpoint(handle.endpoint) for handle in ready]
        url = f"http://127.0.0.1:{state.proxy.port}" if state.proxy is not None else None
        report = (status, reason, desired, len(ready), tuple(endpoints), url)
        if report == state.last_report and group.status == status:
            return  # nothing changed: spare the catalog a write every pass
        state.last_report = report
        self._catalog.groups.report(
            group.id,
            status=status,
            reason=reason,
            desired=desired,
            ready=len(ready),
            available=len(ready),
            endpoints=endpoints,
            url=url,
        )

    def _fail(self, group: ScalingGroup, state: _GroupState, error: Exception) -> None:
        reason = str(error) if isinstance(error, ChalkError) else f"{type(error).__name__}: {error}"
        if reason != state.last_error:
            # Said once per distinct error, not on every pass.
            state.last_error = reason
            if not isinstance(error, ChalkError):
                logger.error("reconciling %s failed", group.name, exc_info=error)
            with contextlib.suppress(Exception):
                self._event(group, "Warning", "Failed", reason)
        ready = [s.handle for s in state.slots.values() if s.handle is not None and s.handle.ready]
        with contextlib.suppress(Exception):
            self._catalog.groups.report(
                group.id,
                status="Failed",
                reason=reason,
                desired=len(state.slots),
                ready=len(ready),
                available=len(ready),
                endpoints=[Endpoint(handle.endpoint) for handle in ready],
            )

    # --- bookkeeping ----------------------------------------------------------------------

    def _save_row(self, slot: _Slot, handle: ReplicaHandle, *, state: str) -> None:
        self._catalog.state.save_replica(
            Replica(
                group_id=handle.group_id,
                replica_id=slot.replica_id,
                revision=slot.revision,
                state=state,
                ready=handle.ready,
                pid=handle.pid,
                port=handle.port,
                endpoint=handle.endpoint,
                restarts=slot.restarts,
                last_exit_reason=slot.last_exit_reason,
                started_at=handle.started_at,
            )
        )

    def _event(self, group: ScalingGroup, kind: str, reason: str, message: str) -> None:
        logger.info("%s %s: %s", group.name, reason, message)
        self._catalog.state.add_event(group.id, type=kind, reason=reason, message=message)

    def _log_path(self, group: str, replica_id: str) -> Path:
        return self._settings.logs_dir / group / f"{replica_id}.log"

    def _beat(self) -> None:
        self._catalog.state.heartbeat(BACKEND, pid=os.getpid(), host=self._host)

    async def _heartbeat_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self._beat()
            except Exception:  # one failed write must not end the heartbeat for good
                logger.exception("writing the controller heartbeat failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._settings.heartbeat_interval_s)


def _grace_of(group: ScalingGroup) -> float:
    return float(GroupSpec.from_dict(group.spec).scaling.effective_shutdown_delay_seconds)


def _millicores(text: str) -> int:
    return int(float(text[:-1])) if text.endswith("m") else int(float(text) * 1000)


def _stop_order(slot: _Slot) -> tuple[bool, int]:
    # Scale down the replicas that serve least first: not started, not ready, then the newest.
    handle = slot.handle
    return (handle is not None and handle.ready, -(handle.pid if handle else 0))


def _port_of(url: str | None) -> int:
    if not url:
        return 0
    try:
        return int(url.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 0


def _scrape(port: int, timeout_s: float) -> float | None:
    """Our runtime's in-flight calls from its metrics port; None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith(f"{_IN_FLIGHT_METRIC} "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


async def _is_ready(endpoint: str, *, hosts_model: bool) -> bool:
    if hosts_model:
        return await health_status(endpoint, timeout_s=1.0) == "SERVING"
    host, _, port = endpoint.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout=1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def _replica_template(spec: dict[str, Any]) -> str:
    """What a replica runs: the spec without the fields no running replica depends on."""
    return json.dumps(
        {key: value for key, value in spec.items() if key not in _NOT_IN_REPLICAS},
        sort_keys=True,
    )
