"""What `scaling-group create|update` say about scaling they store: flags left without effect
get a note, a change of only the scaling keeps the replicas, and --wait is there."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from chalk.catalog import Catalog
from chalk.catalog.resources import AutoScalingSpec
from chalk.cli.spec_flags import SpecFlags, note_unused_scaling_flags
from chalk.common.config import Project, ProjectConfig
from tests.cli import test_scaling_group as groups
from tests.cli.test_scaling_group import CHALK, CREATE, chalk, make_group

# That module's fixtures, used here as they are.
project = groups.project
catalog = groups.catalog
image = groups.image
controller_stand_in = groups.controller_stand_in


@pytest.mark.usefixtures("image", "controller_stand_in")
@pytest.mark.parametrize(
    ("flags", "note"),
    [
        (
            ("--idle-seconds", "10"),
            "note: scaling group 'ner': --idle-seconds 10 has no effect while its minimum is 1 "
            "(only a group with --min-replicas 0 goes idle); stored for when it is",
        ),
        (
            ("--replicas", "2", "--queue-depth-target", "2"),
            "note: scaling group 'ner': --queue-depth-target 2 has no effect while it runs a "
            "fixed count (--min-replicas 2 --max-replicas 2); give a --max-replicas above the "
            "minimum to scale on it; stored for when it does",
        ),
    ],
    ids=["idle-without-min-zero", "queue-depth-without-autoscaling"],
)
def test_a_scaling_flag_without_effect_gets_a_note_and_is_stored(
    project: Path, catalog: Catalog, flags: tuple[str, ...], note: str
) -> None:
    created = chalk(project, *CREATE, *flags)

    assert created.returncode == 0, created.stderr
    assert created.stderr.strip() == note
    assert catalog.groups.get("ner").spec["scaling"]


@pytest.mark.usefixtures("image", "controller_stand_in")
def test_flags_that_take_effect_get_no_note(project: Path) -> None:
    flags = ("--min-replicas", "0", "--max-replicas", "3", "--queue-depth-target", "2")
    created = chalk(project, *CREATE, *flags, "--idle-seconds", "60")

    assert created.returncode == 0, created.stderr
    assert created.stderr == ""


@pytest.mark.usefixtures("image", "controller_stand_in")
def test_an_update_of_only_the_scaling_says_the_replicas_are_kept(
    project: Path, catalog: Catalog
) -> None:
    make_group(catalog, scaling=AutoScalingSpec(min_replicas=1, max_replicas=2), port=8000)

    scaled = chalk(project, "update", "--name", "ner", "--min-replicas", "0", "--idle-seconds", "5")
    rolled = chalk(project, "update", "--name", "ner", "--env", "A=1")

    assert scaled.returncode == 0, scaled.stderr
    assert scaled.stdout.rstrip().endswith(
        "its replicas are kept (only the scaling or the tags changed)"
    )
    assert "roll" not in scaled.stdout
    assert scaled.stderr == ""
    assert rolled.returncode == 0, rolled.stderr
    assert rolled.stdout.rstrip().endswith("its replicas roll to it")


@pytest.mark.parametrize("command", ["create", "update"])
def test_create_and_update_offer_wait(project: Path, command: str) -> None:
    shown = subprocess.run(
        [CHALK, "scaling-group", command, "--help"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )

    assert shown.returncode == 0, shown.stderr
    assert "--wait" in shown.stdout
    assert "return once the group serves" in " ".join(shown.stdout.split())


def test_on_kubernetes_without_prometheus_a_kept_queue_depth_target_gets_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ProjectConfig(project="demo", backend="kubernetes")
    kube = Project(tmp_path, tmp_path / "chalk.yaml", config)
    scaling = AutoScalingSpec(min_replicas=1, max_replicas=3, queue_depth_target=4)
    none_given = SpecFlags(None, None, {}, {}, {}, {}, None, None)
    note_unused_scaling_flags(none_given, scaling, "ner", project=kube)
    assert capsys.readouterr().err == (
        f"note: scaling group 'ner': its queue depth target 4 stays unused: on Kubernetes KEDA "
        f"reads demand from Prometheus, and {tmp_path / 'chalk.yaml'} sets no "
        f"kubernetes.prometheus_url, so it scales on CPU alone; set the key, or clear the "
        f"target with --queue-depth-target none\n"
    )
