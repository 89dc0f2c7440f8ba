"""Local resources: memory limits (OOMKilled), GPUs by count, and autoscaling on real load."""

from __future__ import annotations

import asyncio
import re
import stat
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
import pyarrow as pa

from chalk.catalog import Catalog
from chalk.catalog.resources import AutoScalingSpec, ScalingGroupResourceRequest
from chalk.catalog.specs import GroupSpec, ModelRef
from chalk.common.config import Project
from chalk.shim import RemoteCallClient
from tests.deploy.local.conftest import RunningController, create_local, save_image, wait_for
from tests.deploy.local.conftest import server_image as save_server_image

Start = Callable[..., RunningController]

# A TCP server that holds a given amount of memory, and burns CPU while a file exists.
SERVER = r"""
import os, socket, sys, threading, time
hold = bytearray(int(os.environ.get("HOLD_MB", "0")) * 2**20)
for i in range(0, len(hold), 4096):
    hold[i] = 1
burn = os.environ.get("BURN_WHILE")
def spin():
    while True:
        if burn and os.path.exists(burn):
            sum(range(10000))
        else:
            time.sleep(0.05)
threading.Thread(target=spin, daemon=True).start()
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    server.accept()[0].close()
"""


def server_image(catalog: Catalog, project: Project) -> None:
    save_server_image(catalog, project, SERVER)


def test_a_replica_over_its_memory_limit_is_killed_as_oomkilled(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    server_image(catalog, project)
    group_id = create_local(
        catalog,
        "hog",
        GroupSpec(
            image="server:latest",
            env={"HOLD_MB": "200"},
            resources=ScalingGroupResourceRequest(memory="64Mi"),
        ),
    )
    running = controller()

    replica = wait_for(
        lambda: next(
            (r for r in catalog.state.replicas(group_id) if "OOMKilled" in r.last_exit_reason),
            None,
        ),
        what="an OOMKilled replica",
    )

    assert "over the limit of 64Mi" in replica.last_exit_reason
    assert any(e.reason == "OOMKilled" for e in catalog.state.events(group_id))
    registry = running.controller.metrics.registry
    assert registry.get_sample_value("chalk_controller_oom_kills_total", {"group": "hog"}) >= 1


def fake_nvidia_smi(directory: Path, gpus: int) -> str:
    lines = "\n".join(
        f'echo "GPU {i}: NVIDIA A100-SXM4-40GB (UUID: GPU-{i:08d}-aaaa)"' for i in range(gpus)
    )
    script = directory / "nvidia-smi"
    script.write_text(f'#!/bin/sh\n[ "$1" = -L ] || exit 2\n{lines}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(directory)


def test_a_group_asking_for_more_gpus_than_exist_stays_pending(
    catalog: Catalog, project: Project, controller: Start, tmp_path: Path
) -> None:
    server_image(catalog, project)
    create_local(
        catalog,
        "big",
        GroupSpec(image="server:latest", resources=ScalingGroupResourceRequest(gpu="t4:2")),
    )
    controller(nvidia_smi_path=fake_nvidia_smi(tmp_path, 1))

    group = wait_for(
        lambda: (g := catalog.groups.find("big")) and "asked for" in g.reason and g,
        what="Pending with a reason",
    )

    assert group.status == "Pending"
    assert "asked for 2 GPUs" in group.reason
    assert "this machine has 1 (NVIDIA A100-SXM4-40GB)" in group.reason
    assert catalog.state.replicas(group.id) == []


def test_gpus_are_granted_by_count_through_cuda_visible_devices(
    catalog: Catalog, project: Project, controller: Start, tmp_path: Path
) -> None:
    server_image(catalog, project)
    two = AutoScalingSpec(min_replicas=2, max_replicas=2, shutdown_delay_seconds=1)
    gpu_id = create_local(
        catalog,
        "gpu",
        GroupSpec(
            image="server:latest", scaling=two, resources=ScalingGroupResourceRequest(gpu="1")
        ),
    )
    cpu_id = create_local(catalog, "cpu", GroupSpec(image="server:latest"))
    controller(nvidia_smi_path=fake_nvidia_smi(tmp_path, 4))

    def visible(group_id: str, count: int) -> list[str] | None:
        rows = [r for r in catalog.state.replicas(group_id) if r.ready and r.pid]
        if len(rows) != count:
            return None
        return sorted(psutil.Process(r.pid).environ()["CUDA_VISIBLE_DEVICES"] for r in rows)

    assert wait_for(lambda: visible(gpu_id, 2), what="2 GPU replicas") == ["0", "1"]
    assert wait_for(lambda: visible(cpu_id, 1), what="the CPU replica") == [""]


def test_cpu_load_scales_up_and_an_idle_group_scales_back_down(
    catalog: Catalog, project: Project, controller: Start, tmp_path: Path
) -> None:
    server_image(catalog, project)
    burn = tmp_path / "burn"
    burn.touch()
    spec = GroupSpec(
        image="server:latest",
        env={"BURN_WHILE": str(burn)},
        scaling=AutoScalingSpec(
            min_replicas=1,
            max_replicas=3,
            target_cpu_utilization_percentage=50,
            window_seconds=2,
            shutdown_delay_seconds=1,
        ),
        resources=ScalingGroupResourceRequest(cpu="200m"),
    )
    group_id = create_local(catalog, "busy", spec)
    controller()

    wait_for(
        lambda: catalog.groups.get("busy").desired_replicas >= 2, timeout_s=60, what="scale-up"
    )
    burn.unlink()
    wait_for(
        lambda: (g := catalog.groups.get("busy")).desired_replicas == 1 and g.ready_replicas == 1,
        timeout_s=60,
        what="scale-down after the window",
    )
    reasons = [e.message for e in catalog.state.events(group_id, limit=200) if e.reason == "Scaled"]
    assert any("cpu" in reason and "-> " in reason for reason in reasons)


SLOW_MODEL = """
import time

def handler(event, context):
    time.sleep(4)
    return next(iter(event.values()))
"""


def slow_model_image(catalog: Catalog, project: Project) -> None:
    save_image(
        catalog,
        project,
        "slow:latest",
        files={"/app/model.py": SLOW_MODEL},
        entrypoint=("chalk-remote-call", "--handler", "model.handler", "--port", "8080"),
        exposed_port=8080,
    )


def in_flight_scale_ups(catalog: Catalog, group_id: str) -> list[tuple[int, int]]:
    """(from, to) of each scale-up made while more than one call per replica was in flight."""
    found = []
    for event in catalog.state.events(group_id, limit=200):
        match = re.search(r"in-flight ([\d.]+) per replica .*: (\d+) -> (\d+)", event.message)
        if event.reason == "Scaled" and match and float(match[1]) > 1:
            before, after = int(match[2]), int(match[3])
            if after > before:
                found.append((before, after))
    return found


def test_in_flight_calls_scale_a_slow_model_up(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    slow_model_image(catalog, project)
    spec = GroupSpec(
        image="slow:latest",
        model=ModelRef("slow", 1),
        scaling=AutoScalingSpec(
            min_replicas=1, max_replicas=3, queue_depth_target=1, shutdown_delay_seconds=6
        ),
    )
    group_id = create_local(catalog, "slow", spec)
    running = controller()
    endpoints = wait_for(
        lambda: (g := catalog.groups.get("slow")).status == "Ready" and g.endpoints,
        what="the first replica",
    )

    async def four_calls() -> None:
        async with RemoteCallClient() as client:
            target = endpoints[0].target
            await asyncio.gather(
                *(client.call(target, {"x": pa.array([i])}, name="slow") for i in range(4))
            )

    calling = threading.Thread(target=asyncio.run, args=(four_calls(),))
    calling.start()
    try:
        wait_for(
            lambda: catalog.groups.get("slow").desired_replicas == 3, what="in-flight scale-up"
        )
    finally:
        calling.join(timeout=30)

    # The calls scaled it, not the replica's CPU-heavy start (which counts for nothing).
    scale_ups = in_flight_scale_ups(catalog, group_id)
    assert scale_ups, "no scale-up while calls were in flight"
    assert scale_ups[-1][1] == 3
    registry = running.controller.metrics.registry
    decisions = [
        registry.get_sample_value(
            "chalk_controller_scaling_decisions_total",
            {"group": "slow", "direction": "up", "reason": reason},
        )
        for reason in ("queue_depth", "cpu+queue_depth")
    ]
    assert sum(count or 0 for count in decisions) >= 1


def in_flight(catalog: Catalog, name: str) -> float:
    """The in-flight calls our runtime reports for the group's only replica."""
    [row] = catalog.state.replicas(catalog.groups.get(name).id)
    assert row.metrics_port is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{row.metrics_port}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("chalk_remote_call_in_flight "):
                return float(line.split()[1])
    return 0.0


def test_delete_lets_an_in_flight_call_finish(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    slow_model_image(catalog, project)
    spec = GroupSpec(
        image="slow:latest",
        model=ModelRef("slow", 1),
        scaling=AutoScalingSpec(shutdown_delay_seconds=10),
    )
    create_local(catalog, "slow", spec)
    controller()
    [endpoint] = wait_for(
        lambda: (g := catalog.groups.get("slow")).status == "Ready" and g.endpoints,
        what="the replica",
    )
    outcome: dict[str, object] = {}

    async def one_call() -> None:
        async with RemoteCallClient() as client:
            outcome["result"] = await client.call(endpoint.target, {"x": pa.array([7])}, name="s")

    calling = threading.Thread(target=asyncio.run, args=(one_call(),))
    calling.start()
    wait_for(lambda: in_flight(catalog, "slow") == 1, what="the call in flight")
    catalog.groups.delete("slow")
    calling.join(timeout=30)

    assert outcome["result"].to_pylist() == [7]  # type: ignore[attr-defined]
