"""A real PostgreSQL server on 127.0.0.1 for the catalog tests: found, or initialised and started.

``tests/catalog/conftest.py`` enters ``postgres_server()`` once per session, then makes a fresh
database per test with ``create_database`` and removes it with ``drop_database``.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psycopg
import sqlalchemy as sa
from psycopg import sql
from psycopg.rows import TupleRow

__all__ = [
    "PORT",
    "REQUIRE_ENV",
    "URL_ENV",
    "Availability",
    "create_database",
    "drop_database",
    "find_server_programs",
    "postgres_server",
]

URL_ENV: Final = "SCALEGROUP_TEST_POSTGRES_URL"
REQUIRE_ENV: Final = "SCALEGROUP_REQUIRE_POSTGRES"
PORT: Final = 54329
# The server's superuser, and the OS user that runs the server when the tests run as root.
SUPERUSER: Final = "postgres"
_HOST: Final = "127.0.0.1"
_PROGRAMS: Final = ("initdb", "pg_ctl", "postgres")
_START_TIMEOUT_S: Final = 60
_CONNECT_TIMEOUT_S: Final = 5
# A test server: durability buys nothing, and without fsync CREATE DATABASE is much faster.
_SERVER_OPTIONS: Final = (
    "-c fsync=off",
    "-c synchronous_commit=off",
    "-c full_page_writes=off",
)


@dataclass(frozen=True)
class Availability:
    """The server's URL (its maintenance database), or ``None`` and the reason there is none."""

    url: str | None
    reason: str = ""


class _NoServerError(Exception):
    """Starting our own server failed; the message says why and what to do."""


@dataclass(frozen=True)
class _Layout:
    """Where our own server lives: ``base`` holds the data directory, log and socket."""

    base: Path

    @classmethod
    def for_port(cls, port: int) -> _Layout:
        # /var/tmp survives reboots, so the initialised data directory is reused.
        tmp = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path(tempfile.gettempdir())
        return cls(tmp / f"scalegroup-postgres-{port}")

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    @property
    def marker(self) -> Path:
        """Present while a server that a test session started is running."""
        return self.base / "started-by-tests"

    @property
    def setup_lock(self) -> Path:
        """Held while a session checks, initialises, starts or stops the server."""
        return self.base.with_name(f"{self.base.name}.lock")

    @property
    def users_lock(self) -> Path:
        """Held shared by every session using the server; the last one out may stop it."""
        return self.base.with_name(f"{self.base.name}.users.lock")


@contextmanager
def postgres_server(port: int = PORT) -> Iterator[Availability]:
    """A PostgreSQL server for one test session.

    ``$SCALEGROUP_TEST_POSTGRES_URL`` when set; else the server on 127.0.0.1:``port`` when one
    answers; else one initialised and started there from the installed server programs (as
    the ``postgres`` user when running as root, since PostgreSQL refuses to run as root). A
    server a test session started is stopped when the last session using it ends.
    """
    given = os.environ.get(URL_ENV)
    if given:
        problem = _probe(given)
        if problem is None:
            yield Availability(given)
        else:
            yield Availability(None, f"{URL_ENV}={given} is not reachable: {problem}")
        return
    layout = _Layout.for_port(port)
    try:
        with _locked(layout.users_lock, fcntl.LOCK_SH):
            with _locked(layout.setup_lock, fcntl.LOCK_EX):
                availability = _reach_or_start(layout, port)
            yield availability
    finally:
        _stop_if_last(layout)


def find_server_programs() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres: from PATH, else Debian's layout."""
    candidates: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    debian = Path("/usr/lib/postgresql").glob("*/bin")
    candidates.extend(sorted(debian, key=_major_from_path, reverse=True))
    for directory in candidates:
        if all(os.access(directory / program, os.X_OK) for program in _PROGRAMS):
            return directory
    return None


def create_database(server_url: str) -> str:
    """Create an empty database with a name no one else uses; its ``postgresql://`` URL."""
    name = f"scalegroup_test_{uuid.uuid4().hex[:16]}"
    with _connect(server_url) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _with_database(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    """Drop the database at ``url``, closing any connections still open to it."""
    name = sa.make_url(url).database
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
    with _connect(server_url) as connection:
        connection.execute(statement.format(sql.Identifier(name or "")))


def _reach_or_start(layout: _Layout, port: int) -> Availability:
    url = f"postgresql://{SUPERUSER}@{_HOST}:{port}/postgres"
    if _accepts(port):
        problem = _probe(url)
        if problem is None:
            return Availability(url)
        return Availability(
            None,
            f"{_HOST}:{port} answers, but not as a PostgreSQL server the tests can use: "
            f"expected {SUPERUSER!r} to connect without a password, got: {problem}; stop that "
            f"server, or set {URL_ENV} to the URL of one the tests may use",
        )
    programs = find_server_programs()
    if programs is None:
        return Availability(
            None,
            f"no PostgreSQL server answers on {_HOST}:{port} and none can be started: expected "
            f"initdb and pg_ctl on PATH or under /usr/lib/postgresql/*/bin; install Debian's "
            f"postgresql package (bash scripts/test does so when run as root), or set "
            f"{URL_ENV}=postgresql://user@host:port/database",
        )
    try:
        _start(layout, programs, port)
    except _NoServerError as error:
        return Availability(None, str(error))
    problem = _probe(url)
    if problem is not None:
        return Availability(None, f"started PostgreSQL on {_HOST}:{port}, but: {problem}")
    return Availability(url)


def _start(layout: _Layout, programs: Path, port: int) -> None:
    _prepare_base(layout)
    version = _major_version(programs)
    initialised = layout.data / "PG_VERSION"
    if initialised.exists() and initialised.read_text().strip() != version:
        # A data directory from another major version cannot be started; it holds nothing.
        shutil.rmtree(layout.data)
    if not initialised.exists():
        shutil.rmtree(layout.data, ignore_errors=True)
        _run(
            layout,
            [
                str(programs / "initdb"),
                f"--pgdata={layout.data}",
                f"--username={SUPERUSER}",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            doing=f"initialising a PostgreSQL data directory in {layout.data}",
        )
    layout.log.unlink(missing_ok=True)
    options = [
        f"-c listen_addresses={_HOST}",
        f"-p {port}",
        f"-k {shlex.quote(str(layout.base))}",
        *_SERVER_OPTIONS,
    ]
    _run(
        layout,
        [
            str(programs / "pg_ctl"),
            f"--pgdata={layout.data}",
            f"--log={layout.log}",
            "--wait",
            f"--timeout={_START_TIMEOUT_S}",
            f"--options={' '.join(options)}",
            "start",
        ],
        doing=f"starting PostgreSQL {version} on {_HOST}:{port}",
    )
    layout.marker.touch()


def _stop_if_last(layout: _Layout) -> None:
    with _locked(layout.setup_lock, fcntl.LOCK_EX):
        try:
            started_by_tests = layout.marker.exists()
        except PermissionError:  # another user's server, in a directory we may not read
            started_by_tests = False
        if not started_by_tests:
            return
        with _locked(layout.users_lock, fcntl.LOCK_EX | fcntl.LOCK_NB) as alone:
            if not alone:
                return
            programs = find_server_programs()
            if programs is not None:
                stop = [str(programs / "pg_ctl"), f"--pgdata={layout.data}", "--mode=fast"]
                _run(layout, [*stop, "--wait", "stop"], doing="stopping PostgreSQL", check=False)
            layout.marker.unlink(missing_ok=True)


def _prepare_base(layout: _Layout) -> None:
    """Create ``base``, owned by the user the server runs as."""
    running_as_root = os.geteuid() == 0
    if running_as_root:
        try:
            server_user = pwd.getpwnam(SUPERUSER)
        except KeyError:
            raise _NoServerError(
                f"cannot start PostgreSQL as root, and there is no {SUPERUSER!r} user to start "
                f"it as: expected the one Debian's postgresql package creates; install that "
                f"package, or set {URL_ENV}"
            ) from None
        owner = (server_user.pw_uid, server_user.pw_gid)
    else:
        owner = (os.getuid(), os.getgid())
    layout.base.mkdir(mode=0o700, exist_ok=True)
    if running_as_root:
        os.chown(layout.base, *owner)
    elif layout.base.stat().st_uid != owner[0]:
        raise _NoServerError(
            f"cannot start PostgreSQL in {layout.base}: it belongs to another user; remove it "
            f"(or run the tests as that user), or set {URL_ENV}"
        )


def _run(layout: _Layout, argv: Sequence[str], *, doing: str, check: bool = True) -> None:
    """Run a server program as the user that owns the server."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", SUPERUSER, "--", *argv]
    # Messages in English whatever the caller's locale, which may not even be installed.
    env = {**os.environ, "LC_ALL": "C"}
    try:
        done = subprocess.run(
            argv,
            cwd=layout.base,
            env=env,
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT_S * 2,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise _NoServerError(f"{doing} failed: {error}") from None
    if check and done.returncode != 0:
        raise _NoServerError(
            f"{doing} failed (exit code {done.returncode}):\n{done.stdout}{done.stderr}"
            f"{_log_tail(layout)}"
        )


def _log_tail(layout: _Layout, lines: int = 20) -> str:
    try:
        text = layout.log.read_text(errors="replace")
    except OSError:
        return ""
    tail = "\n".join(text.splitlines()[-lines:])
    return f"the end of {layout.log}:\n{tail}\n" if tail else ""


def _major_version(programs: Path) -> str:
    done = subprocess.run(
        [str(programs / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"\(PostgreSQL\) (\d+)", done.stdout)
    if match is None:
        raise _NoServerError(
            f"cannot tell which PostgreSQL {programs / 'postgres'} is: expected "
            f"'postgres (PostgreSQL) <version>', got {done.stdout.strip()!r}"
        )
    return match.group(1)


def _major_from_path(directory: Path) -> int:
    """15 for /usr/lib/postgresql/15/bin, so that the newest installed version wins."""
    name = directory.parent.name
    return int(name) if name.isdigit() else 0


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((_HOST, port)) == 0


def _probe(url: str) -> str | None:
    """``None`` when the server at ``url`` runs a query for us, else why it does not."""
    try:
        with _connect(url) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        # libpq's first line says what failed; the rest is a generic hint.
        lines = str(error).strip().splitlines()
        return lines[0] if lines else type(error).__name__
    return None


def _connect(url: str) -> psycopg.Connection[TupleRow]:
    libpq_url = sa.make_url(url).set(drivername="postgresql")
    return psycopg.connect(
        libpq_url.render_as_string(hide_password=False),
        autocommit=True,
        connect_timeout=_CONNECT_TIMEOUT_S,
    )


def _with_database(server_url: str, name: str) -> str:
    url = sa.make_url(server_url).set(drivername="postgresql", database=name)
    return url.render_as_string(hide_password=False)


@contextmanager
def _locked(path: Path, operation: int) -> Iterator[bool]:
    """Hold ``flock(operation)`` on ``path``; yields False when LOCK_NB could not get it."""
    try:
        # Opened for reading, without O_CREAT, when it exists: another user may own it, and
        # Linux refuses O_CREAT on someone else's file in a sticky directory like /var/tmp.
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        descriptor = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, operation)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)
