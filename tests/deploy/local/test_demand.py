"""The real controller following demand: queue depth, scale to zero, and back on a call.

Demand rows are published straight into the catalog, as a calling process's ModelCaller does,
and in the last test by a real ModelCaller whose call is held while the group wakes.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Callable

import pyarrow as pa
import pytest

from chalk.catalog import Catalog
from chalk.catalog.demand import DemandFigures
from chalk.catalog.resources import AutoScalingSpec
from chalk.catalog.specs import GroupSpec, ModelRef
from chalk.cli import main
from chalk.common.config import Project
from chalk.deploy.local.autoscaler import SIGNALS_KEY
from chalk.engine.calls import ModelCaller
from tests.deploy.local.conftest import (
    RunningController,
    create_local,
    model_image,
    save_image,
    wait_for,
)
from tests.deploy.local.conftest import server_image as save_server_image

Start = Callable[..., RunningController]

SERVER = r"""
import socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    server.accept()[0].close()
"""


def server_image(catalog: Catalog, project: Project) -> None:
    save_server_image(catalog, project, SERVER)


def create(catalog: Catalog, name: str, scaling: AutoScalingSpec, image: str = "server") -> str:
    return create_local(catalog, name, GroupSpec(image=f"{image}:latest", scaling=scaling))


def publish(catalog: Catalog, group: str, *, in_flight: int = 0, waiting: int = 0) -> None:
    now = dt.datetime.now(dt.UTC)
    busy = in_flight + waiting > 0
    figures = DemandFigures(in_flight, waiting, now if busy else None)
    catalog.demand.publish("test-caller", {group: figures})


def chalk_output(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    return capsys.readouterr().out


def scaled_reasons(catalog: Catalog, group_id: str) -> list[str]:
    return [e.message for e in catalog.state.events(group_id, limit=200) if e.reason == "Scaled"]


def test_published_demand_scales_a_group_out_and_back(
    catalog: Catalog, project: Project, controller: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    server_image(catalog, project)
    scaling = AutoScalingSpec(
        min_replicas=1, max_replicas=4, queue_depth_target=2, window_seconds=0
    )
    group_id = create(catalog, "busy", scaling)
    controller()
    wait_for(lambda: catalog.groups.get("busy").status == "Ready", what="the first replica")

    publish(catalog, "busy", in_flight=2, waiting=4)
    wait_for(
        lambda: (g := catalog.groups.get("busy")).ready_replicas == 3 and g.status == "Ready",
        what="three replicas for demand 6 at target 2",
    )
    publish(catalog, "busy")
    wait_for(lambda: catalog.groups.get("busy").desired_replicas == 1, what="back to one")

    reasons = scaled_reasons(catalog, group_id)
    assert any(r.startswith("demand 6 (2 in flight, 4 waiting) / target 2") for r in reasons)
    assert any(r.startswith("demand 0 (0 in flight, 0 waiting) / target 2") for r in reasons)
    signals = catalog.state.autoscaler_state(group_id)[SIGNALS_KEY]
    assert signals["queueDepthTarget"] == 2
    assert signals["demand"] == {"inFlight": 0, "waiting": 0, "total": 0}
    assert "3 -> 1" in signals["lastDecision"]["reason"]

    # `get` shows each signal's value and the decisions' reasons, -o json too.
    text = chalk_output(["scaling-group", "get", "--name", "busy"], capsys)
    assert "queue depth target 2" in text
    assert "Autoscaler: demand 0 (0 in flight, 0 waiting); queue depth target 2; cpu " in text
    assert "last change at " in text
    document = json.loads(
        chalk_output(["scaling-group", "get", "--name", "busy", "-o", "json"], capsys)
    )
    assert document["autoscaler"]["queueDepthTarget"] == 2
    assert document["autoscaler"]["demand"]["total"] == 0


def test_a_min_zero_group_starts_at_one_goes_idle_and_wakes_on_demand(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    server_image(catalog, project)
    group_id = create(
        catalog, "sleepy", AutoScalingSpec(min_replicas=0, max_replicas=2, idle_seconds=1)
    )
    controller()

    # A new group starts at one, so waiting for it means "serving".
    wait_for(lambda: catalog.groups.get("sleepy").ready_replicas == 1, what="the first replica")
    idle = wait_for(lambda: (g := catalog.groups.get("sleepy")).status == "Idle" and g, what="Idle")
    assert (idle.desired_replicas, idle.ready_replicas, idle.endpoints) == (0, 0, ())
    assert idle.reason == "no call for 1 s"
    wait_for(lambda: not catalog.state.replicas(group_id), what="the replica gone")
    assert any(
        r.startswith("idle 1 s (") and r.endswith("1 -> 0")
        for r in scaled_reasons(catalog, group_id)
    )

    asked = time.monotonic()
    publish(catalog, "sleepy", waiting=1)
    woken = wait_for(
        lambda: (g := catalog.groups.get("sleepy")).endpoints and g, what="a replica on demand"
    )
    print(f"from a demand row to a ready replica: {time.monotonic() - asked:.2f} s")
    assert woken.status == "Ready"
    assert any(
        r == "demand 1 (0 in flight, 1 waiting) with no replica: 0 -> 1"
        for r in scaled_reasons(catalog, group_id)
    )

    # The demand ends: idle again after its period.
    publish(catalog, "sleepy")
    wait_for(lambda: catalog.groups.get("sleepy").status == "Idle", what="Idle again")


def test_a_crash_looping_min_zero_group_is_reported_as_such_not_idle(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    save_image(
        catalog,
        project,
        "crash:latest",
        files={"/app/crash.py": "import sys\nsys.exit(3)\n"},
        entrypoint=(sys.executable, "crash.py"),
        exposed_port=8000,
    )
    group_id = create(
        catalog,
        "broken",
        AutoScalingSpec(min_replicas=0, max_replicas=1, idle_seconds=1),
        image="crash",
    )
    controller()

    wait_for(
        lambda: catalog.groups.get("broken").status == "CrashLoopBackOff",
        what="CrashLoopBackOff",
    )
    seen = set()
    give_up = time.monotonic() + 3.0  # well past the idle period
    while time.monotonic() < give_up:
        group = catalog.groups.get("broken")
        seen.add((group.status, group.desired_replicas))
        time.sleep(0.05)

    assert "Idle" not in {status for status, _ in seen}
    assert {desired for _, desired in seen} == {1}

    # Nor does the autoscaler claim a decision to zero it does not take.
    def reason() -> str:
        return str(catalog.state.autoscaler_state(group_id)[SIGNALS_KEY]["reason"])

    wait_for(lambda: "not ready yet" in reason(), what="the autoscaler's reason")
    assert "1 -> 0" not in reason()
    assert not any("-> 0" in r for r in scaled_reasons(catalog, group_id))


def test_a_real_call_to_an_idle_group_is_held_and_wakes_it(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    model_image(catalog, project)
    floats = pa.schema([("x", pa.float64())])
    catalog.models.register("m", input_schema=floats, output_schema=floats, image="model:latest")
    spec = GroupSpec(
        image="model:latest",
        model=ModelRef("m", 1),
        scaling=AutoScalingSpec(min_replicas=0, max_replicas=2, idle_seconds=1),
    )
    group_id = create_local(catalog, "napper", spec)
    controller()
    wait_for(lambda: catalog.groups.get("napper").status == "Idle", what="Idle")

    with ModelCaller(catalog) as caller:
        asked = time.monotonic()
        answer = caller.call_blocking(feature="t.y", name="model.napper", args=[pa.array([2.0])])
        print(f"a call to an idle group answered after {time.monotonic() - asked:.2f} s")

    assert answer.to_pylist() == [4.0]
    reasons = scaled_reasons(catalog, group_id)
    # Woken by the held call's demand row, or by its last-call time published just before.
    assert any("with no replica: 0 -> 1" in r for r in reasons), reasons
    # Once the caller is gone, the group goes back to zero after its idle period.
    wait_for(lambda: catalog.groups.get("napper").status == "Idle", what="Idle again")
