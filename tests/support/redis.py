"""A throwaway Redis server on a free 127.0.0.1 port, for the answer cache's tests.

``redis_server()`` starts Debian's ``redis-server`` with no persistence in a temporary
directory and stops it at the end; a test may ``stop()`` and ``start()`` it again (same port)
to play a Redis that goes down mid-query. Without ``redis-server`` the tests are skipped, or
fail under CI (CI=true), as ``require_redis_server()`` says.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import pytest
import redis

__all__ = ["RedisServer", "redis_server", "require_redis_server"]

_HOST: Final = "127.0.0.1"
_START_TIMEOUT_S: Final = 10.0
# A port picked up front may be taken before the server binds it: try that many ports.
_PORT_TRIES: Final = 3


class RedisServer:
    """One ``redis-server`` process on ``port`` (and a Unix socket in its directory): no
    snapshots, no append-only file."""

    def __init__(self, program: str, directory: Path) -> None:
        self._program = program
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://{_HOST}:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """The same server through its Unix socket."""
        return f"unix://{self._directory / 'redis.sock'}?db=0"

    @property
    def log(self) -> Path:
        return self._directory / "redis.log"

    def client(self) -> redis.Redis:
        """A blocking client of this server, for a test to look or to make it slow."""
        return redis.Redis(host=_HOST, port=self.port, socket_timeout=_START_TIMEOUT_S)

    def start(self) -> None:
        """Start the server: on a free port the first time, on the same port after ``stop``."""
        if self._process is not None:
            return
        if self.port:
            self._launch(self.port)
            return
        for attempt in range(_PORT_TRIES):
            try:
                self._launch(_free_port())
                return
            except RuntimeError:
                if attempt == _PORT_TRIES - 1:
                    raise

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); it keeps nothing."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=_START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL): its clients' connections drop mid-command."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()

    def _launch(self, port: int) -> None:
        argv = [
            self._program,
            "--port", str(port),
            "--bind", _HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._directory),
            "--logfile", str(self.log),
            "--unixsocket", str(self._directory / "redis.sock"),
            "--unixsocketperm", "700",
        ]  # fmt: skip
        self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        self.port = port
        give_up = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < give_up:
            if self._process.poll() is not None:
                break
            if _answers(port):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"redis-server did not answer on {_HOST}:{port} within {_START_TIMEOUT_S} s; "
            f"the end of {self.log}:\n{_tail(self.log)}"
        )


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A started ``RedisServer`` in a fresh directory; stopped and removed at the end."""
    program = require_redis_server()
    with tempfile.TemporaryDirectory(prefix="scalegroup-redis-") as directory:
        server = RedisServer(program, Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


def require_redis_server() -> str:
    """The path of ``redis-server``; skips the test without one, fails it under CI=true."""
    program = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )
    if program is not None:
        return program
    reason = (
        "no redis-server for the answer cache's Redis tests: expected Debian's redis-server "
        "package (bash scripts/test installs it when run as root; sudo apt-get install "
        "redis-server)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}, and CI=true says they may not be skipped", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with redis.Redis(host=_HOST, port=port, socket_timeout=1.0) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
