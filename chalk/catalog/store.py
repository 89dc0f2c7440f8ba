"""``open_catalog`` and ``Catalog``: the one persistent store every other part reads and writes.

SQLite (WAL) by default, PostgreSQL through a ``postgresql://`` URL. The CLI, the client, the
local controller and the Kubernetes backend all talk through it; one SQLAlchemy engine is
shared per URL and process, and a ``Catalog`` may be used from several threads at once.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy import event

from chalk.catalog.errors import (
    BadCallNameError,
    CatalogError,
    ControllerDownError,
    DeletedGroupError,
    NoModelError,
    NoReadyReplicaError,
    UnknownGroupError,
    UnreachableGroupError,
)
from chalk.catalog.graphs import GraphStore
from chalk.catalog.groups import GroupStore
from chalk.catalog.images import ImageStore
from chalk.catalog.models import ModelRegistry
from chalk.catalog.records import Endpoint, Route, reachable, runs_in_cluster
from chalk.catalog.schema import migrate
from chalk.catalog.state import RuntimeState
from chalk.catalog.transactions import Clock, utc_now
from chalk.common.names import group_of_call_name

__all__ = ["HEARTBEAT_TIMEOUT_S", "Catalog", "Clock", "HasCatalogUrl", "open_catalog"]

# Local endpoints count only while the controller's heartbeat is younger than this.
HEARTBEAT_TIMEOUT_S: Final = 10.0


class HasCatalogUrl(Protocol):
    """Anything that knows its catalog URL (a loaded project does)."""

    def catalog_url(self) -> str: ...


class Catalog:
    """The catalog: model registry (``models``), scaling groups (``groups``), runtime state
    (``state``: replicas, events, autoscaler state, controller heartbeat), applied feature
    graphs (``graphs``), the local image index (``images``), and ``resolve``.
    """

    def __init__(self, engine: sa.Engine, *, location: str, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.location = location
        self.clock = clock
        self.models = ModelRegistry(self)
        self.groups = GroupStore(self)
        self.state = RuntimeState(self)
        self.graphs = GraphStore(self)
        self.images = ImageStore(self)

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A connection in a read transaction."""
        with (
            _shared_connection_lock(self.engine),
            self.engine.connect() as connection,
            connection.begin(),
        ):
            yield connection

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A connection in a write transaction: all of it lands, or none of it does.

        On SQLite the transaction takes the write lock at its start (BEGIN IMMEDIATE), so two
        processes never interleave a read-then-write.
        """
        with _shared_connection_lock(self.engine), self.engine.connect() as plain:
            connection = plain.execution_options(_scalegroup_write=True)
            with connection.begin():
                _lock_for_writing(connection)
                yield connection

    def resolve(
        self, name: str, *, serving: bool = True, env: Mapping[str, str] | None = None
    ) -> Route:
        """Where to send ``catalog_call(name, ...)``: the model's schemas and live endpoints.

        With ``serving=False`` the group need only exist and host a model version (what
        ``chalk apply`` validates against); its endpoints may be empty. Of a Kubernetes
        group's endpoints, only those the reader reaches: inside the cluster
        (``KUBERNETES_SERVICE_HOST`` in ``env``, default ``os.environ``) its Service's DNS
        name, outside it the gateway.

        Examples
        --------
        >>> catalog = open_catalog("sqlite://")
        >>> catalog.resolve("ner")
        Traceback (most recent call last):
        ...
        chalk.catalog.errors.BadCallNameError: cannot call 'ner': expected a name of the form 'model.<scaling group>', e.g. 'model.ner'
        """  # noqa: E501
        group_name = group_of_call_name(name)
        if group_name is None:
            raise BadCallNameError(
                f"cannot call {name!r}: expected a name of the form 'model.<scaling group>', "
                f"e.g. 'model.ner'"
            )
        group = self.groups.find(group_name)
        if group is None:
            deleted = self.groups.find_deleted(group_name)
            if deleted is not None and deleted.deleted_at is not None:
                raise DeletedGroupError(
                    f"cannot call {name!r}: scaling group {group_name!r} was deleted at "
                    f"{deleted.deleted_at:%Y-%m-%d %H:%M:%S} UTC"
                )
            raise UnknownGroupError(
                f"cannot call {name!r}: there is no scaling group named {group_name!r}"
                f"{self.groups.suggestion(group_name)}"
            )
        model = group.model
        if model is None:
            raise NoModelError(
                f"cannot call {name!r}: scaling group {group_name!r} hosts no model version; "
                f"deploy one with `chalk model deploy --name {group_name} ...` or "
                f"deploy_model_version_to_scaling_group(name={group_name!r}, ...)"
            )
        version = self.models.get(model[0], model[1])
        if serving and group.backend == "local":
            self._require_live_controller(name)
        if serving and not group.endpoints:
            detail = f" ({group.reason})" if group.reason else ""
            raise NoReadyReplicaError(
                f"cannot call {name!r}: scaling group {group_name!r} has no ready replica; "
                f"its status is {group.status}{detail}"
            )
        endpoints = reachable(group.endpoints, in_cluster=runs_in_cluster(env))
        if serving and not endpoints:
            raise _unreachable(name, group_name, group.endpoints)
        port = group.spec.get("port")
        return Route(
            group=group_name,
            model_name=version.model_name,
            model_version=version.model_version,
            input_schema=version.input_schema,
            output_schema=version.output_schema,
            port=int(port) if port is not None else None,
            endpoints=endpoints,
            deterministic=version.deterministic,
            batch_max_delay_s=_batch_max_delay_s(group.spec),
        )

    def local_controller_running(self) -> bool:
        """Whether the local controller's heartbeat is fresh (it runs the local groups)."""
        controller = self.state.controller("local")
        if controller is None:
            return False
        return (self.clock() - controller.heartbeat_at).total_seconds() < HEARTBEAT_TIMEOUT_S

    def _require_live_controller(self, name: str) -> None:
        if self.local_controller_running():
            return
        raise ControllerDownError(
            f"cannot call {name!r}: the local controller is not running (chalk up)"
        )

    def close(self) -> None:
        """Release this catalog (the shared engine stays for other catalogs on the URL)."""


def _unreachable(name: str, group: str, endpoints: Sequence[Endpoint]) -> UnreachableGroupError:
    # Inside the cluster every endpoint is reachable (see ``reachable``): this is a reader
    # outside it, and the group has only its Service's DNS name.
    targets = ", ".join(e.target.removeprefix("dns:///") for e in endpoints)
    return UnreachableGroupError(
        f"cannot call {name!r}: scaling group {group!r} is reachable only inside its "
        f"Kubernetes cluster (at {targets}) and has no gateway URL: expected "
        f"kubernetes.gateway (name and domain) in chalk.yaml when it was applied; add it and "
        f"run `chalk scaling-group update --name {group}`, or call from inside the cluster"
    )


_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


def open_catalog(config: HasCatalogUrl | str, *, clock: Clock = utc_now) -> Catalog:
    """Open (creating or migrating as needed) the catalog of a project or at a URL.

    ``config`` is a loaded project (its ``catalog_url()`` is used) or a URL:
    ``sqlite:///path/to/catalog.db``, ``sqlite://`` (in memory) or ``postgresql://...``.

    Examples
    --------
    >>> catalog = open_catalog("sqlite://")
    >>> catalog.models.list("a-model-nobody-registered")
    []
    """
    url = config if isinstance(config, str) else config.catalog_url()
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            try:
                with engine.connect() as plain:
                    # Locked like any write, and the version read again under the lock: two
                    # processes opening an old catalog at once migrate it once.
                    connection = plain.execution_options(_scalegroup_write=True)
                    with connection.begin():
                        _lock_for_writing(connection)
                        migrate(connection, location=_describe(url))
            except sa.exc.SQLAlchemyError as error:
                engine.dispose()
                raise CatalogError(
                    f"cannot open the catalog at {_describe(url)}: "
                    f"{getattr(error, 'orig', None) or error}; "
                    f"check catalog_url in chalk.yaml (or CHALK_CATALOG_URL)"
                ) from None
            _engines[url] = engine
    return Catalog(engine, location=_describe(url), clock=clock)


_static_pool_locks: dict[int, threading.RLock] = {}


def _shared_connection_lock(engine: sa.Engine) -> contextlib.AbstractContextManager[Any]:
    """An in-memory SQLite catalog is one shared connection: threads take turns with it."""
    if not isinstance(engine.pool, sa.StaticPool):
        return contextlib.nullcontext()
    with _engines_lock:
        return _static_pool_locks.setdefault(id(engine), threading.RLock())


# Any fixed number: every scalegroup process takes the same PostgreSQL advisory lock.
_PG_WRITE_LOCK: Final = 0x5CA1E6


def _lock_for_writing(connection: sa.Connection) -> None:
    """PostgreSQL: serialise catalog writes across processes, as BEGIN IMMEDIATE does on
    SQLite, so every read-check-write in a write transaction sees the latest state."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_WRITE_LOCK})


def _create_engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    if parsed.get_backend_name() in ("postgresql", "postgres"):
        return sa.create_engine(parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True)
    raise CatalogError(
        f"the catalog URL {parsed.render_as_string(hide_password=True)!r} is not supported: "
        f"expected sqlite:///<path> or postgresql://user@host/database"
    )


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})
    else:
        # One shared connection, or every checkout would see its own empty database.
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False}, poolclass=sa.StaticPool
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=60000")
        _use_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        write = connection.get_execution_options().get("_scalegroup_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _use_wal(cursor: Any) -> None:
    # Switching a new database to WAL needs it to itself, and SQLite answers "locked" at once,
    # without waiting, when another process opens the same new file at that moment.
    for attempt in range(_WAL_ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == _WAL_ATTEMPTS - 1:
                raise
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            time.sleep(0.02 * (attempt + 1))


_WAL_ATTEMPTS: Final = 50


def _describe(url: str) -> str:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or "(in-memory SQLite)"
    return parsed.render_as_string(hide_password=True)


def _batch_max_delay_s(spec: Mapping[str, Any]) -> float | None:
    """The group's ``batch_max_delay_ms`` in seconds, None when the spec has none."""
    delay_ms = spec.get("batch_max_delay_ms")
    return None if delay_ms is None else float(delay_ms) / 1000
