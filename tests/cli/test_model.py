"""``chalk model register|list|get`` run as the real console script."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CHALK = str(Path(sys.executable).with_name("chalk"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "chalk.yaml").write_text("project: demo\n")
    return tmp_path


def chalk(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
    return subprocess.run(
        [CHALK, *args], cwd=project, capture_output=True, text=True, env=env, check=False
    )


def register(project: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return chalk(
        project,
        "model",
        "register",
        "--name",
        "ner",
        "--image",
        "ner:latest",
        "--input",
        "text=large_string",
        "--input",
        "lang=string",
        "--output",
        "entities=large_string",
        *extra,
    )


def test_register_then_get_as_json(project: Path) -> None:
    registered = register(project, "--alias", "prod", "--metadata", "owner=nlp")

    shown = chalk(project, "model", "get", "--name", "ner", "--version", "prod", "-o", "json")

    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.strip() == "registered ner version 1"
    data = json.loads(shown.stdout)
    assert data["modelVersion"] == 1
    assert [f["name"] for f in data["inputSchema"]] == ["text", "lang"]
    assert data["outputSchema"][0]["type"] == "large_string"
    assert (data["aliases"], data["metadata"]) == (["prod"], {"owner": "nlp"})


def test_list_as_table_and_json(project: Path) -> None:
    register(project)
    register(project)

    table = chalk(project, "model", "list")
    listed = json.loads(chalk(project, "model", "list", "-o", "json").stdout)

    assert table.stdout.splitlines()[0].split()[:3] == ["NAME", "VERSION", "IMAGE"]
    assert len(table.stdout.splitlines()) == 3
    assert [entry["modelVersion"] for entry in listed] == [1, 2]


def test_a_non_deterministic_version_says_so_in_register_get_and_list(project: Path) -> None:
    register(project)
    registered = register(project, "--non-deterministic")

    shown = json.loads(chalk(project, "model", "get", "--name", "ner", "-o", "json").stdout)
    table = chalk(project, "model", "list").stdout.splitlines()

    assert registered.stdout.strip() == "registered ner version 2 (non-deterministic)"
    assert shown["deterministic"] is False
    column = table[0].index("DETERMINISTIC")
    assert [line[column:].split()[0] for line in table[1:]] == ["yes", "no"]


def test_list_as_yaml(project: Path) -> None:
    register(project)

    listed = chalk(project, "model", "list", "-o", "yaml")

    assert "modelName: ner" in listed.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["--input", "text"], 1, "--input takes NAME=VALUE", id="no_type"),
        pytest.param(["--input", "t=strng"], 1, "unknown Arrow type.*'strng'", id="bad_type"),
        pytest.param(["--output", "a=int64", "--output"], 2, "expected one argument", id="usage"),
        pytest.param(["--output", "b=int64"], 1, "expected exactly one", id="two_outputs"),
    ],
)
def test_bad_register_flags(project: Path, args: list[str], code: int, message: str) -> None:
    result = chalk(
        project,
        "model",
        "register",
        "--name",
        "ner",
        "--image",
        "ner:1",
        "--output",
        "e=string",
        "--input",
        "x=int64",
        *args,
    )

    assert result.returncode == code
    assert re.search(message, result.stderr)


def test_get_a_missing_version_fails_with_what_exists(project: Path) -> None:
    register(project)

    result = chalk(project, "model", "get", "--name", "ner", "--version", "4")

    assert result.returncode == 1
    assert "model 'ner' has no version '4': expected one of versions 1" in result.stderr


def test_outside_a_project_the_error_says_how_to_make_one(tmp_path: Path) -> None:
    result = chalk(tmp_path, "model", "list")

    assert result.returncode == 1
    assert "chalk init" in result.stderr
