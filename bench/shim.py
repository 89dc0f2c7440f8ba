"""Our model runtime against the reference (chalk-remote-call-python), side by side in one run.

Starts both servers on 127.0.0.1 with the same handler (``bench/handlers.py``: a float64 column
times two) and calls them one call at a time through our ``RemoteCallClient``, one channel per
server, alternating the servers block by block so that machine noise lands on both alike. It
measures 1-row round-trip latency (p50, p99), rows/s at 1k, 10k, 100k and 1M rows per call, and
each server process's own CPU time (psutil, user + system) per call and per row, then prints
each figure for both servers with the ratio ours/reference and its target. It never fails on a
time.

Run it from the repository root::

    .venv/bin/python bench/shim.py            # about 70 seconds on 2 cores
    .venv/bin/python bench/shim.py --quick    # a rougher run in about 10 seconds

The reference runtime is installed on first use into its own virtual environment
(``tests/support/reference_runtime.py``), which needs network access once.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import psutil
import pyarrow as pa
import pyarrow.compute as pc
from report import format_grid, number, progress_printer

from chalk.shim import RemoteCallClient

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_ROOT: Final = BENCH_DIR.parent
HANDLER: Final = "handlers.double"
CALL_NAME: Final = "bench"
SIZES: Final = (1_000, 10_000, 100_000, 1_000_000)


@dataclass(frozen=True, slots=True)
class Plan:
    """How many calls each phase makes per server, split into ``rounds`` alternating blocks."""

    warmup_calls: int
    latency_calls: int
    calls_per_size: dict[int, int]
    rounds: int


FULL: Final = Plan(
    warmup_calls=300,
    latency_calls=3000,
    calls_per_size={1_000: 3000, 10_000: 3000, 100_000: 1200, 1_000_000: 240},
    rounds=10,
)
QUICK: Final = Plan(
    warmup_calls=100,
    latency_calls=500,
    calls_per_size={1_000: 600, 10_000: 400, 100_000: 120, 1_000_000: 24},
    rounds=4,
)


@dataclass(slots=True)
class Server:
    """One runtime process under test and the psutil handle that reads its CPU time."""

    label: str
    target: str
    process: psutil.Process

    def cpu_s(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def minor_faults(self) -> int | None:
        """Minor page faults so far (Linux only): fresh pages the allocator had to map."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return None
        # Fields after the parenthesised command name; minflt is the 10th field overall.
        return int(stat.rpartition(")")[2].split()[7])


@dataclass(slots=True)
class Tally:
    """What one server did in one phase, summed over that phase's blocks."""

    calls: int = 0
    rows: int = 0
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    minor_faults: int | None = 0
    latencies_s: list[float] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s

    @property
    def server_cpu_per_call_s(self) -> float:
        return self.server_cpu_s / self.calls

    @property
    def server_cpu_per_row_s(self) -> float:
        return self.server_cpu_s / self.rows

    def percentile_s(self, q: int) -> float:
        return statistics.quantiles(self.latencies_s, n=100, method="inclusive")[q - 1]


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the results table: a figure for both servers and its target."""

    figure: str
    unit: str
    ours: float
    reference: float
    # ("<=", 1.0) means ours/reference should be at most 1.0; None means no target.
    target: tuple[str, float] | None

    @property
    def ratio(self) -> float:
        return self.ours / self.reference if self.reference else float("inf")

    def verdict(self) -> str:
        if self.target is None:
            return ""
        op, bound = self.target
        met = self.ratio <= bound if op == "<=" else self.ratio >= bound
        return "yes" if met else "NO"


def _client_cpu_s() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def _input_batch(rows: int) -> pa.RecordBatch:
    values = pa.array([float(i) for i in range(rows)], pa.float64())
    return pa.record_batch({"x": values})


async def _run_block(
    client: RemoteCallClient, server: Server, batch: pa.RecordBatch, calls: int, tally: Tally
) -> None:
    server_cpu = server.cpu_s()
    client_cpu = _client_cpu_s()
    faults = server.minor_faults()
    block_start = time.perf_counter()
    for _ in range(calls):
        started = time.perf_counter()
        await client.call(server.target, batch, name=CALL_NAME)
        tally.latencies_s.append(time.perf_counter() - started)
    tally.wall_s += time.perf_counter() - block_start
    tally.server_cpu_s += server.cpu_s() - server_cpu
    tally.client_cpu_s += _client_cpu_s() - client_cpu
    faults_after = server.minor_faults()
    if faults is None or faults_after is None or tally.minor_faults is None:
        tally.minor_faults = None
    else:
        tally.minor_faults += faults_after - faults
    tally.calls += calls
    tally.rows += calls * batch.num_rows


async def _alternate(
    client: RemoteCallClient,
    servers: Sequence[Server],
    batch: pa.RecordBatch,
    calls: int,
    rounds: int,
) -> dict[str, Tally]:
    """``calls`` calls per server in ``rounds`` blocks, the order flipping every round (ABBA)."""
    tallies = {server.label: Tally() for server in servers}
    base, extra = divmod(calls, rounds)
    for round_index in range(rounds):
        block = base + (1 if round_index < extra else 0)
        order = servers if round_index % 2 == 0 else list(reversed(servers))
        for server in order:
            await _run_block(client, server, batch, block, tallies[server.label])
    return tallies


async def _warm_up(
    client: RemoteCallClient, servers: Sequence[Server], batches: dict[int, pa.RecordBatch]
) -> None:
    """One call per size to each server, checking the answer: a wrong one stops the bench."""
    for server in servers:
        for rows, batch in batches.items():
            result = await client.call(server.target, batch, name=CALL_NAME)
            expected = pc.multiply(batch.column(0), 2.0)
            if not result.equals(expected):
                raise RuntimeError(
                    f"the {server.label} server answered {rows} rows wrongly: expected x * 2, "
                    f"got {result.slice(0, 5)}..."
                )


async def _measure(
    servers: Sequence[Server], plan: Plan, progress: Callable[[str], None]
) -> dict[int, dict[str, Tally]]:
    """Tallies per phase, keyed by rows per call (1 is the latency phase), then by server."""
    one_row = _input_batch(1)
    batches = {rows: _input_batch(rows) for rows in SIZES}
    phases: dict[int, dict[str, Tally]] = {}
    async with RemoteCallClient() as client:
        progress("warming up")
        await _warm_up(client, servers, {1: one_row, **batches})
        await _alternate(client, servers, one_row, plan.warmup_calls, rounds=2)
        progress(f"1-row latency: {plan.latency_calls} calls per server")
        phases[1] = await _alternate(client, servers, one_row, plan.latency_calls, plan.rounds)
        for rows in SIZES:
            calls = plan.calls_per_size[rows]
            progress(f"throughput at {rows:,} rows: {calls} calls per server")
            phases[rows] = await _alternate(client, servers, batches[rows], calls, plan.rounds)
    return phases


def _size_label(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows >= 1_000_000 else f"{rows // 1_000}k"


def _ms(seconds: float) -> float:
    return seconds * 1e3


def _table_rows(phases: dict[int, dict[str, Tally]]) -> list[Row]:
    latency = phases[1]
    ours, ref = latency["ours"], latency["reference"]
    table = [
        Row(
            "1-row latency p50",
            "ms",
            _ms(ours.percentile_s(50)),
            _ms(ref.percentile_s(50)),
            ("<=", 1.0),
        ),
        Row("1-row latency p99", "ms", _ms(ours.percentile_s(99)), _ms(ref.percentile_s(99)), None),
    ]
    for size in SIZES:
        tally = phases[size]
        table.append(
            Row(
                f"throughput at {_size_label(size)} rows/call",
                "rows/s",
                tally["ours"].rows_per_s,
                tally["reference"].rows_per_s,
                (">=", 1.0) if size >= 10_000 else None,
            )
        )
    table.append(
        Row(
            "server CPU per 1-row call",
            "us",
            ours.server_cpu_per_call_s * 1e6,
            ref.server_cpu_per_call_s * 1e6,
            ("<=", 1.5),
        )
    )
    for size in SIZES:
        tally = phases[size]
        table.append(
            Row(
                f"server CPU per row at {_size_label(size)}",
                "ns",
                tally["ours"].server_cpu_per_row_s * 1e9,
                tally["reference"].server_cpu_per_row_s * 1e9,
                ("<=", 1.0) if size >= 100_000 else None,
            )
        )
    return table


def _format_table(rows: Sequence[Row]) -> str:
    body = [
        (
            row.figure,
            row.unit,
            number(row.ours),
            number(row.reference),
            f"{row.ratio:.2f}",
            f"{row.target[0]} {row.target[1]:.2f}" if row.target else "-",
            row.verdict() or "-",
        )
        for row in rows
    ]
    header = ("figure", "unit", "ours", "reference", "ours/ref", "target", "met")
    return format_grid(header, body, left=2)


def _faults_per_call(tally: Tally) -> str:
    return "n/a" if tally.minor_faults is None else f"{tally.minor_faults / tally.calls:.0f}"


def _format_breakdown(phases: dict[int, dict[str, Tally]]) -> str:
    """Where each call's time goes: wall time, each process's CPU, the server's page faults."""
    body = []
    for rows, tallies in phases.items():
        ours, ref = tallies["ours"], tallies["reference"]
        body.append(
            (
                "1" if rows == 1 else _size_label(rows),
                f"{ours.wall_s / ours.calls * 1e3:.3f}",
                f"{ref.wall_s / ref.calls * 1e3:.3f}",
                f"{ours.client_cpu_s / ours.calls * 1e3:.3f}",
                f"{ref.client_cpu_s / ref.calls * 1e3:.3f}",
                f"{ours.server_cpu_per_call_s * 1e3:.3f}",
                f"{ref.server_cpu_per_call_s * 1e3:.3f}",
                _faults_per_call(ours),
                _faults_per_call(ref),
            )
        )
    header = (
        "rows/call",
        "wall ours",
        "wall ref",
        "client CPU ours",
        "client CPU ref",
        "server CPU ours",
        "server CPU ref",
        "faults ours",
        "faults ref",
    )
    title = "per call: times in ms, server minor page faults in counts"
    return title + "\n" + format_grid(header, body, left=1)


def _environment_lines(reference_version: str) -> list[str]:
    versions = {name: importlib.metadata.version(name) for name in ("pyarrow", "grpcio")}
    return [
        f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {os.cpu_count()} cores, {platform.machine()}, {platform.system()}",
        f"python: {platform.python_version()}",
        f"pyarrow {versions['pyarrow']}, grpcio {versions['grpcio']}, "
        f"reference chalk-remote-call-python {reference_version}",
    ]


def _add_repo_root() -> None:
    # tests.support is not installed, and running bench/shim.py puts only bench/ on sys.path.
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


@contextmanager
def _servers(log_dir: Path) -> Iterator[list[Server]]:
    """Our runtime and the reference, both serving ``handlers.double`` from bench/."""
    from tests.support.reference_runtime import ensure_reference_runtime
    from tests.support.runtime_process import start_runtime

    reference = ensure_reference_runtime()
    ours_script = Path(sys.executable).parent / "chalk-remote-call"
    started = []
    try:
        started.append(
            start_runtime(
                HANDLER, log_path=log_dir / "ours.log", command=(str(ours_script),), cwd=BENCH_DIR
            )
        )
        started.append(
            start_runtime(
                HANDLER,
                log_path=log_dir / "reference.log",
                command=(str(reference.script),),
                cwd=BENCH_DIR,
                pick_port=True,
            )
        )
        yield [
            Server(label, runtime.target, psutil.Process(runtime.process.pid))
            for label, runtime in zip(("ours", "reference"), started, strict=True)
        ]
    finally:
        for runtime in started:
            runtime.stop()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer calls: a rougher, ~10 s run")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    plan = QUICK if args.quick else FULL
    _add_repo_root()
    from tests.support.reference_runtime import REFERENCE_VERSION

    began = time.perf_counter()

    progress = progress_printer()

    with (
        tempfile.TemporaryDirectory(prefix="bench-shim-") as log_dir,
        _servers(Path(log_dir)) as servers,
    ):
        progress("both servers listening")
        phases = asyncio.run(_measure(servers, plan, progress))
    print("\n".join(_environment_lines(REFERENCE_VERSION)))
    print(
        f"mode: {'quick' if args.quick else 'full'}; sequential calls, one channel per server, "
        f"{plan.rounds} alternating blocks per phase; total {time.perf_counter() - began:.0f} s"
    )
    print()
    print(_format_table(_table_rows(phases)))
    print()
    print(_format_breakdown(phases))


if __name__ == "__main__":
    main()
