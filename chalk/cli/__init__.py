"""The ``chalk`` command: parses arguments, calls the packages, formats output.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``run=<function(args) -> exit code>`` as a default. Library code never prints or exits; this
package does both. Exit codes: 0 success, 1 failure, 2 usage error (argparse's own), 130
interrupted (Ctrl-C). No traceback reaches the user: an error no part meant for them is one
line too, saying it is a bug (``CHALK_DEBUG=1`` shows its traceback).

Start-up is kept short: this module imports only what the interpreter has loaded already, and a
command line loads the one subcommand module it names (``_COMMANDS``); that module imports the
heavy libraries (SQLAlchemy, polars, gRPC, ...) only in the functions that run the command.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys

TYPE_CHECKING = False  # typing costs start-up time; mypy reads this name as True
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator, Sequence
    from types import FrameType

__all__ = ["build_parser", "holding_ctrl_c", "main"]

# Every subcommand: its module under chalk.cli and its one-line help, written here too so that
# `chalk --help` lists the commands without importing them (tests/cli/test_startup.py checks
# that each help matches the module's). One module may register several commands, in a row.
_COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "lay out a new project (chalk.yaml, features/, models/)"),
    "model": ("model", "register and inspect model versions"),
    "image": ("image", "build and list local images"),
    "up": ("controller", "run the local controller (foreground by default)"),
    "down": ("controller", "stop the local controller and every replica"),
    "status": ("controller", "show the local controller and its groups"),
    "scaling-group": ("scaling_group", "create, change, inspect and delete scaling groups"),
    "logs": ("logs", "print the logs of a scaling group's replicas, merged in time"),
    "query": ("query", "compute features for one row, with the graph `chalk apply` stored"),
    "offline-query": (
        "offline",
        "compute features for every row of a Parquet file or folder, into a Parquet file",
    ),
    "apply": (
        "apply",
        "check the project's feature classes against the catalog and make them active",
    ),
    "serve": (
        "serve",
        "answer online queries and model calls over HTTP (the graph `chalk apply` stored)",
    ),
    "dashboard": (
        "dashboard",
        "show the project's groups, models and graph live in a browser (127.0.0.1 only)",
    ),
    "server": ("server", "run the feature server on Kubernetes: deploy, inspect and delete it"),
}
_INTERRUPTED = "interrupted"
# Set to see the traceback of an unexpected error instead of its one line.
_DEBUG_ENV = "CHALK_DEBUG"
_EXIT_INTERRUPTED = 130
# A reader that closed our stdout (`chalk model get ... | head -1`) ends the command quietly,
# with the status a shell reports for a process SIGPIPE ended (128 + 13), as `yes | head -1`'s
# `yes` does: `set -o pipefail` scripts see it the same way, and nothing is printed.
_EXIT_BROKEN_PIPE = 141


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The top-level parser of ``chalk``.

    Without ``argv`` every subcommand is registered in full. With it, only the module of the
    subcommand ``argv`` names is imported; the others are listed by name and help alone.
    """
    from chalk import __version__  # noqa: PLC0415
    from chalk.cli.parsing import ChalkArgumentParser  # noqa: PLC0415 - after main's SIGINT hook

    parser = ChalkArgumentParser(
        prog="chalk", description="Deploy ML models as scaling groups and call them from features."
    )
    parser.add_argument("--version", action="version", version=f"scalegroup {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None if argv is None else _module_named(argv)
    loaded: set[str] = set()
    for name, (module, help_text) in _COMMANDS.items():
        if module in loaded:
            continue  # registered with the first command of its module
        if argv is None or module == wanted:
            importlib.import_module(f"chalk.cli.{module}").register(subparsers)
            loaded.add(module)
        else:
            subparsers.add_parser(name, help=help_text)
    return parser


def _module_named(argv: Sequence[str]) -> str | None:
    """The module of the subcommand ``argv`` names: its first word that is not an option
    (``chalk`` itself takes only flags without values)."""
    for word in argv:
        if not word.startswith("-"):
            return _COMMANDS[word][0] if word in _COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``chalk`` console script and ``python -m chalk.cli``.

    Without ``argv``, the process is this command (its own command line) and its Ctrl-C
    handling is ours from the first line: during start-up the process ends at once (one line,
    exit 130; nothing is written yet); while the command runs, Ctrl-C raises KeyboardInterrupt,
    ended the same way (every write is one transaction); once it is over, Ctrl-C is ignored.
    Called with ``argv`` from another program, the process's signal handling is left as is.
    """
    if argv is not None:
        sys.exit(_main(argv))
    signal.signal(signal.SIGINT, _end_at_once)
    # A parent may start us with SIGINT blocked (one that came early waits until now).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        code = _main(sys.argv[1:], own_sigint=True)
    finally:
        # Done (argparse's --help and usage errors end here too, through SystemExit): a Ctrl-C
        # now could only cut the interpreter's clean-up short, or kill it by the signal once
        # the interpreter has put the default action back.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if code == _EXIT_BROKEN_PIPE and _stdout_closed():
        # What is still buffered for stdout would fail again when the interpreter flushes it
        # at exit ("Exception ignored ..."): send it nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    _before_exit()
    sys.exit(code)


def _before_exit() -> None:
    """The command is over and the process ends with it: close the catalogs' connections, then
    let the interpreter's clean-up skip the collector's passes over every object the imports
    made (SQLAlchemy's alone are tens of thousands), a fifth of `chalk scaling-group list`'s
    time (bench/README.md). Objects the command left in reference cycles are not finalized at
    exit then, which Python never promised: files are closed by ``with``, temporary folders by
    their atexit finalizers."""
    import gc  # noqa: PLC0415 - built in, but not loaded at start-up

    catalog = sys.modules.get("chalk.catalog")
    if catalog is not None:
        catalog.close_catalogs()
    gc.freeze()


def _stdout_closed() -> bool:
    """Whether stdout is a pipe or socket whose reader has gone (poll reports an error on it)."""
    import select  # noqa: PLC0415 - built in, but only needed on this path

    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by one without a descriptor
        return False
    poller = select.poll()
    poller.register(descriptor, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _end_at_once(signum: int, frame: FrameType | None) -> None:
    """SIGINT before the command runs: nothing is written yet, so end now, with one line."""
    os.write(2, f"{_INTERRUPTED}\n".encode())
    os._exit(_EXIT_INTERRUPTED)


def _main(argv: Sequence[str], *, own_sigint: bool = False) -> int:
    """Parse ``argv`` and run its command; the exit code."""
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Reported by the command's own parser where it gives one (its usage, not chalk's).
        usage: argparse.ArgumentParser = getattr(args, "usage_parser", parser)
        usage.error(f"unrecognized arguments: {' '.join(extra)}")
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2

    try:
        if own_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        code, error = _run(run, args)
        if own_sigint:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # over: its error prints whole
    except KeyboardInterrupt:
        # What was stored stays stored (every write is one transaction); no traceback.
        return _interrupted(own_sigint=own_sigint)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
    return code


def _run(
    run: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> tuple[int, str | None]:
    """``run(args)``: its exit code, and the one line to print for an error meant for the user
    (every part raises those on purpose: never a traceback)."""
    from chalk.common.errors import ChalkError  # noqa: PLC0415

    try:
        code = run(args)
        sys.stdout.flush()
    except ChalkError as error:
        return 1, str(error)
    except BrokenPipeError as error:
        if _stdout_closed():  # the reader of our output is gone: nobody is left to tell
            return _EXIT_BROKEN_PIPE, None
        return 1, _unexpected(error)  # a socket's, say: a real failure
    except Exception as error:
        if _from_ctrl_c(error):
            # Python 3.11 wraps a KeyboardInterrupt raised in __set_name__ (a class being
            # made while a module imports) in a RuntimeError.
            raise KeyboardInterrupt from None
        message = _catalog_failure(error)
        if message is None:
            if os.environ.get(_DEBUG_ENV):
                raise
            message = _unexpected(error)
        return 1, message
    return code, None


def _unexpected(error: Exception) -> str:
    """The one line for an error no part meant for the user: a bug, said as such."""
    location = ""
    trace = error.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    if trace is not None:
        location = f" at {os.path.basename(trace.tb_frame.f_code.co_filename)}:{trace.tb_lineno}"
    return (
        f"unexpected {type(error).__name__}{location}: {error} (a bug in scalegroup, not in "
        f"what you gave: please report it; {_DEBUG_ENV}=1 prints its traceback)"
    )


def _from_ctrl_c(error: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the causes of ``error``."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


@contextlib.contextmanager
def holding_ctrl_c() -> Iterator[None]:
    """Hold Ctrl-C while the block writes what must not stop half-way (files); one that came
    meanwhile is raised as KeyboardInterrupt once the block is done."""
    import threading  # noqa: PLC0415

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return
    came: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
    if came:
        raise KeyboardInterrupt


def _interrupted(*, own_sigint: bool) -> int:
    if own_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C adds no second line
    print(_INTERRUPTED, file=sys.stderr)
    return _EXIT_INTERRUPTED


def _catalog_failure(error: Exception) -> str | None:
    """The message of a SQLAlchemy error (the catalog's database failed), else None; loads
    SQLAlchemy only when the command did."""
    if "sqlalchemy" not in sys.modules:
        return None
    from sqlalchemy import exc as sa_exc  # noqa: PLC0415

    if not isinstance(error, sa_exc.SQLAlchemyError):
        return None
    cause = getattr(error, "orig", None) or error
    return f"the catalog failed: {cause}"
