"""A call held for an ``Idle`` group whose model's ``on_startup`` outlasts the hold timeout
fails with ``ModelUnavailableError``: a replica is routable only once its runtime reports
SERVING, which it does after ``on_startup`` returned."""

from __future__ import annotations

import pyarrow as pa
import pytest

from chalk.catalog import Catalog
from chalk.common.config import Project
from chalk.deploy.local.lock import controller_pid
from chalk.engine.calls import ModelCaller
from chalk.engine.errors import ModelUnavailableError
from tests.deploy.local.conftest import wait_for
from tests.deploy.local.test_demand import Start
from tests.deploy.local.test_idle_start import MIN_ZERO, event_reasons, run, slow_model


def test_a_hold_shorter_than_on_startup_fails_and_the_replica_serves_after_it(
    catalog: Catalog, project: Project, controller: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    slow_model(catalog, project)
    controller()
    deploy = ["model", "deploy", "--name", "slowpoke", "--model", "m", "--version", "1"]
    run([*deploy, *MIN_ZERO], capsys)
    # The CLI started no second controller beside the test's own.
    assert controller_pid(project) is None
    group_id = catalog.groups.get("slowpoke").id
    wait_for(lambda: catalog.groups.get("slowpoke").status == "Idle", what="Idle")
    wait_for(lambda: not catalog.state.replicas(group_id), what="its replica gone")
    woken_from = len(event_reasons(catalog, group_id))

    with (
        ModelCaller(catalog, hold_timeout_s=0.5) as caller,
        pytest.raises(ModelUnavailableError, match=r"within the hold bound of 0\.5 s"),
    ):
        caller.call_blocking(feature="t.y", name="model.slowpoke", args=[pa.array([2.0])])

    # The call woke one replica; it becomes ready once on_startup returned, and a call held
    # long enough is answered (by it, or by one woken again if it went idle meanwhile).
    wait_for(lambda: catalog.groups.get("slowpoke").ready_replicas == 1, what="ready")
    assert event_reasons(catalog, group_id)[woken_from:].count("Started") == 1
    with ModelCaller(catalog) as caller:
        answer = caller.call_blocking(feature="t.y", name="model.slowpoke", args=[pa.array([2.0])])
    assert answer.to_pylist() == [4.0]
