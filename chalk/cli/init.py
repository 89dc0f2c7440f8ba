"""``chalk init [DIR]``: lays out a new project as the Chalk product documents recommend.

``chalk.yaml``, ``.chalkignore``, a ``features`` package, and ``models/`` holding a model image
(Dockerfile, handler, requirements) and the script that registers and deploys it. The files'
contents live in ``chalk/cli/templates/``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from chalk.cli import holding_ctrl_c
from chalk.common.names import to_dns_label

__all__ = ["Scaffold", "create_project", "register", "run"]

# Each file of a new project and its template under chalk/cli/templates/, in creation order.
_LAYOUT = (
    ("chalk.yaml", "chalk.yaml.tmpl"),  # chalk.common.config.CONFIG_FILENAME (it loads yaml)
    (".chalkignore", "chalkignore.tmpl"),
    ("features/__init__.py", "features/__init__.py.tmpl"),
    ("models/Dockerfile", "models/Dockerfile.tmpl"),
    ("models/model.py", "models/model.py.tmpl"),
    ("models/requirements.txt", "models/requirements.txt.tmpl"),
    ("models/deploy_model.py", "models/deploy_model.py.tmpl"),
)

# The project name when the directory's name has no letter or digit to build one from.
_FALLBACK_NAME = "chalk-project"


@dataclass(frozen=True, slots=True)
class Scaffold:
    """What ``create_project`` did: the project's name and root, paths relative to it."""

    name: str
    root: Path
    created: tuple[str, ...]
    kept: tuple[str, ...]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``chalk init`` to the ``chalk`` command."""
    parser = subparsers.add_parser(
        "init",
        help="lay out a new project (chalk.yaml, features/, models/)",
        description="Lay out a new project in DIR: chalk.yaml, .chalkignore, a features "
        "package and a model image in models/ with the script that deploys it. Never "
        "overwrites a file.",
    )
    parser.add_argument(
        "directory",
        nargs="?",
        default=".",
        metavar="DIR",
        help="the project's root; created when missing (default: the current directory)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """``chalk init``: make the project, print what was made; 1 when it cannot."""
    try:
        with holding_ctrl_c():  # a project is written whole: Ctrl-C ends the command after it
            scaffold = create_project(Path(args.directory))
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Created project {scaffold.name!r} in {scaffold.root}:")
    for path in scaffold.created:
        print(f"  {path}")
    if scaffold.kept:
        print("Already there, left as they were:")
        for path in scaffold.kept:
            print(f"  {path}")
    print(
        f"Next, in {scaffold.root}: build the model's image, then register and deploy it:\n"
        "  chalk image build models -t ner:latest\n"
        "  python models/deploy_model.py"
    )
    return 0


def create_project(directory: Path) -> Scaffold:
    """Write a new project into ``directory`` (made when missing); never overwrite a file.

    An existing ``chalk.yaml`` means a project is already there: ``FileExistsError``, and
    nothing is written. Any other file already present is kept as it is and listed as such.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     scaffold = create_project(Path(folder) / "Fraud Scoring")
    >>> scaffold.name, scaffold.created[:3]
    ('fraud-scoring', ('chalk.yaml', '.chalkignore', 'features/__init__.py'))
    """
    root = directory.resolve()
    config_path = root / _LAYOUT[0][0]
    if config_path.exists():
        raise FileExistsError(
            f"{config_path} already exists; chalk init never overwrites a project "
            f"(edit that file, or pick another directory)"
        )
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root} is a file, expected a directory (or a new path)")
    name = to_dns_label(root.name) or _FALLBACK_NAME
    root.mkdir(parents=True, exist_ok=True)
    created: list[str] = []
    kept: list[str] = []
    for target, template in _LAYOUT:
        text = Template(_read_template(template)).safe_substitute(project=name)
        written = _write_new(root / target, text)
        (created if written else kept).append(target)
    return Scaffold(name=name, root=root, created=tuple(created), kept=tuple(kept))


def _read_template(name: str) -> str:
    return resources.files("chalk.cli").joinpath("templates", name).read_text(encoding="utf-8")


def _write_new(path: Path, text: str) -> bool:
    """Write ``path`` unless it exists (checked and created in one step); True when written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        return False
    return True
