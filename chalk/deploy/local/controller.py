"""The local controller: reconciles the catalog's scaling groups into replica processes.

Each pass, for each group: observe its replicas (exits, readiness, CPU, memory) and ask the
autoscaler how many it should run; ``plan`` (pure, in ``plan.py``) turns that into actions;
apply them; write the status ``group_status`` gives back to the catalog. A group whose stored
spec cannot run is marked Failed until its spec changes (a permanent error); any other error
is retried after a back-off (a temporary one); neither stops the other groups. ``chalk up``
runs it (``daemon.py``); the CLI and the controller talk only through the catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Final

from chalk.catalog import Catalog, Endpoint, ScalingGroup
from chalk.catalog.records import LocalImage, Replica
from chalk.catalog.specs import GroupSpec
from chalk.common.backoff import capped_backoff
from chalk.common.errors import ChalkError
from chalk.deploy.local.autoscaler import LocalAutoscaler
from chalk.deploy.local.controller_metrics import ControllerMetrics
from chalk.deploy.local.gpus import GpuAllocator, GpuError, parse_cuda_visible_devices
from chalk.deploy.local.launching import METRICS_PORT_ENV
from chalk.deploy.local.logs import tidy_logs
from chalk.deploy.local.plan import Action, Observed, StopReplica, group_status, plan
from chalk.deploy.local.processes import ReplicaHandle, adopt
from chalk.deploy.local.proxy import GroupProxy
from chalk.deploy.local.replicas import DEFAULT_GRACE_S, Failure, Replicas, Slot, TrackedGroup
from chalk.deploy.local.settings import ControllerSettings
from chalk.deploy.local.stored import StoredSpecError, stored_spec
from chalk.deploy.states import GroupStatus, ReplicaState

__all__ = ["BACKEND", "ControllerSettings", "LocalController"]

logger = logging.getLogger("chalk.deploy.local.controller")

BACKEND: Final = "local"
# Spec fields a running replica does not depend on: changing only these restarts nothing.
_NOT_IN_REPLICAS: Final = frozenset({"scaling", "tags"})
# Errors that retrying cannot cure: the group's stored spec asks for what cannot run. Every
# error our parts raise on purpose is a ChalkError (a bad image, spec, Dockerfile or GPU
# request); anything else (a locked database, an OS error) is worth another try.
_PERMANENT: Final = (ChalkError,)


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
        self._groups: dict[str, TrackedGroup] = {}
        self._host = socket.gethostname()
        self.metrics = ControllerMetrics()
        self._replicas = Replicas(
            catalog, settings, self.metrics, monotonic=monotonic, wall_clock=wall_clock
        )
        self._autoscaler = LocalAutoscaler(
            catalog,
            settings,
            self.metrics,
            scaled=lambda group, reason: self._replicas.event(group, "Normal", "Scaled", reason),
            monotonic=monotonic,
            wall_clock=wall_clock,
        )
        self._logs_tidied_at: float | None = None
        self._usage_saved_at: float | None = None
        self._metrics_port: int | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Adopt what an earlier controller left running, then reconcile until ``stop``."""
        self._replicas.gpus = GpuAllocator.detect(path=self._settings.nvidia_smi_path)
        self._beat()
        await self.adopt_running()
        self._serve_metrics()  # its port goes out with the next heartbeat, written at once
        heartbeat = asyncio.create_task(self._heartbeat_until(stop))
        failed_passes = 0
        try:
            while not stop.is_set():
                wait_s = self._settings.pass_interval_s
                started = time.perf_counter()
                try:
                    await self.reconcile_once()
                    failed_passes = 0
                    self.metrics.reconciled(seconds=time.perf_counter() - started, ok=True)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the catalog hiccuped: try again after a back-off
                    self.metrics.reconciled(seconds=time.perf_counter() - started, ok=False)
                    failed_passes += 1
                    logger.exception("a reconcile pass failed")
                    wait_s = capped_backoff(
                        failed_passes, initial_s=wait_s, max_s=self._settings.backoff_max_s
                    )
                self._save_usage_when_due()
                await self._tidy_logs_when_due()
                await self._wait_for_next_pass(stop, wait_s)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await self.shutdown()
            self.metrics.close()

    async def adopt_running(self) -> None:
        """Take over replicas whose processes still run; forget rows whose processes are gone.

        Replicas of deleted groups, and replicas that were leaving, are adopted as leaving.
        """
        for group in self._catalog.groups.list(include_deleted=True):
            rows = self._catalog.state.replicas(group.id)
            if not rows:
                continue
            state = self._groups.get(group.id)
            if state is None:
                state = self._groups[group.id] = TrackedGroup(group.name)
                self.metrics.group_seen(group.name)
            state.grace_s = _grace_of(group)
            for row in rows:
                handle = self._adopt_row(group, row)
                if handle is None:
                    self._catalog.state.remove_replica(group.id, row.replica_id)
                    continue
                logger.info("adopted replica %s (pid %d)", row.replica_id, handle.pid)
                if group.deleted_at is not None or row.state == ReplicaState.TERMINATING:
                    self._replicas.schedule_stop(handle, grace_s=state.grace_s, drain_s=0)
                    state.leaving.append(handle)
                    continue
                # Starting until its probe passes again.
                state.slots[row.replica_id] = Slot(
                    replica_id=row.replica_id,
                    revision=row.revision,
                    state=ReplicaState.STARTING,
                    handle=handle,
                    restarts=row.restarts,
                    last_exit_reason=row.last_exit_reason,
                )

    def _adopt_row(self, group: ScalingGroup, row: Replica) -> ReplicaHandle | None:
        handle = adopt(row, self._replicas.log_path(group.name, row.replica_id))
        if handle is None:
            return None
        environ = handle.environ()
        metrics_port = environ.get(METRICS_PORT_ENV, "")
        handle.metrics_port = int(metrics_port) if metrics_port.isdigit() else None
        visible = environ.get("CUDA_VISIBLE_DEVICES")
        if visible:
            try:
                self._replicas.gpus.claim(row.replica_id, parse_cuda_visible_devices(visible))
            except GpuError as error:
                logger.warning("replica %s: %s", row.replica_id, error)
        return handle

    async def _wait_for_next_pass(self, stop: asyncio.Event, wait_s: float) -> None:
        """Wait ``wait_s`` (or until ``stop``); meanwhile, while a group is at zero or waking
        from it, look at the demand every ``demand_poll_s`` and reconcile those groups at once,
        so a call held for a group at zero waits for no pass."""
        loop = asyncio.get_running_loop()  # real time, whatever clock the passes are given
        deadline = loop.time() + wait_s
        while not stop.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            watching = self._autoscaler.watching()
            timeout = min(remaining, self._settings.demand_poll_s) if watching else remaining
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=timeout)
            if watching and not stop.is_set():
                names = self._autoscaler.groups_to_wake()
                if names:
                    try:
                        await self.reconcile_once(only=names)
                    except Exception:  # the next full pass tries again
                        logger.exception("reconciling %s failed", ", ".join(sorted(names)))

    async def reconcile_once(self, *, only: set[str] | None = None) -> None:
        """One pass over every group (``only``: over the groups of these names, reading the
        demand anew only for a full pass); one group's failure never stops the others."""
        live = {group.id: group for group in self._catalog.groups.list()}
        if only is None:
            self._autoscaler.read_demand()
            for group_id in [gid for gid in self._groups if gid not in live]:
                await self._retire(group_id)
        for group in live.values():
            if only is not None and group.name not in only:
                continue
            state = self._groups.get(group.id)
            if state is None:
                state = self._groups[group.id] = TrackedGroup(group.name)
                self.metrics.group_seen(group.name)
            if self._monotonic() < state.retry_at:
                continue
            try:
                await self._reconcile_group(group, state)
            except asyncio.CancelledError:
                raise
            except _PERMANENT as error:
                self._fail(group, state, str(error))
            except Exception as error:  # a pass never raises for one group's failure
                self._retry_later(group, state, error)
            else:
                state.retries, state.last_error, state.retry_at = 0, "", 0.0
        self.metrics.replica_states(
            Counter(
                (state.name, slot.state.value)
                for state in self._groups.values()
                for slot in state.slots.values()
            )
        )

    async def shutdown(self) -> None:
        """Stop every replica (endpoints first, then SIGTERM, then SIGKILL) and every URL."""
        for group_id, state in self._groups.items():
            with contextlib.suppress(Exception):
                self._catalog.groups.report(
                    group_id,
                    status=GroupStatus.STOPPED.value,
                    desired=0,
                    ready=0,
                    available=0,
                    endpoints=[],
                )
            for handle in state.handles():
                self._replicas.schedule_stop(handle, grace_s=state.grace_s, drain_s=0)
                state.leaving.append(handle)
            state.slots.clear()
            await _close_proxy(state)
        while any(state.leaving for state in self._groups.values()):
            for group_id, state in self._groups.items():
                self._replicas.reap_leaving(group_id, state)
            await asyncio.sleep(0.05)
        self._groups.clear()
        with contextlib.suppress(Exception):
            self._catalog.state.clear_controller(BACKEND)

    def _save_usage_when_due(self) -> None:
        """Every ``usage_interval_s``: each replica's last CPU and memory reading into its row,
        all in one write (``Replicas.observe`` takes the readings every pass; a replica not
        running has none)."""
        now = self._monotonic()
        if self._usage_saved_at is not None and (
            now - self._usage_saved_at < self._settings.usage_interval_s
        ):
            return
        self._usage_saved_at = now
        usage = [reading for gid, state in self._groups.items() for reading in state.usage(gid)]
        if not usage:
            return
        try:
            self._catalog.state.save_usage(usage)
        except Exception:  # a busy catalog costs one reading, not the pass
            logger.exception("saving the replicas' CPU and memory failed")

    async def _tidy_logs_when_due(self) -> None:
        now = self._monotonic()
        due = self._logs_tidied_at is None or (
            now - self._logs_tidied_at >= self._settings.log_check_interval_s
        )
        if not due:
            return
        self._logs_tidied_at = now
        in_use = [
            self._replicas.log_path(state.name, replica_id)
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

    # --- one group: observe, plan, apply, report ------------------------------------------

    async def _reconcile_group(self, group: ScalingGroup, state: TrackedGroup) -> None:
        if state.failure is not None and state.failure.revision == group.revision:
            # Failed until the spec changes: what still runs keeps serving, nothing starts.
            self._replicas.reap_leaving(group.id, state)
            self._fail(group, state, state.failure.reason)
            return
        state.failure = None
        spec = stored_spec(group)
        state.grace_s = float(spec.scaling.effective_shutdown_delay_seconds)
        await self._ensure_proxy(group, state)
        self._replicas.observe(group, spec, state)
        self._carry_over(group, state)
        self._replicas.reap_leaving(group.id, state)
        await self._replicas.check_readiness(group, spec, state)
        current = [s for s in state.slots.values() if s.revision == group.revision]
        # A roll carries the count over: the new revision starts as many replicas as the old
        # one runs, which is no scaling decision, and keeps at least that many until it is over.
        running = len(current) or len(state.slots)
        rolling = len(current) < len(state.slots)
        desired = await self._autoscaler.desired(group, spec, current, running, rolling=rolling)
        observed = Observed(desired, tuple(s.view() for s in state.slots.values()))
        self._apply(group, spec, state, plan(group, observed, self._monotonic()))
        self._report(group, state, desired, idle=self._autoscaler.idle_reason(spec))

    def _apply(
        self, group: ScalingGroup, spec: GroupSpec, state: TrackedGroup, actions: Iterable[Action]
    ) -> None:
        image: LocalImage | None = None
        for action in actions:
            if isinstance(action, StopReplica):
                slot = state.slots[action.replica_id]
                self._replicas.stop(group, state, slot, reason=action.reason)
                continue
            if image is None:
                image = self._catalog.images.get(spec.image_digest or spec.image)
            if action.replica_id is None:
                slot = Slot(f"{group.name}-{secrets.token_hex(3)}", action.revision)
                state.slots[slot.replica_id] = slot
            else:
                slot = state.slots[action.replica_id]
            self._replicas.start(group, spec, image, slot)

    def _carry_over(self, group: ScalingGroup, state: TrackedGroup) -> None:
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
                    self._replicas.save_row(slot, slot.handle)

    async def _retire(self, group_id: str) -> None:
        """A group that was deleted: its URL goes now, its replicas leave with their grace."""
        state = self._groups[group_id]
        for slot in list(state.slots.values()):
            if slot.handle is not None:
                self._replicas.schedule_stop(slot.handle, grace_s=state.grace_s, drain_s=0)
                state.leaving.append(slot.handle)
            else:
                self._replicas.gpus.release(slot.replica_id)
                self._catalog.state.remove_replica(group_id, slot.replica_id)
        state.slots.clear()
        await _close_proxy(state)
        self._autoscaler.forget(group_id, state.name)
        self._replicas.reap_leaving(group_id, state)
        if not state.leaving:
            del self._groups[group_id]

    async def _ensure_proxy(self, group: ScalingGroup, state: TrackedGroup) -> None:
        if state.proxy is not None:
            return
        proxy = GroupProxy(group.name)
        await proxy.start(_port_of(group.url))
        state.proxy = proxy

    def _report(self, group: ScalingGroup, state: TrackedGroup, desired: int, idle: str) -> None:
        views = [slot.view() for slot in state.slots.values()]
        status, reason = group_status(group.revision, desired, views, idle_reason=idle)
        self._write_status(group, state, status, reason, desired)

    def _fail(self, group: ScalingGroup, state: TrackedGroup, reason: str) -> None:
        """Mark the group Failed for its revision (a permanent error); said once."""
        if state.failure is None or state.failure.reason != reason:
            logger.error("scaling group %s failed: %s", group.name, reason)
            with contextlib.suppress(Exception):
                self._replicas.event(group, "Warning", "Failed", reason)
        state.failure = Failure(group.revision, reason)
        with contextlib.suppress(Exception):
            self._write_status(group, state, GroupStatus.FAILED, reason, len(state.slots))

    def _retry_later(self, group: ScalingGroup, state: TrackedGroup, error: Exception) -> None:
        """A temporary error: the group is tried again after a growing back-off."""
        state.retries += 1
        delay = capped_backoff(
            state.retries,
            initial_s=self._settings.backoff_initial_s,
            max_s=self._settings.backoff_max_s,
        )
        state.retry_at = self._monotonic() + delay
        said = f"{type(error).__name__}: {error}"
        if said != state.last_error:  # said once per distinct error, not on every retry
            state.last_error = said
            logger.error("reconciling %s failed; retrying", group.name, exc_info=error)
            with contextlib.suppress(Exception):
                message = f"reconciling failed ({said}); retrying in {delay:.0f}s"
                self._replicas.event(group, "Warning", "Retrying", message)

    def _write_status(
        self,
        group: ScalingGroup,
        state: TrackedGroup,
        status: GroupStatus,
        reason: str,
        desired: int,
    ) -> None:
        ready = state.serving()
        if state.proxy is not None:
            state.proxy.set_backends([handle.port for handle in ready])
        endpoints = [Endpoint(handle.endpoint) for handle in ready]
        url = f"http://127.0.0.1:{state.proxy.port}" if state.proxy is not None else None
        report = (status, reason, desired, len(ready), tuple(endpoints), url)
        if report == state.last_report and group.status == status:
            return  # nothing changed: spare the catalog a write every pass
        state.last_report = report
        self._catalog.groups.report(
            group.id,
            status=status.value,
            reason=reason,
            desired=desired,
            ready=len(ready),
            available=len(ready),
            endpoints=endpoints,
            url=url,
        )

    # --- bookkeeping ----------------------------------------------------------------------

    def _serve_metrics(self) -> None:
        if self._settings.metrics_port is None:
            return
        try:
            self._metrics_port = self.metrics.serve(self._settings.metrics_port)
        except OSError as error:  # a taken port costs the metrics, not the controller
            logger.error("serving the controller's metrics failed: %s", error)
            return
        logger.info("controller metrics on http://127.0.0.1:%d/metrics", self._metrics_port)

    def _beat(self) -> None:
        self._catalog.state.heartbeat(
            BACKEND, pid=os.getpid(), host=self._host, metrics_port=self._metrics_port
        )

    async def _heartbeat_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self._beat()
            except Exception:  # one failed write must not end the heartbeat for good
                logger.exception("writing the controller heartbeat failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._settings.heartbeat_interval_s)


async def _close_proxy(state: TrackedGroup) -> None:
    if state.proxy is not None:
        await state.proxy.close()
        state.proxy = None


def _grace_of(group: ScalingGroup) -> float:
    try:
        return float(stored_spec(group).scaling.effective_shutdown_delay_seconds)
    except StoredSpecError:  # reported when the group is reconciled; stop it with the default
        return DEFAULT_GRACE_S


def _port_of(url: str | None) -> int:
    if not url:
        return 0
    try:
        return int(url.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 0


def _replica_template(spec: dict[str, Any]) -> str:
    """What a replica runs: the spec without the fields no running replica depends on."""
    return json.dumps(
        {key: value for key, value in spec.items() if key not in _NOT_IN_REPLICAS},
        sort_keys=True,
    )
