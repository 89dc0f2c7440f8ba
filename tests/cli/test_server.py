"""``chalk server deploy`` without a cluster: what ``--dry-run`` prints, and bad input as one
line naming its flag, before any cluster is asked (the cluster tests live in
tests/deploy/kubernetes/test_server.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cli import run_chalk

IMAGE = "ghcr.io/acme/features:1"
CATALOG_URL = "postgresql://chalk:pw@db.infra:5432/chalk"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``backend: kubernetes`` project whose kubeconfig names no cluster at all."""
    config = {
        "project": "demo",
        "backend": "kubernetes",
        "kubernetes": {"namespace": "ml"},
        "catalog_url": CATALOG_URL,
    }
    (tmp_path / "chalk.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("CHALK_CATALOG_URL", raising=False)
    return tmp_path


def _by_kind(text: str) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in yaml.safe_load_all(text)}


def test_dry_run_prints_the_objects_with_the_secret_hidden(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--min-replicas", "2", "--max-replicas", "5", "--cpu", "1", "--memory", "2Gi"]
    code, out, err = run_chalk(capsys, "server", "deploy", "--image", IMAGE, *flags, "--dry-run")
    assert (code, err) == (0, "")
    objects = _by_kind(out)
    assert list(objects) == ["Secret", "Deployment", "Service", "HorizontalPodAutoscaler"]
    assert objects["Secret"]["data"] == {"catalog-url": "<hidden>", "token": "<hidden>"}
    assert "pw@" not in out
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "chalk-server"
    assert objects["Deployment"]["metadata"]["namespace"] == "ml"


def test_dry_run_with_an_existing_secret_writes_none(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["server", "deploy", "--image", IMAGE, "--existing-secret", "mine", "--dry-run"]
    code, out, _err = run_chalk(capsys, *argv, "-o", "json")
    assert code == 0
    objects = {obj["kind"]: obj for obj in yaml.safe_load(out)["items"]}
    assert list(objects) == ["Deployment", "Service"]
    volume = objects["Deployment"]["spec"]["template"]["spec"]["volumes"][0]
    assert volume["secret"]["secretName"] == "mine"


def test_dry_run_passes_the_deadline_and_hold_timeout_to_chalk_serve(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--deadline", "120", "--hold-timeout", "90", "--dry-run"]
    code, out, err = run_chalk(capsys, "server", "deploy", "--image", IMAGE, *flags)
    assert (code, err) == (0, "")
    (container,) = _by_kind(out)["Deployment"]["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["chalk", "serve"]
    assert command[command.index("--deadline") + 1] == "120"
    assert command[command.index("--hold-timeout") + 1] == "90"
    code, out, err = run_chalk(capsys, "server", "deploy", "--image", IMAGE, "--dry-run")
    (container,) = _by_kind(out)["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert "--deadline" not in container["command"]
    assert "--hold-timeout" not in container["command"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--image", "Acme/Features:1"], "--image 'Acme/Features:1' is not an image reference"),
        (["--image", "ghcr.io/acme/f eatures:1"], "is not an image reference"),
        (
            ["--image", IMAGE, "--min-replicas", "3", "--max-replicas", "2"],
            "--min-replicas is larger than --max-replicas",
        ),
        (["--image", IMAGE, "--replicas", "0"], "--replicas"),
        (["--image", IMAGE, "--replicas", "2", "--min-replicas", "3"], "--replicas 2 sets both"),
        (["--image", IMAGE, "--cpu", "lots"], "--cpu"),
        (["--image", IMAGE, "--memory", "4GB"], "--memory"),
        (["--image", IMAGE, "--workers", "0"], "--workers is out of range: expected 1 to 256"),
        (["--image", IMAGE, "--deadline", "0"], "--deadline is out of range"),
        (["--image", IMAGE, "--hold-timeout", "-1"], "--hold-timeout is out of range"),
        (["--image", IMAGE, "--name", "Chalk_Server"], "--name 'Chalk_Server' is not valid"),
        (
            ["--image", IMAGE, "--existing-secret", "mine", "--catalog-url", CATALOG_URL],
            "--existing-secret and --catalog-url",
        ),
        (
            ["--image", IMAGE, "--catalog-url", "sqlite:///tmp/catalog.db"],
            "cannot read a SQLite catalog",
        ),
        (["--image", IMAGE, "--token-file", "/no/such/token"], "--token-file /no/such/token"),
        (["--image", IMAGE, "--catalog-url", "notaurl"], "'notaurl' is not a database URL"),
        (["--image", IMAGE, "--catalog-url", "mysql://u@h/db"], "'mysql://u@h/db' is not supp"),
        (["--image", IMAGE, "--catalog-url", "http://db:5432"], "'http://db:5432' is not supp"),
        (["--image", IMAGE, "--catalog-url", ""], "the catalog URL is empty"),
    ],
    ids=[
        "uppercase-image",
        "space-in-image",
        "min-above-max",
        "zero-replicas",
        "replicas-and-min",
        "bad-cpu",
        "bad-memory",
        "no-workers",
        "no-deadline",
        "negative-hold",
        "bad-name",
        "secret-and-url",
        "sqlite-catalog",
        "missing-token-file",
        "catalog-not-a-url",
        "catalog-mysql",
        "catalog-http",
        "catalog-empty",
    ],
)
def test_bad_input_is_one_line_naming_the_flag(
    project: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    code, out, err = run_chalk(capsys, "server", "deploy", *flags, "--dry-run")
    assert (code, out) == (1, "")
    assert err.startswith("error: ")
    assert err.count("\n") == 1
    assert message in err


def test_a_local_project_is_pointed_to_chalk_serve(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "chalk.yaml").write_text("project: demo\n")
    code, _out, err = run_chalk(capsys, "server", "get")
    assert code == 1
    assert "expected 'backend: kubernetes'" in err
    assert "chalk serve" in err


def test_a_missing_kubeconfig_is_named_without_a_context_nobody_set(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_chalk(capsys, "server", "get")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert f"no kubeconfig at {project / 'no-kubeconfig'} (KUBECONFIG)" in err
    assert "set KUBECONFIG" in err
    assert "context" not in err


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("garbage: [", "not YAML: expected the node content"),
        ("[]", "not a kubeconfig (expected a mapping with clusters, contexts and users); fix"),
        ("apiVersion: v1\nkind: Config\n", "expected a kubeconfig with a current-context"),
    ],
    ids=["not-yaml", "a-list", "no-context"],
)
@pytest.mark.parametrize(
    "argv",
    [
        ["server", "get"],
        ["scaling-group", "create", "--name", "ner", "--image", "registry.example.com/ner:1"],
    ],
    ids=["server-get", "group-create"],
)
def test_a_malformed_kubeconfig_is_one_line_naming_it(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    problem: str,
    argv: list[str],
) -> None:
    monkeypatch.setenv("CHALK_CATALOG_URL", f"sqlite:///{project / 'catalog.db'}")
    (project / "no-kubeconfig").write_text(text)
    code, out, err = run_chalk(capsys, *argv)
    assert (code, out) == (1, "")
    assert err.startswith(f"error: {project / 'chalk.yaml'}: cannot load the kubeconfig ")
    assert err.count("\n") == 1
    assert str(project / "no-kubeconfig") in err
    assert problem in err


def test_an_unreachable_api_server_is_one_line_naming_it_and_the_cause(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    (project / "no-kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    code, out, err = run_chalk(capsys, "server", "get")
    assert (code, out) == (1, "")
    assert err == (
        "error: cannot reach the Kubernetes API server at http://127.0.0.1:1: connection refused\n"
    )
