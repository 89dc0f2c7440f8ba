"""The local controller: reconciles the catalog's scaling groups into replica processes.

One pass: observe every replica, diff against each group's spec, act (launch, restart after
back-off, roll, stop), then write replica rows, endpoints and status back to the catalog. A
failing group records its outcome and the pass goes on. ``chalk up`` runs it
(``chalk.deploy.local.daemon``); the CLI and the controller talk only through the catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from chalk.catalog import Catalog, Endpoint, ScalingGroup
from chalk.catalog.errors import CatalogError
from chalk.catalog.records import LocalImage, Replica
from chalk.catalog.specs import GroupSpec
from chalk.deploy.local.images import image_argv, replica_cwd, replica_env
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


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """Timings and places; tests shorten the timings."""

    logs_dir: Path
    pass_interval_s: float = 0.5
    heartbeat_interval_s: float = 2.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    ready_recheck_s: float = 5.0
    interpreter_bin: Path = field(default_factory=lambda: Path(sys.executable).parent)


@dataclass
class _Slot:
    """A replica the group should have: its process, or the back-off before its next start."""

    replica_id: str
    revision: int
    handle: ReplicaHandle | None = None
    restarts: int = 0
    last_exit_reason: str = ""
    restart_at: float = 0.0
    last_checked: float = 0.0


@dataclass
class _GroupState:
    slots: dict[str, _Slot] = field(default_factory=dict)
    leaving: list[ReplicaHandle] = field(default_factory=list)
    proxy: GroupProxy | None = None


class LocalController:
    """Runs the local backend's groups as processes; see the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        settings: ControllerSettings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog = catalog
        self._settings = settings
        self._monotonic = monotonic
        self._groups: dict[str, _GroupState] = {}
        self._host = socket.gethostname()

    async def run(self, stop: asyncio.Event) -> None:
        """Adopt what an earlier controller left running, then reconcile until ``stop``."""
        self._beat()
        await self.adopt_running()
        heartbeat = asyncio.create_task(self._heartbeat_until(stop))
        try:
            while not stop.is_set():
                await self.reconcile_once()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._settings.pass_interval_s)
        finally:
            heartbeat.cancel()
            await self.shutdown()

    async def adopt_running(self) -> None:
        """Take over replicas whose processes still run; forget rows whose processes are gone."""
        live = {group.id: group for group in self._catalog.groups.list()}
        for group in live.values():
            state = self._groups.setdefault(group.id, _GroupState())
            for row in self._catalog.state.replicas(group.id):
                handle = None
                if row.pid is not None and row.port is not None and row.started_at is not None:
                    handle = adopt(
                        replica_id=row.replica_id,
                        group_id=group.id,
                        revision=row.revision,
                        pid=row.pid,
                        port=row.port,
                        started_at=row.started_at,
                        log_path=self._log_path(group.name, row.replica_id),
                        restarts=row.restarts,
                    )
                if handle is None:
                    self._catalog.state.remove_replica(group.id, row.replica_id)
                    continue
                logger.info("adopted replica %s (pid %d)", row.replica_id, row.pid)
                state.slots[row.replica_id] = _Slot(
                    replica_id=row.replica_id,
                    revision=row.revision,
                    handle=handle,
                    restarts=row.restarts,
                    last_exit_reason=row.last_exit_reason,
                )

    async def reconcile_once(self) -> None:
        """One pass over every group; one group's failure never stops the others."""
        live = {group.id: group for group in self._catalog.groups.list()}
        for group_id in [gid for gid in self._groups if gid not in live]:
            await self._retire(group_id)
        for group in live.values():
            try:
                await self._reconcile_group(group)
            except asyncio.CancelledError:
                raise
            except CatalogError as error:
                self._fail(group, str(error))
            except Exception as error:  # a pass never raises for one group's failure
                logger.exception("reconciling %s failed", group.name)
                self._fail(group, f"{type(error).__name__}: {error}")

    async def shutdown(self) -> None:
        """Stop every replica (endpoints first, then SIGTERM, then SIGKILL) and every URL."""
        for group_id, state in self._groups.items():
            self._catalog.groups.report(
                group_id, status="Stopped", desired=0, ready=0, available=0, endpoints=[]
            )
            for slot in state.slots.values():
                if slot.handle is not None:
                    self._begin_stop(slot.handle, grace_s=self._grace_of(group_id))
                    state.leaving.append(slot.handle)
            state.slots.clear()
        deadline = self._monotonic() + max((self._grace_of(g) for g in self._groups), default=0)
        while any(state.leaving for state in self._groups.values()):
            for group_id, state in self._groups.items():
                self._reap_leaving(group_id, state, force=self._monotonic() > deadline)
            await asyncio.sleep(0.05)
        for state in self._groups.values():
            if state.proxy is not None:
                await state.proxy.close()
        self._groups.clear()
        self._catalog.state.clear_controller(BACKEND)

    # --- one group ------------------------------------------------------------------------

    async def _reconcile_group(self, group: ScalingGroup) -> None:
        spec = GroupSpec.from_dict(group.spec)
        state = self._groups.setdefault(group.id, _GroupState())
        image = self._catalog.images.get(spec.image_digest or spec.image)
        await self._ensure_proxy(group, state)
        self._observe_exits(group, state)
        self._reap_leaving(group.id, state, force=False)
        desired = spec.scaling.min_replicas
        current = [s for s in state.slots.values() if s.revision == group.revision]
        for _ in range(desired - len(current)):
            slot = _Slot(replica_id=f"{group.name}-{secrets.token_hex(3)}", revision=group.revision)
            state.slots[slot.replica_id] = slot
            current.append(slot)
        for slot in sorted(current, key=_stop_order)[: max(0, len(current) - desired)]:
            self._stop_slot(group, state, slot, reason="scaled down")
            current.remove(slot)
        now = self._monotonic()
        for slot in current:
            if slot.handle is None and now >= slot.restart_at:
                self._start(group, spec, image, slot)
        await self._check_readiness(group, spec, state)
        ready_new = sum(1 for s in current if s.handle is not None and s.handle.ready)
        outdated = [s for s in state.slots.values() if s.revision != group.revision]
        if ready_new >= desired or not any(s.handle and s.handle.ready for s in outdated):
            # The new revision serves (or the old one serves nobody): the old replicas leave.
            for slot in outdated:
                self._stop_slot(group, state, slot, reason=f"replaced by revision {group.revision}")
        self._report(group, state, desired)

    def _start(self, group: ScalingGroup, spec: GroupSpec, image: LocalImage, slot: _Slot) -> None:
        port = free_port()
        metrics_port = free_port()
        argv = substitute_port(image_argv(image, spec.entrypoint), spec.port, port)
        env = self._replica_env(image, spec, port, metrics_port)
        log_path = self._log_path(group.name, slot.replica_id)
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
        self._save_row(slot, handle, state="Starting")
        self._event(group, "Normal", "Started", f"replica {slot.replica_id} started on port {port}")

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
            CHALK_REMOTE_CALL_METRICS_PORT=str(metrics_port),
        )
        return env

    def _observe_exits(self, group: ScalingGroup, state: _GroupState) -> None:
        for slot in state.slots.values():
            handle = slot.handle
            if handle is None:
                continue
            reason = handle.exit_reason()
            if reason is not None:
                tail = log_tail(handle.log_path)
                slot.handle = None
                self._crashed(group, slot, reason, tail)

    def _crashed(self, group: ScalingGroup, slot: _Slot, reason: str, tail: str = "") -> None:
        slot.restarts += 1
        slot.last_exit_reason = reason
        delay = min(
            self._settings.backoff_max_s,
            self._settings.backoff_initial_s * 2 ** (slot.restarts - 1),
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
            if handle is None or handle.terminate_deadline is not None:
                continue
            if handle.ready and now - slot.last_checked < self._settings.ready_recheck_s:
                continue
            slot.last_checked = now
            checks.append(
                (slot, handle, _is_ready(handle.endpoint, hosts_model=spec.model is not None))
            )
        results = await asyncio.gather(*(check for _, _, check in checks))
        for (slot, handle, _), ready in zip(checks, results, strict=True):
            if ready != handle.ready:
                handle.ready = ready
                self._save_row(slot, handle, state="Running" if ready else "Starting")
                if ready:
                    self._event(group, "Normal", "Ready", f"replica {slot.replica_id} is ready")

    def _stop_slot(
        self, group: ScalingGroup, state: _GroupState, slot: _Slot, *, reason: str
    ) -> None:
        state.slots.pop(slot.replica_id, None)
        if slot.handle is None:
            self._catalog.state.remove_replica(group.id, slot.replica_id)
            return
        slot.handle.ready = False
        self._begin_stop(slot.handle, grace_s=self._grace_of(group.id))
        state.leaving.append(slot.handle)
        self._save_row(slot, slot.handle, state="Terminating")
        self._event(group, "Normal", "Stopping", f"replica {slot.replica_id}: {reason}")

    def _begin_stop(self, handle: ReplicaHandle, *, grace_s: float) -> None:
        handle.ready = False
        if handle.terminate_deadline is None:
            handle.terminate_deadline = self._monotonic() + grace_s
            handle.signal_group(signal.SIGTERM)

    def _reap_leaving(self, group_id: str, state: _GroupState, *, force: bool) -> None:
        for handle in list(state.leaving):
            if handle.exit_reason() is not None:
                state.leaving.remove(handle)
                self._catalog.state.remove_replica(group_id, handle.replica_id)
            elif force or (
                handle.terminate_deadline is not None
                and self._monotonic() >= handle.terminate_deadline
                and not handle.killed
            ):
                handle.signal_group(signal.SIGKILL)
                handle.killed = True

    async def _retire(self, group_id: str) -> None:
        """A group that was deleted: stop its replicas and its URL."""
        state = self._groups[group_id]
        for slot in list(state.slots.values()):
            if slot.handle is not None:
                self._begin_stop(slot.handle, grace_s=0)
                state.leaving.append(slot.handle)
            else:
                self._catalog.state.remove_replica(group_id, slot.replica_id)
        state.slots.clear()
        if state.proxy is not None:
            await state.proxy.close()
            state.proxy = None
        self._reap_leaving(group_id, state, force=True)
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
        backing_off = [s for s in state.slots.values() if s.handle is None and s.restarts]
        if len(ready) >= desired and not backing_off:
            status, reason = "Ready", ""
        elif backing_off:
            worst = max(backing_off, key=lambda s: s.restarts)
            status = "CrashLoopBackOff"
            reason = (
                f"replica {worst.replica_id} {worst.last_exit_reason} ({worst.restarts} restarts)"
            )
        else:
            status, reason = "Progressing", f"{len(ready)} of {desired} replicas ready"
        self._catalog.groups.report(
            group.id,
            status=status,
            reason=reason,
            desired=desired,
            ready=len(ready),
            available=len(ready),
            endpoints=[Endpoint(handle.endpoint) for handle in ready],
            url=f"http://127.0.0.1:{state.proxy.port}" if state.proxy is not None else None,
        )

    def _fail(self, group: ScalingGroup, reason: str) -> None:
        if group.status != "Failed" or group.reason != reason:
            self._event(group, "Warning", "Failed", reason)
        self._catalog.groups.report(
            group.id, status="Failed", reason=reason, desired=0, ready=0, available=0
        )

    # --- bookkeeping ----------------------------------------------------------------------

    def _grace_of(self, group_id: str) -> float:
        group = next((g for g in self._catalog.groups.list() if g.id == group_id), None)
        if group is None:
            return 0.0
        return float(GroupSpec.from_dict(group.spec).scaling.effective_shutdown_delay_seconds)

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
            self._beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._settings.heartbeat_interval_s)


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


async def _is_ready(endpoint: str, *, hosts_model: bool) -> bool:
    if hosts_model:
        return await health_status(endpoint, timeout_s=0.5) == "SERVING"
    host, _, port = endpoint.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout=0.5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
