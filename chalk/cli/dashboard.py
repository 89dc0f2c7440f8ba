"""``chalk dashboard``: the feature server with its dashboard, on 127.0.0.1 only, its URL
printed once it listens; Ctrl-C ends it."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

__all__ = ["register"]

_HOST = "127.0.0.1"


def register(subparsers: Any) -> None:
    """Add ``chalk dashboard``."""
    parser = subparsers.add_parser(
        "dashboard",
        help="show the project's groups, models and graph live in a browser (127.0.0.1 only)",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port to bind on 127.0.0.1 (default: a free one)"
    )
    parser.set_defaults(run=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    # Imported here: the HTTP stack is an extra (scalegroup[server]), and --help stays fast.
    try:
        from chalk.server.run import serve  # noqa: PLC0415
        from chalk.server.settings import (  # noqa: PLC0415
            ServerSettings,
            ServerSettingsError,
            check_bindable,
            url_of,
        )
    except ImportError as error:
        print(
            f"error: chalk dashboard needs the server extra ({error.name} is missing): "
            f"pip install 'scalegroup[server]'",
            file=sys.stderr,
        )
        return 1
    from chalk.common.config import find_project  # noqa: PLC0415

    project = find_project()
    try:
        settings = ServerSettings(project_dir=str(project.root), host=_HOST, port=args.port)
        # Port 0: the one the system picks now, so that it can be printed.
        port = check_bindable(_HOST, settings.port)
        settings = dataclasses.replace(settings, port=port)
    except ServerSettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    def ready() -> None:
        print(f"dashboard of {project.root} at {url_of(_HOST, port)}/ (Ctrl-C ends it)", flush=True)

    serve(settings, on_ready=ready)
    return 0
