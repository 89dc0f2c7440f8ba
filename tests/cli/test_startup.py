"""``chalk`` start-up, run as real processes: what a command line imports (``--version``,
``--help`` and every subcommand's ``--help`` load no heavy library; ``scaling-group list`` loads
the catalog only), and Ctrl-C at any moment: one line, exit 130, no traceback."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from chalk.catalog import close_catalogs, open_catalog
from chalk.catalog.specs import GroupSpec
from chalk.cli import _COMMANDS, _run, build_parser, holding_ctrl_c, main

CHALK = str(Path(sys.executable).with_name("chalk"))
# What no --help loads: each takes tenths of a second to import.
HEAVY = ("polars", "sqlalchemy", "grpc", "kubernetes", "lark", "pyarrow", "pydantic", "numpy")
# Runs the command line given after it as the console script does, then prints (at exit, which
# argparse reaches through SystemExit) the top-level packages of HEAVY it loaded.
PROBE = """
import atexit, sys
heavy = set(sys.argv[1].split(","))
atexit.register(lambda: print("LOADED:" + ",".join(
    sorted({name.partition(".")[0] for name in sys.modules} & heavy)), file=sys.stderr))
sys.argv = ["chalk", *sys.argv[2:]]
from chalk.cli import main
main()
"""
HELP_LINES = [
    ["--version"],
    ["--help"],
    *([name, "--help"] for name in _COMMANDS),
    ["scaling-group", "create", "--help"],
    ["model", "deploy", "--help"],
    ["image", "build", "--help"],
]


@pytest.fixture
def env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "CHALK_CATALOG_URL"}


@pytest.fixture
def project(tmp_path: Path, env: dict[str, str]) -> Path:
    """A project whose catalog holds two local groups (no controller runs)."""
    (tmp_path / "chalk.yaml").write_text("project: demo\n")
    catalog = open_catalog(f"sqlite:///{tmp_path}/.chalk/catalog.db")
    for name, digest in (("ner", "ab"), ("fraud", "cd")):
        spec = GroupSpec(image=f"{name}:latest", image_digest="sha256:" + digest * 32)
        catalog.groups.create(name, spec.to_dict(), backend="local")
    return tmp_path


def loaded(
    argv: Sequence[str], cwd: Path, env: dict[str, str], libraries: Sequence[str] = HEAVY
) -> tuple[int, set[str]]:
    """The exit code of ``chalk *argv`` and which of ``libraries`` it imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(libraries), *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("LOADED:")]
    assert lines, done.stderr
    return done.returncode, {name for name in lines[-1].removeprefix("LOADED:").split(",") if name}


@pytest.mark.parametrize("argv", HELP_LINES, ids=" ".join)
def test_version_and_every_help_load_no_heavy_library(
    argv: list[str], tmp_path: Path, env: dict[str, str]
) -> None:
    code, heavy = loaded(argv, tmp_path, env)
    assert code == 0
    assert heavy == set()


@pytest.mark.parametrize("output", ["table", "json"])
def test_listing_groups_loads_the_catalog_and_nothing_a_listing_does_not_need(
    output: str, project: Path, env: dict[str, str]
) -> None:
    argv = ["scaling-group", "list", "-o", output]
    code, heavy = loaded(argv, project, env, libraries=(*HEAVY, "rich"))
    assert code == 0
    # SQLAlchemy is the catalog's. chalk.yaml is read without pydantic; a piped table prints
    # without rich. Polars, lark and pyarrow are the feature engine's, gRPC the replicas',
    # kubernetes the other backend's.
    assert heavy == {"sqlalchemy"}


def test_a_command_leaves_its_catalog_whole_in_its_one_file(
    project: Path, env: dict[str, str]
) -> None:
    # chalk ends without the interpreter's last collection (chalk.cli._before_exit); it closes
    # the catalog first, so that SQLite folds its write-ahead journal back into the file.
    close_catalogs()  # the fixture's connection, which would keep the journal open
    for argv in (["scaling-group", "list"], ["scaling-group", "delete", "--name", "ner"]):
        done = subprocess.run(
            [CHALK, *argv], cwd=project, env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert [path.name for path in (project / ".chalk").iterdir()] == ["catalog.db"]
    copy = shutil.copy(project / ".chalk" / "catalog.db", project / "copy.db")
    assert [group.name for group in open_catalog(f"sqlite:///{copy}").groups.list()] == ["fraud"]


def test_the_catalog_loads_no_database_dialect_but_the_one_it_opens(tmp_path: Path) -> None:
    # A partial index declared with SQLAlchemy's postgresql_where loads the PostgreSQL dialect
    # (a fifth of a listing's start-up) for every SQLite catalog.
    code = (
        "import sys\n"
        "from chalk.catalog import open_catalog\n"
        f"open_catalog('sqlite:///{tmp_path}/catalog.db').groups.list()\n"
        "print(sorted(name for name in sys.modules if name.startswith('sqlalchemy.dialects.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "postgresql" not in done.stdout


def test_the_lazy_parser_shows_the_same_help_as_the_full_one() -> None:
    # _COMMANDS repeats each module's help line: the top-level help must not tell otherwise,
    # whichever subcommand was loaded.
    full = build_parser().format_help()
    assert build_parser([]).format_help() == full
    for name in _COMMANDS:
        assert build_parser([name]).format_help() == full


def test_a_command_line_loads_only_the_module_of_its_subcommand() -> None:
    code = (
        "import sys\n"
        "from chalk.cli import build_parser\n"
        "build_parser(['status', '--help'])\n"
        "print(sorted(name for name in sys.modules if name.startswith('chalk.cli.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # chalk.cli.parsing: the parser class every parser is built with.
    loaded = "['chalk.cli.controller', 'chalk.cli.output', 'chalk.cli.parsing']"
    assert done.stdout.strip() == loaded


def test_main_called_with_arguments_leaves_the_signal_handlers_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Programs (and these tests) call main([...]) in their own process: Ctrl-C stays theirs.
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("scalegroup ")
    assert signal.getsignal(signal.SIGINT) is before


# --- Ctrl-C ------------------------------------------------------------------------------------

SLOW_FEATURES = "import time\nprint('importing slow.py', flush=True)\ntime.sleep(30)\n"


def _block_sigint() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


@pytest.fixture
def slow_project(project: Path) -> Path:
    """The project, plus a feature module that `chalk apply` takes 30 s to import."""
    (project / "features").mkdir()
    (project / "features" / "slow.py").write_text(SLOW_FEATURES)
    return project


def interrupt(
    argv: Sequence[str], cwd: Path, env: dict[str, str], *, after_s: float | None
) -> tuple[int, str, str]:
    """Start ``chalk *argv``, send SIGINT ``after_s`` seconds later (None: once it printed its
    first line), and return its exit code, stdout and stderr.

    The process starts with SIGINT blocked, and chalk unblocks it once its handler is in place:
    a signal sent before the interpreter ran chalk's first line (the ~20 ms any Python program
    needs to start, longer on a loaded machine) waits for it instead of meeting Python's own
    handler, so the early points of this test do not depend on the machine's load.
    """
    process = subprocess.Popen(
        [CHALK, *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_block_sigint,  # noqa: PLW1509 - one thread starts processes here
    )
    assert process.stdout is not None
    first = ""
    if after_s is None:
        first = process.stdout.readline()
    else:
        time.sleep(after_s)
    process.send_signal(signal.SIGINT)  # not sent if it has exited already
    out, err = process.communicate(timeout=60)
    return process.returncode, first + out, err


# (command line, the exit code it ends with when not interrupted)
CTRL_C_COMMANDS = [
    (["--help"], 0),
    (["scaling-group", "list"], 0),
    (["query", "--in", "user.id=1", "--out", "user.name"], 1),  # no graph applied: an error
    (["apply"], None),  # 30 s of importing slow.py: always interrupted
]


@pytest.mark.parametrize("after_s", [0.0, 0.02, 0.05, 0.2, 0.5, 1.0])
@pytest.mark.parametrize(
    ("argv", "finished_code"), CTRL_C_COMMANDS, ids=[" ".join(c[0]) for c in CTRL_C_COMMANDS]
)
def test_ctrl_c_at_any_moment_ends_with_one_line_and_130(
    argv: list[str],
    finished_code: int | None,
    after_s: float,
    slow_project: Path,
    env: dict[str, str],
) -> None:
    code, _out, err = interrupt(argv, slow_project, env, after_s=after_s)

    assert "Traceback" not in err
    if code != 130:
        # Done before the signal was sent (send_signal sends nothing to an exited process).
        assert code == finished_code, err
        return
    assert err == "interrupted\n"
    if argv == ["apply"]:
        catalog = open_catalog(f"sqlite:///{slow_project}/.chalk/catalog.db")
        assert catalog.graphs.active() is None  # nothing stored


def test_ctrl_c_while_a_command_works_ends_with_one_line_and_130(
    slow_project: Path, env: dict[str, str]
) -> None:
    # Sent once apply has started importing the project's modules (slow.py said so).
    code, out, err = interrupt(["apply"], slow_project, env, after_s=None)

    assert out.startswith("importing slow.py")
    assert code == 130
    assert err == "interrupted\n"
    catalog = open_catalog(f"sqlite:///{slow_project}/.chalk/catalog.db")
    assert catalog.graphs.active() is None


@pytest.mark.parametrize("after_s", [0.3, 1.5])
def test_ctrl_c_during_an_image_build_leaves_no_partial_snapshot_or_tag(
    after_s: float, project: Path, env: dict[str, str]
) -> None:
    # A context big enough that copying and hashing it takes a while on any machine.
    context = project / "big"
    for folder in range(20):
        (context / "data" / str(folder)).mkdir(parents=True)
        for index in range(100):
            (context / "data" / str(folder) / f"{index}.bin").write_bytes(os.urandom(20_000))
    (context / "Dockerfile").write_text(
        'FROM python:3.11-slim\nCOPY data /data\nENTRYPOINT ["chalk-remote-call"]\n'
    )

    code, _out, err = interrupt(
        ["image", "build", str(context), "-t", "big:v1"], project, env, after_s=after_s
    )

    assert "Traceback" not in err
    store = project / ".chalk" / "images"
    assert not list(store.glob(".build-*"))  # no scratch folder left behind
    catalog = open_catalog(f"sqlite:///{project}/.chalk/catalog.db")
    tagged = {tag for image in catalog.images.list() for tag in image.tags}
    if code == 130:
        assert err == "interrupted\n"
        assert "big:v1" not in tagged
    else:  # done before the signal came: the whole image, tagged
        assert code == 0, err
        assert "big:v1" in tagged


def test_ctrl_c_during_a_held_write_ends_the_command_once_the_write_is_done() -> None:
    # chalk init writes a project this way: never a project (or a file) half-written.
    before = signal.getsignal(signal.SIGINT)
    written: list[str] = []

    def write() -> None:
        with holding_ctrl_c():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # the handler has run by now; the write goes on
            written.append("chalk.yaml")

    with pytest.raises(KeyboardInterrupt):
        write()
    assert written == ["chalk.yaml"]
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_that_python_wrapped_in_another_error_still_reads_as_ctrl_c() -> None:
    # Python 3.11 reports a KeyboardInterrupt raised while a class is made (in __set_name__,
    # as happens when Ctrl-C lands in a module's import) as a RuntimeError.
    class Interrupted:
        def __set_name__(self, owner: type, name: str) -> None:
            raise KeyboardInterrupt

    def command(args: argparse.Namespace) -> int:
        type("Model", (), {"field": Interrupted()})
        return 0

    with pytest.raises(KeyboardInterrupt):
        _run(command, argparse.Namespace())
