"""The controller's two kinds of error: a stored spec that cannot run (the group is Failed until
its spec changes) and a temporary one (retried after a back-off); neither stops other groups."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy.exc

from chalk.catalog import Catalog
from chalk.catalog.resources import AutoScalingSpec
from chalk.catalog.specs import GroupSpec, ModelRef
from chalk.common.config import Project
from chalk.deploy.groups import pin_image
from chalk.deploy.local.controller import ControllerSettings, LocalController
from tests.deploy.local.conftest import RunningController, model_image, wait_for

Start = Callable[..., RunningController]
MISSING_DIGEST = "sha256:" + "0" * 64


def model_spec(tag: str = "model:latest") -> GroupSpec:
    return GroupSpec(
        image=tag,
        model=ModelRef("m", 1),
        scaling=AutoScalingSpec(min_replicas=1, max_replicas=1, shutdown_delay_seconds=2),
    )


def status_of(catalog: Catalog, name: str, status: str) -> Any:
    group = catalog.groups.find(name)
    return group if group is not None and group.status == status else None


def test_a_spec_that_cannot_run_fails_its_group_and_the_others_go_on(
    catalog: Catalog, project: Project, controller: Start
) -> None:
    model_image(catalog, project)
    # Written straight into the catalog: no image at all, and an image the store lacks.
    broken = catalog.groups.create("broken", {"scaling": {"min_replicas": 1}}, backend="local")
    ghost_spec = model_spec("ghost:latest").with_changes(image_digest=MISSING_DIGEST)
    catalog.groups.create("ghost", ghost_spec.to_dict(), backend="local")
    controller()
    good = pin_image(catalog, model_spec(), port_given=False)
    catalog.groups.create("doubler", good.to_dict(), backend="local")

    wait_for(lambda: status_of(catalog, "doubler", "Ready"), what="doubler Ready")
    failed = wait_for(lambda: status_of(catalog, "broken", "Failed"), what="broken Failed")
    ghost = wait_for(lambda: status_of(catalog, "ghost", "Failed"), what="ghost Failed")

    assert "stored spec of scaling group 'broken' (revision 1) cannot be read" in failed.reason
    assert "missing 'image'" in failed.reason
    assert f"image {MISSING_DIGEST!r} is not in this project's local image store" in ghost.reason
    assert catalog.state.replicas(broken.id) == []
    # Said once, not on every pass.
    failures = [e for e in catalog.state.events(broken.id) if e.reason == "Failed"]
    assert len(failures) == 1

    # A new revision is tried afresh.
    catalog.groups.update("broken", good.to_dict(), expected_revision=1)
    wait_for(lambda: status_of(catalog, "broken", "Ready"), what="broken Ready once fixed")


def test_a_temporary_error_is_retried_after_a_growing_back_off(
    catalog: Catalog, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_image(catalog, project)
    group = catalog.groups.create(
        "g", pin_image(catalog, model_spec(), port_given=False).to_dict(), backend="local"
    )
    now = [100.0]
    settings = ControllerSettings(
        logs_dir=project.state_dir / "logs", backoff_initial_s=1.0, backoff_max_s=60.0
    )
    controller = LocalController(catalog, settings, monotonic=lambda: now[0])
    tries: list[float] = []
    statuses: list[str] = []

    def locked(reference: str) -> Any:
        tries.append(now[0])
        raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("database is locked"))

    monkeypatch.setattr(catalog.images, "get", locked)

    async def passes() -> None:
        try:
            for at in (100.0, 100.5, 101.0, 102.9, 103.0):
                now[0] = at
                await controller.reconcile_once()
                statuses.append(catalog.groups.get("g").status)
        finally:
            await controller.shutdown()

    asyncio.run(passes())

    assert tries == [100.0, 101.0, 103.0]  # back-offs of 1 s, then 2 s
    assert "Failed" not in statuses
    retrying = [e for e in catalog.state.events(group.id) if e.reason == "Retrying"]
    assert len(retrying) == 1
    assert "database is locked" in retrying[0].message


def test_cancelling_a_pass_is_never_taken_for_a_groups_error(
    catalog: Catalog, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_image(catalog, project)
    catalog.groups.create(
        "g", pin_image(catalog, model_spec(), port_given=False).to_dict(), backend="local"
    )
    controller = LocalController(catalog, ControllerSettings(logs_dir=project.state_dir / "logs"))

    def cancelled(reference: str) -> Any:
        raise asyncio.CancelledError

    monkeypatch.setattr(catalog.images, "get", cancelled)

    async def one_pass() -> None:
        try:
            await controller.reconcile_once()
        finally:
            await controller.shutdown()

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(one_pass())
