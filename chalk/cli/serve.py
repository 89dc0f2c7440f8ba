"""``chalk serve``: the HTTP feature server over the project's applied graph."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from chalk.server import ServerSettings, ServerSettingsError
from chalk.server.settings import DEFAULT_HOLD_TIMEOUT_S, DEFAULT_MAX_HELD_CALLS

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``chalk serve``."""
    parser = subparsers.add_parser(
        "serve",
        help="answer online queries and model calls over HTTP (the graph `chalk apply` stored)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (8000)")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes sharing the port (1)"
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        help="a file holding the bearer token clients must send; required off loopback",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=16 << 20,
        help="the largest request body accepted, in bytes (16 MiB)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long one request may take before it is answered 504 (30)",
    )
    parser.add_argument(
        "--hold-timeout",
        type=float,
        default=DEFAULT_HOLD_TIMEOUT_S,
        metavar="SECONDS",
        help="how long a model call waits for a replica of a scaling group with none ready "
        "(starting, scaled to zero) before it fails; at most --deadline (60)",
    )
    parser.add_argument(
        "--max-held-calls",
        type=int,
        default=DEFAULT_MAX_HELD_CALLS,
        metavar="N",
        help="model calls each worker holds at once while their groups have no ready replica; "
        "the next fails at once (1000)",
    )
    parser.add_argument(
        "--answer-cache-bytes",
        type=int,
        default=None,
        metavar="BYTES",
        help="each worker's in-process cache of model answers (max_staleness), in bytes "
        "(256 MiB; 0 keeps none)",
    )
    parser.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    # Imported here: the HTTP stack is an extra (scalegroup[server]).
    try:
        from chalk.server.run import serve  # noqa: PLC0415
        from chalk.server.settings import check_bindable, read_token, url_of  # noqa: PLC0415
    except ImportError as error:
        print(
            f"error: chalk serve needs the server extra ({error.name} is missing): "
            f"pip install 'scalegroup[server]'",
            file=sys.stderr,
        )
        return 1
    from chalk.common.config import find_project  # noqa: PLC0415 - yaml: not for --help

    project = find_project()
    if project.config.online_store is not None:
        # A store the workers could not open fails here, before "serving" is announced (a
        # ChalkError: main prints it). Making a store connects nothing, so it is just dropped.
        from chalk.engine.cache import open_answer_store  # noqa: PLC0415 - loads polars

        open_answer_store(project.config.online_store)
    try:
        settings = ServerSettings(
            project_dir=str(project.root),
            host=args.host,
            port=args.port,
            workers=args.workers,
            token=read_token(args.token_file) if args.token_file else None,
            max_body_bytes=args.max_body_bytes,
            deadline_s=args.deadline,
            hold_timeout_s=args.hold_timeout,
            max_held_calls=args.max_held_calls,
            answer_cache_bytes=args.answer_cache_bytes,
        )
        # Port 0: the one the system picks now, so that it can be printed.
        settings = dataclasses.replace(settings, port=check_bindable(settings.host, settings.port))
    except ServerSettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    where = url_of(settings.host, settings.port)
    auth = "bearer token required" if settings.token else "no token (loopback only)"
    print(f"serving {project.root} on {where} ({args.workers} worker(s), {auth})", flush=True)
    serve(settings)
    return 0
