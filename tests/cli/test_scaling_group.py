"""``chalk scaling-group create|update|list|get|delete`` run as the real console script.

Groups are made through the catalog API, so no test needs a running controller; commands that
would start one find a stand-in holding the controller's lock instead.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from chalk.catalog import Catalog, open_catalog
from chalk.catalog.records import LocalImage, Replica
from chalk.catalog.resources import AutoScalingSpec
from chalk.catalog.specs import GroupSpec
from chalk.common.config import find_project
from chalk.deploy.local import daemon
from chalk.features.graph import ClassDef, FeatureDef, FeatureGraph

CHALK = str(Path(sys.executable).with_name("chalk"))
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "chalk.yaml").write_text("project: demo\n")
    monkeypatch.delenv("CHALK_CATALOG_URL", raising=False)
    return tmp_path


@pytest.fixture
def catalog(project: Path) -> Catalog:
    return open_catalog(find_project(project))


@pytest.fixture
def image(catalog: Catalog, project: Path) -> LocalImage:
    """``ner:latest`` in the local image index, exposing port 8000."""
    built = LocalImage(
        digest=DIGEST,
        snapshot_path=str(project / ".chalk" / "images" / DIGEST / "rootfs"),
        entrypoint=("python", "-m", "server"),
        cmd=(),
        env={},
        workdir="/",
        exposed_port=8000,
        created_at=dt.datetime.now(dt.UTC),
    )
    return catalog.images.save(built, ["ner:latest"])


@pytest.fixture
def controller_stand_in(project: Path) -> Iterator[None]:
    """Hold the project's controller lock, so commands see a controller and start none."""
    with daemon._hold_lock(find_project(project)):
        yield


def chalk(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
    return subprocess.run(
        [CHALK, "scaling-group", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def make_group(catalog: Catalog, name: str = "ner", **fields: Any) -> None:
    spec = GroupSpec(image="ner:latest", image_digest=DIGEST, **fields)
    catalog.groups.create(name, spec.to_dict(), backend="local")


CREATE = ("create", "--name", "ner", "--image", "ner:latest")
SUMMARY_FIELDS = (
    "name",
    "status",
    "image",
    "desiredReplicas",
    "readyReplicas",
    "availableReplicas",
    "url",
    "tags",
)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(
            ["--memory", "4GB"],
            1,
            r"--memory has a unit Kubernetes does not read: expected .*got '4GB'; "
            r"did you mean 4Gi or 4G\?",
            id="memory_unit",
        ),
        pytest.param(["--memory", "0"], 1, r"--memory is zero", id="memory_zero"),
        pytest.param(
            ["--cpu", "2 cores"], 1, r"--cpu is not a Kubernetes quantity: .*'2'\?", id="cpu"
        ),
        pytest.param(["--gpu", "nvidia-tesla-t4"], 1, r"--gpu has no count", id="gpu_no_count"),
        pytest.param(
            ["--replicas", "0"],
            1,
            r"--replicas 0 would run no replica at all: expected --replicas 1 or more; for a "
            r"group that scales to zero when idle give --min-replicas 0 --max-replicas N",
            id="replicas_zero",
        ),
        pytest.param(
            ["--replicas", "x"],
            2,
            r"argument --replicas: expected a whole number, got 'x'",
            id="replicas_x",
        ),
        pytest.param(
            ["--max-replicas", "0"],
            1,
            r"--max-replicas is out of range: expected 1 to 1000 \(.*\), got 0",
            id="max_zero",
        ),
        pytest.param(
            ["--min-replicas", "3", "--max-replicas", "2"],
            1,
            r"--min-replicas is larger than --max-replicas: expected --min-replicas <= "
            r"--max-replicas, got --min-replicas=3, --max-replicas=2",
            id="min_above_max",
        ),
        pytest.param(
            ["--min-replicas", "3"],
            1,
            r"--min-replicas is larger than --max-replicas: .*got --min-replicas=3, "
            r"--max-replicas=1; set --max-replicas=3",
            id="min_above_default_max",
        ),
        pytest.param(
            ["--replicas", "2", "--min-replicas", "1"],
            1,
            r"--replicas 2 sets both --min-replicas and --max-replicas: expected "
            r"--min-replicas 2 or no --min-replicas, got --min-replicas 1",
            id="replicas_and_min",
        ),
        pytest.param(
            ["--replicas", "2", "--max-replicas", "5"],
            1,
            r"--replicas 2 sets both .*got --max-replicas 5",
            id="replicas_and_max",
        ),
        pytest.param(
            ["--target-cpu", "150"],
            1,
            r"--target-cpu is out of range: expected 1 to 100 \(.*\), got 150",
            id="target_cpu",
        ),
        pytest.param(
            ["--port", "70000"],
            1,
            r"--port is out of range: expected 1 to 65535 \(a TCP port\), got 70000",
            id="port_high",
        ),
        pytest.param(["--port", "0"], 1, r"--port is out of range", id="port_zero"),
        pytest.param(
            ["--port", "http"],
            2,
            r"argument --port: expected a whole number, got 'http'",
            id="port_x",
        ),
        pytest.param(
            ["--tags", "bad"],
            1,
            r"--tags entry 'bad' is not key=value: expected e.g. --tags=",
            id="tags_no_value",
        ),
        pytest.param(
            ["--tags", "bad key=x"], 1, r"--tags: tag key 'bad key' does not make", id="tags_key"
        ),
        pytest.param(
            ["--entrypoint", "python,,server"],
            1,
            r"--entrypoint has an empty argument",
            id="entrypoint",
        ),
        pytest.param(["--env", "MODEL"], 1, r"--env 'MODEL' is not KEY=VALUE", id="env_no_value"),
        pytest.param(
            ["--env", "1X=a"],
            1,
            r"--env: environment variable name '1X' is not valid",
            id="env_name",
        ),
        pytest.param(
            ["--name", "My_Model"],
            1,
            r"--name: scaling group name 'My_Model' is not valid",
            id="name",
        ),
        pytest.param(
            ["--image", " "],
            2,
            r"argument --image: .* is not an image reference \(it is empty\)",
            id="image",
        ),
        pytest.param(["--size", "2"], 2, r"unrecognized arguments: --size 2", id="unknown"),
        pytest.param(["-o", "xml"], 2, r"argument -o/--output-format: invalid choice", id="o"),
    ],
)
def test_create_refuses_a_bad_flag_naming_it_before_touching_the_catalog(
    project: Path, args: list[str], code: int, message: str
) -> None:
    # A flag given here replaces CREATE's (a flag given twice is an error of its own).
    replaced = {"--name", "--image"} & set(args)
    base = [w for i, w in enumerate(CREATE) if w not in replaced and CREATE[i - 1] not in replaced]
    result = chalk(project, *base, *args)

    assert result.returncode == code, result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert not (project / ".chalk").exists()


def test_create_requires_name_and_image(project: Path) -> None:
    result = chalk(project, "create", "--name", "ner")

    assert result.returncode == 2
    assert "the following arguments are required: --image" in result.stderr


def test_the_demand_flags_are_stored_in_the_spec(
    project: Path, catalog: Catalog, image: LocalImage
) -> None:
    flags = ("--min-replicas", "0", "--max-replicas", "3", "--queue-depth-target", "2")
    result = chalk(project, *CREATE, *flags, "--idle-seconds", "60", "--dry-run", "-o", "json")

    assert result.returncode == 0, result.stderr
    scaling = json.loads(result.stdout)["spec"]["scaling"]
    assert (scaling["minReplicas"], scaling["maxReplicas"]) == (0, 3)
    assert (scaling["queueDepthTarget"], scaling["idleSeconds"]) == (2, 60)
    assert catalog.groups.find("ner") is None


def test_a_queue_depth_target_of_none_is_no_target_and_a_word_is_refused(
    project: Path, image: LocalImage
) -> None:
    cleared = chalk(project, *CREATE, "--queue-depth-target", "none", "--dry-run", "-o", "json")
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout)["spec"]["scaling"].get("queueDepthTarget") is None

    wrong = chalk(project, *CREATE, "--queue-depth-target", "many", "--dry-run")
    assert wrong.returncode == 2
    assert "--queue-depth-target: expected a whole number or none, got 'many'" in wrong.stderr


def test_dry_run_prints_the_pinned_spec_as_yaml_and_stores_nothing(
    project: Path, catalog: Catalog, image: LocalImage
) -> None:
    result = chalk(
        project,
        *CREATE,
        "--min-replicas",
        "2",
        "--max-replicas",
        "4",
        "--target-cpu",
        "60",
        "--cpu",
        "500m",
        "--memory",
        "512Mi",
        "--tags=team=nlp,tier=gold",
        "--entrypoint=python,-m,server,--port,8000",
        "--env",
        "MODEL=small",
        "--env",
        "THREADS=2",
        "--dry-run",
    )

    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    assert document["name"] == "ner"
    spec = document["spec"]
    assert spec["imageDigest"] == image.digest
    assert spec["scaling"] == {
        "minReplicas": 2,
        "maxReplicas": 4,
        "targetCpuUtilizationPercentage": 60,
        "queueDepthTarget": None,
        "shutdownDelaySeconds": None,
        "windowSeconds": None,
        "idleSeconds": None,
    }
    assert spec["resources"] == {"cpu": "500m", "memory": "512Mi", "gpu": None}
    assert spec["tags"] == {"team": "nlp", "tier": "gold"}
    assert spec["entrypoint"] == ["python", "-m", "server", "--port", "8000"]
    assert spec["env"] == {"MODEL": "small", "THREADS": "2"}
    assert catalog.groups.list(include_deleted=True) == []


def test_dry_run_as_json_takes_the_port_from_the_image(
    project: Path, catalog: Catalog, image: LocalImage
) -> None:
    result = chalk(project, *CREATE, "--replicas", "3", "--dry-run", "-o", "json")

    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)["spec"]
    assert spec["port"] == image.exposed_port
    assert (spec["scaling"]["minReplicas"], spec["scaling"]["maxReplicas"]) == (3, 3)
    assert catalog.groups.list() == []


def test_dry_run_stores_the_batch_max_delay_given(project: Path, image: LocalImage) -> None:
    result = chalk(project, *CREATE, "--batch-max-delay", "5", "--dry-run", "-o", "json")

    assert json.loads(result.stdout)["spec"]["batchMaxDelayMs"] == 5


def test_dry_run_keeps_a_given_port(project: Path, image: LocalImage) -> None:
    result = chalk(project, *CREATE, "--port", "9000", "--dry-run", "-o", "json")

    assert json.loads(result.stdout)["spec"]["port"] == 9000


@pytest.mark.usefixtures("image")
def test_an_image_name_without_a_tag_means_latest(project: Path) -> None:
    result = chalk(project, "create", "--name", "ner", "--image", "ner", "--dry-run", "-o", "json")

    spec = json.loads(result.stdout)["spec"]
    assert (spec["image"], spec["imageDigest"]) == ("ner:latest", DIGEST)


def test_create_of_an_image_not_built_fails_saying_how_to_build_it(project: Path) -> None:
    result = chalk(project, *CREATE, "--dry-run")

    assert result.returncode == 1
    assert "image 'ner:latest' is not in this project's local image store" in result.stderr
    assert "chalk image build" in result.stderr


def test_creating_a_live_name_fails(project: Path, catalog: Catalog) -> None:
    make_group(catalog)

    result = chalk(project, *CREATE)
    dry_run = chalk(project, *CREATE, "--dry-run")

    assert (result.returncode, dry_run.returncode) == (1, 1)
    assert re.search(
        r"error: scaling group 'ner' already exists .*expected a new name", result.stderr
    )
    assert "already exists" in dry_run.stderr
    assert len(catalog.groups.list()) == 1


@pytest.mark.usefixtures("controller_stand_in")
def test_create_stores_the_pinned_spec_once(
    project: Path, catalog: Catalog, image: LocalImage
) -> None:
    created = chalk(project, *CREATE, "--max-replicas", "3", "--tags=team=nlp")
    again = chalk(project, *CREATE)

    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created scaling group 'ner'")
    group = catalog.groups.get("ner")
    assert (group.spec["image_digest"], group.spec["port"], group.tags) == (
        image.digest,
        8000,
        {"team": "nlp"},
    )
    assert again.returncode == 1
    assert "already exists" in again.stderr


@pytest.mark.usefixtures("image", "controller_stand_in")
def test_update_changes_only_the_flags_given(project: Path, catalog: Catalog) -> None:
    make_group(
        catalog,
        scaling=AutoScalingSpec(
            min_replicas=1, max_replicas=4, target_cpu_utilization_percentage=50
        ),
        env={"MODEL": "small"},
        tags={"team": "nlp"},
    )

    result = chalk(
        project,
        "update",
        "--name",
        "ner",
        "--max-replicas",
        "6",
        "--env",
        "THREADS=2",
        "-o",
        "json",
    )

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["revision"] == 2
    spec = GroupSpec.from_dict(catalog.groups.get("ner").spec)
    assert spec.scaling == AutoScalingSpec(
        min_replicas=1, max_replicas=6, target_cpu_utilization_percentage=50
    )
    assert spec.env == {"MODEL": "small", "THREADS": "2"}
    assert spec.tags == {"team": "nlp"}


@pytest.mark.usefixtures("image", "controller_stand_in")
def test_update_without_a_change_stores_nothing(project: Path, catalog: Catalog) -> None:
    make_group(catalog, port=8000)

    result = chalk(project, "update", "--name", "ner")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "scaling group 'ner' is unchanged (revision 1)"
    assert catalog.groups.get("ner").revision == 1


@pytest.mark.usefixtures("image")
def test_update_dry_run_merges_and_stores_nothing(project: Path, catalog: Catalog) -> None:
    make_group(catalog, env={"MODEL": "small"}, tags={"team": "nlp"})

    result = chalk(
        project,
        "update",
        "--name",
        "ner",
        "--replicas",
        "3",
        "--memory",
        "2Gi",
        "--env",
        "THREADS=2",
        "--tags=",
        "--dry-run",
    )

    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    assert document["changed"] is True
    spec = document["spec"]
    assert (spec["scaling"]["minReplicas"], spec["scaling"]["maxReplicas"]) == (3, 3)
    assert spec["resources"]["memory"] == "2Gi"
    assert spec["env"] == {"MODEL": "small", "THREADS": "2"}
    assert spec["tags"] == {}
    stored = catalog.groups.get("ner")
    assert (stored.revision, stored.tags) == (1, {"team": "nlp"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--max-replicas", "1"],
            r"--min-replicas is larger than --max-replicas: .*got --min-replicas=2, "
            r"--max-replicas=1",
            id="max_below_current_min",
        ),
        pytest.param(["--memory", "4GB"], r"--memory has a unit", id="memory"),
        pytest.param(["--replicas", "0"], r"--replicas 0 would run no replica", id="replicas_zero"),
        pytest.param(
            ["--batch-max-delay", "-1"],
            r"--batch-max-delay is out of range: expected 0 ms to 10000 ms .*got -1 ms",
            id="batch_max_delay",
        ),
    ],
)
def test_update_refuses_a_bad_flag_naming_it(
    project: Path, catalog: Catalog, args: list[str], message: str
) -> None:
    make_group(catalog, scaling=AutoScalingSpec(min_replicas=2, max_replicas=3))

    result = chalk(project, "update", "--name", "ner", *args)

    assert result.returncode == 1
    assert re.search(message, result.stderr), result.stderr
    assert catalog.groups.get("ner").revision == 1


def test_update_checks_its_flags_before_looking_for_the_group(project: Path) -> None:
    result = chalk(project, "update", "--name", "ner", "--cpu", "-1")

    assert result.returncode == 1
    assert "--cpu is negative" in result.stderr
    assert not (project / ".chalk").exists()


def test_update_of_a_missing_group_fails(project: Path, catalog: Catalog) -> None:
    make_group(catalog, name="ner")

    result = chalk(project, "update", "--name", "nre", "--replicas", "2")

    assert result.returncode == 1
    assert "there is no scaling group named 'nre' (did you mean 'ner'?)" in result.stderr


def test_a_group_whose_controller_stopped_is_unknown_not_ready(
    project: Path, catalog: Catalog
) -> None:
    make_group(catalog, name="ner")
    ner = catalog.groups.get("ner")
    catalog.groups.report(ner.id, status="Ready", desired=1, ready=1, available=1)

    listed = json.loads(chalk(project, "list", "-o", "json").stdout)

    assert listed[0]["status"] == "Unknown"
    assert (
        "the local controller is not running (chalk up); it last reported Ready"
        in (listed[0]["reason"])
    )


def test_list_as_table_and_json(project: Path, catalog: Catalog) -> None:
    make_group(catalog, name="ner", tags={"team": "nlp"})
    make_group(catalog, name="sentiment")
    ner = catalog.groups.get("ner")
    catalog.groups.report(
        ner.id, status="Running", desired=2, ready=1, available=1, url="http://127.0.0.1:9100"
    )
    # What the controller reports stands while it heartbeats.
    catalog.state.heartbeat("local", pid=os.getpid(), host="test")

    table = chalk(project, "list")
    listed = json.loads(chalk(project, "list", "-o", "json").stdout)

    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "IMAGE", "STATUS", "READY/DESIRED", "URL", "CREATED"]
    assert lines[1].split()[:6] == [
        ner.id,
        "ner",
        "ner:latest",
        "Running",
        "1/2",
        "http://127.0.0.1:9100",
    ]
    assert len(lines) == 3
    assert [entry["name"] for entry in listed] == ["ner", "sentiment"]
    assert listed[0]["tags"] == {"team": "nlp"}
    assert (listed[0]["readyReplicas"], listed[0]["desiredReplicas"]) == (1, 2)
    assert listed[1]["status"] == "Pending"


def test_list_of_no_groups_is_an_empty_array(project: Path) -> None:
    result = chalk(project, "list", "-o", "json")

    assert (result.returncode, json.loads(result.stdout)) == (0, [])


def test_get_as_json_has_status_counts_replicas_and_events(project: Path, catalog: Catalog) -> None:
    make_group(catalog, tags={"team": "nlp"})
    group = catalog.groups.get("ner")
    catalog.groups.report(
        group.id, status="Running", desired=2, ready=1, available=1, url="http://127.0.0.1:9100"
    )
    catalog.state.save_replica(
        Replica(group.id, "ner-0", 1, "Running", ready=True, port=7001, restarts=2)
    )
    catalog.state.add_event(group.id, type="Normal", reason="Started", message="ner-0 started")
    catalog.state.heartbeat("local", pid=os.getpid(), host="test")

    result = chalk(project, "get", "--name", "ner", "-o", "json")

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert {key: document[key] for key in SUMMARY_FIELDS} == {
        "name": "ner",
        "status": "Running",
        "image": "ner:latest",
        "desiredReplicas": 2,
        "readyReplicas": 1,
        "availableReplicas": 1,
        "url": "http://127.0.0.1:9100",
        "tags": {"team": "nlp"},
    }
    assert dt.datetime.fromisoformat(document["createdAt"]) == group.created_at
    assert [(r["replica"], r["restarts"], r["port"]) for r in document["replicas"]] == [
        ("ner-0", 2, 7001)
    ]
    assert [e["reason"] for e in document["events"]] == ["Started"]


def test_get_as_a_table_shows_spec_replicas_and_events(project: Path, catalog: Catalog) -> None:
    make_group(
        catalog,
        scaling=AutoScalingSpec(min_replicas=1, max_replicas=3),
        tags={"team": "nlp"},
        entrypoint=("python", "-m", "server"),
    )
    group = catalog.groups.get("ner")
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    catalog.state.save_replica(
        Replica(
            group.id,
            "ner-0",
            1,
            "CrashLoopBackOff",
            port=7001,
            restarts=3,
            last_exit_reason="exit code 1\nTraceback ...",
            started_at=started,
        )
    )
    catalog.state.add_event(group.id, type="Warning", reason="BackOff", message="ner-0 crashed")

    result = chalk(project, "get", "--name", "ner")

    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert re.search(r"^Name:\s+ner$", text, re.MULTILINE)
    assert re.search(r"^Replicas:\s+0 desired.*min 1, max 3, target CPU 80%", text, re.MULTILINE)
    assert re.search(r"^Tags:\s+team=nlp$", text, re.MULTILINE)
    assert re.search(r"^Entrypoint:\s+python,-m,server$", text, re.MULTILINE)
    columns = (
        r"REPLICA\s+STATE\s+READY\s+RESTARTS\s+PORT\s+METRICS\s+CPU\s+MEMORY\s+IN FLIGHT\s+AGE"
    )
    assert re.search(columns + r"\s+LAST EXIT REASON", text)
    row = r"ner-0\s+CrashLoopBackOff\s+no\s+3\s+7001\s+-\s+-\s+-\s+-\s+5m\s+exit code 1\s*$"
    assert re.search(row, text, re.M)
    assert re.search(r"TIME\s+TYPE\s+REASON\s+MESSAGE", text)
    assert re.search(r"Warning\s+BackOff\s+ner-0 crashed", text)


def test_get_of_a_missing_group_suggests_a_close_name(project: Path, catalog: Catalog) -> None:
    make_group(catalog)

    result = chalk(project, "get", "--name", "nr")

    assert result.returncode == 1
    assert "error: there is no scaling group named 'nr' (did you mean 'ner'?)" in result.stderr


@pytest.mark.usefixtures("controller_stand_in")
def test_delete_soft_deletes_and_frees_the_name(project: Path, catalog: Catalog) -> None:
    make_group(catalog)

    deleted = chalk(project, "delete", "--name", "ner", "-o", "json")
    shown = chalk(project, "get", "--name", "ner")

    assert deleted.returncode == 0, deleted.stderr
    document = json.loads(deleted.stdout)
    assert (document["status"], document["readyReplicas"]) == ("Deleted", 0)
    assert document["deletedAt"] is not None
    assert catalog.groups.list() == []
    assert catalog.groups.find_deleted("ner") is not None
    assert shown.returncode == 1
    assert "scaling group 'ner' was deleted at" in shown.stderr


def test_delete_of_a_missing_group_fails(project: Path) -> None:
    result = chalk(project, "delete", "--name", "ner")

    assert result.returncode == 1
    assert "there is no scaling group named 'ner'" in result.stderr


def test_outside_a_project_the_error_says_how_to_make_one(tmp_path: Path) -> None:
    result = chalk(tmp_path, "list")

    assert result.returncode == 1
    assert "chalk init" in result.stderr


def apply_graph_calling(catalog: Catalog, group: str, *fqns: str) -> None:
    """Store an applied graph whose features ``doc.<name>`` call ``model.<group>``."""
    features = [FeatureDef("doc", "text", pa.large_string())] + [
        FeatureDef(
            "doc",
            fqn.split(".")[1],
            pa.large_string(),
            expression=f'catalog_call("model.{group}", _.text)',
        )
        for fqn in fqns
    ]
    graph = FeatureGraph.from_classes([ClassDef("Doc", "doc", tuple(features))])
    catalog.graphs.apply(graph.to_json())


@pytest.mark.usefixtures("controller_stand_in")
def test_delete_of_a_group_applied_features_call_needs_force(
    project: Path, catalog: Catalog
) -> None:
    make_group(catalog)
    apply_graph_calling(catalog, "ner", "doc.tags", "doc.entities")

    refused = chalk(project, "delete", "--name", "ner")
    forced = chalk(project, "delete", "--name", "ner", "--force")

    assert refused.returncode == 1
    assert refused.stderr == (
        "error: scaling group 'ner' is called by the applied features doc.entities, doc.tags: "
        "deleting it would make their queries fail: expected a group no applied feature calls; "
        "remove those calls and run `chalk apply` first, or pass --force to delete it anyway\n"
    )
    assert forced.returncode == 0, forced.stderr
    assert catalog.groups.list() == []


def test_delete_with_no_controller_running_starts_none(project: Path, catalog: Catalog) -> None:
    make_group(catalog)
    apply_graph_calling(catalog, "other", "doc.tags")

    deleted = chalk(project, "delete", "--name", "ner")

    assert deleted.returncode == 0, deleted.stderr
    assert "The local controller is not running" in deleted.stdout
    assert daemon.controller_pid(find_project(project)) is None
    assert catalog.groups.find_deleted("ner") is not None


def test_status_says_unknown_as_list_and_get_do_when_the_controller_is_gone(
    project: Path, catalog: Catalog
) -> None:
    make_group(catalog)
    ner = catalog.groups.get("ner")
    catalog.groups.report(ner.id, status="Ready", desired=2, ready=2, available=2)

    status = subprocess.run(
        [CHALK, "status", "-o", "json"], cwd=project, capture_output=True, text=True, check=True
    )
    listed = json.loads(chalk(project, "list", "-o", "json").stdout)
    shown = json.loads(chalk(project, "get", "--name", "ner", "-o", "json").stdout)
    table = subprocess.run(
        [CHALK, "status"], cwd=project, capture_output=True, text=True, check=True
    )

    document = json.loads(status.stdout)
    assert document["controller"]["running"] is False
    assert [g["status"] for g in document["groups"]] == ["Unknown"]
    assert listed[0]["status"] == shown["status"] == "Unknown"
    assert document["groups"][0]["reason"] == listed[0]["reason"]
    assert table.stdout.startswith("local controller: not running")
    assert re.search(r"^ner\s+Unknown\s+2/2\s", table.stdout, re.MULTILINE)
