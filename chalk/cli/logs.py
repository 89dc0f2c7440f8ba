"""``chalk logs GROUP``: every replica's lines, merged in time, each prefixed with its replica.

``chalk.deploy.logs.group_logs`` reads them on the project's backend (the local replicas'
files, or the pods' logs on Kubernetes); this module reads the flags and prints the lines as
``kubectl logs -l ... --prefix`` does: ``[replica] line``.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import datetime as dt

__all__ = ["parse_duration", "register"]

_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_NEGATIVE_VALUE: Final = re.compile(r"^-\d")
_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``chalk logs`` to the ``chalk`` command."""
    parser = subparsers.add_parser(
        "logs",
        help="print the logs of a scaling group's replicas, merged in time",
        description="Print the lines of every replica of GROUP (or of one), merged in time, "
        "each prefixed with its replica as [replica]. Local replicas' rotated logs are "
        "included, and the logs kept (a week) of replicas that have gone, of a deleted group "
        "and of a project whose controller is down are read too (one note on stderr says so). "
        "A line without a time of its own (our runtime's JSON timestamp, a leading ISO time "
        "not older than the line before) takes the next time known after it. "
        "Exit codes: 0 done, 1 an unknown group or replica, 130 interrupted (Ctrl-C ends "
        "--follow).",
    )
    parser.add_argument(
        "group", nargs="?", metavar="GROUP", help="the scaling group, e.g. ner (or --name)"
    )
    parser.add_argument("--name", metavar="GROUP", help="the scaling group, as GROUP")
    parser.add_argument(
        "--replica",
        metavar="REPLICA",
        help="only this replica (as `scaling-group get` lists), or one that has gone while "
        "its log is kept (a week)",
    )
    parser.add_argument(
        "--tail",
        type=_tail,
        metavar="N",
        help="only the last N lines of each replica (as kubectl's --tail, per container); "
        "default all",
    )
    parser.add_argument(
        "--since",
        type=parse_duration,
        metavar="DURATION",
        help="only lines newer than this, e.g. 30s, 10m, 1h, 1h30m (at most 366d)",
    )
    parser.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="go on printing new lines, of replicas that start too, until Ctrl-C",
    )
    parser.add_argument(
        "--timestamps", action="store_true", help="print each line's time (UTC) after the prefix"
    )
    # A value such as ``-5m`` reaches its type (which says what it expects) instead of being
    # taken for an option ("expected one argument"): argparse's own test for negative numbers,
    # widened to anything opening with "-" and a digit (no option of this command does).
    parser._negative_number_matcher = _NEGATIVE_VALUE
    parser.set_defaults(run=_logs, usage_parser=parser)


def parse_duration(text: str) -> dt.timedelta:
    """A duration as kubectl's ``--since`` takes it: ``10m``, ``1h30m``, ``45s``, ``2d``.

    Examples
    --------
    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    >>> parse_duration("10 minutes")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a duration such as 30s, 10m or 1h, got '10 minutes'
    """
    import datetime as dt  # noqa: PLC0415

    from chalk.common.bounds import check_bound  # noqa: PLC0415
    from chalk.common.errors import ValidationError  # noqa: PLC0415

    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        sign = " (how far back: never negative)" if text.startswith("-") else ""
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 30s, 10m or 1h{sign}, got {text!r}"
        )
    seconds = sum(float(n) * _SECONDS[unit] for n, unit in parts)
    try:
        check_bound("log_since_seconds", seconds, what=f"the duration {text!r}")
    except ValidationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return dt.timedelta(seconds=seconds)


def _tail(text: str) -> int:
    from chalk.common.bounds import check_bound  # noqa: PLC0415
    from chalk.common.errors import ValidationError  # noqa: PLC0415

    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of lines (0 or more), got {text!r}")
    try:
        check_bound("log_lines", value, what="the number of lines")
    except ValidationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def _logs(args: argparse.Namespace) -> int:
    from chalk.catalog import open_catalog  # noqa: PLC0415
    from chalk.common.config import find_project  # noqa: PLC0415
    from chalk.deploy.logs import LogQuery, group_logs  # noqa: PLC0415

    group = _group_named(args)
    project = find_project()
    query = LogQuery(replica=args.replica, tail=args.tail, since=args.since, follow=args.follow)
    lines = group_logs(project, open_catalog(project, create=False), group, query, note=_note)
    out = sys.stdout
    try:
        for line in lines:
            when = f"{line.time:%Y-%m-%dT%H:%M:%S.%fZ} " if args.timestamps else ""
            out.write(f"[{line.replica}] {when}{line.text}\n")
            if args.follow:
                out.flush()
        out.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as other Unix tools do.
        _quiet_stdout()
    return 0


def _group_named(args: argparse.Namespace) -> str:
    """GROUP or ``--name``; a usage error (exit 2) for neither, or two different ones."""
    usage: argparse.ArgumentParser = args.usage_parser
    if args.group is None and args.name is None:
        usage.error("expected a scaling group: chalk logs GROUP (or --name GROUP)")
    if args.group is not None and args.name is not None and args.group != args.name:
        usage.error(f"two scaling groups given, {args.group!r} and --name {args.name!r}")
    return str(args.group or args.name)


def _note(text: str) -> None:
    sys.stdout.flush()
    print(f"note: {text}", file=sys.stderr, flush=True)


def _quiet_stdout() -> None:
    import os  # noqa: PLC0415

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
