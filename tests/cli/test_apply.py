"""``chalk apply``: in this process through ``chalk.cli.main`` (imports undone after each run)
and as the real console script, against a project's SQLite catalog. Scaling groups are catalog
records hosting a model version; no replica runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pytest

from chalk.catalog import Catalog, open_catalog
from chalk.cli import main
from tests.catalog.conftest import _forget_engine
from tests.support.projects import PLAIN_DOCUMENT, imports_undone, write_files

CHALK = str(Path(sys.executable).with_name("chalk"))

DOCUMENT = PLAIN_DOCUMENT.replace(
    "shout: str", 'entities: str = F.catalog_call("model.ner", _.text)\n        shout: str'
)

REGISTER_AND_CATCH = """
    import pyarrow as pa
    from chalk.client import ChalkClient

    client = ChalkClient()
    try:
        client.register_model_version(
            "ner", {"text": pa.large_string()}, {"entities": pa.large_string()}, "ner:latest"
        )
    except Exception:
        pass  # the user's code swallows the refusal; apply fails all the same
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path.resolve() / "proj"
    root.mkdir()
    (root / "chalk.yaml").write_text("project: demo\n")
    monkeypatch.delenv("CHALK_CATALOG_URL", raising=False)
    monkeypatch.chdir(root)
    yield root
    _forget_engine(catalog_url(root))


def catalog_url(root: Path) -> str:
    return f"sqlite:///{root}/.chalk/catalog.db"


def catalog_of(root: Path) -> Catalog:
    return open_catalog(catalog_url(root))


def host_ner(root: Path) -> Catalog:
    """Model ``ner`` (text -> entities) version 1, hosted by scaling group ``ner``."""
    catalog = catalog_of(root)
    schema_in = pa.schema({"text": pa.large_string()})
    schema_out = pa.schema({"entities": pa.large_string()})
    catalog.models.register("ner", input_schema=schema_in, output_schema=schema_out, image="n:1")
    spec = {"image": "n:1", "model": {"name": "ner", "version": 1}}
    catalog.groups.create("ner", spec, backend="local")
    return catalog


Apply = Callable[..., tuple[int, str, str]]


@pytest.fixture
def apply(capsys: pytest.CaptureFixture[str], project: Path) -> Apply:
    """``chalk apply ARGS`` in this process: exit code, stdout, stderr."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with imports_undone(project), pytest.raises(SystemExit) as done:
            main(["apply", *args])
        captured = capsys.readouterr()
        return int(done.value.code or 0), captured.out, captured.err

    return run


def chalk(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``chalk`` console script."""
    env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
    return subprocess.run(
        [CHALK, *args], cwd=cwd, capture_output=True, text=True, env=env, check=False
    )


def line_of(path: Path, text: str) -> int:
    [line] = [n for n, row in enumerate(path.read_text().splitlines(), 1) if text in row]
    return line


def test_the_first_apply_adds_every_feature_and_stores_version_1(
    project: Path, apply: Apply
) -> None:
    host_ner(project)
    write_files(project, {"features/documents.py": DOCUMENT})

    code, out, err = apply()

    assert (code, err) == (0, "")
    source = project / "features/documents.py"
    assert out.splitlines() == [
        "Plan against the feature graph (nothing applied yet):",
        f'  + document.entities  large_string catalog_call("model.ner", _.text)  '
        f"(features/documents.py:{line_of(source, 'entities:')})",
        f"  + document.id  int64 primary key  (features/documents.py:{line_of(source, 'id:')})",
        f"  + document.shout  large_string upper(_.text)  "
        f"(features/documents.py:{line_of(source, 'shout:')})",
        f"  + document.text  large_string input  "
        f"(features/documents.py:{line_of(source, 'text:')})",
        "4 to add, 0 to remove, 0 to change, 0 unchanged.",
        "Stored feature graph version 1; it is now active.",
    ]
    active = catalog_of(project).graphs.active()
    assert active is not None
    assert active.version == 1
    assert [c["name"] for c in active.graph["classes"]] == ["Document"]


def test_the_plan_shows_added_removed_and_changed_features(project: Path, apply: Apply) -> None:
    host_ner(project)
    write_files(project, {"features/documents.py": DOCUMENT})
    assert apply()[0] == 0
    changed = """
        from chalk import functions as F
        from chalk.features import _, features


        @features
        class Document:
            id: int
            text: str
            lang: str
            words: int = F.length(_.text)
            entities: str = F.catalog_call("model.ner", _.text)
            shout: str = F.lower(_.text)
    """
    write_files(project, {"features/documents.py": changed})

    code, out, err = apply("-o", "json")

    assert (code, err) == (0, "")
    plan = json.loads(out)
    assert (plan["activeVersion"], plan["storedVersion"]) == (1, 2)
    assert [f["feature"] for f in plan["added"]] == ["document.lang", "document.words"]
    assert plan["removed"] == []
    assert [(f["feature"], f["changes"]) for f in plan["changed"]] == [
        (
            "document.shout",
            [{"what": "expression", "old": "upper(_.text)", "new": "lower(_.text)"}],
        )
    ]
    assert plan["unchanged"] == ["document.entities", "document.id", "document.text"]


def test_a_new_feature_with_max_staleness_shows_it_on_its_plus_line(
    project: Path, apply: Apply
) -> None:
    host_ner(project)
    cached = DOCUMENT.replace(
        'entities: str = F.catalog_call("model.ner", _.text)',
        'entities: str = feature(expression=F.catalog_call("model.ner", _.text), '
        'max_staleness="1h30m")',
    ).replace("import _, features", "import _, feature, features")
    write_files(project, {"features/documents.py": cached})

    code, out, err = apply("--dry-run")

    assert (code, err) == (0, "")
    [line] = [row for row in out.splitlines() if "+ document.entities" in row]
    assert 'catalog_call("model.ner", _.text) max_staleness=5400s  (features/' in line


def test_a_removed_feature_is_planned_with_a_minus(project: Path, apply: Apply) -> None:
    write_files(project, {"features/documents.py": PLAIN_DOCUMENT})
    assert apply()[0] == 0
    without_shout = PLAIN_DOCUMENT.replace("shout: str = F.upper(_.text)", "")
    write_files(project, {"features/documents.py": without_shout})

    code, out, _err = apply()

    assert code == 0
    assert "  - document.shout  large_string upper(_.text)" in out.splitlines()
    assert "0 to add, 1 to remove, 0 to change, 2 unchanged." in out


def test_an_unchanged_graph_stores_no_new_version(project: Path, apply: Apply) -> None:
    host_ner(project)
    write_files(project, {"features/documents.py": DOCUMENT})
    assert apply()[0] == 0
    # Moving the class down changes its source lines, not its features.
    write_files(project, {"features/documents.py": "\n\n" + DOCUMENT})

    code, out, _err = apply()

    assert code == 0
    assert "0 to add, 0 to remove, 0 to change, 4 unchanged." in out
    assert "No changes: feature graph version 1 stays active; nothing stored." in out
    assert [g.version for g in catalog_of(project).graphs.list()] == [1]


def test_a_dry_run_prints_the_plan_and_stores_nothing(project: Path, apply: Apply) -> None:
    host_ner(project)
    write_files(project, {"features/documents.py": DOCUMENT})

    code, out, _err = apply("--dry-run")

    assert code == 0
    assert "4 to add, 0 to remove, 0 to change, 0 unchanged." in out
    assert out.splitlines()[-1] == "Dry run: nothing stored."
    assert catalog_of(project).graphs.list() == []


def test_validation_problems_are_all_reported_with_file_and_line(
    project: Path, apply: Apply
) -> None:
    host_ner(project)
    source = """
        from chalk import functions as F
        from chalk.features import _, features


        @features
        class Review:
            id: int
            body: str
            stars: int
            a: str = F.catalog_call("model.missing", _.body)
            b: str = F.catalog_call("model.ner", _.stars)
            c: str = F.catalog_call("model.ner", _.body, _.body)
            d: int = F.catalog_call("model.ner", _.body)
            e: str = F.catalog_call("model.ner", _.body)
    """
    write_files(project, {"reviews.py": source})

    code, out, err = apply()

    assert (code, out) == (1, "")
    path = project / "reviews.py"
    lines = err.splitlines()
    assert lines[0] == (
        "error: chalk apply found 4 problems while checking the feature graph against the "
        "catalog; nothing was stored:"
    )
    assert [line.split(": ")[0].strip() for line in lines[1:]] == [
        f"reviews.py:{line_of(path, f'    {name}: ')}" for name in "abcd"
    ]
    assert "there is no scaling group named 'missing'" in lines[1]
    assert "argument 1 is int64" in lines[2]
    assert "passes 2 arguments" in lines[3]
    assert "declared int64" in lines[4]
    assert catalog_of(project).graphs.list() == []


def test_a_deleted_group_is_named_with_the_feature(project: Path, apply: Apply) -> None:
    host_ner(project).groups.delete("ner")
    write_files(project, {"features/documents.py": DOCUMENT})

    code, _out, err = apply()

    line = line_of(project / "features/documents.py", "entities:")
    assert code == 1
    assert f"  features/documents.py:{line}: document.entities: cannot call 'model.ner': " in err
    assert "scaling group 'ner' was deleted" in err


def test_two_classes_sharing_a_namespace_name_both_files(project: Path, apply: Apply) -> None:
    write_files(
        project,
        {
            "a/docs.py": PLAIN_DOCUMENT,
            "b/docs.py": PLAIN_DOCUMENT,
        },
    )

    code, _out, err = apply()

    assert code == 1
    assert "two feature classes share the namespace 'document'" in err
    assert str(project / "a/docs.py") in err
    assert str(project / "b/docs.py") in err


def test_a_module_that_fails_to_import_is_named_with_its_line(project: Path, apply: Apply) -> None:
    write_files(
        project,
        {"features/documents.py": DOCUMENT, "features/broken.py": "x = 1\nraise KeyError('k')\n"},
    )

    code, _out, err = apply()

    assert code == 1
    assert "  features/broken.py:2: KeyError: 'k'" in err.splitlines()


def test_chalkignore_keeps_files_out_of_apply(project: Path, apply: Apply) -> None:
    host_ner(project)
    write_files(
        project,
        {
            "features/documents.py": DOCUMENT,
            "notebooks/scratch.py": "raise RuntimeError('not for apply')\n",
            ".chalkignore": "# experiments\nnotebooks/\n",
        },
    )

    code, _out, err = apply()

    assert (code, err) == (0, "")


def test_an_apply_that_finds_no_classes_does_not_wipe_the_active_graph(
    project: Path, apply: Apply
) -> None:
    host_ner(project)
    write_files(project, {"features/documents.py": DOCUMENT})
    assert apply()[0] == 0
    write_files(project, {".chalkignore": "*\n"})

    code, _out, err = apply()
    version_after_refusal = catalog_of(project).graphs.active().version  # type: ignore[union-attr]
    emptied, _out, _err = apply("--allow-empty")

    assert code == 1
    assert "found no @features classes" in err
    assert "pass --allow-empty" in err
    assert version_after_refusal == 1
    assert emptied == 0
    assert catalog_of(project).graphs.active().version == 2  # type: ignore[union-attr]


def test_a_registration_in_the_project_fails_apply_even_when_caught(
    project: Path, apply: Apply
) -> None:
    host_ner(project)
    write_files(
        project, {"features/documents.py": DOCUMENT, "jobs/register.py": REGISTER_AND_CATCH}
    )

    code, out, err = apply()

    line = line_of(project / "jobs/register.py", "client.register_model_version(")
    assert (code, out) == (1, "")
    assert err.splitlines()[1].startswith(
        f"  jobs/register.py:{line}: registering model 'ner' while `chalk apply` imported"
    )
    assert "add this file's folder to .chalkignore" in err
    assert [v.model_version for v in catalog_of(project).models.list("ner")] == [1]
    assert catalog_of(project).graphs.list() == []


def test_a_group_write_through_the_deploy_module_fails_apply(project: Path, apply: Apply) -> None:
    host_ner(project)
    write_files(
        project,
        {
            "ops/cleanup.py": """
                from chalk.catalog import open_catalog
                from chalk.common.config import find_project
                from chalk.deploy.groups import delete_group

                project = find_project()
                delete_group(project, open_catalog(project), "ner")
            """,
        },
    )

    code, _out, err = apply()

    assert code == 1
    assert f"ops/cleanup.py:{line_of(project / 'ops/cleanup.py', 'delete_group(project')}" in err
    assert "deleting scaling group 'ner'" in err
    assert [g.name for g in catalog_of(project).groups.list()] == ["ner"]


def run_chalk_apply(
    cwd: Path, files: Mapping[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    write_files(cwd, files)
    return chalk(cwd, "apply", *args)


def test_the_console_script_refuses_a_deployment_and_starts_nothing(project: Path) -> None:
    host_ner(project)
    deploy = """
        from chalk.client import ChalkClient

        try:
            ChalkClient().deploy_model_version_to_scaling_group("other", "ner", 1)
        except Exception as error:
            print("caught", type(error).__name__)
    """

    result = run_chalk_apply(project, {"deploy/ship.py": deploy})

    line = line_of(project / "deploy/ship.py", "deploy_model_version_to_scaling_group(")
    assert result.returncode == 1
    assert "caught WriteDuringApplyError" in result.stdout
    assert (
        f"  deploy/ship.py:{line}: deploying model 'ner' version 1 to scaling group 'other' "
        f"while `chalk apply` imported"
    ) in result.stderr
    assert [g.name for g in catalog_of(project).groups.list()] == ["ner"]
    assert not (project / ".chalk" / "controller.lock").exists()
    assert not (project / ".chalk" / "logs").exists()


def test_the_console_script_names_a_syntax_error(project: Path) -> None:
    result = run_chalk_apply(project, {"features/bad.py": "import os\n\nclass X(:\n    pass\n"})

    assert result.returncode == 1
    assert "  features/bad.py:3: SyntaxError: " in result.stderr
    assert "Traceback" not in result.stderr


def test_the_console_script_runs_from_a_subfolder_and_the_graph_serves_a_query(
    project: Path,
) -> None:
    host_ner(project)
    write_files(
        project,
        {
            "features/documents.py": DOCUMENT,
            "features/reuse.py": """
                from features.documents import Document
                import features.documents

                assert Document is features.documents.Document
            """,
        },
    )

    applied = chalk(project / "features", "apply")
    queried = chalk(
        project / "features",
        "query",
        "--in",
        "document.text=hi",
        "--out",
        "document.shout",
        "-o",
        "json",
    )

    assert applied.returncode == 0, applied.stderr
    assert "Stored feature graph version 1; it is now active." in applied.stdout
    assert queried.returncode == 0, queried.stderr
    assert json.loads(queried.stdout)["document.shout"] == "HI"


def test_a_project_without_feature_classes_says_so(project: Path, apply: Apply) -> None:
    write_files(project, {"helpers.py": "VALUE = 1\n"})

    code, out, _err = apply("--dry-run")

    assert code == 0
    assert f"  (no @features classes found under {project})" in out.splitlines()


def test_ctrl_c_ends_a_command_with_130_and_no_traceback(project: Path) -> None:
    # An apply importing a feature module that takes long: interrupted in the middle.
    (project / "features").mkdir(exist_ok=True)
    (project / "features" / "slow.py").write_text(
        "import time\nprint('importing slow.py', flush=True)\ntime.sleep(30)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
    process = subprocess.Popen(
        [CHALK, "apply"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    # Sent once apply is at work (importing slow.py), however long start-up took.
    assert process.stdout.readline() == "importing slow.py\n"
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=30)

    assert process.returncode == 130
    assert err.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in err


def test_a_module_calling_os_exit_fails_apply_naming_it(project: Path, apply: Apply) -> None:
    host_ner(project)
    write_files(project, {"features/documents.py": DOCUMENT, "scripts/end.py": EXIT_AT_IMPORT})

    code, out, err = apply()

    assert (code, out) == (1, "")
    assert err.startswith("error: scripts/end.py:3: the project's code ended the process")
    assert "(os._exit(0))" in err
    assert catalog_of(project).graphs.active() is None


def test_the_console_script_neither_hangs_on_a_thread_nor_exits_0(project: Path) -> None:
    host_ner(project)
    files = {"features/documents.py": DOCUMENT, "deploy/ship.py": DEPLOY_BESIDE_A_THREAD}
    write_files(project, files)

    env = {k: v for k, v in os.environ.items() if k != "CHALK_CATALOG_URL"}
    result = subprocess.run(
        [CHALK, "apply"],
        capture_output=True,
        text=True,
        env=env,
        cwd=project,
        timeout=120,
        check=False,
    )

    line = line_of(project / "deploy/ship.py", "deploy_model_version_to_scaling_group(")
    assert result.returncode == 1
    assert f"deploy/ship.py:{line}: deploying model 'ner' version 1" in result.stderr
    assert catalog_of(project).graphs.active() is None


def test_a_call_to_a_crash_looping_group_is_applied_with_a_warning(
    project: Path, apply: Apply
) -> None:
    catalog = host_ner(project)
    ner = catalog.groups.get("ner")
    catalog.groups.report(
        ner.id,
        status="CrashLoopBackOff",
        reason="replica ner-1 exited (code 3)",
        desired=1,
        ready=0,
        available=0,
    )
    write_files(project, {"features/documents.py": DOCUMENT})

    code, _, err = apply()

    assert code == 0
    assert err == (
        "warning: document.entities calls scaling group 'ner', which is CrashLoopBackOff "
        "(replica ner-1 exited (code 3)): their queries fail until it serves; see "
        "`chalk scaling-group get --name ner`\n"
    )
    assert catalog_of(project).graphs.active() is not None


EXIT_AT_IMPORT = """
    import os

    os._exit(0)
"""

DEPLOY_BESIDE_A_THREAD = """
    import threading
    import time

    from chalk.client import ChalkClient

    threading.Thread(target=time.sleep, args=(3600,)).start()
    ChalkClient().deploy_model_version_to_scaling_group("other", "ner", 1)
"""
