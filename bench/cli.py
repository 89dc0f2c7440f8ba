"""How long the ``chalk`` command takes to start, against ``python -c pass``, side by side.

Runs each command below many times, alternating between them round by round so that machine
noise lands on all alike, and prints the median and best wall time of each, its ratio to a bare
``python -c pass`` (the floor any Python command pays), the target and whether it was met:

- ``chalk --version`` and ``chalk --help``: target 150 ms;
- every subcommand's ``--help``: target 300 ms;
- ``chalk scaling-group list`` in a project whose catalog holds 10 groups: target 600 ms.

The 10 groups are written straight into a throwaway project's catalog (no controller runs, so
``list`` shows them without replicas). The last column lists which of the heavy libraries
(polars, SQLAlchemy, gRPC, kubernetes, lark, pyarrow, pydantic, rich) each command imported.

Before timing, ``chalk``'s modules are compiled to ``__pycache__`` (``compileall``), as
``pip install`` does for an installed package: with ``PYTHONDONTWRITEBYTECODE=1`` (set on some
machines) an editable install would otherwise compile every module it imports on every run,
about 100 ms of ``list``'s time that no installed copy pays. Run from the repository root::

    .venv/bin/python bench/cli.py              # about a minute on 2 cores
    .venv/bin/python bench/cli.py --runs 5     # rougher, quicker
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from report import format_grid

HEAVY: Final = ("polars", "sqlalchemy", "grpc", "kubernetes", "lark", "pyarrow", "pydantic", "rich")
CHALK: Final = str(Path(sys.executable).with_name("chalk"))
# Prints, at exit, the heavy libraries that the command loaded (argparse exits through SystemExit).
_PROBE: Final = (
    "import atexit, sys\n"
    "atexit.register(lambda: sys.stderr.write('HEAVY:' + ','.join(sorted({{m.split('.')[0] "
    "for m in sys.modules}} & set({heavy!r}))) + '\\n'))\n"
    "sys.argv = ['chalk', *{args!r}]\n"
    "from chalk.cli import main\n"
    "sys.exit(main())\n"
)


@dataclass(frozen=True)
class Command:
    """One command line to time, with its target in milliseconds (None: the baseline)."""

    label: str
    argv: tuple[str, ...]
    target_ms: float | None


def _commands() -> list[Command]:
    subcommands = (
        "init",
        "model",
        "image",
        "up",
        "down",
        "status",
        "scaling-group",
        "query",
        "apply",
        "serve",
    )
    return [
        Command("python -c pass", (sys.executable, "-c", "pass"), None),
        Command("chalk --version", (CHALK, "--version"), 150),
        Command("chalk --help", (CHALK, "--help"), 150),
        *(Command(f"chalk {name} --help", (CHALK, name, "--help"), 300) for name in subcommands),
        Command("chalk scaling-group list (10 groups)", (CHALK, "scaling-group", "list"), 600),
    ]


def _project(root: Path) -> Path:
    """A project whose catalog holds 10 local groups; no controller is started."""
    from chalk.catalog import open_catalog
    from chalk.catalog.specs import GroupSpec
    from chalk.common.config import find_project

    (root / "chalk.yaml").write_text("project: bench-cli\n")
    catalog = open_catalog(find_project(root))
    for index in range(10):
        spec = GroupSpec(image="bench:latest", image_digest="sha256:" + f"{index:02d}" * 32)
        catalog.groups.create(f"group-{index}", spec.to_dict(), backend="local")
    return root


def _time_once(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()}")
    return took


def _heavy_imports(command: Command, cwd: Path, env: dict[str, str]) -> str:
    if command.target_ms is None:
        return "-"
    probe = _PROBE.format(heavy=HEAVY, args=list(command.argv[1:]))
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    for line in done.stderr.splitlines():
        if line.startswith("HEAVY:"):
            return line.removeprefix("HEAVY:") or "none"
    return "?"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (default 15)")
    args = parser.parse_args(argv)
    env = {key: value for key, value in os.environ.items() if key != "CHALK_CATALOG_URL"}
    import chalk

    compileall.compile_dir(Path(chalk.__file__).parent, quiet=1)
    commands = _commands()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as directory:
        project = _project(Path(directory))
        for command in commands:  # warm the page cache and .pyc files
            _time_once(command.argv, project, env)
        times: dict[str, list[float]] = {command.label: [] for command in commands}
        for round_index in range(args.runs):
            order = commands if round_index % 2 == 0 else commands[::-1]
            for command in order:
                times[command.label].append(_time_once(command.argv, project, env))
        heavy = {command.label: _heavy_imports(command, project, env) for command in commands}
    floor = statistics.median(times[commands[0].label])
    body = []
    for command in commands:
        median_ms = statistics.median(times[command.label]) * 1000
        best_ms = min(times[command.label]) * 1000
        target = command.target_ms
        body.append(
            (
                command.label,
                f"{median_ms:.0f}",
                f"{best_ms:.0f}",
                f"{median_ms / (floor * 1000):.1f}x",
                "-" if target is None else f"<= {target:.0f}",
                "-" if target is None else ("yes" if median_ms <= target else "NO"),
                heavy[command.label],
            )
        )
    load = os.getloadavg()
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {args.runs} runs each"
    )
    header = ("command", "median ms", "best ms", "/ python", "target ms", "met", "heavy imports")
    print(format_grid(header, body, left=1))


if __name__ == "__main__":
    main()
