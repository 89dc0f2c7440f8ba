"""``chalk image build|list`` run as the real console script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CHALK = str(Path(sys.executable).with_name("chalk"))

DOCKERFILE = """\
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONPATH=/app
COPY requirements.txt /app/requirements.txt
RUN pip install --no-cache-dir -r /app/requirements.txt
COPY model.py /app/model.py
USER nobody
EXPOSE 8080
ENTRYPOINT ["chalk-remote-call", "--handler", "model.handler", "--port", "8080"]
"""
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "chalk.yaml").write_text("project: demo\n")
    context = tmp_path / "models"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "requirements.txt").write_text("pyarrow\n")
    (context / "model.py").write_text("def handler(event, context):\n    return 1\n")
    return tmp_path


def chalk(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
    return subprocess.run(
        [CHALK, *args], cwd=project, capture_output=True, text=True, env=env, check=False
    )


def test_build_prints_each_step_and_the_digest(project: Path) -> None:
    built = chalk(project, "image", "build", "models", "-t", "ner")

    assert built.returncode == 0, built.stderr
    lines = built.stdout.splitlines()
    assert lines[0] == (
        "line 1: FROM python:3.11-slim -> not used: the project's Python runs the image"
    )
    assert "line 4: COPY requirements.txt /app/requirements.txt -> copied 1 file" in lines
    assert any(
        line.startswith("line 5: RUN pip install") and "not executed" in line for line in lines
    )
    assert any(line.startswith("line 7: USER nobody -> not honoured: ") for line in lines)
    assert re.fullmatch(r"built sha256:[0-9a-f]{64} tagged ner:latest", lines[-1])
    digest = DIGEST.search(lines[-1])
    assert digest is not None
    rootfs = project / ".chalk" / "images" / digest[0].removeprefix("sha256:") / "rootfs"
    assert (rootfs / "app" / "model.py").is_file()


def test_list_shows_the_built_images(project: Path) -> None:
    chalk(project, "image", "build", "models", "-t", "ner", "-t", "ner:v1")

    table = chalk(project, "image", "list")
    listed = json.loads(chalk(project, "image", "list", "-o", "json").stdout)

    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == ["TAGS", "DIGEST", "COMMAND", "PORT", "CREATED"]
    assert row.startswith("ner:latest, ner:v1  sha256:")
    assert "chalk-remote-call --handler model.handler --port 8080" in row
    assert [image["tags"] for image in listed] == [["ner:latest", "ner:v1"]]
    assert listed[0]["entrypoint"][0] == "chalk-remote-call"
    assert (listed[0]["env"], listed[0]["workdir"], listed[0]["port"]) == (
        {"PYTHONPATH": "/app"},
        "/app",
        8080,
    )


def test_list_as_yaml(project: Path) -> None:
    chalk(project, "image", "build", "models", "-t", "ner")

    listed = chalk(project, "image", "list", "-o", "yaml")

    assert "- ner:latest" in listed.stdout
    assert "exposedPort: 8080" in listed.stdout


def test_rebuilding_a_tag_moves_it_to_the_new_digest(project: Path) -> None:
    first = chalk(project, "image", "build", "models", "-t", "ner")
    again = chalk(project, "image", "build", "models", "-t", "ner")
    (project / "models" / "model.py").write_text("def handler(event, context):\n    return 2\n")
    moved = chalk(project, "image", "build", "models", "-t", "ner")

    old = DIGEST.search(first.stdout.splitlines()[-1])
    new = DIGEST.search(moved.stdout.splitlines()[-1])
    assert old is not None
    assert new is not None
    assert old[0] != new[0]
    assert again.stdout.splitlines()[-1] == f"built {old[0]} tagged ner:latest (unchanged)"
    assert moved.stdout.splitlines()[-1] == (
        f"built {new[0]} tagged ner:latest (moved from {old[0][:19]})"
    )
    listed = json.loads(chalk(project, "image", "list", "-o", "json").stdout)
    tags = {image["digest"]: image["tags"] for image in listed}
    assert tags == {new[0]: ["ner:latest"], old[0]: []}


def test_build_with_another_dockerfile(project: Path) -> None:
    (project / "serve.Dockerfile").write_text('FROM x\nCMD ["python", "-m", "serve"]\n')

    built = chalk(project, "image", "build", "models", "-f", "serve.Dockerfile", "-t", "serve")

    assert built.returncode == 0, built.stderr
    listed = json.loads(chalk(project, "image", "list", "-o", "json").stdout)
    assert listed[0]["cmd"] == ["python", "-m", "serve"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["nowhere", "-t", "ner"], r"error: build context 'nowhere' is not a folder", id="dir"
        ),
        pytest.param(["models", "-t", "Ner"], r"error: image tag 'Ner' is not valid", id="tag"),
        pytest.param(
            ["models", "-f", "missing.Dockerfile"],
            r"error: Dockerfile 'missing.Dockerfile' not found",
            id="dockerfile",
        ),
    ],
)
def test_build_errors_exit_1(project: Path, args: list[str], message: str) -> None:
    failed = chalk(project, "image", "build", *args)

    assert failed.returncode == 1
    assert re.match(message, failed.stderr)
    assert not (project / ".chalk" / "images").exists() or not any(
        (project / ".chalk" / "images").iterdir()
    )


@pytest.mark.parametrize("text", ["", "\n# only a comment\n\n"], ids=["empty", "comments_only"])
def test_an_empty_dockerfile_is_refused_at_build(project: Path, text: str) -> None:
    (project / "models" / "Dockerfile").write_text(text)

    failed = chalk(project, "image", "build", "models", "-t", "ner")

    assert failed.returncode == 1
    assert re.match(r"error: \S*models/Dockerfile has no instructions: expected", failed.stderr)
    assert json.loads(chalk(project, "image", "list", "-o", "json").stdout) == []


def test_a_missing_copy_source_names_the_dockerfile_line(project: Path) -> None:
    (project / "models" / "model.py").unlink()

    failed = chalk(project, "image", "build", "models", "-t", "ner")

    assert failed.returncode == 1
    assert re.search(r"models/Dockerfile:6: COPY source 'model.py' is not in", failed.stderr)
    assert list((project / ".chalk" / "images").iterdir()) == []
    assert json.loads(chalk(project, "image", "list", "-o", "json").stdout) == []


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["image"], id="no_subcommand"),
        pytest.param(["image", "build"], id="no_dir"),
        pytest.param(["image", "list", "-o", "xml"], id="bad_format"),
    ],
)
def test_usage_errors_exit_2(project: Path, args: list[str]) -> None:
    assert chalk(project, *args).returncode == 2
