"""Autoscaling that follows demand (issue 22), against the real local controller and replicas.

In a throwaway project it builds two images from ``bench/handlers.py`` (``chalk image build``),
deploys them with ``ChalkClient``, which starts the local controller as ``chalk up`` does (its
defaults: a pass every 0.5 s, the sync period), and calls them with one ``ModelCaller`` (the
engine's, holding calls for a group with no ready replica):

- cold starts: group ``cold`` (``handlers.double``; min 0, max 1, ``idle_seconds`` 3) is left
  to go Idle at zero, then called once, ten times over. Figure: the call's time to its answer
  less its replica's own start-to-ready time (the controller's Started and Ready events), so
  what is left is what scale to zero adds: seeing the demand, the held call's re-reads, the
  route. Targets p50 <= 0.5 s, max <= 1 s. Also the time from the call to the replica's start.
- scale-down to zero: each time, from the last answer until the group reads Idle, against
  ``idle_seconds`` (target: not before it, and within two passes after it).
- held calls: the group at zero once more, 50 calls at once (50 threads): target 0 failed.
- scale-out: group ``io`` (``handlers.sleepy_double``, 50 ms slept per call; min 1, max 4,
  ``queue_depth_target`` 2) under 8 callers calling in a loop: the time from the first call
  until 4 replicas are ready, against two passes plus the slowest new replica's start-to-ready.

It prints figures and targets side by side and never fails on a time. From the repository
root::

    .venv/bin/python bench/scaling.py                  # about 50 s on 2 cores
    .venv/bin/python bench/scaling.py --cold-starts 3  # a rougher run, about 20 s
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pyarrow as pa
from report import format_grid, number, progress_printer

from chalk.catalog import Catalog, open_catalog
from chalk.client import ChalkClient
from chalk.deploy.local import daemon
from chalk.deploy.local.settings import ControllerSettings
from chalk.engine.calls import ModelCaller
from chalk.scaling import AutoScalingSpec

BENCH_DIR: Final = Path(__file__).resolve().parent
CHALK: Final = str(Path(sys.executable).with_name("chalk"))
PASS_S: Final = ControllerSettings(logs_dir=Path()).pass_interval_s
IDLE_SECONDS: Final = 3
COLD_P50_TARGET_S: Final = 0.5
COLD_MAX_TARGET_S: Final = 1.0
HELD_CALLS: Final = 50
CALLERS: Final = 8
QUEUE_DEPTH_TARGET: Final = 2
MAX_REPLICAS: Final = 4
WAIT_S: Final = 120.0

DOCKERFILE: Final = """FROM python:3.11-slim
WORKDIR /app
COPY handlers.py /app/handlers.py
EXPOSE 8080
ENTRYPOINT ["chalk-remote-call", "--handler", "handlers.{handler}", "--port", "8080"]
"""


@dataclass(slots=True)
class ColdStart:
    """One call to a group at zero: its time to answer, its replica's start-to-ready time,
    the time from the call to the replica's start, and the group's time to go Idle before."""

    answer_s: float
    start_to_ready_s: float
    call_to_start_s: float
    idle_after_s: float

    @property
    def added_s(self) -> float:
        return self.answer_s - self.start_to_ready_s


@dataclass(slots=True)
class Figures:
    """What one run measured; ``lines`` turns it into the table."""

    cold: list[ColdStart] = field(default_factory=list)
    held_failed: int = 0
    held_answer_s: list[float] = field(default_factory=list)
    held_start_to_ready_s: float = 0.0
    scale_out_s: float | None = None
    scale_decided_s: float | None = None
    scale_start_to_ready_s: float = 0.0
    # From the first call: the last new replica's Started and Ready events.
    scale_started_s: float = 0.0
    scale_ready_s: float = 0.0
    # The io group's Scaled events from the first call on: time, and the decision's reason.
    scale_decisions: list[str] = field(default_factory=list)
    io_calls: int = 0
    io_failed: int = 0


def build_image(project_root: Path, tag: str, handler: str) -> None:
    """``chalk image build`` of a context holding bench/handlers.py, serving ``handler``."""
    context = project_root / "images" / handler
    context.mkdir(parents=True)
    shutil.copy(BENCH_DIR / "handlers.py", context / "handlers.py")
    (context / "Dockerfile").write_text(DOCKERFILE.format(handler=handler))
    built = subprocess.run(
        [CHALK, "image", "build", str(context), "-t", tag],
        cwd=project_root,
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        raise RuntimeError(f"chalk image build {tag} failed: {built.stderr.strip()}")


def wait_until(condition: Callable[[], bool], what: str, *, poll_s: float = 0.02) -> float:
    """Poll ``condition`` until it holds; returns the wall time (time.time) it was seen."""
    give_up = time.monotonic() + WAIT_S
    while time.monotonic() < give_up:
        if condition():
            return time.time()
        time.sleep(poll_s)
    raise RuntimeError(f"gave up after {WAIT_S:.0f} s waiting for {what}")


def is_idle(catalog: Catalog, name: str) -> bool:
    group = catalog.groups.find(name)
    return group is not None and group.status == "Idle" and group.ready_replicas == 0


def ready_count(catalog: Catalog, name: str) -> int:
    group = catalog.groups.find(name)
    return 0 if group is None else group.ready_replicas


def replica_times(catalog: Catalog, name: str, replica_id: str) -> tuple[float, float]:
    """When the controller started ``replica_id`` and saw it ready (wall seconds): its last
    Started and Ready events."""
    group = catalog.groups.get(name)
    events = catalog.state.events(group.id, limit=200)
    started = [e.time for e in events if e.message.startswith(f"replica {replica_id} started")]
    ready = [e.time for e in events if e.message == f"replica {replica_id} is ready"]
    if not started or not ready:
        raise RuntimeError(f"no Started and Ready events for replica {replica_id} of {name}")
    return _seconds(started[-1]), _seconds(ready[-1])


def _seconds(moment: dt.datetime) -> float:
    if moment.tzinfo is None:  # SQLite hands back naive datetimes, stored in UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def call_once(caller: ModelCaller, group: str) -> None:
    answer = caller.call_blocking(feature="bench.y", name=f"model.{group}", args=[pa.array([1.5])])
    if answer.to_pylist() != [3.0]:
        raise RuntimeError(f"model.{group} answered {answer.to_pylist()}, expected [3.0]")


def cold_starts(
    catalog: Catalog, caller: ModelCaller, count: int, progress: Callable[[str], None]
) -> list[ColdStart]:
    measured = []
    last_answer: float | None = None  # before the first call, the group went idle unasked
    for index in range(count):
        idle_at = wait_until(lambda: is_idle(catalog, "cold"), "cold to go Idle")
        progress(f"cold start {index + 1} of {count}")
        called = time.time()
        began = time.perf_counter()
        call_once(caller, "cold")
        answer_s = time.perf_counter() - began
        started, ready = replica_times(catalog, "cold", serving_replica(catalog, "cold"))
        idle_after = float("nan") if last_answer is None else idle_at - last_answer
        measured.append(ColdStart(answer_s, ready - started, started - called, idle_after))
        last_answer = called + answer_s
    return measured


def serving_replica(catalog: Catalog, name: str) -> str:
    [row] = [r for r in catalog.state.replicas(catalog.groups.get(name).id) if r.ready]
    return row.replica_id


def held_calls(catalog: Catalog, caller: ModelCaller, figures: Figures) -> None:
    wait_until(lambda: is_idle(catalog, "cold"), "cold to go Idle")
    barrier = threading.Barrier(HELD_CALLS)
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        began = time.perf_counter()
        try:
            call_once(caller, "cold")
        except Exception:  # counted: the figure is how many fail
            with lock:
                figures.held_failed += 1
            return
        with lock:
            figures.held_answer_s.append(time.perf_counter() - began)

    threads = [threading.Thread(target=one) for _ in range(HELD_CALLS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started, ready = replica_times(catalog, "cold", serving_replica(catalog, "cold"))
    figures.held_start_to_ready_s = ready - started


def scale_out(catalog: Catalog, caller: ModelCaller, figures: Figures) -> None:
    group = catalog.groups.get("io")
    before = {r.replica_id for r in catalog.state.replicas(group.id)}
    stop = threading.Event()
    calls, failed = [0] * CALLERS, [0] * CALLERS

    def keep_calling(index: int) -> None:
        while not stop.is_set():
            try:
                call_once(caller, "io")
            except Exception:  # counted: no call should fail while the group scales out
                failed[index] += 1
                continue
            calls[index] += 1

    threads = [threading.Thread(target=keep_calling, args=(i,)) for i in range(CALLERS)]
    began = time.time()
    for thread in threads:
        thread.start()
    try:
        ready_at = wait_until(lambda: ready_count(catalog, "io") >= MAX_REPLICAS, "io at 4")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    figures.scale_out_s = ready_at - began
    figures.io_calls, figures.io_failed = sum(calls), sum(failed)
    events = catalog.state.events(group.id, limit=200)
    scaled = [(_seconds(e.time) - began, e.message) for e in events if e.reason == "Scaled"]
    scaled = [(at, message) for at, message in scaled if at >= 0]
    figures.scale_decided_s = scaled[0][0] if scaled else None
    figures.scale_decisions = [f"{at:6.3f} s  {message}" for at, message in scaled]
    new = [r for r in catalog.state.replicas(group.id) if r.replica_id not in before]
    spans = [replica_times(catalog, "io", r.replica_id) for r in new]
    figures.scale_start_to_ready_s = max((ready - started for started, ready in spans), default=0)
    if spans:
        figures.scale_started_s = max(started for started, _ in spans) - began
        figures.scale_ready_s = max(ready for _, ready in spans) - began


def measure(work: Path, cold_count: int, progress: Callable[[str], None]) -> Figures:
    (work / "chalk.yaml").write_text("project: bench\n")
    os.environ.pop("CHALK_CATALOG_URL", None)
    progress("building the images")
    build_image(work, "bench-double:1", "double")
    build_image(work, "bench-sleepy:1", "sleepy_double")
    figures = Figures()
    client = ChalkClient(project_dir=work)
    try:
        floats = ({"x": pa.float64()}, {"y": pa.float64()})
        client.register_model_version("cold", *floats, "bench-double:1")
        client.register_model_version("io", *floats, "bench-sleepy:1")
        progress("deploying cold (min 0) and io (min 1, max 4, queue depth target 2)")
        to_zero = AutoScalingSpec(
            min_replicas=0, max_replicas=1, idle_seconds=IDLE_SECONDS, shutdown_delay_seconds=1
        )
        client.deploy_model_version_to_scaling_group("cold", "cold", 1, to_zero, wait=True)
        io = AutoScalingSpec(
            min_replicas=1,
            max_replicas=MAX_REPLICAS,
            queue_depth_target=QUEUE_DEPTH_TARGET,
            shutdown_delay_seconds=1,
        )
        client.deploy_model_version_to_scaling_group("io", "io", 1, io, wait=True)
        catalog = open_catalog(client.project)
        with ModelCaller(catalog) as caller:
            figures.cold = cold_starts(catalog, caller, cold_count, progress)
            progress(f"{HELD_CALLS} calls held through one cold start")
            held_calls(catalog, caller, figures)
            progress(f"io under {CALLERS} callers, from 1 to {MAX_REPLICAS} replicas")
            scale_out(catalog, caller, figures)
    finally:
        client.close()
        progress("stopping the controller and its replicas")
        daemon.stop(client.project)
    return figures


def lines(figures: Figures) -> list[list[str]]:
    cold = figures.cold
    added = [c.added_s for c in cold]
    idle_after = [c.idle_after_s for c in cold[1:]]
    rows = [
        _line("cold: call to answer (p50)", "s", _p50(c.answer_s for c in cold)),
        _line("cold: replica start to ready (p50)", "s", _p50(c.start_to_ready_s for c in cold)),
        _line("cold: call to replica start (p50)", "s", _p50(c.call_to_start_s for c in cold)),
        _line("cold: answer less start to ready (p50)", "s", _p50(added), COLD_P50_TARGET_S),
        _line("cold: answer less start to ready (max)", "s", max(added), COLD_MAX_TARGET_S),
        _line(f"held calls failed (of {HELD_CALLS})", "calls", figures.held_failed, 0),
        _line("held: call to answer (p50)", "s", _p50(figures.held_answer_s)),
        _line("held: call to answer (max)", "s", max(figures.held_answer_s, default=0)),
        _line("held: replica start to ready", "s", figures.held_start_to_ready_s),
    ]
    if idle_after:
        late = IDLE_SECONDS + 2 * PASS_S
        rows += [
            _line("last answer to Idle (min)", "s", min(idle_after), at_least=IDLE_SECONDS),
            _line("last answer to Idle (max)", "s", max(idle_after), late),
        ]
    if figures.scale_out_s is not None:
        target = 2 * PASS_S + figures.scale_start_to_ready_s
        rows += [
            _line(f"io: first call to {MAX_REPLICAS} ready", "s", figures.scale_out_s, target),
            _line("io: first call to the Scaled decision", "s", figures.scale_decided_s or 0),
            _line("io: first call to the last new replica's start", "s", figures.scale_started_s),
            _line("io: first call to the last new replica's Ready", "s", figures.scale_ready_s),
            _line("io: slowest new replica start to ready", "s", figures.scale_start_to_ready_s),
            _line("io: calls answered meanwhile", "calls", figures.io_calls),
            _line("io: calls failed meanwhile", "calls", figures.io_failed),
        ]
    return rows


def _p50(values: Iterable[float]) -> float:
    listed = list(values)
    return statistics.median(listed) if listed else 0.0


def _line(
    figure: str,
    unit: str,
    value: float,
    at_most: float | None = None,
    at_least: float | None = None,
) -> list[str]:
    shown = f"{value:.0f}" if unit == "calls" else number(value)
    if at_most is None and at_least is None:
        return [figure, unit, shown, "-", "-"]
    met = (at_most is None or value <= at_most) and (at_least is None or value >= at_least)
    target = f"<= {number(at_most)}" if at_most is not None else f">= {number(at_least or 0)}"
    return [figure, unit, shown, target, "yes" if met else "NO"]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--cold-starts", type=int, default=10, help="cold starts from zero to measure (10)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    began = time.perf_counter()
    progress = progress_printer()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as work:
        figures = measure(Path(work), args.cold_starts, progress)
    load_after = os.getloadavg()
    print(
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after, on "
        f"{os.cpu_count()} cores; controller pass {PASS_S:g} s; {args.cold_starts} cold "
        f"starts; total {time.perf_counter() - began:.0f} s"
    )
    print()
    print(format_grid(("figure", "unit", "value", "target", "met"), lines(figures), left=2))
    if figures.scale_decisions:
        print()
        print("io's scaling decisions, from its first call:")
        print("\n".join(f"  {decision}" for decision in figures.scale_decisions))


if __name__ == "__main__":
    main()
