"""``chalk init``: the layout it writes, that each file works, and that it never overwrites."""

from __future__ import annotations

import argparse
import doctest
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from chalk.cli import init
from chalk.common.config import load_project

LAYOUT = [
    "chalk.yaml",
    ".chalkignore",
    "features/__init__.py",
    "models/Dockerfile",
    "models/model.py",
    "models/requirements.txt",
    "models/deploy_model.py",
]


def _chalk_init(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="chalk")
    init.register(parser.add_subparsers())
    args = parser.parse_args(["init", *argv])
    code: int = args.run(args)
    return code


def _import(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "fraud"
    assert _chalk_init(str(root)) == 0
    return root


def test_init_lays_out_the_project_and_prints_each_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "fraud"

    code = _chalk_init(str(root))

    out = capsys.readouterr().out
    assert code == 0
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == sorted(
        LAYOUT
    )
    assert f"Created project 'fraud' in {root.resolve()}" in out
    assert [line.strip() for line in out.splitlines() if line.startswith("  ")][:7] == LAYOUT


def test_init_makes_a_missing_directory_and_its_parents(tmp_path: Path) -> None:
    root = tmp_path / "work" / "teams" / "fraud"

    assert _chalk_init(str(root)) == 0
    assert (root / "chalk.yaml").is_file()


def test_chalk_yaml_lists_online_store_commented(tmp_path: Path) -> None:
    assert _chalk_init(str(tmp_path / "fraud")) == 0

    lines = (tmp_path / "fraud" / "chalk.yaml").read_text().splitlines()

    assert any(line.startswith("# online_store: redis://") for line in lines)
    assert load_project(tmp_path / "fraud" / "chalk.yaml").config.online_store is None


def test_init_defaults_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert _chalk_init() == 0
    assert load_project(tmp_path / "chalk.yaml").root == tmp_path.resolve()


@pytest.mark.parametrize(
    ("directory", "name"),
    [
        pytest.param("fraud", "fraud", id="plain"),
        pytest.param("Fraud Scoring_v2", "fraud-scoring-v2", id="normalised"),
        pytest.param("2024", "2024", id="digits_stay_a_string"),
        pytest.param("true", "true", id="a_yaml_boolean_word"),
        pytest.param("___", "chalk-project", id="nothing_usable"),
    ],
)
def test_chalk_yaml_loads_and_names_the_project_after_its_directory(
    tmp_path: Path, directory: str, name: str
) -> None:
    assert _chalk_init(str(tmp_path / directory)) == 0

    project = load_project(tmp_path / directory / "chalk.yaml")

    assert project.config.project == name
    assert (project.config.environment, project.config.backend) == ("dev", "local")


def test_chalkignore_keeps_model_code_out_of_apply(project: Path) -> None:
    assert (project / ".chalkignore").read_text() == "models/\n"


@pytest.mark.parametrize(
    "path",
    ["features/__init__.py", "models/model.py", "models/deploy_model.py"],
    ids=["features", "model", "deploy_model"],
)
def test_generated_python_compiles(project: Path, path: str) -> None:
    source = (project / path).read_text()

    compile(source, str(project / path), "exec")


def test_the_model_handler_tags_each_row(project: Path) -> None:
    model = _import(project / "models" / "model.py", "generated_model")

    result = model.handler(
        {"text": pa.array(["Ada Lovelace wrote in London", None, "nothing here"])},
        {"function_name": "ner", "peer": "ipv4:127.0.0.1:1", "metadata": {}},
    )

    assert result.type == pa.large_string()
    rows = result.to_pylist()
    assert rows[1] is None
    assert json.loads(rows[2]) == {"entities": []}
    assert json.loads(rows[0])["entities"] == [
        {"text": "Ada", "label": "PERSON", "start": 0, "end": 3},
        {"text": "Lovelace", "label": "PERSON", "start": 4, "end": 12},
        {"text": "London", "label": "LOC", "start": 22, "end": 28},
    ]


def test_the_model_handler_examples_run(project: Path) -> None:
    model = _import(project / "models" / "model.py", "generated_model_doc")

    results = doctest.testmod(model)

    assert (results.attempted, results.failed) == (3, 0)


def test_the_dockerfile_serves_the_handler_on_its_exposed_port(project: Path) -> None:
    lines = (project / "models" / "Dockerfile").read_text().splitlines()
    entrypoint = json.loads(next(x for x in lines if x.startswith("ENTRYPOINT ")).split(" ", 1)[1])

    assert "EXPOSE 8080" in lines
    assert entrypoint == ["chalk-remote-call", "--handler", "model.handler", "--port", "8080"]
    assert "COPY model.py /app/model.py" in lines
    assert "RUN pip install --no-cache-dir -r /app/requirements.txt" in lines


def test_requirements_name_the_runtime_and_pyarrow(project: Path) -> None:
    lines = (project / "models" / "requirements.txt").read_text().splitlines()
    packages = [line.split(">=")[0] for line in lines if line and not line.startswith("#")]

    assert packages == ["pyarrow", "chalk-remote-call-python"]


def _module(name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def _fake_chalk(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Stand-ins for chalk.client and chalk.scaling that record how they are called."""
    calls: list[tuple[str, dict[str, Any]]] = []

    class ChalkClient:
        def __init__(self) -> None:
            calls.append(("ChalkClient", {}))

        def register_model_version(self, **kwargs: Any) -> Any:
            calls.append(("register_model_version", kwargs))
            return types.SimpleNamespace(model_name=kwargs["name"], model_version=4)

        def deploy_model_version_to_scaling_group(self, **kwargs: Any) -> None:
            calls.append(("deploy_model_version_to_scaling_group", kwargs))

    def spec(kind: str) -> Any:
        return lambda **kwargs: (kind, kwargs)

    monkeypatch.setitem(
        sys.modules, "chalk.client", _module("chalk.client", ChalkClient=ChalkClient)
    )
    monkeypatch.setitem(
        sys.modules,
        "chalk.scaling",
        _module(
            "chalk.scaling",
            AutoScalingSpec=spec("AutoScalingSpec"),
            ScalingGroupResourceRequest=spec("Resources"),
        ),
    )
    return calls


def test_deploy_model_registers_then_deploys_and_does_nothing_at_import(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = _fake_chalk(monkeypatch)

    script = _import(project / "models" / "deploy_model.py", "generated_deploy_model")
    assert calls == []
    script.main()

    assert [name for name, _ in calls] == [
        "ChalkClient",
        "register_model_version",
        "deploy_model_version_to_scaling_group",
    ]
    assert calls[1][1] == {
        "name": "ner",
        "input_schema": {"text": pa.large_string()},
        "output_schema": {"entities": pa.large_string()},
        "model_image": "ner:latest",
    }
    assert calls[2][1] == {
        "name": "ner",
        "model_name": "ner",
        "model_version": 4,
        "scaling": (
            "AutoScalingSpec",
            {"min_replicas": 1, "max_replicas": 3, "target_cpu_utilization_percentage": 70},
        ),
        "resources": ("Resources", {"cpu": "1", "memory": "1Gi"}),
    }
    assert 'F.catalog_call("model.ner", ...)' in capsys.readouterr().out


def test_init_refuses_to_overwrite_a_chalk_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "chalk.yaml").write_text("project: mine\n")

    code = _chalk_init(str(tmp_path))

    err = capsys.readouterr().err
    assert code == 1
    assert f"{tmp_path.resolve() / 'chalk.yaml'} already exists" in err
    assert (tmp_path / "chalk.yaml").read_text() == "project: mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chalk.yaml"]


def test_init_keeps_files_already_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.py").write_text("# my own model\n")

    code = _chalk_init(str(tmp_path))

    out = capsys.readouterr().out
    assert code == 0
    assert (tmp_path / "models" / "model.py").read_text() == "# my own model\n"
    assert out.index("left as they were") < out.index("models/model.py")
    assert (tmp_path / "models" / "deploy_model.py").is_file()


def test_init_into_a_file_fails_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("")

    assert _chalk_init(str(target)) == 1
    assert f"{target.resolve()} is a file" in capsys.readouterr().err
