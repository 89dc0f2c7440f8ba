"""A project's modules: ``.chalkignore`` semantics, module names, and importing them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from chalk.features.project import (
    ProjectFilesError,
    import_project,
    is_ignored,
    module_name,
    project_files,
    read_ignore_file,
)
from tests.support.projects import PLAIN_DOCUMENT as DOCUMENT
from tests.support.projects import write_files


@pytest.mark.parametrize(
    ("patterns", "relative", "ignored"),
    [
        pytest.param([], "features/docs.py", False, id="nothing-ignored"),
        pytest.param(["# deploy.py"], "deploy.py", False, id="comment"),
        pytest.param(["", "   ", "deploy.py"], "deploy.py", True, id="blank-lines"),
        pytest.param([r"\#deploy.py"], "#deploy.py", True, id="escaped-hash-is-a-name"),
        pytest.param(["deploy.py"], "deploy.py", True, id="name"),
        pytest.param(["deploy.py"], "jobs/nightly/deploy.py", True, id="name-at-any-depth"),
        pytest.param(["/deploy.py"], "deploy.py", True, id="anchored"),
        pytest.param(["/deploy.py"], "jobs/deploy.py", False, id="anchored-only-at-root"),
        pytest.param(["scripts/"], "scripts/register.py", True, id="folder"),
        pytest.param(["scripts/"], "jobs/scripts/register.py", True, id="folder-at-any-depth"),
        pytest.param(["scripts/"], "scripts.py", False, id="folder-pattern-not-a-file"),
        pytest.param(["/scripts/"], "jobs/scripts/register.py", False, id="anchored-folder"),
        pytest.param(["jobs/deploy/"], "jobs/deploy/run.py", True, id="nested-folder"),
        pytest.param(["jobs/deploy/"], "deploy/run.py", False, id="nested-is-anchored"),
        pytest.param(["features/wip/*.py"], "features/wip/x.py", True, id="nested-glob"),
        pytest.param(["features/wip/*.py"], "features/x.py", False, id="nested-glob-elsewhere"),
        pytest.param(["**/scratch.py"], "scratch.py", True, id="double-star-at-root"),
        pytest.param(["**/scratch.py"], "a/b/scratch.py", True, id="double-star-deep"),
        pytest.param(["jobs/**/run.py"], "jobs/a/b/run.py", True, id="double-star-middle"),
        pytest.param(["jobs/**"], "jobs/a/run.py", True, id="double-star-trailing"),
        pytest.param(["*.py", "!keep.py"], "keep.py", False, id="negation"),
        pytest.param(["*.py", "!keep.py"], "drop.py", True, id="negation-leaves-others"),
        pytest.param(["!keep.py", "*.py"], "keep.py", True, id="negation-before-is-overridden"),
        pytest.param(["jobs/", "!jobs/keep.py"], "jobs/keep.py", True, id="no-negation-in-folder"),
        pytest.param(["jobs/*", "!jobs/keep.py"], "jobs/keep.py", False, id="negation-of-glob"),
        pytest.param([], ".venv/lib/site.py", True, id="builtin-venv-dot"),
        pytest.param([], "venv/lib/site.py", True, id="builtin-venv"),
        pytest.param([], ".git/hooks/pre_commit.py", True, id="builtin-git"),
        pytest.param([], "features/__pycache__/docs.py", True, id="builtin-pycache"),
        pytest.param([], ".chalk/images/run.py", True, id="builtin-chalk"),
        pytest.param(["!.venv/", "!.venv/**"], ".venv/x.py", True, id="builtin-not-negatable"),
        pytest.param([], "notes.txt", True, id="not-python"),
    ],
)
def test_chalkignore_decides_which_files_are_imported(
    tmp_path: Path, patterns: list[str], relative: str, ignored: bool
) -> None:
    (tmp_path / ".chalkignore").write_text("\n".join(patterns) + "\n")
    write_files(tmp_path, {relative: ""})

    found = project_files(tmp_path, read_ignore_file(tmp_path))

    assert found == ([] if ignored else [relative])


def test_files_come_sorted_and_without_an_ignore_file(tmp_path: Path) -> None:
    write_files(tmp_path, {"b.py": "", "a/z.py": "", "a/b.py": "", "A.py": ""})

    assert project_files(tmp_path, read_ignore_file(tmp_path)) == [
        "A.py",
        "a/b.py",
        "a/z.py",
        "b.py",
    ]


def test_is_ignored_reads_a_folder_as_a_folder() -> None:
    spec = read_ignore_file(Path("/nonexistent"))

    assert is_ignored(spec, "venv", folder=True)
    assert not is_ignored(spec, "venv.py")


def test_a_bad_pattern_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / ".chalkignore").write_text("deploy/\n!\n")

    with pytest.raises(ProjectFilesError, match=r"^\.chalkignore:2 has the pattern '!'"):
        read_ignore_file(tmp_path)


@pytest.mark.parametrize(
    ("relative", "name"),
    [
        pytest.param("main.py", "main", id="top-level"),
        pytest.param("features/user_features.py", "features.user_features", id="nested"),
        pytest.param("features/__init__.py", "features", id="package"),
        pytest.param("a/b/c/__init__.py", "a.b.c", id="deep-package"),
    ],
)
def test_module_names_are_dotted_paths_from_the_root(relative: str, name: str) -> None:
    assert module_name(relative) == name


@pytest.mark.parametrize(
    "relative",
    [
        pytest.param("my-jobs/run.py", id="dash-in-folder"),
        pytest.param("jobs/run-now.py", id="dash-in-file"),
        pytest.param("class.py", id="keyword"),
    ],
)
def test_a_path_that_is_no_module_name_is_refused(relative: str) -> None:
    with pytest.raises(ProjectFilesError, match=rf"^{relative} cannot be imported as a module"):
        module_name(relative)


@pytest.mark.usefixtures("isolated_imports")
def test_namespace_packages_import_once_under_their_dotted_names(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {
            "features/documents.py": DOCUMENT,
            "features/queries.py": """
                from features.documents import Document
                import features.documents as documents

                SAME = documents.Document is Document
            """,
        },
    )

    imported = import_project(tmp_path)

    assert imported.problems == ()
    assert imported.modules == ("features.documents", "features.queries")
    assert sys.modules["features.queries"].SAME is True
    assert [cls.__name__ for cls in imported.classes] == ["Document"]
    assert imported.classes[0] is sys.modules["features.documents"].Document
    assert getattr(sys.modules["features"], "__file__", None) is None  # a namespace package
    assert str(tmp_path) not in sys.path


@pytest.mark.usefixtures("isolated_imports")
def test_a_regular_package_imports_its_init_once(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {
            "features/__init__.py": "IMPORTS = []\n",
            "features/documents.py": "import features\nfeatures.IMPORTS.append(__name__)\n",
        },
    )

    imported = import_project(tmp_path)

    assert imported.problems == ()
    assert sys.modules["features"].IMPORTS == ["features.documents"]


@pytest.mark.usefixtures("isolated_imports")
def test_ignored_modules_are_not_imported(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {".chalkignore": "jobs/\n", "jobs/boom.py": "raise SystemExit(3)\n", "ok.py": ""},
    )

    imported = import_project(tmp_path)

    assert imported.modules == ("ok",)
    assert imported.problems == ()


@pytest.mark.usefixtures("isolated_imports")
def test_a_failing_import_names_its_file_and_line_and_the_others_still_import(
    tmp_path: Path,
) -> None:
    write_files(
        tmp_path,
        {
            "a_features.py": DOCUMENT,
            "b_broken.py": "import os\nimport not_a_module_anywhere_xyz\n",
        },
    )

    imported = import_project(tmp_path)

    [problem] = imported.problems
    assert problem.location == "b_broken.py:2"
    assert problem.message.startswith("b_broken.py:2: ModuleNotFoundError: No module named")
    assert [cls.__name__ for cls in imported.classes] == ["Document"]


@pytest.mark.usefixtures("isolated_imports")
def test_a_syntax_error_names_its_file_and_line(tmp_path: Path) -> None:
    write_files(tmp_path, {"features/broken.py": "x = 1\n\ndef f(:\n    pass\n"})

    [problem] = import_project(tmp_path).problems

    assert problem.location == "features/broken.py:3"
    assert isinstance(problem.error, SyntaxError)


@pytest.mark.usefixtures("isolated_imports")
def test_an_error_raised_deeper_in_the_project_names_the_innermost_project_line(
    tmp_path: Path,
) -> None:
    write_files(
        tmp_path,
        {
            "helpers.py": "def load():\n    raise RuntimeError('no weights')\n",
            "model_features.py": "import helpers\n\nhelpers.load()\n",
        },
    )

    problems = import_project(tmp_path).problems

    # helpers imports fine; model_features fails inside helpers.load
    assert [(p.location, p.message) for p in problems] == [
        ("helpers.py:2", "helpers.py:2: RuntimeError: no weights")
    ]


@pytest.mark.usefixtures("isolated_imports")
def test_a_broken_module_imported_by_others_is_reported_once(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {"a.py": "import c\n", "b.py": "import c\n", "c.py": "1 / 0\n"},
    )

    problems = import_project(tmp_path).problems

    assert [p.location for p in problems] == ["c.py:1"]


@pytest.mark.usefixtures("isolated_imports")
def test_a_module_whose_name_is_taken_is_a_problem_not_a_silent_stand_in(
    tmp_path: Path,
) -> None:
    write_files(tmp_path, {"json.py": "", "my-jobs/run.py": ""})

    problems = import_project(tmp_path).problems

    assert [p.location for p in problems] == ["json.py", "my-jobs/run.py"]
    assert "the module name 'json' is already taken" in problems[0].message
    assert "add it to .chalkignore" in problems[1].message


@pytest.mark.usefixtures("isolated_imports")
def test_an_error_inside_a_package_installed_in_the_project_names_the_project_line(
    tmp_path: Path,
) -> None:
    site = ".venv/lib/python3.11/site-packages"
    write_files(
        tmp_path,
        {
            f"{site}/vendored_lib_xyz.py": "def load():\n    raise OSError('no disk')\n",
            "uses.py": f"""
                import sys
                sys.path.append({str(tmp_path / site)!r})
                import vendored_lib_xyz
                vendored_lib_xyz.load()
            """,
        },
    )

    [problem] = import_project(tmp_path).problems

    assert problem.message == "uses.py:4: OSError: no disk"
