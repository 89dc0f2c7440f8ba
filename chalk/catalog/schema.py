"""The catalog's tables (SQLAlchemy Core) and the ordered steps that migrate a database to them.

``open_catalog`` runs ``migrate`` on every open: an empty database gets every step, an older
one the steps it lacks, and a newer one is refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, Final

import sqlalchemy as sa

from chalk.catalog.errors import SchemaVersionError

__all__ = ["SCHEMA_VERSION", "UTCDateTime", "metadata", "migrate", "schema_version"]


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"catalog times must be timezone-aware, got {value!r}")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


metadata: Final = sa.MetaData()

catalog_meta: Final = sa.Table(
    "catalog_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)

# --- schema version 1: the model registry and scaling groups --------------------------------

model_versions: Final = sa.Table(
    "model_versions",
    metadata,
    sa.Column("model_name", sa.String(253), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("image", sa.String(1024), nullable=False),
    sa.Column("input_schema", sa.LargeBinary, nullable=False),
    sa.Column("output_schema", sa.LargeBinary, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Added by schema version 3 (``_add_column``): a catalog created since has it from step 1.
    sa.Column("deterministic", sa.Boolean, nullable=False, server_default=sa.true()),
)

model_aliases: Final = sa.Table(
    "model_aliases",
    metadata,
    sa.Column("model_name", sa.String(253), primary_key=True),
    sa.Column("alias", sa.String(253), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.ForeignKeyConstraint(
        ["model_name", "version"], ["model_versions.model_name", "model_versions.version"]
    ),
)

scaling_groups: Final = sa.Table(
    "scaling_groups",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("backend", sa.String(16), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("desired_replicas", sa.Integer, nullable=False, default=0),
    sa.Column("ready_replicas", sa.Integer, nullable=False, default=0),
    sa.Column("available_replicas", sa.Integer, nullable=False, default=0),
    sa.Column("endpoints", sa.JSON, nullable=False),
    sa.Column("url", sa.String(1024), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("deleted_at", UTCDateTime, nullable=True),
)
# One live group per name; a deleted group's name is free again. A partial index, made by
# migration step 1 in SQL both backends share: declared here through SQLAlchemy's
# ``postgresql_where``, it would load the PostgreSQL dialect on every catalog import (~20% of
# a CLI command's start-up).
_LIVE_GROUP_NAME: Final = sa.text(
    "CREATE UNIQUE INDEX live_group_name ON scaling_groups (name) WHERE deleted_at IS NULL"
)

scaling_group_revisions: Final = sa.Table(
    "scaling_group_revisions",
    metadata,
    sa.Column("group_id", sa.String(32), sa.ForeignKey("scaling_groups.id"), primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

_VERSION_1: Final = (model_versions, model_aliases, scaling_groups, scaling_group_revisions)

# --- schema version 2: what the backends, apply and the image store keep ---------------------

replicas: Final = sa.Table(
    "replicas",
    metadata,
    sa.Column("group_id", sa.String(32), sa.ForeignKey("scaling_groups.id"), primary_key=True),
    sa.Column("replica_id", sa.String(64), primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("port", sa.Integer, nullable=True),
    sa.Column("endpoint", sa.String(256), nullable=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("ready", sa.Boolean, nullable=False),
    sa.Column("restarts", sa.Integer, nullable=False),
    sa.Column("last_exit_reason", sa.Text, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # Added by the "replica usage" step below: where its metrics are served, and its CPU and
    # resident memory as the local controller last sampled them (none on Kubernetes).
    sa.Column("metrics_port", sa.Integer, nullable=True),
    sa.Column("cpu_millicores", sa.Float, nullable=True),
    sa.Column("memory_bytes", sa.BigInteger, nullable=True),
    sa.Column("usage_at", UTCDateTime, nullable=True),
)

events: Final = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("group_id", sa.String(32), sa.ForeignKey("scaling_groups.id"), nullable=False),
    sa.Column("time", UTCDateTime, nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)
sa.Index("events_by_group", events.c.group_id, events.c.id)

autoscaler_state: Final = sa.Table(
    "autoscaler_state",
    metadata,
    sa.Column("group_id", sa.String(32), sa.ForeignKey("scaling_groups.id"), primary_key=True),
    sa.Column("state", sa.JSON, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

controller: Final = sa.Table(
    "controller",
    metadata,
    sa.Column("backend", sa.String(16), primary_key=True),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("host", sa.String(256), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
    # Added by the "replica usage" step below: the port of the controller's own /metrics.
    sa.Column("metrics_port", sa.Integer, nullable=True),
)

feature_graphs: Final = sa.Table(
    "feature_graphs",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("graph", sa.JSON, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

images: Final = sa.Table(
    "images",
    metadata,
    sa.Column("digest", sa.String(80), primary_key=True),
    sa.Column("snapshot_path", sa.String(4096), nullable=False),
    sa.Column("entrypoint", sa.JSON, nullable=False),
    sa.Column("cmd", sa.JSON, nullable=False),
    sa.Column("env", sa.JSON, nullable=False),
    sa.Column("workdir", sa.String(1024), nullable=False),
    sa.Column("exposed_port", sa.Integer, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

image_tags: Final = sa.Table(
    "image_tags",
    metadata,
    sa.Column("tag", sa.String(512), primary_key=True),
    sa.Column("digest", sa.String(80), sa.ForeignKey("images.digest"), nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# --- schema version 5: demand, what calling processes ask of each group ------------------------

# One row per (group name, calling process), rewritten by that process's ModelCaller at most once
# a second per group (``catalog.demand``). Keyed by the group's name, which is what a call names.
demand: Final = sa.Table(
    "demand",
    metadata,
    sa.Column("group_name", sa.String(63), primary_key=True),
    sa.Column("process", sa.String(128), primary_key=True),
    sa.Column("in_flight", sa.Integer, nullable=False),
    sa.Column("waiting", sa.Integer, nullable=False),
    sa.Column("last_call_at", UTCDateTime, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

_VERSION_2: Final = (
    replicas,
    events,
    autoscaler_state,
    controller,
    feature_graphs,
    images,
    image_tags,
)


def _create(tables: tuple[sa.Table, ...]) -> Callable[[sa.Connection], None]:
    def step(connection: sa.Connection) -> None:
        metadata.create_all(connection, tables=list(tables))

    return step


def _add_columns(
    *added: tuple[sa.Table, tuple[str, ...]],
) -> Callable[[sa.Connection], None]:
    """A step adding columns (with their server defaults) to tables an earlier step created.

    A database created after the columns were declared has them already (``create_all`` makes
    a table as declared now), so only the missing ones are added.
    """

    def step(connection: sa.Connection) -> None:
        for table, names in added:
            present = {column["name"] for column in sa.inspect(connection).get_columns(table.name)}
            for name in names:
                if name in present:
                    continue
                column = sa.schema.CreateColumn(table.c[name]).compile(dialect=connection.dialect)
                connection.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column}"))

    return step


def _version_1(connection: sa.Connection) -> None:
    _create((catalog_meta, *_VERSION_1))(connection)
    connection.execute(_LIVE_GROUP_NAME)


# Step i (1-based) takes a database from schema version i-1 to version i. Append, never edit.
MIGRATIONS: Final[tuple[Callable[[sa.Connection], None], ...]] = (
    _version_1,
    _create(_VERSION_2),
    # Version 3, replica usage: each replica's metrics port, CPU and memory; the controller's
    # metrics port.
    _add_columns(
        (replicas, ("metrics_port", "cpu_millicores", "memory_bytes", "usage_at")),
        (controller, ("metrics_port",)),
    ),
    # Version 4: whether a model version answers the same arguments alike (dedup, batching).
    _add_columns((model_versions, ("deterministic",))),
    # Version 5: demand rows of the calling processes (queue depth, scale to zero).
    _create((demand,)),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def schema_version(connection: sa.Connection) -> int:
    """The database's schema version; 0 for an empty database."""
    if not sa.inspect(connection).has_table(catalog_meta.name):
        return 0
    row = connection.execute(
        sa.select(catalog_meta.c.value).where(catalog_meta.c.key == "schema_version")
    ).first()
    return 0 if row is None else int(row.value)


def migrate(connection: sa.Connection, *, location: str, target: int = SCHEMA_VERSION) -> int:
    """Bring the database up to ``target``; returns the version it had before."""
    found = schema_version(connection)
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the catalog at {location} has schema version {found}, newer than this scalegroup "
            f"understands: expected at most {SCHEMA_VERSION}, got {found}; upgrade scalegroup"
        )
    for version in range(found + 1, target + 1):
        MIGRATIONS[version - 1](connection)
        _set_version(connection, version)
    return found


def _set_version(connection: sa.Connection, version: int) -> None:
    updated = connection.execute(
        sa.update(catalog_meta)
        .where(catalog_meta.c.key == "schema_version")
        .values(value=str(version))
    )
    if updated.rowcount == 0:
        connection.execute(sa.insert(catalog_meta).values(key="schema_version", value=str(version)))
