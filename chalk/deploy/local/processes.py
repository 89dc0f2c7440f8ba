"""Replica processes of the local backend: launch, observe, signal, adopt.

The controller owns these handles; everything here is synchronous and quick (no waiting), so
one reconcile pass can look at every replica without blocking the others.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil

from chalk.catalog.records import Replica

__all__ = ["ReplicaHandle", "adopt", "free_port", "launch", "log_tail", "substitute_port"]

# How far a process's create time may drift from the started_at we recorded and still be the
# same process (pids are reused).
_SAME_PROCESS_S: Final = 2.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def substitute_port(argv: Sequence[str], group_port: int, replica_port: int) -> list[str]:
    """Replace every argv element equal to the group's port (``8000``, ``--port=8000``).

    Examples
    --------
    >>> substitute_port(["python", "-m", "http.server", "8000"], 8000, 41001)
    ['python', '-m', 'http.server', '41001']
    >>> substitute_port(["srv", "--port=8000", "--workers", "8000x"], 8000, 41001)
    ['srv', '--port=41001', '--workers', '8000x']
    """
    wanted = str(group_port)
    result = []
    for arg in argv:
        if arg == wanted:
            result.append(str(replica_port))
        elif "=" in arg and arg.split("=", 1)[1] == wanted:
            result.append(f"{arg.split('=', 1)[0]}={replica_port}")
        else:
            result.append(arg)
    return result


@dataclass
class ReplicaHandle:
    """One replica process, launched by this controller or adopted from a previous one."""

    replica_id: str
    group_id: str
    revision: int
    port: int
    metrics_port: int | None
    pid: int
    started_at: dt.datetime
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    last_exit_reason: str = ""
    # Leaving: SIGTERM at terminate_at (after it left the endpoints), SIGKILL at the deadline.
    terminate_at: float | None = None
    terminate_deadline: float | None = None
    # The last signal sent while leaving: none, then SIGTERM, then SIGKILL.
    stop_signal: signal.Signals | None = None
    probe_failures: int = 0
    oom_reason: str | None = None
    cpu_millicores: float | None = None
    _cpu_sample: tuple[float, float] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def leaving(self) -> bool:
        return self.terminate_at is not None

    def exit_reason(self) -> str | None:
        """None while it runs; otherwise why it stopped (``exit code 1``, ``OOMKilled: ...``)."""
        reason = self._exit_status()
        if reason is not None and self.oom_reason is not None:
            return self.oom_reason
        return reason

    def _exit_status(self) -> str | None:
        if self.popen is not None:
            code = self.popen.poll()
            if code is None:
                return None
            if code < 0:
                return f"signal {signal.Signals(-code).name}"
            return f"exit code {code}"
        try:
            process = psutil.Process(self.pid)
            if process.status() != psutil.STATUS_ZOMBIE and _same_process(process, self.started_at):
                return None
        except psutil.NoSuchProcess:
            pass
        return "exited (exit status unknown: started by an earlier controller)"

    def mark_ready(self) -> None:
        """Ready from now on: its CPU use is measured afresh from this moment.

        Start-up work (imports, loading a model) is not load: counted, it would scale every
        new replica's group up, so, as the HPA does, only CPU used since readiness counts.
        """
        self._cpu_sample = None
        self.cpu_millicores = None

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the replica's whole process group (it leads its own session)."""
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            # An adopted pid that was reused by someone else: never signal it.
            pass

    def signal_when_due(self, now_s: float) -> None:
        """While leaving: SIGTERM once ``terminate_at`` has passed, SIGKILL once the deadline
        has; each is sent once."""
        term_due = self.terminate_at is not None and now_s >= self.terminate_at
        kill_due = self.terminate_deadline is not None and now_s >= self.terminate_deadline
        if self.stop_signal is None and term_due:
            self.signal_group(signal.SIGTERM)
            self.stop_signal = signal.SIGTERM
        elif self.stop_signal is signal.SIGTERM and kill_due:
            self.signal_group(signal.SIGKILL)
            self.stop_signal = signal.SIGKILL

    def kill_leftovers(self) -> None:
        """SIGKILL what is left of the replica's process group once its leader has exited.

        As when a container's first process exits: workers it started do not outlive it.
        """
        self.signal_group(signal.SIGKILL)

    def sample_cpu(self, now_s: float, *, min_interval_s: float = 1.0) -> float | None:
        """CPU use of the replica's process tree in millicores, averaged since the last sample."""
        try:
            process = psutil.Process(self.pid)
            times = [process.cpu_times(), *(c.cpu_times() for c in process.children(True))]
        except psutil.Error:
            return self.cpu_millicores
        used_s = sum(t.user + t.system for t in times)
        if self._cpu_sample is None:
            self._cpu_sample = (now_s, used_s)
            return self.cpu_millicores
        then_s, used_then_s = self._cpu_sample
        if now_s - then_s >= min_interval_s:
            self.cpu_millicores = max(0.0, (used_s - used_then_s) / (now_s - then_s) * 1000)
            self._cpu_sample = (now_s, used_s)
        return self.cpu_millicores

    def environ(self) -> dict[str, str]:
        """The replica's environment as the OS reports it (for adopting it)."""
        try:
            return dict(psutil.Process(self.pid).environ())
        except psutil.Error:
            return {}

    def rss_bytes(self) -> int:
        """Resident memory of the replica and its children (0 once it has exited)."""
        try:
            process = psutil.Process(self.pid)
            total = int(process.memory_info().rss)
            for child in process.children(recursive=True):
                total += int(child.memory_info().rss)
        except psutil.Error:
            return 0
        return total


def launch(
    *,
    replica_id: str,
    group_id: str,
    revision: int,
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    port: int,
    metrics_port: int | None,
    log_path: Path,
) -> ReplicaHandle:
    """Start a replica in its own session (so signals reach its children), logging to a file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        created = psutil.Process(popen.pid).create_time()
    except psutil.NoSuchProcess:  # it died at once; the next observation reports why
        created = dt.datetime.now(dt.UTC).timestamp()
    return ReplicaHandle(
        replica_id=replica_id,
        group_id=group_id,
        revision=revision,
        port=port,
        metrics_port=metrics_port,
        pid=popen.pid,
        # The process's own create time, so a later controller can tell it from a reused pid.
        started_at=dt.datetime.fromtimestamp(created, dt.UTC),
        log_path=log_path,
        popen=popen,
    )


def adopt(row: Replica, log_path: Path) -> ReplicaHandle | None:
    """A handle on the replica of ``row``, if that very process (pid and start time) still runs."""
    if row.pid is None or row.port is None or row.started_at is None:
        return None
    try:
        process = psutil.Process(row.pid)
        if process.status() == psutil.STATUS_ZOMBIE or not _same_process(process, row.started_at):
            return None
    except psutil.NoSuchProcess:
        return None
    return ReplicaHandle(
        replica_id=row.replica_id,
        group_id=row.group_id,
        revision=row.revision,
        port=row.port,
        metrics_port=None,
        pid=row.pid,
        started_at=row.started_at,
        log_path=log_path,
        restarts=row.restarts,
    )


def log_tail(path: Path, *, lines: int = 10, max_bytes: int = 4096) -> str:
    """The last lines of a replica's log, for CrashLoopBackOff reasons and events."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - max_bytes))
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(_readable(line) for line in text.splitlines()[-lines:])


def _readable(line: str) -> str:
    """A JSON log record (the runtime's own) as ``SEVERITY message | last exception line``;
    any other line as it is."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or not isinstance(record.get("message"), str):
        return line
    text = f"{record.get('severity', '')} {record['message']}".strip()
    exception = record.get("exception")
    if isinstance(exception, str) and exception.strip():
        text += f" | {exception.strip().splitlines()[-1]}"
    return text


def _same_process(process: psutil.Process, started_at: dt.datetime) -> bool:
    return bool(abs(process.create_time() - started_at.timestamp()) < _SAME_PROCESS_S)
