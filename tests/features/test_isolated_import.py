"""``import_in_child``: a project's modules that exit, kill, hang or leave threads behind end
in a ``ProjectImportError`` naming the file (and line), never in a silent end or a hang."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chalk.features.isolated_import import ProjectImportError, import_in_child
from tests.support.projects import PLAIN_DOCUMENT, write_files

LINGERING_THREAD = """
    import threading
    import time

    threading.Thread(target=time.sleep, args=(3600,)).start()  # not a daemon: never joined
"""

DEPLOY_RAISES_WHILE_A_THREAD_RUNS = """
    import threading
    import time

    from chalk.client import ChalkClient

    threading.Thread(target=time.sleep, args=(3600,)).start()
    ChalkClient().deploy_model_version_to_scaling_group("ner", "ner", 1)
"""


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path.resolve() / "proj"
    root.mkdir()
    (root / "chalk.yaml").write_text("project: demo\n")
    return write_files(root, {"features/documents.py": PLAIN_DOCUMENT, **files})


def test_a_plain_project_comes_back_as_its_graph(tmp_path: Path) -> None:
    imported = import_in_child(project(tmp_path, {}))

    assert (imported.problems, imported.clashes, imported.class_count) == ((), (), 1)
    assert [c["name"] for c in imported.graph["classes"]] == ["Document"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("import os\n\nos._exit(0)\n", r"^scripts/end\.py:3: .*\(os\._exit\(0\)\)"),
        ("import os\n\nos._exit(4)\n", r"^scripts/end\.py:3: .*\(os\._exit\(4\)\)"),
        (
            "import os\nimport signal\n\nos.kill(os.getpid(), signal.SIGKILL)\n",
            r"^scripts/end\.py: .*\(killed by SIGKILL\)",
        ),
    ],
    ids=["os-exit-0", "os-exit-4", "sigkill-itself"],
)
def test_a_module_ending_the_process_is_named(tmp_path: Path, text: str, expected: str) -> None:
    root = project(tmp_path, {})
    (root / "scripts").mkdir()
    (root / "scripts/end.py").write_text(text)

    with pytest.raises(ProjectImportError, match=expected):
        import_in_child(root)


def test_sys_exit_is_a_problem_of_its_file_and_line(tmp_path: Path) -> None:
    root = project(tmp_path, {"scripts/run.py": "import sys\n\nsys.exit(3)\n"})

    imported = import_in_child(root)

    assert imported.problems == ("scripts/run.py:3: SystemExit: 3",)


def test_a_lingering_thread_neither_hangs_nor_hides_the_graph(tmp_path: Path) -> None:
    root = project(tmp_path, {"scripts/worker.py": LINGERING_THREAD})

    imported = import_in_child(root, timeout_s=120)

    assert (imported.problems, imported.class_count) == ((), 1)


def test_a_refused_deploy_with_a_thread_running_fails_without_hanging(tmp_path: Path) -> None:
    root = project(tmp_path, {"deploy/ship.py": DEPLOY_RAISES_WHILE_A_THREAD_RUNS})

    imported = import_in_child(root, timeout_s=120)

    [problem] = imported.problems
    assert re.match(r"deploy/ship\.py:7: deploying model 'ner' version 1", problem)


def test_an_import_that_never_returns_times_out_naming_its_file(tmp_path: Path) -> None:
    root = project(tmp_path, {"scripts/wait.py": "import time\n\ntime.sleep(3600)\n"})

    with pytest.raises(ProjectImportError, match=r"^scripts/wait\.py: .* did not finish within 2s"):
        import_in_child(root, timeout_s=2)


def test_a_bad_chalkignore_is_its_own_error(tmp_path: Path) -> None:
    root = project(tmp_path, {})
    (root / ".chalkignore").write_text("deploy/\n!\n")

    with pytest.raises(ProjectImportError, match=r"^\.chalkignore:2 has the pattern '!'"):
        import_in_child(root)
