"""What backends keep in the catalog while they run groups: replica rows, events, autoscaler
state and the controller's heartbeat. Reached as ``catalog.state``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Final

import sqlalchemy as sa

from chalk.catalog.records import ControllerInfo, Event, Replica, ReplicaUsage
from chalk.catalog.schema import autoscaler_state, controller, events, replicas, scaling_groups
from chalk.catalog.transactions import Transactions

__all__ = ["EVENTS_KEPT_AFTER_DELETE", "EVENTS_KEPT_PER_GROUP", "RuntimeState"]

EVENTS_KEPT_PER_GROUP: Final = 200
# A deleted group's events stay this long (why its replicas left), then go with the next event
# anyone records, so deleted groups do not keep theirs forever.
EVENTS_KEPT_AFTER_DELETE: Final = dt.timedelta(days=1)


class RuntimeState:
    """Replica rows, events, autoscaler state and heartbeats."""

    def __init__(self, catalog: Transactions) -> None:
        self._catalog = catalog

    def save_replica(self, replica: Replica) -> None:
        """Insert or replace one replica row."""
        values = {
            "revision": replica.revision,
            "pid": replica.pid,
            "port": replica.port,
            "endpoint": replica.endpoint,
            "state": replica.state,
            "ready": replica.ready,
            "restarts": replica.restarts,
            "last_exit_reason": replica.last_exit_reason,
            "started_at": replica.started_at,
            "updated_at": self._catalog.clock(),
            "metrics_port": replica.metrics_port,
        }
        key = (replicas.c.group_id == replica.group_id) & (
            replicas.c.replica_id == replica.replica_id
        )
        with self._catalog.write() as connection:
            if connection.execute(sa.update(replicas).where(key).values(**values)).rowcount == 0:
                connection.execute(
                    sa.insert(replicas).values(
                        group_id=replica.group_id, replica_id=replica.replica_id, **values
                    )
                )

    def save_usage(self, usage: Iterable[ReplicaUsage]) -> None:
        """Record the sampled CPU and memory of several replicas in one write; rows that are
        gone are skipped."""
        now = self._catalog.clock()
        with self._catalog.write() as connection:
            for reading in usage:
                connection.execute(
                    sa.update(replicas)
                    .where(
                        replicas.c.group_id == reading.group_id,
                        replicas.c.replica_id == reading.replica_id,
                    )
                    .values(
                        cpu_millicores=reading.cpu_millicores,
                        memory_bytes=reading.memory_bytes,
                        usage_at=now,
                    )
                )

    def replicas(self, group_id: str) -> list[Replica]:
        """The group's replica rows, by replica id."""
        with self._catalog.read() as connection:
            rows = connection.execute(
                sa.select(replicas)
                .where(replicas.c.group_id == group_id)
                .order_by(replicas.c.replica_id)
            )
            return [_replica(row) for row in rows]

    def remove_replica(self, group_id: str, replica_id: str) -> None:
        """Forget one replica row."""
        with self._catalog.write() as connection:
            connection.execute(
                sa.delete(replicas).where(
                    replicas.c.group_id == group_id, replicas.c.replica_id == replica_id
                )
            )

    def add_event(self, group_id: str, *, type: str, reason: str, message: str) -> Event:
        """Record an event (``type`` Normal or Warning); only the newest few hundred stay.

        Recording one also forgets the events of groups deleted more than
        ``EVENTS_KEPT_AFTER_DELETE`` ago.
        """
        event = Event(
            group_id=group_id, time=self._catalog.clock(), type=type, reason=reason, message=message
        )
        with self._catalog.write() as connection:
            connection.execute(
                sa.insert(events).values(
                    group_id=group_id, time=event.time, type=type, reason=reason, message=message
                )
            )
            _keep_newest_events(connection, group_id)
            _forget_events_of_groups_deleted_before(
                connection, event.time - EVENTS_KEPT_AFTER_DELETE
            )
        return event

    def events(self, group_id: str, *, limit: int = 20) -> list[Event]:
        """The group's newest events, oldest first."""
        with self._catalog.read() as connection:
            rows = connection.execute(
                sa.select(events)
                .where(events.c.group_id == group_id)
                .order_by(events.c.id.desc())
                .limit(limit)
            ).all()
        return [
            Event(group_id=r.group_id, time=r.time, type=r.type, reason=r.reason, message=r.message)
            for r in reversed(rows)
        ]

    def autoscaler_state(self, group_id: str) -> dict[str, Any]:
        """The autoscaler's stored state for a group (empty when none)."""
        with self._catalog.read() as connection:
            state = connection.execute(
                sa.select(autoscaler_state.c.state).where(autoscaler_state.c.group_id == group_id)
            ).scalar()
        return dict(state or {})

    def save_autoscaler_state(self, group_id: str, state: dict[str, Any]) -> None:
        """Replace the autoscaler's state for a group; a deleted group keeps none (a controller
        pass that began before the delete stores nothing)."""
        now = self._catalog.clock()
        key = autoscaler_state.c.group_id == group_id
        with self._catalog.write() as connection:
            deleted = connection.execute(
                sa.select(scaling_groups.c.deleted_at).where(scaling_groups.c.id == group_id)
            ).scalar()
            if deleted is not None:
                return
            updated = connection.execute(
                sa.update(autoscaler_state).where(key).values(state=state, updated_at=now)
            )
            if updated.rowcount == 0:
                connection.execute(
                    sa.insert(autoscaler_state).values(
                        group_id=group_id, state=state, updated_at=now
                    )
                )

    def heartbeat(
        self, backend: str, *, pid: int, host: str, metrics_port: int | None = None
    ) -> None:
        """The controller of ``backend`` is alive now (a new pid restarts its started_at);
        ``metrics_port``: where it serves its own metrics, if it does."""
        now = self._catalog.clock()
        key = controller.c.backend == backend
        with self._catalog.write() as connection:
            current = connection.execute(sa.select(controller).where(key)).first()
            if current is not None and (current.pid, current.host) == (pid, host):
                connection.execute(
                    sa.update(controller)
                    .where(key)
                    .values(heartbeat_at=now, metrics_port=metrics_port)
                )
                return
            connection.execute(sa.delete(controller).where(key))
            connection.execute(
                sa.insert(controller).values(
                    backend=backend,
                    pid=pid,
                    host=host,
                    started_at=now,
                    heartbeat_at=now,
                    metrics_port=metrics_port,
                )
            )

    def controller(self, backend: str) -> ControllerInfo | None:
        """The last heartbeat of ``backend``'s controller, or None."""
        with self._catalog.read() as connection:
            row = connection.execute(
                sa.select(controller).where(controller.c.backend == backend)
            ).first()
        if row is None:
            return None
        return ControllerInfo(
            backend=row.backend,
            pid=row.pid,
            host=row.host,
            started_at=row.started_at,
            heartbeat_at=row.heartbeat_at,
            metrics_port=row.metrics_port,
        )

    def clear_controller(self, backend: str) -> None:
        """Forget the controller (it stopped cleanly)."""
        with self._catalog.write() as connection:
            connection.execute(sa.delete(controller).where(controller.c.backend == backend))


def _replica(row: Any) -> Replica:
    return Replica(
        group_id=row.group_id,
        replica_id=row.replica_id,
        revision=row.revision,
        state=row.state,
        ready=bool(row.ready),
        pid=row.pid,
        port=row.port,
        endpoint=row.endpoint,
        restarts=row.restarts,
        last_exit_reason=row.last_exit_reason,
        started_at=row.started_at,
        updated_at=row.updated_at,
        metrics_port=row.metrics_port,
        cpu_millicores=row.cpu_millicores,
        memory_bytes=row.memory_bytes,
        usage_at=row.usage_at,
    )


def _keep_newest_events(connection: sa.Connection, group_id: str) -> None:
    cutoff = connection.execute(
        sa.select(events.c.id)
        .where(events.c.group_id == group_id)
        .order_by(events.c.id.desc())
        .offset(EVENTS_KEPT_PER_GROUP)
        .limit(1)
    ).scalar()
    if cutoff is not None:
        connection.execute(
            sa.delete(events).where(events.c.group_id == group_id, events.c.id <= cutoff)
        )


def _forget_events_of_groups_deleted_before(connection: sa.Connection, cutoff: dt.datetime) -> None:
    deleted = sa.select(scaling_groups.c.id).where(scaling_groups.c.deleted_at < cutoff)
    connection.execute(sa.delete(events).where(events.c.group_id.in_(deleted)))
