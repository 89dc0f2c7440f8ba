"""Each process's ``ModelCaller`` publishes its demand on local groups to the catalog
(DESIGN.md, "Demand"): in flight and waiting (held calls included), at once when a call finds
no ready replica, zeroed at close; rows of several processes are summed and expire."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pytest

from chalk.catalog import Catalog, Endpoint, open_catalog
from chalk.catalog.demand import DemandFigures, GroupDemand
from chalk.catalog.transactions import utc_now
from chalk.engine.demand import DemandPublisher, GroupLoad
from tests.engine.conftest import SHIM_HANDLERS, MakeCaller, StartRuntime

INT = pa.int64()


@pytest.fixture
def controller(catalog: Catalog) -> Iterator[None]:
    """A local controller's heartbeat, kept fresh (local groups route only while it is).
    The first beat is written before the test starts: a call made before the thread's first
    beat found no controller (a CI flake under load)."""
    stop = threading.Event()
    catalog.state.heartbeat("local", pid=os.getpid(), host="test")

    def beat() -> None:
        while not stop.wait(1.0):
            catalog.state.heartbeat("local", pid=os.getpid(), host="test")

    beating = threading.Thread(target=beat, daemon=True)
    beating.start()
    yield
    stop.set()
    beating.join()


def _local_group(catalog: Catalog, name: str, targets: list[str]) -> str:
    version = catalog.models.register(
        name, input_schema=pa.schema([("x", INT)]), output_schema=pa.schema([("y", INT)]), image="x"
    )
    model = {"name": version.model_name, "version": version.model_version}
    group = catalog.groups.create(name, {"image": "x", "model": model}, backend="local")
    catalog.groups.report(
        group.id,
        status="Ready" if targets else "Idle",
        desired=len(targets),
        ready=len(targets),
        available=len(targets),
        endpoints=[Endpoint(target) for target in targets],
    )
    return group.id


def _until(found: Callable[[], GroupDemand | None], timeout_s: float = 30.0) -> GroupDemand:
    give_up = time.monotonic() + timeout_s
    while True:
        demand = found()
        if demand is not None:
            return demand
        assert time.monotonic() < give_up, "the demand never showed"
        time.sleep(0.02)


def _demand(catalog: Catalog, group: str, **expected: int) -> Callable[[], GroupDemand | None]:
    def found() -> GroupDemand | None:
        demand = catalog.demand.totals().get(group)
        if demand is None:
            return None
        ok = all(getattr(demand, key) == value for key, value in expected.items())
        return demand if ok else None

    return found


@pytest.mark.usefixtures("controller")
def test_a_held_call_is_published_at_once_and_withdrawn_at_close(
    catalog: Catalog, make_caller: MakeCaller
) -> None:
    _local_group(catalog, "idle", [])
    caller = make_caller(hold_timeout_s=30)
    ended: list[BaseException] = []

    def call() -> None:
        try:
            caller.call_blocking(feature="t.y", name="model.idle", args=[pa.array([1])])
        except BaseException as error:  # the caller closed under it
            ended.append(error)

    calling = threading.Thread(target=call)
    calling.start()

    held = _until(_demand(catalog, "idle", waiting=1))

    assert (held.in_flight, held.processes) == (0, 1)
    assert held.last_call_at is not None
    caller.close()  # the held call ends with the caller's loop; its rows go to zero
    calling.join(timeout=20)
    assert len(ended) == 1
    after = catalog.demand.totals()["idle"]
    assert (after.in_flight, after.waiting) == (0, 0)
    assert after.last_call_at == held.last_call_at


@pytest.mark.usefixtures("controller")
def test_calls_in_flight_are_published_while_they_run(
    catalog: Catalog, runtime: StartRuntime, make_caller: MakeCaller
) -> None:
    slow = runtime("model_handlers.slow", cwd=SHIM_HANDLERS, env={"SLOW_SECONDS": "3"})
    _local_group(catalog, "slow", [slow.target])
    caller = make_caller()
    calling = threading.Thread(
        target=caller.call_blocking,
        kwargs={"feature": "t.y", "name": "model.slow", "args": [pa.array([1])]},
    )
    calling.start()

    running = _until(_demand(catalog, "slow", in_flight=1))
    calling.join(timeout=20)
    # Published again once the call ended (it was called lately).
    done = _until(_demand(catalog, "slow", in_flight=0, waiting=0))

    assert running.processes == 1
    assert done.last_call_at is not None


def test_a_group_with_a_held_call_is_published_at_once() -> None:
    published: list[Mapping[str, DemandFigures]] = []

    class Sink:
        def publish(self, process: str, figures: Mapping[str, DemandFigures]) -> None:
            published.append(figures)

        def forget(self, process: str) -> None:
            pass

    loads = {"a": GroupLoad(in_flight=2, waiting=1, held=1)}
    publisher = DemandPublisher(Sink(), lambda: loads, process="p")
    publisher.urgent("a")
    _until(lambda: GroupDemand() if published else None, timeout_s=10)
    publisher.close()

    assert published[0] == {"a": DemandFigures(2, 1, None)}


def test_the_publisher_survives_a_step_that_raises(caplog: pytest.LogCaptureFixture) -> None:
    published: list[Mapping[str, DemandFigures]] = []
    failures = [RuntimeError("loads broke")]

    class Sink:
        def publish(self, process: str, figures: Mapping[str, DemandFigures]) -> None:
            published.append(figures)

        def forget(self, process: str) -> None:
            pass

    def loads() -> Mapping[str, GroupLoad]:
        if failures:
            raise failures.pop()
        return {"a": GroupLoad(in_flight=1)}

    publisher = DemandPublisher(Sink(), loads, process="p")
    with caplog.at_level("ERROR", logger="chalk.engine.demand"):
        publisher.urgent("a")
        _until(lambda: GroupDemand() if published else None, timeout_s=10)
    publisher.close()

    assert published[0] == {"a": DemandFigures(1, 0, None)}
    assert "loads broke" in caplog.text


_CALLING_PROCESS = """
import sys
from chalk import functions as F
from chalk.client import ChalkClient
from chalk.features import _, features

@features
class Reading:
    id: int
    x: int
    y: int = F.catalog_call("model.slow", _.x)

client = ChalkClient(project_dir=sys.argv[1])
client.query(input={Reading.id: 1, Reading.x: 1}, output=[Reading.y])
"""


@pytest.mark.usefixtures("controller")
def test_two_processes_demand_is_summed_and_expires_after_they_stop(
    catalog: Catalog, runtime: StartRuntime, tmp_path: Path
) -> None:
    slow = runtime("model_handlers.slow", cwd=SHIM_HANDLERS, env={"SLOW_SECONDS": "120"})
    _local_group(catalog, "slow", [slow.target])
    project = tmp_path / "project"
    project.mkdir()
    (project / "chalk.yaml").write_text("project: demo\n")
    script = tmp_path / "calling.py"
    script.write_text(_CALLING_PROCESS)
    env = {**os.environ, "CHALK_CATALOG_URL": f"sqlite:///{tmp_path / 'catalog.db'}"}
    callers = [
        subprocess.Popen([sys.executable, str(script), str(project)], env=env, cwd=tmp_path)
        for _ in range(2)
    ]
    try:
        both = _until(_demand(catalog, "slow", in_flight=2, processes=2), timeout_s=60)
    finally:
        for process in callers:
            process.kill()  # no close: their rows stay as last written
            process.wait()

    assert both.total == 2
    # Rows not rewritten for 5 s no longer count; the last call time stays.
    later = open_catalog(
        f"sqlite:///{tmp_path / 'catalog.db'}", clock=lambda: utc_now() + dt.timedelta(seconds=6)
    )
    expired = later.demand.totals()["slow"]
    assert (expired.in_flight, expired.waiting, expired.processes) == (0, 0, 0)
    assert expired.last_call_at == both.last_call_at
