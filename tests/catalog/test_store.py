"""open_catalog, migrations, resolve and the backends' runtime state."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from chalk.catalog import Catalog, Endpoint, open_catalog
from chalk.catalog.errors import (
    BadCallNameError,
    CatalogError,
    ControllerDownError,
    DeletedGroupError,
    NoModelError,
    SchemaVersionError,
    UnknownGroupError,
)
from chalk.catalog.records import Replica
from chalk.catalog.schema import SCHEMA_VERSION, migrate, model_versions, schema_version
from chalk.catalog.state import EVENTS_KEPT_AFTER_DELETE

TEXT = pa.schema([("text", pa.large_string())])


class FakeClock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def catalog(catalog_url: str, clock: FakeClock) -> Catalog:
    return open_catalog(catalog_url, clock=clock)


def _serving_group(catalog: Catalog, name: str = "ner", backend: str = "local", **spec: Any) -> str:
    catalog.models.register("ner-model", input_schema=TEXT, output_schema=TEXT, image="ner:1")
    group = catalog.groups.create(
        name,
        {"image": "ner:1", "port": 8080, "model": {"name": "ner-model", "version": 1}, **spec},
        backend=backend,
    )
    catalog.groups.report(
        group.id,
        status="Ready",
        desired=1,
        ready=1,
        available=1,
        endpoints=[Endpoint("127.0.0.1:7001")],
    )
    return group.id


def test_resolve_gives_schemas_port_and_endpoints(catalog: Catalog) -> None:
    _serving_group(catalog)
    catalog.state.heartbeat("local", pid=1, host="laptop")

    route = catalog.resolve("model.ner")

    assert (route.group, route.model_name, route.model_version, route.port) == (
        "ner",
        "ner-model",
        1,
        8080,
    )
    assert route.input_schema.equals(TEXT)
    assert route.endpoints == (Endpoint("127.0.0.1:7001"),)
    assert route.batch_max_delay_s is None


def test_resolve_gives_the_groups_batch_max_delay_in_seconds(catalog: Catalog) -> None:
    _serving_group(catalog, batch_max_delay_ms=5)
    catalog.state.heartbeat("local", pid=1, host="laptop")

    assert catalog.resolve("model.ner").batch_max_delay_s == 0.005


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("ner", id="no_prefix"),
        pytest.param("models.ner", id="wrong_prefix"),
        pytest.param("model.NER", id="uppercase"),
        pytest.param("model.", id="empty"),
    ],
)
def test_resolve_refuses_a_malformed_name(catalog: Catalog, name: str) -> None:
    with pytest.raises(BadCallNameError, match=r"expected a name of the form 'model\.<scaling"):
        catalog.resolve(name)


def test_resolve_unknown_group(catalog: Catalog) -> None:
    with pytest.raises(UnknownGroupError, match="there is no scaling group named 'ner'"):
        catalog.resolve("model.ner")


def test_resolve_deleted_group(catalog: Catalog) -> None:
    _serving_group(catalog)
    catalog.groups.delete("ner")

    with pytest.raises(DeletedGroupError, match="scaling group 'ner' was deleted at 2026-01-01"):
        catalog.resolve("model.ner")


def test_resolve_group_without_model(catalog: Catalog) -> None:
    catalog.groups.create("web", {"image": "nginx"}, backend="local")

    with pytest.raises(NoModelError, match="hosts no model version"):
        catalog.resolve("model.web")


def test_a_group_without_a_ready_replica_routes_nowhere_and_says_why(catalog: Catalog) -> None:
    group_id = _serving_group(catalog)
    catalog.state.heartbeat("local", pid=1, host="laptop")
    catalog.groups.report(
        group_id,
        status="CrashLoopBackOff",
        reason="replica r1 exit code 1 (2 restarts)",
        desired=1,
        ready=0,
        available=0,
        endpoints=[],
    )

    route = catalog.resolve("model.ner")

    assert route.endpoints == ()
    assert (route.status, route.reason) == (
        "CrashLoopBackOff",
        "replica r1 exit code 1 (2 restarts)",
    )
    assert (route.starting, route.backend, route.model_name) == (1, "local", "ner-model")


def test_a_serving_group_routes_with_its_status(catalog: Catalog) -> None:
    _serving_group(catalog)
    catalog.state.heartbeat("local", pid=1, host="laptop")

    route = catalog.resolve("model.ner")

    assert route.endpoints
    assert route.starting == 0


def test_local_endpoints_need_a_fresh_controller_heartbeat(
    catalog: Catalog, clock: FakeClock
) -> None:
    _serving_group(catalog)
    with pytest.raises(ControllerDownError, match=r"local controller is not running \(chalk up\)"):
        catalog.resolve("model.ner")

    catalog.state.heartbeat("local", pid=1, host="laptop")
    clock.advance(9.5)
    assert catalog.resolve("model.ner").endpoints

    clock.advance(1.0)
    with pytest.raises(ControllerDownError):
        catalog.resolve("model.ner")


def test_kubernetes_endpoints_need_no_heartbeat(catalog: Catalog) -> None:
    _serving_group(catalog, backend="kubernetes")

    assert catalog.resolve("model.ner").endpoints == (Endpoint("127.0.0.1:7001"),)


def _model_row(name: str, metadata: dict[str, str]) -> sa.Insert:
    """A model_versions row written straight to the table, as an older scalegroup would."""
    return sa.insert(model_versions).values(
        model_name=name,
        version=1,
        image=f"{name}:1",
        input_schema=TEXT.serialize().to_pybytes(),
        output_schema=TEXT.serialize().to_pybytes(),
        metadata=metadata,
        created_at=dt.datetime.now(dt.UTC),
    )


def _write_half_then_fail(catalog: Catalog) -> None:
    with catalog.write() as connection:
        connection.execute(_model_row("half", {}))
        raise RuntimeError("boom")


def test_a_failed_write_leaves_nothing_behind(catalog: Catalog) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        _write_half_then_fail(catalog)

    assert catalog.models.list() == []


def test_an_empty_database_is_migrated_to_the_current_schema(catalog_url: str) -> None:
    catalog = open_catalog(catalog_url)

    with catalog.read() as connection:
        assert schema_version(connection) == SCHEMA_VERSION
        tables = set(sa.inspect(connection).get_table_names())
    assert {"model_versions", "scaling_groups", "replicas", "events", "images"} <= tables


def test_a_version_1_catalog_is_migrated_and_keeps_its_data(catalog_url: str) -> None:
    engine = sa.create_engine(catalog_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        migrate(connection, location="test", target=1)
        connection.execute(_model_row("old", {"from": "v1"}))
        assert not sa.inspect(connection).has_table("replicas")
    engine.dispose()

    catalog = open_catalog(catalog_url)

    assert catalog.models.get("old").metadata == {"from": "v1"}
    with catalog.read() as connection:
        assert schema_version(connection) == SCHEMA_VERSION
        assert sa.inspect(connection).has_table("replicas")


def test_a_version_2_catalog_gains_the_deterministic_flag_set_for_its_versions(
    catalog_url: str,
) -> None:
    engine = sa.create_engine(catalog_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        migrate(connection, location="test", target=2)
        # Step 1 creates model_versions as it is now; the release of version 2 had no column.
        connection.execute(sa.text("ALTER TABLE model_versions DROP COLUMN deterministic"))
        connection.execute(_model_row("old", {}))
    engine.dispose()

    catalog = open_catalog(catalog_url)
    catalog.models.register(
        "dice", input_schema=TEXT, output_schema=TEXT, image="dice:1", deterministic=False
    )

    assert catalog.models.get("old").deterministic is True
    assert catalog.models.get("dice").deterministic is False
    with catalog.read() as connection:
        assert schema_version(connection) == SCHEMA_VERSION


def test_resolve_tells_whether_the_model_version_is_deterministic(catalog: Catalog) -> None:
    for name, deterministic in (("ner", True), ("dice", False)):
        version = catalog.models.register(
            name, input_schema=TEXT, output_schema=TEXT, image="x", deterministic=deterministic
        )
        model = {"name": version.model_name, "version": version.model_version}
        group = catalog.groups.create(name, {"image": "x", "model": model}, backend="kubernetes")
        catalog.groups.report(
            group.id, status="Ready", desired=1, ready=1, available=1, endpoints=[Endpoint("a:1")]
        )

    assert catalog.resolve("model.ner").deterministic is True
    assert catalog.resolve("model.dice").deterministic is False


def test_resolve_names_the_registration_of_its_model_version(catalog: Catalog) -> None:
    registered = catalog.models.register(
        "ner", input_schema=TEXT, output_schema=TEXT, image="ner:1", metadata={"weights": "a"}
    )
    model = {"name": "ner", "version": 1}
    group = catalog.groups.create("ner", {"image": "x", "model": model}, backend="kubernetes")
    catalog.groups.report(
        group.id, status="Ready", desired=1, ready=1, available=1, endpoints=[Endpoint("a:1")]
    )

    digest = catalog.resolve("model.ner").version_digest

    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    assert digest == registered.digest == catalog.models.get("ner", 1).digest
    assert replace(registered, aliases=("prod",)).digest == digest
    # The same name and version registered anew (another catalog, or this one deleted): a
    # later time, another image or other weights.
    later = registered.created_at + dt.timedelta(microseconds=1)
    assert replace(registered, created_at=later).digest != digest
    assert replace(registered, image="ner:2").digest != digest
    assert replace(registered, metadata={"weights": "b"}).digest != digest


def test_a_newer_catalog_is_refused(catalog_url: str) -> None:
    engine = sa.create_engine(catalog_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        migrate(connection, location="test")
        connection.execute(sa.text("UPDATE catalog_meta SET value = '99'"))
    engine.dispose()

    with pytest.raises(SchemaVersionError, match=r"schema version 99, newer.*upgrade scalegroup"):
        open_catalog(catalog_url)


def test_replica_rows_upsert_and_remove(catalog: Catalog) -> None:
    group_id = _serving_group(catalog)
    replica = Replica(group_id=group_id, replica_id="r1", revision=1, state="Starting", pid=42)

    catalog.state.save_replica(replica)
    catalog.state.save_replica(
        Replica(group_id=group_id, replica_id="r1", revision=1, state="Running", ready=True)
    )
    catalog.state.save_replica(Replica(group_id=group_id, replica_id="r2", revision=1, state="x"))

    rows = catalog.state.replicas(group_id)
    assert [(r.replica_id, r.state, r.ready) for r in rows] == [
        ("r1", "Running", True),
        ("r2", "x", False),
    ]
    catalog.state.remove_replica(group_id, "r2")
    assert [r.replica_id for r in catalog.state.replicas(group_id)] == ["r1"]


def test_events_are_kept_newest_first_within_a_bound(catalog: Catalog, clock: FakeClock) -> None:
    group_id = _serving_group(catalog)
    for index in range(205):
        clock.advance(1)
        catalog.state.add_event(group_id, type="Normal", reason="Scaled", message=f"#{index}")

    latest = catalog.state.events(group_id, limit=3)

    assert [e.message for e in latest] == ["#202", "#203", "#204"]
    assert len(catalog.state.events(group_id, limit=1000)) == 200


def test_events_of_a_group_deleted_over_a_day_ago_are_forgotten(
    catalog: Catalog, clock: FakeClock
) -> None:
    long_gone = _serving_group(catalog, "old")
    catalog.state.add_event(long_gone, type="Normal", reason="Started", message="old")
    catalog.groups.delete("old")
    clock.advance(EVENTS_KEPT_AFTER_DELETE.total_seconds() + 1)
    just_gone = _serving_group(catalog, "recent")
    catalog.state.add_event(just_gone, type="Normal", reason="Started", message="recent")
    catalog.groups.delete("recent")
    live = _serving_group(catalog, "live")

    catalog.state.add_event(live, type="Normal", reason="Started", message="live")

    assert catalog.state.events(long_gone) == []
    assert [e.message for e in catalog.state.events(just_gone)] == ["recent"]
    assert [e.message for e in catalog.state.events(live)] == ["live"]


def test_autoscaler_state_round_trips(catalog: Catalog) -> None:
    group_id = _serving_group(catalog)
    assert catalog.state.autoscaler_state(group_id) == {}

    catalog.state.save_autoscaler_state(group_id, {"recommendations": [[1.0, 2]]})
    catalog.state.save_autoscaler_state(group_id, {"recommendations": [[2.0, 3]]})

    assert catalog.state.autoscaler_state(group_id) == {"recommendations": [[2.0, 3]]}


def test_a_deleted_group_keeps_no_autoscaler_state(catalog: Catalog) -> None:
    group_id = _serving_group(catalog)
    catalog.state.save_autoscaler_state(group_id, {"recommendations": [[1.0, 2]]})

    catalog.groups.delete("ner")
    # A controller pass that read the group before the delete saves after it.
    catalog.state.save_autoscaler_state(group_id, {"recommendations": [[2.0, 3]]})

    assert catalog.state.autoscaler_state(group_id) == {}


def test_heartbeat_tracks_the_running_controller(catalog: Catalog, clock: FakeClock) -> None:
    catalog.state.heartbeat("local", pid=10, host="laptop")
    clock.advance(5)
    catalog.state.heartbeat("local", pid=10, host="laptop")
    first = catalog.state.controller("local")
    catalog.state.heartbeat("local", pid=11, host="laptop")
    second = catalog.state.controller("local")

    assert first is not None
    assert second is not None
    assert (first.heartbeat_at - first.started_at).total_seconds() == 5
    assert (second.pid, second.started_at) == (11, clock.now)
    catalog.state.clear_controller("local")
    assert catalog.state.controller("local") is None


def test_processes_opening_a_new_catalog_at_once_all_succeed(catalog_url: str) -> None:
    script = textwrap.dedent(
        f"""
        from chalk.catalog import open_catalog
        open_catalog({catalog_url!r}).models.list()
        """
    )

    workers = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(6)]

    assert [worker.wait(timeout=120) for worker in workers] == [0] * 6


def test_concurrent_graph_applies_keep_one_active_graph(catalog_url: str) -> None:
    open_catalog(catalog_url)
    script = textwrap.dedent(
        f"""
        from chalk.catalog import open_catalog
        catalog = open_catalog({catalog_url!r})
        for index in range(10):
            catalog.graphs.apply({{"n": index}})
            catalog.graphs.activate(1)
        """
    )

    workers = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(3)]

    assert [worker.wait(timeout=120) for worker in workers] == [0, 0, 0]
    graphs = open_catalog(catalog_url).graphs.list()
    assert [g.version for g in graphs] == list(range(1, 31))
    assert sum(g.active for g in graphs) == 1


def test_an_unsupported_catalog_url_is_a_clear_error() -> None:
    with pytest.raises(CatalogError, match=r"'mysql://u@h/db' is not supported: expected sqlite"):
        open_catalog("mysql://u@h/db")


def test_an_in_memory_catalog_serves_several_threads() -> None:
    catalog = open_catalog("sqlite://")
    errors: list[BaseException] = []

    def register_many(worker: int) -> None:
        try:
            for _ in range(25):
                catalog.models.register(
                    f"threads-{worker}", input_schema=TEXT, output_schema=TEXT, image="i"
                )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=register_many, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert all(len(catalog.models.list(f"threads-{n}")) == 25 for n in range(4))
