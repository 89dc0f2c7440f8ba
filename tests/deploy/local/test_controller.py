"""The local controller with real replica processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pyarrow as pa
import pytest

from chalk.catalog import Catalog
from chalk.catalog.resources import AutoScalingSpec, ScalingGroupResourceRequest
from chalk.catalog.specs import GroupSpec, ModelRef
from chalk.common.config import Project
from chalk.deploy.groups import pin_image, update_group
from chalk.engine.calls import ModelCaller
from chalk.engine.errors import ModelTransportError
from chalk.shim import RemoteCallClient
from tests.deploy.local.conftest import (
    RunningController,
    alive,
    model_image,
    save_image,
    wait_for,
)

Start = Callable[..., RunningController]


def create(catalog: Catalog, name: str, spec: GroupSpec) -> str:
    pinned = pin_image(catalog, spec, port_given=False)
    return catalog.groups.create(name, pinned.to_dict(), backend="local").id


def ready_group(catalog: Catalog, name: str, replicas: int = 1) -> object:
    def check() -> object:
        group = catalog.groups.find(name)
        if group and group.status == "Ready" and len(group.endpoints) == replicas:
            return group
        return None

    return wait_for(check, what=f"{name} Ready with {replicas} endpoints")


def call(target: str, values: list[float]) -> list[float]:
    async def _call() -> list[float]:
        async with RemoteCallClient() as client:
            result = await client.call(target, {"x": pa.array(values)}, name="g")
            return list(result.to_pylist())

    return asyncio.run(_call())


def model_spec(tag: str = "model:latest", **changes: object) -> GroupSpec:
    spec = GroupSpec(
        image=tag,
        model=ModelRef("m", 1),
        scaling=AutoScalingSpec(min_replicas=1, max_replicas=1, shutdown_delay_seconds=2),
    )
    return spec.with_changes(**changes)


def test_a_model_group_becomes_ready_and_serves_calls(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    model_image(catalog, project)
    create(catalog, "doubler", model_spec(env={"FACTOR": "3"}))
    controller()

    group = ready_group(catalog, "doubler")

    [endpoint] = group.endpoints  # type: ignore[attr-defined]
    assert call(endpoint.target, [1.0, 2.0]) == [3.0, 6.0]
    assert group.url.startswith("http://127.0.0.1:")  # type: ignore[attr-defined]
    through_url = group.url.removeprefix("http://")  # type: ignore[attr-defined]
    assert call(through_url, [5.0]) == [15.0]
    [replica] = catalog.state.replicas(group.id)  # type: ignore[attr-defined]
    assert (replica.state, replica.ready, replica.restarts) == ("Running", True, 0)


def test_a_killed_replica_comes_back(catalog: Catalog, project: Project, controller: Start) -> None:
    model_image(catalog, project)
    group_id = create(catalog, "doubler", model_spec())
    controller()
    ready_group(catalog, "doubler")
    [first] = catalog.state.replicas(group_id)
    assert first.pid is not None

    os.kill(first.pid, signal.SIGKILL)

    def restarted() -> object:
        rows = catalog.state.replicas(group_id)
        return rows and rows[0].ready and rows[0].pid != first.pid and rows[0]

    replica = wait_for(restarted, what="a new ready replica")
    assert replica.restarts == 1
    assert "signal SIGKILL" in replica.last_exit_reason
    assert any(e.reason == "BackOff" for e in catalog.state.events(group_id))


KILLING_HANDLER = """
import os


def handler(event, context):
    os._exit(3)  # as a native library's abort ends the process
"""


def test_a_handler_that_kills_its_replica_fails_the_call_naming_replica_and_exit_code(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    """DESIGN.md's failure table: the second death fails the call with the replica's exit."""
    save_image(
        catalog,
        project,
        "killer:latest",
        files={"/app/model.py": KILLING_HANDLER},
        entrypoint=("chalk-remote-call", "--handler", "model.handler", "--port", "8080"),
        exposed_port=8080,
    )
    floats = pa.schema([("x", pa.float64())])
    catalog.models.register("m", input_schema=floats, output_schema=floats, image="killer:latest")
    two = AutoScalingSpec(min_replicas=2, max_replicas=2, shutdown_delay_seconds=2)
    group_id = create(catalog, "killer", model_spec("killer:latest", scaling=two))
    controller(backoff_initial_s=30.0)  # neither replica comes back while the call runs
    ready_group(catalog, "killer", replicas=2)

    with ModelCaller(catalog) as caller, pytest.raises(ModelTransportError) as raised:
        caller.call_blocking(feature="t.y", name="model.killer", args=[pa.array([1.0])])

    found = re.search(
        r"^t\.y: catalog_call\('model\.killer'\): the model's handler crashed replica (\S+) "
        r"\(exit code 3\) of scaling group 'killer' on rows 0-0, twice: at 127\.0\.0\.1:\d+: "
        r"expected the handler to answer or raise; check its log with `chalk logs killer "
        r"--replica (\S+)`$",
        str(raised.value),
    )
    assert found is not None, str(raised.value)
    replicas = {row.replica_id: row for row in catalog.state.replicas(group_id)}
    assert found[1] == found[2]
    assert found[1] in replicas
    assert replicas[found[1]].last_exit_reason.startswith("exit code 3")
    assert sorted(row.restarts for row in replicas.values()) == [1, 1]


def test_a_crash_looping_image_shows_exit_code_and_log_tail(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    save_image(
        catalog,
        project,
        "crasher:latest",
        entrypoint=(
            sys.executable,
            "-c",
            "import sys; print('model file is corrupt'); sys.exit(3)",
        ),
    )
    group_id = create(catalog, "crasher", GroupSpec(image="crasher:latest"))
    controller()

    group = wait_for(
        lambda: (g := catalog.groups.find("crasher")) and g.status == "CrashLoopBackOff" and g,
        what="CrashLoopBackOff",
    )

    assert "exit code 3" in group.reason
    wait_for(lambda: catalog.state.replicas(group_id)[0].restarts >= 2, what="two restarts")
    [replica] = catalog.state.replicas(group_id)
    assert "model file is corrupt" in replica.last_exit_reason
    # Its runs are one after another in its log, each restart marked with a line of its own.
    log = (project.state_dir / "logs" / "crasher" / f"{replica.replica_id}.log").read_text()
    assert re.search(r"^--- restarted at \S+Z \(restart 1; exit code 3\) ---$", log, re.M), log
    warnings = [e for e in catalog.state.events(group_id) if e.type == "Warning"]
    assert warnings
    assert "exit code 3" in warnings[-1].message
    assert "model file is corrupt" in warnings[-1].message


HTTP_SERVER = (sys.executable, "-m", "http.server", "8000", "--bind", "127.0.0.1")


def test_groups_whose_images_use_the_same_port_run_side_by_side(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    save_image(catalog, project, "web:latest", entrypoint=HTTP_SERVER, exposed_port=8000)
    save_image(
        catalog,
        project,
        "site:latest",
        files={"/srv/index.html": "hello"},
        entrypoint=HTTP_SERVER,
        workdir="/srv",
        exposed_port=8000,
    )
    two = AutoScalingSpec(min_replicas=2, max_replicas=2, shutdown_delay_seconds=1)
    create(catalog, "web", GroupSpec(image="web:latest", scaling=two))
    create(catalog, "site", GroupSpec(image="site:latest"))
    controller()

    web = ready_group(catalog, "web", replicas=2)
    site = ready_group(catalog, "site")

    ports = {e.target for e in web.endpoints} | {e.target for e in site.endpoints}  # type: ignore[attr-defined]
    assert len(ports) == 3
    with urllib.request.urlopen(f"{site.url}/index.html", timeout=5) as reply:  # type: ignore[attr-defined]
        assert reply.read() == b"hello"


def test_an_entrypoint_override_replaces_the_image_command(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    save_image(catalog, project, "web:latest", entrypoint=("false",), exposed_port=8000)
    create(catalog, "web", GroupSpec(image="web:latest", entrypoint=HTTP_SERVER))
    controller()

    group = ready_group(catalog, "web")

    assert group.status == "Ready"  # type: ignore[attr-defined]


def test_delete_stops_every_process_and_the_url(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    save_image(catalog, project, "web:latest", entrypoint=HTTP_SERVER, exposed_port=8000)
    two = AutoScalingSpec(min_replicas=2, max_replicas=2, shutdown_delay_seconds=1)
    group_id = create(catalog, "web", GroupSpec(image="web:latest", scaling=two))
    controller()
    group = ready_group(catalog, "web", replicas=2)
    pids = [r.pid for r in catalog.state.replicas(group_id)]

    catalog.groups.delete("web")

    wait_for(lambda: not any(alive(pid) for pid in pids if pid), what="replicas to exit")
    wait_for(lambda: not catalog.state.replicas(group_id), what="replica rows to go")
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        urllib.request.urlopen(group.url, timeout=2)  # type: ignore[attr-defined]


def test_an_update_rolls_to_the_new_revision(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    model_image(catalog, project)
    # An autoscaling group: a roll carries its count over, which is no scaling decision.
    scaling = AutoScalingSpec(min_replicas=1, max_replicas=3, shutdown_delay_seconds=2)
    group_id = create(catalog, "doubler", model_spec(env={"FACTOR": "2"}, scaling=scaling))
    running = controller()
    old = ready_group(catalog, "doubler")
    decided = _decisions(running)
    [old_row] = catalog.state.replicas(group_id)

    spec = GroupSpec.from_dict(catalog.groups.get("doubler").spec)
    catalog.groups.update("doubler", spec.with_changes(env={"FACTOR": "10"}).to_dict())

    def rolled() -> object:
        group = catalog.groups.find("doubler")
        return group and group.endpoints != old.endpoints and group.status == "Ready" and group  # type: ignore[attr-defined]

    group = wait_for(rolled, what="the new revision serving")
    assert call(group.endpoints[0].target, [1.0]) == [10.0]
    assert old_row.pid is not None
    wait_for(lambda: not alive(old_row.pid), what="the old replica to exit")
    scaled = [e.message for e in catalog.state.events(group_id, limit=50) if e.reason == "Scaled"]
    assert scaled == ["no replica measured yet: 0 -> 1 (clamped to min 1)"]
    assert _decisions(running) == decided == 1.0
    # Counters of a group have a sample from the first pass that sees it, not its first event.
    registry = running.controller.metrics.registry
    labels = {"group": "doubler"}
    assert registry.get_sample_value("chalk_controller_replica_restarts_total", labels) == 0.0


STAGGERED_HANDLER = """
import os
import time

import pyarrow.compute as pc

MARKER = os.environ.get("FIRST_MARKER")
if MARKER:
    try:
        os.close(os.open(MARKER, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        time.sleep(3)  # all but the first replica come up late: a roll goes one by one


def handler(event, context):
    return pc.multiply(next(iter(event.values())), int(os.environ.get("FACTOR", "2")))
"""


@pytest.mark.parametrize("window_s", [None, 0], ids=["default_window", "no_window"])
def test_a_roll_of_an_autoscaled_group_keeps_its_ready_replicas_while_called(
    catalog: Catalog, project: Project, controller: Start, window_s: int | None
) -> None:
    """Issue 22: the new revision starts at the group's count, and old replicas leave one for
    one as new ones serve; sampled every 200 ms, the group never has fewer ready replicas.
    With no scale-down window the autoscaler (which sees only the new revision's replicas,
    all idle) would shrink the group mid-roll; it goes on only once the roll is over."""
    entrypoint = ("chalk-remote-call", "--handler", "model.handler", "--port", "8080")
    files = {"/app/model.py": STAGGERED_HANDLER}
    save_image(
        catalog, project, "staggered:1", files=files, entrypoint=entrypoint, exposed_port=8080
    )
    floats = pa.schema([("x", pa.float64())])
    catalog.models.register("m", input_schema=floats, output_schema=floats, image="staggered:1")
    two = AutoScalingSpec(min_replicas=2, max_replicas=2, shutdown_delay_seconds=2)
    # A large CPU request: the calls below never make the autoscaler want more than 2.
    resources = ScalingGroupResourceRequest(cpu="8")
    spec = model_spec("staggered:1", scaling=two, resources=resources)
    group_id = create(catalog, "doubler", spec)
    # Endpoints drain longer than the engine keeps a route (1 s), as by default: no call is
    # sent to a replica once it stops.
    controller(endpoint_drain_s=1.5)
    ready_group(catalog, "doubler", replicas=2)

    def rolled_to(revision: int, ready: int = 1) -> bool:
        rows = catalog.state.replicas(group_id)
        serving = [r for r in rows if r.ready and r.revision == revision]
        return len(serving) >= ready and all(r.revision == revision for r in rows)

    # Autoscaled from 1 to 4 from here: its 60 s scale-down window keeps the 2 it runs.
    autoscaled = AutoScalingSpec(min_replicas=1, max_replicas=4, shutdown_delay_seconds=2)
    spec = GroupSpec.from_dict(catalog.groups.get("doubler").spec)
    spec = spec.with_changes(scaling=autoscaled)
    scaled, _ = catalog.groups.update("doubler", spec.to_dict())
    wait_for(lambda: rolled_to(scaled.revision, ready=2), what="2 replicas kept, autoscaled")
    answers: list[float] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def keep_calling() -> None:
        with ModelCaller(catalog) as caller:
            while not stop.is_set():
                try:
                    answer = caller.call_blocking(
                        feature="t.y", name="model.doubler", args=[pa.array([1.0])]
                    )
                    answers.extend(answer.to_pylist())
                except Exception as error:  # every failure is the test's finding
                    failures.append(error)

    calling = threading.Thread(target=keep_calling)
    calling.start()
    ready_counts: list[int] = []
    try:
        wait_for(lambda: len(answers) >= 5, what="the first answers")
        scaling = dataclasses.replace(autoscaled, window_seconds=window_s)
        marker = str(project.root / "first-replica")
        env = {"FACTOR": "10", "FIRST_MARKER": marker}
        new_version = spec.with_changes(env=env, scaling=scaling)
        rolling, _ = catalog.groups.update("doubler", new_version.to_dict())
        give_up = time.monotonic() + 60
        while time.monotonic() < give_up:
            ready = catalog.groups.get("doubler").ready_replicas
            rows = catalog.state.replicas(group_id)
            # Read before the rows: while an old replica is not leaving, the roll went on.
            if not any(r.revision != rolling.revision and r.state != "Terminating" for r in rows):
                break
            ready_counts.append(ready)
            time.sleep(0.2)
        wait_for(lambda: rolled_to(rolling.revision), what="the new revision serving alone")
        seen = len(answers)
        wait_for(lambda: len(answers) >= seen + 5, what="answers after the roll")
    finally:
        stop.set()
        calling.join(timeout=60)

    assert len(ready_counts) >= 3, ready_counts
    assert min(ready_counts) >= 2, ready_counts
    assert max(ready_counts) == 2, ready_counts  # one old replica leaves as each new one serves
    assert failures == []
    assert set(answers) <= {2.0, 10.0}
    assert answers[-1] == 10.0
    # The samples stop as the last old replica leaves; the events show the rest: no replica of
    # the new revision went before that (a scale-down mid-roll would stop one).
    events = catalog.state.events(group_id, limit=100)
    stops = [e.message for e in events if e.reason == "Stopping"]
    replaced = [i for i, message in enumerate(stops) if "replaced by revision" in message]
    assert len(replaced) == 2, stops
    assert all(i > max(replaced) for i, m in enumerate(stops) if "scaled down" in m), stops
    if window_s is None:
        assert rolled_to(rolling.revision, ready=2)
        assert not [e.message for e in events if e.reason == "Scaled" and "-> 1" in e.message]


def _decisions(running: RunningController) -> float:
    registry = running.controller.metrics.registry
    total = registry.get_sample_value(
        "chalk_controller_scaling_decisions_total",
        {"group": "doubler", "direction": "up", "reason": "none"},
    )
    return total or 0.0


def test_scaling_or_retagging_keeps_the_running_replicas(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    model_image(catalog, project)
    group_id = create(catalog, "doubler", model_spec())
    controller()
    ready_group(catalog, "doubler")
    [first] = catalog.state.replicas(group_id)

    spec = GroupSpec.from_dict(catalog.groups.get("doubler").spec)
    scaling = AutoScalingSpec(min_replicas=2, max_replicas=2, shutdown_delay_seconds=2)
    catalog.groups.update(
        "doubler", spec.with_changes(scaling=scaling, tags={"team": "nlp"}).to_dict()
    )
    group = ready_group(catalog, "doubler", replicas=2)
    rows = catalog.state.replicas(group_id)

    assert first.pid in {row.pid for row in rows}
    assert {row.revision for row in rows} == {group.revision}  # type: ignore[attr-defined]
    assert alive(first.pid)


def test_stopping_the_controller_leaves_no_process(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    model_image(catalog, project)
    group_id = create(catalog, "doubler", model_spec())
    running = controller()
    ready_group(catalog, "doubler")
    [row] = catalog.state.replicas(group_id)

    running.stop()

    assert row.pid is not None
    assert not alive(row.pid)
    assert catalog.state.replicas(group_id) == []
    assert catalog.groups.get("doubler").endpoints == ()
    assert catalog.state.controller("local") is None


def test_an_update_to_an_image_with_another_port_takes_that_port(
    catalog: Catalog, project: Project
) -> None:
    save_image(catalog, project, "web:v1", entrypoint=HTTP_SERVER, exposed_port=8000)
    save_image(catalog, project, "web:v2", entrypoint=HTTP_SERVER, exposed_port=9000)
    save_image(catalog, project, "web:v3", entrypoint=HTTP_SERVER, exposed_port=7000)
    create(catalog, "web", GroupSpec(image="web:v1"))

    _, derived, _ = update_group(project, catalog, "web", {"image": "web:v2"}, dry_run=True)
    catalog.groups.update("web", derived.with_changes(port=8500, port_from_image=False).to_dict())
    _, pinned, _ = update_group(project, catalog, "web", {"image": "web:v3"}, dry_run=True)

    assert derived.port == 9000
    assert pinned.port == 8500


CHATTY = """
import itertools, time
for n in itertools.count():
    print(n, flush=True)
    time.sleep(0.001)
"""


def test_a_chatty_replicas_log_is_cut_back_to_its_bound(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    save_image(
        catalog,
        project,
        "chatty:latest",
        files={"/app/chatty.py": CHATTY},
        entrypoint=(sys.executable, "chatty.py"),
    )
    group_id = create(catalog, "chatty", GroupSpec(image="chatty:latest"))
    controller(log_max_bytes=4096, log_check_interval_s=0.2)
    [row] = wait_for(lambda: catalog.state.replicas(group_id), what="the replica")
    log = project.state_dir / "logs" / "chatty" / f"{row.replica_id}.log"
    previous = log.with_name(f"{log.name}.1")

    wait_for(previous.exists, what=previous.name)
    wait_for(lambda: log.read_bytes().count(b"\n") > 10, what="lines after the rotation")

    assert previous.stat().st_size > 4096
    first_line = int(log.read_bytes().split(b"\n", 1)[0])
    assert first_line > 0
