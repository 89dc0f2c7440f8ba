"""A project's feature modules imported in a child process, so that the code they run
(``os._exit``, ``sys.exit``, a thread that never ends) can neither end nor hang ``chalk apply``.

``chalk apply`` calls ``import_in_child``; the child runs this module (``python -m``) and
hands back the graph as JSON. Writes are refused in the child as they were in the parent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

from chalk.common.errors import ChalkError

__all__ = [
    "IMPORT_TIMEOUT_S",
    "ChildImport",
    "ImportedGraph",
    "ProjectImportError",
    "import_in_child",
]

# Long enough for a project whose modules load a model at import time; an import that takes
# longer is taken for one that never returns.
IMPORT_TIMEOUT_S: Final = 300.0
_EVENTS: Final = "events.jsonl"
# The child replaces os._exit while the project imports, to note who called it; its own ends
# go through the real one.
_REAL_EXIT: Final = os._exit
_RESULT: Final = "result.json"


class ProjectImportError(ChalkError):
    """Importing the project's modules ended, or hung, the process importing them."""


@dataclass(frozen=True, slots=True)
class ImportedGraph:
    """What the child found: problems (each ``file:line: ...``), namespace clashes, how many
    feature classes, and their graph as ``FeatureGraph.to_json()`` gives it."""

    problems: tuple[str, ...]
    clashes: tuple[str, ...]
    class_count: int
    graph: dict[str, Any] = field(default_factory=dict)


def import_in_child(root: Path, *, timeout_s: float = IMPORT_TIMEOUT_S) -> ImportedGraph:
    """Import the project at ``root`` in a child Python and return what it found.

    The child prints where this process prints, as an import in this process would. A child
    that ends before it answers, or takes more than ``timeout_s``, is a ``ProjectImportError``
    naming the file it was importing (and the line of an ``os._exit`` call).
    """
    with ChildImport(root) as child:
        return child.result(timeout_s=timeout_s)


class ChildImport:
    """A child importing a project, started at once so the caller can load its own modules
    meanwhile (``chalk apply`` does); ``result`` waits for its answer."""

    def __init__(self, root: Path) -> None:
        self._scratch = Path(tempfile.mkdtemp(prefix="chalk-apply-"))
        # -P: the child's cwd (the project) is not put before chalk on sys.path.
        command = [sys.executable, "-P", "-m", __name__, str(root.resolve()), str(self._scratch)]
        self._process = subprocess.Popen(command, cwd=root, stdin=subprocess.DEVNULL)

    def __enter__(self) -> ChildImport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the child if it still runs and remove its scratch folder."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self._scratch, ignore_errors=True)

    def result(self, *, timeout_s: float = IMPORT_TIMEOUT_S) -> ImportedGraph:
        """What the child found; ``ProjectImportError`` when it ended early or timed out."""
        try:
            code = self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            where = _where(_events(self._scratch))
            self.close()
            raise ProjectImportError(
                f"{where}: importing the project's modules did not "
                f"finish within {timeout_s:.0f}s: expected each module to define its features "
                f'and return; move long-running code under `if __name__ == "__main__":`'
            ) from None
        result = self._scratch / _RESULT
        if code != 0 or not result.is_file():
            raise ProjectImportError(_ended_early(_events(self._scratch), code))
        data = json.loads(result.read_text(encoding="utf-8"))
        if "error" in data:
            raise ProjectImportError(data["error"])
        return ImportedGraph(
            problems=tuple(data["problems"]),
            clashes=tuple(data["clashes"]),
            class_count=int(data["class_count"]),
            graph=data["graph"],
        )


def _events(scratch: Path) -> list[dict[str, Any]]:
    path = scratch / _EVENTS
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by the child's end
            continue
    return events


def _where(events: list[dict[str, Any]]) -> str:
    """The file the child was importing last, or the project as a whole."""
    files = [event["importing"] for event in events if "importing" in event]
    return files[-1] if files else "the project's modules"


def _ended_early(events: list[dict[str, Any]], code: int) -> str:
    exits = [event["exit"] for event in events if "exit" in event]
    if exits:
        where, how = exits[-1]["location"], f"os._exit({exits[-1]['code']})"
    else:
        where, how = _where(events), _exit_text(code)
    return (
        f"{where}: the project's code ended the process importing it ({how}) before `chalk "
        f"apply` had read the feature classes: expected its modules to define features and "
        f'return; move code that exits under `if __name__ == "__main__":` or add the file to '
        f".chalkignore"
    )


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _child(root: Path, scratch: Path) -> NoReturn:
    """Import the project, write the result, and end at once: threads the project's code left
    running are not waited for, and its exit handlers do not run."""
    from chalk.common.apply_guard import WriteDuringApplyError, refusing_writes  # noqa: PLC0415
    from chalk.features.dsl import graph_of, namespace_clashes  # noqa: PLC0415
    from chalk.features.project import import_project  # noqa: PLC0415

    events = (scratch / _EVENTS).open("a", encoding="utf-8")
    real_exit = _REAL_EXIT

    def note(event: dict[str, Any]) -> None:
        events.write(json.dumps(event) + "\n")
        events.flush()

    with refusing_writes(root) as guard:

        def exiting(status: int) -> NoReturn:
            note({"exit": {"code": status, "location": guard.call_site(sys._getframe(1))}})
            real_exit(status)

        os._exit = exiting
        try:
            imported = import_project(root, on_module=lambda path: note({"importing": path}))
        except ChalkError as error:  # e.g. a .chalkignore that is not gitignore syntax
            _answer(scratch, {"error": str(error)})
            real_exit(0)
    refused = [violation.message for violation in guard.violations]
    failed = [
        problem.message
        for problem in imported.problems
        if not isinstance(problem.error, WriteDuringApplyError)
    ]
    problems, clashes, graph = refused + failed, [], {}
    if not problems:
        clashes = namespace_clashes(imported.classes)
        if not clashes:
            try:
                graph = graph_of(imported.classes).to_json()
            except ChalkError as error:
                problems = [str(error)]
    answer = {
        "problems": problems,
        "clashes": clashes,
        "class_count": len(imported.classes),
        "graph": graph,
    }
    _answer(scratch, answer)
    real_exit(0)


def _answer(scratch: Path, answer: dict[str, Any]) -> None:
    # Written whole or not at all: a thread of the project's may end the process meanwhile.
    partial = scratch / f"{_RESULT}.partial"
    partial.write_text(json.dumps(answer), encoding="utf-8")
    partial.replace(scratch / _RESULT)
    sys.stdout.flush()
    sys.stderr.flush()


def _main(argv: list[str]) -> NoReturn:
    root, scratch = Path(argv[0]), Path(argv[1])
    try:
        _child(root, scratch)
    except KeyboardInterrupt:
        _REAL_EXIT(130)
    except BaseException:  # our own failure, not the project's: show it to whoever debugs it
        traceback.print_exc()
        _REAL_EXIT(70)


if __name__ == "__main__":
    _main(sys.argv[1:])
