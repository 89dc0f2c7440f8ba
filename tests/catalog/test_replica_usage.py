"""Replica usage in the catalog: each replica's metrics port, CPU and memory, the controller's
metrics port, and the migration that adds them to a catalog made before them."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from chalk.catalog import open_catalog
from chalk.catalog.records import Replica, ReplicaUsage
from chalk.catalog.schema import (
    SCHEMA_VERSION,
    controller,
    migrate,
    replicas,
    scaling_groups,
    schema_version,
)

# The schema version just before the step that added the usage columns.
BEFORE_USAGE = 2
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _old_catalog(url: str) -> None:
    """A catalog at BEFORE_USAGE holding a group, one replica row and a controller heartbeat."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        migrate(connection, location="test", target=BEFORE_USAGE)
        connection.execute(
            sa.insert(scaling_groups).values(
                id="sg-1",
                name="ner",
                backend="local",
                spec={"image": "ner:1"},
                revision=1,
                status="Ready",
                reason="",
                desired_replicas=1,
                ready_replicas=1,
                available_replicas=1,
                endpoints=[],
                created_at=NOW,
                updated_at=NOW,
            )
        )
        connection.execute(
            sa.insert(replicas).values(
                group_id="sg-1",
                replica_id="ner-1",
                revision=1,
                pid=42,
                port=7001,
                endpoint="127.0.0.1:7001",
                state="Running",
                ready=True,
                restarts=2,
                last_exit_reason="",
                started_at=NOW,
                updated_at=NOW,
            )
        )
        connection.execute(
            sa.insert(controller).values(
                backend="local", pid=10, host="laptop", started_at=NOW, heartbeat_at=NOW
            )
        )
    engine.dispose()


def test_a_catalog_from_before_replica_usage_is_migrated_and_keeps_its_rows(
    catalog_url: str,
) -> None:
    _old_catalog(catalog_url)

    catalog = open_catalog(catalog_url)

    with catalog.read() as connection:
        assert schema_version(connection) == SCHEMA_VERSION
    [row] = catalog.state.replicas("sg-1")
    assert (row.replica_id, row.pid, row.restarts) == ("ner-1", 42, 2)
    assert (row.metrics_port, row.cpu_millicores, row.memory_bytes, row.usage_at) == (
        None,
        None,
        None,
        None,
    )
    heartbeat = catalog.state.controller("local")
    assert heartbeat is not None
    assert (heartbeat.pid, heartbeat.metrics_port) == (10, None)
    catalog.state.save_usage([ReplicaUsage("sg-1", "ner-1", 250.0, 300 * 2**20)])
    catalog.state.heartbeat("local", pid=10, host="laptop", metrics_port=9100)
    [row] = catalog.state.replicas("sg-1")
    assert (row.cpu_millicores, row.memory_bytes) == (250.0, 300 * 2**20)
    assert catalog.state.controller("local").metrics_port == 9100  # type: ignore[union-attr]


def test_usage_and_metrics_ports_round_trip(catalog_url: str) -> None:
    catalog = open_catalog(catalog_url)
    group = catalog.groups.create("ner", {"image": "ner:1", "port": 8080}, backend="local")
    catalog.state.save_replica(
        Replica(group.id, "ner-1", 1, "Running", ready=True, pid=42, metrics_port=9001)
    )

    catalog.state.save_usage(
        [
            ReplicaUsage(group.id, "ner-1", 120.5, 2**28),
            ReplicaUsage(group.id, "gone", 1.0, 1),  # its row was removed: skipped
        ]
    )
    catalog.state.save_replica(
        Replica(group.id, "ner-1", 1, "Running", ready=True, pid=42, metrics_port=9001)
    )

    [row] = catalog.state.replicas(group.id)
    assert (row.metrics_port, row.cpu_millicores, row.memory_bytes) == (9001, 120.5, 2**28)
    assert row.usage_at is not None
