"""One online query three ways: in process, over HTTP from ``chalk serve``, and from Ray Serve.

(Over 500 lines on purpose: a benchmark run by path keeps its sides, Ray's app and installer,
and its report in one file, as ``bench/engine.py`` does.)

The feature is the engine bench's one model call, a float64 times two (``bench/handlers.py``'s
``double``, one runtime replica on 127.0.0.1, routed through the catalog)::

    @features
    class Row:
        id: int
        x: float
        y: float = F.catalog_call("model.double", _.x)

Sides, one at a time (nothing of one side runs while another is measured):

- **in process**: ``ChalkClient.query`` of ``Row.y`` for one row;
- **ours, uvicorn** and **ours, granian**: the same ASGI app of ``chalk serve`` (one worker)
  on each HTTP server, ``POST /v1/query/online``;
- **Ray Serve**: a Ray Serve HTTP deployment (one replica) whose handler reads the same JSON,
  calls the same ``double`` on a one-row Arrow array and answers the same JSON shape. Ray is
  installed on first use into its own virtual environment under ``~/.cache/scalegroup`` (as
  the reference runtime is), and stopped before the other sides run.

Figures per side: sequential one-row p50/p99 from a keep-alive ``http.client`` connection in
this process; then queries/s and p99 at 1, 16 and 64 connections from ``wrk`` (Debian's
package: ``apt-get install wrk``), with the CPU time ``wrk`` itself and the server spent.
Targets: our p50 <= in-process p50 + 0.6 ms and <= 0.3x Ray Serve's; our queries/s at 64
connections >= 2x Ray Serve's. It prints figures and ratios and never fails on a time::

    .venv/bin/python bench/server.py            # about 2 minutes, plus Ray's first install
    .venv/bin/python bench/server.py --quick    # shorter runs
    .venv/bin/python bench/server.py --no-ray   # our sides only
    .venv/bin/python bench/server.py --offline  # only chalk offline-query's figures
    .venv/bin/python bench/server.py --offline --offline-rows 100000,1000000  # smaller sizes

``--offline`` measures ``chalk offline-query`` from Parquet to Parquet at 1M and 10M rows (by
default), in process and with ``--server``, side by side: see ``bench/offline.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import psutil
from groups import route_to_runtime
from report import format_grid, number, progress_printer

from chalk import functions as F
from chalk.catalog import open_catalog
from chalk.client import ChalkClient
from chalk.features import _, features, graph_of

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_ROOT: Final = BENCH_DIR.parent
GROUP: Final = "double"
CONNECTIONS: Final = (1, 16, 64)
RAY_VERSION: Final = "2.60.0"
RAY_PACKAGES: Final = (f"ray[serve]=={RAY_VERSION}", "pyarrow")
P50_MARGIN_MS: Final = 0.6
P50_RAY_RATIO: Final = 0.3
QPS_RAY_RATIO: Final = 2.0
BODY: Final = json.dumps({"inputs": {"row.id": 1, "row.x": 1.5}, "outputs": ["row.y"]})
PATH: Final = "/v1/query/online"


@features
class Row:
    id: int
    x: float
    y: float = F.catalog_call("model.double", _.x)


@dataclass(frozen=True, slots=True)
class Plan:
    """Warm-up and timed one-row calls per side (the timed ones in ``rounds`` blocks that
    alternate with the in-process side), and seconds per ``wrk`` point."""

    warmup: int
    sequential: int
    rounds: int
    load_s: float


FULL: Final = Plan(warmup=300, sequential=2000, rounds=10, load_s=8.0)
QUICK: Final = Plan(warmup=100, sequential=500, rounds=4, load_s=3.0)


@dataclass(frozen=True, slots=True)
class Load:
    """One ``wrk`` run: queries/s, latency percentiles, errors, CPU of wrk and the server."""

    connections: int
    qps: float
    p50_ms: float
    p99_ms: float
    errors: int
    wrk_cpu_s: float
    server_cpu_s: float
    duration_s: float


@dataclass(slots=True)
class Side:
    name: str
    latencies_s: list[float] = field(default_factory=list)
    loads: list[Load] = field(default_factory=list)
    note: str = ""

    def p(self, q: int) -> float:
        return statistics.quantiles(self.latencies_s, n=100, method="inclusive")[q - 1] * 1e3

    def load(self, connections: int) -> Load | None:
        return next((x for x in self.loads if x.connections == connections), None)


# ---------------------------------------------------------------- the project and its runtime


@contextlib.contextmanager
def _project(work: Path) -> Iterator[Path]:
    """A project whose catalog routes ``model.double`` to one runtime and holds Row's graph."""
    from tests.support.runtime_process import start_runtime

    runtime = start_runtime(
        "handlers.double",
        log_path=work / "runtime.log",
        cwd=BENCH_DIR,
        env={"CHALK_INPUT_ARGS": "x"},
    )
    try:
        (work / "chalk.yaml").write_text("project: bench\n")
        os.environ.pop("CHALK_CATALOG_URL", None)
        with ChalkClient(project_dir=work) as client:
            route_to_runtime(client, GROUP, runtime.target)
        catalog = open_catalog(client.project)
        catalog.graphs.apply(graph_of([Row]).to_json())
        yield work
    finally:
        runtime.stop()


# ---------------------------------------------------------------- measuring


def _in_process_block(client: ChalkClient, calls: int, into: list[float] | None) -> None:
    for index in range(calls):
        started = time.perf_counter()
        result = client.query(input={Row.id: index, Row.x: 1.5}, output=[Row.y])
        elapsed = time.perf_counter() - started
        if result.get_feature_value(Row.y) != 3.0:
            raise RuntimeError(f"in process: answered {result.to_dict()}, expected y = 3.0")
        if into is not None:
            into.append(elapsed)


def _http_block(
    connection: http.client.HTTPConnection, path: str, calls: int, into: list[float] | None
) -> None:
    headers = {"Content-Type": "application/json"}
    for _call in range(calls):
        started = time.perf_counter()
        connection.request("POST", path, BODY, headers)
        reply = connection.getresponse()
        payload = reply.read()
        elapsed = time.perf_counter() - started
        if reply.status != 200 or b"3.0" not in payload:
            raise RuntimeError(f"{path} answered {reply.status} {payload[:300]!r}")
        if into is not None:
            into.append(elapsed)


def _sequential(
    port: int, path: str, plan: Plan, side: Side, beside: tuple[ChalkClient, Side] | None
) -> None:
    """One-row calls over one keep-alive connection; with ``beside``, in ``plan.rounds``
    blocks alternating (ABBA) with in-process queries, so machine noise lands on both."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        _http_block(connection, path, plan.warmup, None)
        if beside is not None:
            _in_process_block(beside[0], plan.warmup, None)
        block = plan.sequential // plan.rounds
        for round_index in range(plan.rounds):
            steps: list[Callable[[], None]] = [
                lambda: _http_block(connection, path, block, side.latencies_s)
            ]
            if beside is not None:
                client, local = beside
                steps.append(
                    lambda c=client, into=local.latencies_s: _in_process_block(c, block, into)
                )
            for step in steps if round_index % 2 == 0 else steps[::-1]:
                step()
    finally:
        connection.close()


_WRK_SCRIPT: Final = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""
_UNITS: Final = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk(
    port: int, path: str, connections: int, seconds: float, server: psutil.Process, work: Path
) -> Load:
    script = work / "post.lua"
    script.write_text(_WRK_SCRIPT.format(body=BODY))
    threads = 1 if connections == 1 else 2
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}{path}",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = _tree_cpu_s(server)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    duration = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = done.stdout
    qps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    failed = int(errors.group(1)) if errors else 0
    if socket_errors:
        failed += sum(int(n) for n in socket_errors.groups())
    return Load(
        connections=connections,
        qps=qps,
        p50_ms=_percentile(out, "50%"),
        p99_ms=_percentile(out, "99%"),
        errors=failed,
        wrk_cpu_s=wrk_cpu,
        server_cpu_s=_tree_cpu_s(server) - server_before,
        duration_s=duration,
    )


def _percentile(out: str, label: str) -> float:
    found = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"wrk printed no {label} latency:\n{out}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def _tree_cpu_s(process: psutil.Process) -> float:
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = each.cpu_times()
            total += times.user + times.system
    return total


def _measure_http(
    side: Side,
    port: int,
    path: str,
    server: psutil.Process,
    plan: Plan,
    work: Path,
    beside: tuple[ChalkClient, Side] | None = None,
) -> Side:
    _sequential(port, path, plan, side, beside)
    for connections in CONNECTIONS:
        side.loads.append(_wrk(port, path, connections, plan.load_s, server, work))
    return side


# ---------------------------------------------------------------- our server on two stacks


def _wait_http(port: int, path: str, process: subprocess.Popen[bytes], what: str) -> None:
    give_up = time.monotonic() + 120
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before answering")
        with contextlib.suppress(OSError):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                connection.close()
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer on port {port} within 120 s")


@contextlib.contextmanager
def _running(
    command: Sequence[str], *, cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _ours(
    stack: str, project: Path, plan: Plan, work: Path, beside: tuple[ChalkClient, Side]
) -> Side:
    from tests.support.runtime_process import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
    bin_dir = Path(sys.executable).parent
    if stack == "uvicorn":
        command = [str(bin_dir / "chalk"), "serve", "--port", str(port)]
    else:
        settings = {"project_dir": str(project), "port": port}
        env["CHALK_SERVER_SETTINGS"] = json.dumps(settings)
        command = [
            str(bin_dir / "granian"),
            "--interface",
            "asgi",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--log-level",
            "warning",
            "--no-ws",
            "--http",
            "1",
            "chalk.server.app:app_from_env",
        ]
    with _running(command, cwd=project, env=env, log=work / f"{stack}.log") as process:
        _wait_http(port, "/readyz", process, f"chalk serve on {stack}")
        side = Side(f"ours over HTTP, {stack}")
        server = psutil.Process(process.pid)
        return _measure_http(side, port, PATH, server, plan, work, beside)


# ---------------------------------------------------------------- Ray Serve

_RAY_APP: Final = """
import sys, time
sys.path.insert(0, {bench_dir!r})
import pyarrow as pa
import ray
from ray import serve
from starlette.requests import Request
from handlers import double


@serve.deployment(num_replicas=1, ray_actor_options={{"num_cpus": 0}})
class Double:
    async def __call__(self, request: Request) -> dict:
        body = await request.json()
        x = pa.array([body["inputs"]["row.x"]], pa.float64())
        y = double({{"x": x}}, {{}})
        return {{
            "data": [{{"field": "row.y", "value": y[0].as_py(), "error": None}}],
            "errors": [],
            "meta": {{}},
        }}


ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
serve.start(http_options={{"host": "127.0.0.1", "port": {port}}})
serve.run(Double.bind(), route_prefix="/v1/query/online")
print("READY", flush=True)
try:
    while True:
        time.sleep(1)
finally:
    serve.shutdown()
    ray.shutdown()
"""


def _cache_dir() -> Path:
    base = os.environ.get("SCALEGROUP_CACHE") or Path.home() / ".cache" / "scalegroup"
    return Path(base)


def ensure_ray(progress: Callable[[str], None]) -> Path:
    """The Python of Ray Serve's own virtual environment, created (once, locked) if missing."""
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    root = cache / f"ray-serve-{RAY_VERSION}"
    done = root / ".installed"
    wanted = " ".join(RAY_PACKAGES)
    with open(cache / ".ray.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists() or done.read_text() != wanted:
            progress(f"installing {wanted} into {root} (first use)")
            if not (root / "bin" / "python").exists():
                venv.EnvBuilder(with_pip=True, clear=True).create(root)
            install = subprocess.run(
                [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", *RAY_PACKAGES],
                capture_output=True,
                text=True,
                check=False,
            )
            if install.returncode != 0:
                raise RuntimeError(
                    f"installing {wanted} into {root} failed:\n{install.stderr[-3000:]}"
                )
            done.write_text(wanted)
    return root / "bin" / "python"


def _ray(python: Path, plan: Plan, work: Path) -> Side:
    from tests.support.runtime_process import free_port

    port = free_port()
    app = work / "ray_app.py"
    app.write_text(_RAY_APP.format(bench_dir=str(BENCH_DIR), port=port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray's workers (the replica) import handlers.double by name: bench/ on their path.
    env["PYTHONPATH"] = str(BENCH_DIR)
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    env["RAY_TMPDIR"] = str(ray_tmp)
    log = work / "ray.log"
    try:
        with _running([str(python), str(app)], cwd=work, env=env, log=log) as process:
            give_up = time.monotonic() + 300
            while "READY" not in log.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > give_up:
                    raise RuntimeError(f"Ray Serve did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            side = Side(f"Ray Serve {RAY_VERSION} over HTTP")
            # Ray's processes (raylet, GCS, proxy, replica) are this process's session.
            return _measure_http(side, port, PATH, psutil.Process(process.pid), plan, work)
    finally:
        _stop_ray_leftovers(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _stop_ray_leftovers(ray_tmp: Path) -> None:
    """Ray's daemons that outlived the driver (they hold files under ``ray_tmp``)."""
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info.get("cmdline") or [])
        if str(ray_tmp) in cmdline:
            with contextlib.suppress(psutil.Error):
                process.kill()


# ---------------------------------------------------------------- report


def _load_lines(sides: Sequence[Side]) -> str:
    body = []
    for side in sides:
        for load in side.loads:
            body.append(
                (
                    side.name,
                    str(load.connections),
                    number(load.qps),
                    f"{load.p50_ms:.2f}",
                    f"{load.p99_ms:.2f}",
                    str(load.errors),
                    f"{load.wrk_cpu_s / load.duration_s * 100:.0f}%",
                    f"{load.server_cpu_s / load.duration_s * 100:.0f}%",
                )
            )
    header = ("side", "conns", "queries/s", "p50 ms", "p99 ms", "errors", "wrk CPU", "server CPU")
    return format_grid(header, body, left=1)


def _sequential_lines(sides: Sequence[Side]) -> str:
    body = [(s.name, f"{s.p(50):.3f}", f"{s.p(99):.3f}", str(len(s.latencies_s))) for s in sides]
    return format_grid(("side (sequential, one row)", "p50 ms", "p99 ms", "calls"), body, left=1)


def _verdict(value: float, op: str, bound: float) -> str:
    met = value <= bound if op == "<=" else value >= bound
    return f"{value:.3f} {op} {bound:.3f}: {'yes' if met else 'NO'}"


def _target_lines(ours: Sequence[tuple[Side, Side]], ray: Side | None) -> list[str]:
    """Each of our sides against the in-process side measured beside it, and against Ray."""
    lines = []
    for side, local in ours:
        lines.append(
            f"{side.name}: p50 vs in-process p50 ({local.p(50):.3f}) + {P50_MARGIN_MS} ms: "
            + _verdict(side.p(50), "<=", local.p(50) + P50_MARGIN_MS)
        )
        if ray is None:
            continue
        lines.append(
            f"{side.name}: p50 / Ray p50 = {side.p(50) / ray.p(50):.2f}; target "
            + _verdict(side.p(50), "<=", P50_RAY_RATIO * ray.p(50))
        )
        mine, theirs = side.load(64), ray.load(64)
        if mine is not None and theirs is not None:
            lines.append(
                f"{side.name}: queries/s at 64 conns / Ray's = {mine.qps / theirs.qps:.2f}; "
                f"target " + _verdict(mine.qps, ">=", QPS_RAY_RATIO * theirs.qps)
            )
    return lines


def _environment_lines() -> list[str]:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {os.cpu_count()} cores, {platform.machine()}; load average {load}",
        f"python: {platform.python_version()}",
    ]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter runs: rougher figures")
    parser.add_argument("--no-ray", action="store_true", help="leave Ray Serve out")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="only chalk offline-query from Parquet, in process and through chalk serve",
    )
    parser.add_argument(
        "--offline-rows",
        default="1000000,10000000",
        help="the --offline sizes, comma-separated (default: 1M and 10M rows)",
    )
    return parser.parse_args(argv)


def _offline(sizes: Sequence[int], progress: Callable[[str], None]) -> None:
    import offline  # bench/offline.py

    with tempfile.TemporaryDirectory(prefix="bench-offline-") as tmp:
        work = Path(tmp)
        with _project(work) as project:

            @contextlib.contextmanager
            def serve() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
                from tests.support.runtime_process import free_port

                port = free_port()
                env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
                command = [str(Path(sys.executable).with_name("chalk")), "serve", "--port",
                           str(port)]  # fmt: skip
                with _running(command, cwd=project, env=env, log=work / "serve.log") as process:
                    _wait_http(port, "/readyz", process, "chalk serve")
                    yield f"http://127.0.0.1:{port}", process

            runs = offline.measure(project, work, sizes, progress, serve)
    print("\n".join(_environment_lines()))
    print()
    print("\n".join(offline.offline_lines(runs)))


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    plan = QUICK if args.quick else FULL
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))  # tests.support is not installed
    progress = progress_printer()
    if args.offline:
        _offline([int(size) for size in args.offline_rows.split(",")], progress)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("bench/server.py needs wrk: apt-get install wrk")
    ray: Side | None = None
    ray_problem = ""
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        work = Path(tmp)
        with _project(work) as project, ChalkClient(project_dir=project) as client:
            ours, locals_ = [], []
            for stack in ("uvicorn", "granian"):
                progress(
                    f"ours on {stack}: sequential beside in-process queries, then wrk at "
                    f"{CONNECTIONS} connections"
                )
                local = Side(f"in process (ChalkClient.query), rounds with {stack}")
                ours.append(_ours(stack, project, plan, work, (client, local)))
                locals_.append(local)
        if not args.no_ray:
            try:
                python = ensure_ray(progress)
                progress("Ray Serve: sequential, then wrk (ours is stopped)")
                ray = _ray(python, plan, work)
            except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                ray_problem = f"Ray Serve was not measured: {error}"
    print("\n".join(_environment_lines()))
    print(
        f"mode: {'quick' if args.quick else 'full'}; {plan.sequential} timed one-row calls per "
        f"side in {plan.rounds} alternating blocks; wrk {plan.load_s:g} s per point"
    )
    print()
    sides = [side for pair in zip(locals_, ours, strict=True) for side in pair]
    sides += [ray] if ray else []
    print(_sequential_lines(sides))
    print()
    print(_load_lines([*ours, *([ray] if ray else [])]))
    print()
    print("\n".join(_target_lines(list(zip(ours, locals_, strict=True)), ray)))
    if ray_problem:
        print(ray_problem)


if __name__ == "__main__":
    main()
