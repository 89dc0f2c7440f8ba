"""``open_catalog`` and ``Catalog``: the one persistent store every other part reads and writes.

SQLite (WAL) by default, PostgreSQL through a ``postgresql://`` URL. The CLI, the client, the
local controller and the Kubernetes backend all talk through it; one SQLAlchemy engine is
shared per URL and process, and a ``Catalog`` may be used from several threads at once.
Over 500 lines: ``resolve`` (the engine's one read of a group) and the connection set-up it
needs stay beside ``Catalog``; the record stores live in their own modules.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy import event

from chalk.catalog.demand import DemandStore
from chalk.catalog.errors import (
    BadCallNameError,
    CatalogError,
    ControllerDownError,
    DeletedGroupError,
    NoModelError,
    UnknownGroupError,
    UnreachableGroupError,
)
from chalk.catalog.graphs import GraphStore
from chalk.catalog.groups import GroupStore
from chalk.catalog.images import ImageStore
from chalk.catalog.models import ModelRegistry
from chalk.catalog.records import Endpoint, Replica, Route, reachable, runs_in_cluster
from chalk.catalog.schema import SCHEMA_VERSION, migrate, schema_version
from chalk.catalog.serving import serving_models
from chalk.catalog.state import RuntimeState
from chalk.catalog.transactions import Clock, utc_now
from chalk.common.names import group_of_call_name

__all__ = [
    "HEARTBEAT_TIMEOUT_S",
    "Catalog",
    "Clock",
    "HasCatalogUrl",
    "check_catalog_url",
    "open_catalog",
]

# Local endpoints count only while the controller's heartbeat is younger than this.
HEARTBEAT_TIMEOUT_S: Final = 10.0


class HasCatalogUrl(Protocol):
    """Anything that knows its catalog URL (a loaded project does)."""

    def catalog_url(self) -> str: ...


class Catalog:
    """The catalog: model registry (``models``), scaling groups (``groups``), runtime state
    (``state``: replicas, events, autoscaler state, controller heartbeat), the callers' demand
    (``demand``), applied feature graphs (``graphs``), the local image index (``images``), and
    ``resolve``.
    """

    def __init__(self, engine: sa.Engine, *, location: str, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.location = location
        self.clock = clock
        self.models = ModelRegistry(self)
        self.groups = GroupStore(self)
        self.state = RuntimeState(self)
        self.demand = DemandStore(self)
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

        A group with no ready replica (starting, ``Idle`` at zero, crash-looping, waiting
        for capacity) has a route with no endpoints, carrying the group's status and reason:
        the engine holds such a call until a replica is ready. With ``serving=False`` the
        controller need not run either (what ``chalk apply`` validates against). Of a Kubernetes
        group's endpoints, only those the reader reaches: inside the cluster
        (``KUBERNETES_SERVICE_HOST`` in ``env``, default ``os.environ``) its Service's DNS
        name, outside it the gateway. The route's ``serving`` says which model versions its
        ready endpoints run (``chalk.catalog.serving``): mid-roll, not only the group's own.

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
        endpoints = reachable(group.endpoints, in_cluster=runs_in_cluster(env))
        if serving and group.endpoints and not endpoints:
            raise _unreachable(name, group_name, group.endpoints)
        port = group.spec.get("port")
        models = serving_models(
            group,
            endpoints,
            lambda: self.state.replicas(group.id),
            lambda: ((r.revision, r.spec) for r in self.groups.history(group_name)),
        )
        return Route(
            group=group_name,
            model_name=version.model_name,
            model_version=version.model_version,
            input_schema=version.input_schema,
            output_schema=version.output_schema,
            port=int(port) if port is not None else None,
            endpoints=endpoints,
            deterministic=version.deterministic,
            version_digest=version.digest,
            batch_max_delay_s=_batch_max_delay_s(group.spec),
            status=group.status,
            reason=group.reason,
            starting=max(0, group.desired_replicas - group.ready_replicas),
            backend=group.backend,
            serving=models,
        )

    def local_controller_running(self) -> bool:
        """Whether the local controller's heartbeat is fresh (it runs the local groups)."""
        controller = self.state.controller("local")
        if controller is None:
            return False
        return (self.clock() - controller.heartbeat_at).total_seconds() < HEARTBEAT_TIMEOUT_S

    def replica_at(self, group: str, endpoint: str) -> Replica | None:
        """The replica row of scaling group ``group`` serving, or last served, at ``endpoint``
        (a local replica that exited keeps its endpoint until it restarts); None when no row
        has it (Kubernetes replicas have no rows)."""
        found = self.groups.find(group)
        rows = [] if found is None else self.state.replicas(found.id)
        return next((row for row in rows if row.endpoint == endpoint), None)

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


def close_catalogs() -> None:
    """Close the database connections of every catalog this process opened, as it ends: the
    last connection to a SQLite file folds its write-ahead journal back into the file (the
    interpreter's clean-up would do it too, unless it is told to skip it, as ``chalk`` does).
    A file catalog used afterwards opens new connections; in-memory ones are left open.
    """
    with _engines_lock:
        for engine in _engines.values():
            if not isinstance(engine.pool, sa.StaticPool):
                engine.dispose()


def open_catalog(
    config: HasCatalogUrl | str, *, clock: Clock = utc_now, create: bool = True
) -> Catalog:
    """Open (migrating as needed) the catalog of a project or at a URL.

    ``config`` is a loaded project (its ``catalog_url()`` is used) or a URL:
    ``sqlite:///path/to/catalog.db``, ``sqlite://`` (in memory) or ``postgresql://...``.

    A SQLite catalog file is created only when ``create`` (read-only commands pass False) and
    its folder exists, or is a project's ``.chalk/`` (made readable by its owner only); the
    file is created whole, readable by its owner only. Read with ``create=False``, a project's
    own catalog not made yet is an empty one in memory; any other missing file is an error. A
    0-byte file, a file that is not SQLite, or a SQLite database of something else is refused,
    never overwritten.

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
            parsed = check_catalog_url(url)
            database = _sqlite_file(parsed)
            if database is not None and not _prepare_sqlite_file(database, create=create):
                # A project's own catalog not made yet, read: it is empty, and stays unmade.
                return Catalog(_empty_engine(), location=_describe(url), clock=clock)
            engine = _create_engine(parsed)
            _migrate(engine, url, foreign_check=database is not None)
            _engines[url] = engine
    return Catalog(engine, location=_describe(url), clock=clock)


def _migrate(engine: sa.Engine, url: str, *, foreign_check: bool) -> None:
    """Bring the catalog's schema up to date; disposes of ``engine`` when it fails."""
    try:
        with engine.connect() as plain:
            with plain.begin():
                # Read first, unlocked: a catalog already up to date (every open but the first
                # after an upgrade) neither waits for nor blocks a writer.
                current = schema_version(plain) == SCHEMA_VERSION
            if current:
                return
            # Locked like any write, and the version read again under the lock: two
            # processes opening an old catalog at once migrate it once.
            connection = plain.execution_options(_scalegroup_write=True)
            with connection.begin():
                _lock_for_writing(connection)
                if foreign_check:
                    _refuse_foreign(connection, url)
                migrate(connection, location=_describe(url))
    except sa.exc.SQLAlchemyError as error:
        engine.dispose()
        raise CatalogError(
            f"cannot open the catalog at {_describe(url)}: "
            f"{getattr(error, 'orig', None) or error}; "
            f"check catalog_url in chalk.yaml (or CHALK_CATALOG_URL)"
        ) from None
    except CatalogError:
        engine.dispose()
        raise


def _refuse_foreign(connection: sa.Connection, url: str) -> None:
    """A SQLite file holding tables but not the catalog's is someone else's database."""
    if schema_version(connection) > 0:
        return
    tables = sa.inspect(connection).get_table_names()
    if tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise CatalogError(
            f"{_describe(url)} is a SQLite database but not a scalegroup catalog (it holds the "
            f"tables {shown}): expected a catalog made by scalegroup; point CHALK_CATALOG_URL "
            f"or catalog_url in chalk.yaml at another file"
        )


_SQLITE_HEADER: Final = b"SQLite format 3\x00"
# The project's own folder (chalk.common.config.Project.state_dir): the one folder a catalog
# may be created in when it does not exist yet, made readable by its owner only.
_STATE_DIR_NAME: Final = ".chalk"


def _sqlite_file(url: sa.URL) -> Path | None:
    """The file of a file-backed SQLite URL; None for memory and other databases."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    if url.database.startswith("file:"):
        return None  # a SQLite URI filename: its own options decide
    return Path(url.database)


def _prepare_sqlite_file(path: Path, *, create: bool) -> bool:
    """Check an existing catalog file, or create a new one whole (see ``open_catalog``);
    False when a project's own catalog (in ``.chalk/``) is not made yet and ``create`` is not
    asked."""
    if path.is_dir():
        raise CatalogError(
            f"the catalog path {path} is a folder: expected a SQLite file such as "
            f"{path / 'catalog.db'}; fix CHALK_CATALOG_URL or catalog_url in chalk.yaml"
        )
    folder = path.parent
    own = folder.name == _STATE_DIR_NAME
    if path.exists():
        _check_existing(path, own=own)
        return True
    if not create:
        if own:
            return False
        raise CatalogError(
            f"there is no catalog at {path}: nothing has been registered, created or applied "
            f"with this catalog yet; check CHALK_CATALOG_URL or catalog_url in chalk.yaml if "
            f"you expected one there"
        )
    if not folder.is_dir():
        if not own or not folder.parent.is_dir():
            raise CatalogError(
                f"the catalog's folder {folder} does not exist: expected an existing folder "
                f"for {path.name}; create it, or fix CHALK_CATALOG_URL or catalog_url in "
                f"chalk.yaml"
            )
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
    if own:
        _owner_only(folder, 0o700)  # made before by another command (an image build, logs)
    _create_whole(path)
    return True


def _check_existing(path: Path, *, own: bool) -> None:
    try:
        with path.open("rb") as file:
            header = file.read(len(_SQLITE_HEADER))
    except OSError as error:
        raise CatalogError(
            f"cannot read the catalog at {path}: {error.strerror or error}"
        ) from None
    if not header:
        raise CatalogError(
            f"the catalog at {path} is empty (0 bytes): expected a scalegroup catalog, a SQLite "
            f"database; it was probably truncated: restore it from a backup, or delete it to "
            f"start with an empty catalog"
        )
    if header != _SQLITE_HEADER:
        raise CatalogError(
            f"{path} is not a SQLite database: expected a scalegroup catalog; point "
            f"CHALK_CATALOG_URL or catalog_url in chalk.yaml at another file"
        )
    if own:
        _owner_only(path.parent, 0o700)
        _owner_only(path, 0o600)


def _empty_engine() -> sa.Engine:
    """A catalog of its own in memory, migrated and empty (never shared, never stored)."""
    engine = _sqlite_engine(sa.make_url("sqlite://"))
    _migrate(engine, "sqlite://", foreign_check=False)
    return engine


def _owner_only(path: Path, mode: int) -> None:
    """Tighten ``path`` to ``mode`` when it is ours and looser (env values live in it)."""
    with contextlib.suppress(OSError):
        status = path.stat()
        if status.st_uid == os.getuid() and status.st_mode & 0o777 & ~mode:
            path.chmod(mode)


def _create_whole(path: Path) -> None:
    """A new catalog at ``path``, migrated beside it and linked into place, so no process ever
    sees a half-made (0-byte) catalog there; readable by its owner only."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    descriptor = os.open(scratch, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(descriptor)
    try:
        url = sa.URL.create("sqlite", database=str(scratch))
        engine = _sqlite_engine(url)
        try:
            _migrate(engine, url.render_as_string(), foreign_check=False)
        finally:
            engine.dispose()
        with contextlib.suppress(FileExistsError):  # another process made it first: use that
            os.link(scratch, path)
    finally:
        for leftover in (scratch, Path(f"{scratch}-wal"), Path(f"{scratch}-shm")):
            leftover.unlink(missing_ok=True)


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


_URL_SOURCE: Final = "CHALK_CATALOG_URL or catalog_url in chalk.yaml"


def check_catalog_url(url: str, *, source: str = _URL_SOURCE) -> sa.URL:
    """The catalog URL parsed, or a ``CatalogError`` naming ``source`` (where the URL came
    from) when it is empty, not a URL or of a database the catalog does not run on.

    Examples
    --------
    >>> check_catalog_url("postgresql://chalk@db/chalk").get_backend_name()
    'postgresql'
    """
    if not url.strip():
        raise CatalogError(
            f"the catalog URL is empty: expected sqlite:///<path> or "
            f"postgresql://user@host/database in {source}"
        )
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise CatalogError(
            f"the catalog URL {url!r} is not a database URL: expected sqlite:///<path> or "
            f"postgresql://user@host/database; fix {source}"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql", "postgres"):
        raise CatalogError(
            f"the catalog URL {parsed.render_as_string(hide_password=True)!r} is not supported: "
            f"expected sqlite:///<path> or postgresql://user@host/database; fix {source}"
        )
    return parsed


def _create_engine(parsed: sa.URL) -> sa.Engine:
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return sa.create_engine(parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True)


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    if url.database and url.database != ":memory:":
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
    parsed = check_catalog_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or "(in-memory SQLite)"
    return parsed.render_as_string(hide_password=True)


def _batch_max_delay_s(spec: Mapping[str, Any]) -> float | None:
    """The group's ``batch_max_delay_ms`` in seconds, None when the spec has none."""
    delay_ms = spec.get("batch_max_delay_ms")
    return None if delay_ms is None else float(delay_ms) / 1000
