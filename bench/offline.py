"""The offline figures of ``bench/server.py --offline``: ``chalk offline-query`` from Parquet
to Parquet, in process and through ``chalk serve`` (``--server``), side by side per size.

(Run by ``bench/server.py``, which makes the project; bench/ is on sys.path, so it imports this
module as ``offline``.) Per size and side: rows/s, by the command's own reported time (from
the start of its command function: the interpreter's start-up is left out, the imports the
command then does count); the peak RSS of the command and of the server, read exactly from
the kernel when each process ends (``wait4``'s ``ru_maxrss``); and the CPU seconds each used
(start-up included). Each side gets a fresh server. Targets: rows/s with the server >= 0.7x
in process; peak RSS at the largest size <= 1.3x that at the smallest, both ways.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq
from report import format_grid, number

__all__ = ["OfflineRun", "measure", "offline_lines"]

CHALK: Final = str(Path(sys.executable).with_name("chalk"))
SPEED_RATIO: Final = 0.7
RSS_RATIO: Final = 1.3
# The input is written a row group at a time (the bench itself stays small too).
_ROW_GROUP: Final = 1_000_000
_WROTE: Final = re.compile(r"wrote ([\d,]+) rows to .* in ([\d.]+) s")


@dataclass(frozen=True, slots=True)
class OfflineRun:
    """One ``chalk offline-query`` run: its rows, seconds and peak RSS (and the server's)."""

    rows: int
    server: bool
    seconds: float
    command_rss_mb: float
    server_rss_mb: float | None
    command_cpu_s: float
    server_cpu_s: float | None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


def measure(
    project: Path,
    work: Path,
    sizes: Sequence[int],
    progress: Callable[[str], None],
    serve: Callable[[], contextlib.AbstractContextManager[tuple[str, subprocess.Popen[bytes]]]],
) -> list[OfflineRun]:
    """For each of ``sizes``: in process, then through a fresh server from ``serve()``."""
    runs = []
    for rows in sizes:
        source = work / f"input-{rows}.parquet"
        progress(f"offline: writing {rows:,} rows of Parquet")
        _write_input(source, rows)
        progress(f"offline: {rows:,} rows in process")
        runs.append(_run(project, source, rows, None))
        progress(f"offline: {rows:,} rows through chalk serve")
        with serve() as (url, server):
            run = _run(project, source, rows, url)
            server_rss, server_cpu = _stop_and_peak_rss(server)
        runs.append(dataclasses.replace(run, server_rss_mb=server_rss, server_cpu_s=server_cpu))
        source.unlink()
    return runs


def offline_lines(runs: Sequence[OfflineRun]) -> list[str]:
    """The figures, then each target with its verdict."""
    body = [
        [
            "chalk serve" if run.server else "in process",
            f"{run.rows:,}",
            number(run.seconds),
            number(run.rows_per_s),
            number(run.command_rss_mb),
            number(run.server_rss_mb) if run.server_rss_mb is not None else "-",
            number(run.command_cpu_s),
            number(run.server_cpu_s) if run.server_cpu_s is not None else "-",
        ]
        for run in runs
    ]
    header = ["side", "rows", "s", "rows/s", "command peak RSS MB", "server peak RSS MB",
              "command CPU s", "server CPU s"]  # fmt: skip
    lines = [format_grid(header, body, left=1), ""]
    sizes = sorted({run.rows for run in runs})
    by = {(run.rows, run.server): run for run in runs}
    for rows in sizes:
        ratio = by[rows, True].rows_per_s / by[rows, False].rows_per_s
        lines.append(_target(f"rows/s with the server / in process at {rows:,}", ratio, ">=",
                             SPEED_RATIO))  # fmt: skip
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        for server, what in ((False, "in process: command"), (True, "with the server: command")):
            ratio = by[large, server].command_rss_mb / by[small, server].command_rss_mb
            lines.append(_target(f"peak RSS {what}, {large:,} / {small:,}", ratio, "<=",
                                 RSS_RATIO))  # fmt: skip
        large_server = by[large, True].server_rss_mb or 0.0
        small_server = by[small, True].server_rss_mb or 1.0
        lines.append(_target(f"peak RSS with the server: server, {large:,} / {small:,}",
                             large_server / small_server, "<=", RSS_RATIO))  # fmt: skip
    return lines


def _target(what: str, ratio: float, op: str, bound: float) -> str:
    met = ratio >= bound if op == ">=" else ratio <= bound
    return f"{what}: {ratio:.2f} (target {op} {bound}) {'met' if met else 'NOT met'}"


def _write_input(path: Path, rows: int) -> None:
    schema = pa.schema([("row.id", pa.int64()), ("row.x", pa.float64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, _ROW_GROUP):
            ids = pa.array(range(start, min(rows, start + _ROW_GROUP)), pa.int64())
            xs = pa.compute.multiply(ids, 0.5)
            writer.write_table(pa.table([ids, xs], schema=schema))


def _run(project: Path, source: Path, rows: int, url: str | None) -> OfflineRun:
    output = source.with_name(f"output-{rows}.parquet")
    command = [CHALK, "offline-query", "--input", str(source), "--output", str(output),
               "--out", "row.y", *(["--server", url] if url else [])]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
    )
    assert process.stdout is not None
    assert process.stderr is not None
    out, err = process.stdout.read(), process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"chalk offline-query failed: {err.decode(errors='replace')}")
    found = _WROTE.search(out.decode())
    if found is None or int(found.group(1).replace(",", "")) != rows:
        raise RuntimeError(f"chalk offline-query said {out.decode()!r}: expected {rows:,} rows")
    if pq.ParquetFile(output).metadata.num_rows != rows:
        raise RuntimeError(f"{output} does not hold {rows:,} rows")
    output.unlink()
    cpu_s = usage.ru_utime + usage.ru_stime
    rss_mb = usage.ru_maxrss / 1024
    return OfflineRun(rows, url is not None, float(found.group(2)), rss_mb, None, cpu_s, None)


def _stop_and_peak_rss(server: subprocess.Popen[bytes]) -> tuple[float, float]:
    """Stop the server (SIGTERM); its peak RSS in MB and the CPU seconds it used."""
    server.send_signal(signal.SIGTERM)
    give_up = time.monotonic() + 30
    while time.monotonic() < give_up:
        pid, status, usage = os.wait4(server.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.05)
    else:
        server.kill()
        _, status, usage = os.wait4(server.pid, 0)
    server.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def _env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if k not in {"CHALK_CATALOG_URL", "CHALK_API_SERVER"}
    }
