"""Starts a model runtime (ours or the reference) as a real process on 127.0.0.1 for tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OUR_RUNTIME", "RuntimeProcess", "free_port", "start_runtime"]

HANDLERS_DIR = Path(__file__).resolve().parent.parent / "shim"
# Our console script, from the environment running the tests (whatever PATH says).
OUR_RUNTIME = (str(Path(sys.executable).parent / "chalk-remote-call"),)


def free_port() -> int:
    """A port free on 127.0.0.1 right now (for servers that cannot pick their own)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RuntimeProcess:
    """A running runtime process whose stderr goes to ``log_path``."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    stopped: bool = field(default=False)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def records(self) -> list[dict[str, Any]]:
        """The JSON log records written so far (non-JSON lines are skipped)."""
        records = []
        for line in self.log_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def log_text(self) -> str:
        return self.log_path.read_text()

    def metric(self, name: str) -> float:
        """A sample of the runtime's Prometheus metrics (started with ``--metrics-port 0``)."""
        port = self._metrics_port()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith(f"{name} "):
                    return float(line.split()[1])
        raise KeyError(f"the runtime reports no metric {name!r}")

    def _metrics_port(self, timeout_s: float = 20.0) -> int:
        """The metrics port the runtime logged; its log line may come after it serves gRPC."""
        give_up = time.monotonic() + timeout_s
        while True:
            ports = [r["metrics_port"] for r in self.records() if "metrics_port" in r]
            if ports:
                return int(ports[0])
            if time.monotonic() > give_up:
                raise TimeoutError("the runtime never logged its metrics port")
            time.sleep(0.02)

    def wait_in_flight(self, count: int, timeout_s: float = 20.0) -> None:
        """Wait until the runtime serves ``count`` calls (a call sent is not yet a call served)."""
        give_up = time.monotonic() + timeout_s
        while self.metric("chalk_remote_call_in_flight") != count:
            if time.monotonic() > give_up:
                raise TimeoutError(f"the runtime never had {count} calls in flight")
            time.sleep(0.02)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then wait; SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def start_runtime(
    handler: str,
    *,
    log_path: Path,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    command: Sequence[str] = OUR_RUNTIME,
    cwd: Path = HANDLERS_DIR,
    pick_port: bool = False,
    wait_listening: bool = True,
    timeout_s: float = 20.0,
) -> RuntimeProcess:
    """Start ``command --handler handler`` bound to 127.0.0.1.

    Our runtime takes ``--port 0`` and logs the port it bound; ``pick_port=True`` instead picks
    a free port up front, for the reference runtime, which cannot report one.
    """
    if pick_port and wait_listening:
        # A port picked free up front can be taken by another test's process before the
        # runtime binds it (gRPC then serves on no port at all, silently): once, pick again.
        try:
            return _start(handler, log_path, args, env, command, cwd, True, timeout_s)
        except TimeoutError:
            pass
    return _start(handler, log_path, args, env, command, cwd, pick_port, timeout_s, wait_listening)


def _start(
    handler: str,
    log_path: Path,
    args: Sequence[str],
    env: Mapping[str, str] | None,
    command: Sequence[str],
    cwd: Path,
    pick_port: bool,
    timeout_s: float,
    wait_listening: bool = True,
) -> RuntimeProcess:
    port = free_port() if pick_port else 0
    full_env = dict(os.environ)
    full_env.update(
        CHALK_REMOTE_CALL_HOST="127.0.0.1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(cwd), full_env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    full_env.update(env or {})
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*command, "--handler", handler, "--port", str(port), *args],
            cwd=cwd,
            env=full_env,
            stderr=log,
            stdout=log,
        )
    runtime = RuntimeProcess(process=process, port=port, log_path=log_path)
    if wait_listening:
        try:
            _wait_listening(runtime, timeout_s, announced=not pick_port)
        except TimeoutError:
            runtime.stop(timeout=5)
            raise
    return runtime


def _wait_listening(runtime: RuntimeProcess, timeout_s: float, *, announced: bool) -> None:
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        if runtime.process.poll() is not None:
            raise RuntimeError(
                f"the runtime exited with code {runtime.process.returncode} before listening:\n"
                f"{runtime.log_text()}"
            )
        if announced:
            for record in runtime.records():
                if "port" in record:
                    runtime.port = int(record["port"])
                    return
        elif _accepts(runtime.port):
            return
        time.sleep(0.02)
    raise TimeoutError(f"the runtime did not listen within {timeout_s}s:\n{runtime.log_text()}")


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
