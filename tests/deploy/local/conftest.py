"""A local project with hand-made images and a real controller running in a thread."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest

from chalk.catalog import Catalog, open_catalog
from chalk.catalog.records import LocalImage
from chalk.catalog.specs import GroupSpec
from chalk.common.config import Project, load_project
from chalk.deploy.groups import pin_image
from chalk.deploy.local.controller import BACKEND, ControllerSettings, LocalController

MODEL_HANDLER = """
import os
import pyarrow.compute as pc

def handler(event, context):
    return pc.multiply(next(iter(event.values())), int(os.environ.get("FACTOR", "2")))
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    (tmp_path / "chalk.yaml").write_text("project: demo\n")
    monkeypatch.delenv("CHALK_CATALOG_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return load_project(tmp_path / "chalk.yaml")


@pytest.fixture
def catalog(project: Project) -> Catalog:
    return open_catalog(project)


def save_image(
    catalog: Catalog,
    project: Project,
    tag: str,
    *,
    files: Mapping[str, str] | None = None,
    entrypoint: Sequence[str] = (),
    cmd: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    workdir: str = "/app",
    exposed_port: int | None = None,
) -> LocalImage:
    """Put an image straight into the store, as ``chalk image build`` would."""
    files = files or {}
    digest = hashlib.sha256(
        repr((tag, sorted(files.items()), entrypoint, cmd)).encode()
    ).hexdigest()
    rootfs = project.state_dir / "images" / digest / "rootfs"
    for path, text in files.items():
        target = rootfs / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (rootfs / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
    image = LocalImage(
        digest=f"sha256:{digest}",
        snapshot_path=str(rootfs),
        entrypoint=tuple(entrypoint),
        cmd=tuple(cmd),
        env=dict(env or {}),
        workdir=workdir,
        exposed_port=exposed_port,
        created_at=dt.datetime.now(dt.UTC),
    )
    return catalog.images.save(image, [tag])


def server_image(
    catalog: Catalog, project: Project, script: str, tag: str = "server:latest"
) -> LocalImage:
    """``tag``: ``script`` run as ``python server.py 8000`` (a plain TCP server)."""
    return save_image(
        catalog,
        project,
        tag,
        files={"/app/server.py": script},
        entrypoint=(sys.executable, "server.py", "8000"),
        exposed_port=8000,
    )


def create_local(catalog: Catalog, name: str, spec: GroupSpec) -> str:
    """Store the local group ``name`` (its image pinned) as ``chalk scaling-group create``
    would, without starting it; its id."""
    pinned = pin_image(catalog, spec, port_given=False)
    return catalog.groups.create(name, pinned.to_dict(), backend="local").id


def model_image(catalog: Catalog, project: Project, tag: str = "model:latest") -> LocalImage:
    return save_image(
        catalog,
        project,
        tag,
        files={"/app/model.py": MODEL_HANDLER},
        entrypoint=("chalk-remote-call", "--handler", "model.handler", "--port", "8080"),
        exposed_port=8080,
    )


class RunningController:
    """The real controller on its own event loop thread, with test-sized timings."""

    def __init__(self, catalog: Catalog, project: Project, **settings: Any) -> None:
        timings: dict[str, Any] = {
            "pass_interval_s": 0.1,
            "heartbeat_interval_s": 0.5,
            "backoff_initial_s": 0.3,
            "backoff_max_s": 2.0,
            "ready_recheck_s": 1.0,
            "endpoint_drain_s": 0.2,
        }
        timings.update(settings)
        self.controller = LocalController(
            catalog, ControllerSettings(logs_dir=project.state_dir / "logs", **timings)
        )
        self._catalog = catalog
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self.controller.run(self._stop))
        except BaseException as error:
            self.error = error

    def start(self) -> RunningController:
        """Start it and return once it has beaten: a CLI command run next then sees it
        running and starts no daemon beside it (two controllers would fight over replicas)."""
        before = self._catalog.state.controller(BACKEND)
        self._thread.start()
        wait_for(
            lambda: self.error is not None or self._catalog.state.controller(BACKEND) != before,
            what="the controller's first heartbeat",
        )
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=60)
        assert self.error is None, self.error


@pytest.fixture
def controller(catalog: Catalog, project: Project) -> Iterator[Callable[..., RunningController]]:
    started: list[RunningController] = []

    def _start(**settings: Any) -> RunningController:
        # A CLI command run by the test (create, model deploy) sees this controller's
        # heartbeat and starts no detached one beside it (daemon.ensure_running).
        running = RunningController(catalog, project, **settings).start()
        started.append(running)
        return running

    yield _start
    for running in started:
        running.stop()


def wait_for(condition: Callable[[], Any], *, timeout_s: float = 30, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after a while."""
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what or condition}")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
