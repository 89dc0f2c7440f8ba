"""``chalk up|down|status`` in a ``backend: kubernetes`` project: nothing runs locally, and
``status`` names the cluster's namespace instead of a local controller."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.support.cli import run_chalk


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``backend: kubernetes`` project with no cluster (no group asks it anything)."""
    config = {"project": "demo", "backend": "kubernetes", "kubernetes": {"namespace": "ml"}}
    (tmp_path / "chalk.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("CHALK_CATALOG_URL", raising=False)
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "verb"),
    [(["up", "--detach"], "start"), (["up"], "start"), (["down"], "stop")],
    ids=["up-detach", "up", "down"],
)
def test_up_and_down_refuse_a_kubernetes_project(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], verb: str
) -> None:
    code, out, err = run_chalk(capsys, *argv)
    assert (code, out) == (1, "")
    assert err == (
        f"error: {project / 'chalk.yaml'}: this project runs on Kubernetes (backend: "
        f"kubernetes, namespace ml): there is no local controller to {verb}; its scaling "
        f"groups run in the cluster (`chalk status` shows them)\n"
    )
    assert not (project / ".chalk").exists()


def test_status_names_the_namespace_not_a_local_controller(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_chalk(capsys, "status")
    assert (code, out, err) == (0, "backend: Kubernetes (namespace ml); no local controller\n", "")
    code, out, _err = run_chalk(capsys, "status", "-o", "json")
    assert code == 0
    assert json.loads(out) == {"kubernetes": {"namespace": "ml"}, "groups": []}
