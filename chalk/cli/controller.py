"""``chalk up|down|status``: the local controller from the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from typing import TYPE_CHECKING, Any

from chalk.cli.output import add_output_flag, emit, emit_table

# The catalog and the controller are imported by the functions that run the commands, so that
# `chalk up --help` loads neither (see chalk.cli's docstring).

if TYPE_CHECKING:
    from chalk.catalog import Catalog, ScalingGroup
    from chalk.common.config import Project

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``chalk up``, ``chalk down`` and ``chalk status``."""
    up = subparsers.add_parser("up", help="run the local controller (foreground by default)")
    up.add_argument("--detach", "-d", action="store_true", help="run it in the background")
    up.set_defaults(run=_up)
    down = subparsers.add_parser("down", help="stop the local controller and every replica")
    down.set_defaults(run=_down)
    status = subparsers.add_parser("status", help="show the local controller and its groups")
    add_output_flag(status)
    status.set_defaults(run=_status)


def _local_project(verb: str) -> Project:
    """The project, when its groups run locally; one line saying why not on Kubernetes."""
    from chalk.common.config import find_project  # noqa: PLC0415
    from chalk.common.errors import ConfigError  # noqa: PLC0415

    project = find_project()
    if project.config.backend == "kubernetes":
        raise ConfigError(
            f"{project.config_path}: this project runs on Kubernetes (backend: kubernetes, "
            f"namespace {project.config.kubernetes.namespace}): there is no local controller "
            f"to {verb}; its scaling groups run in the cluster (`chalk status` shows them)"
        )
    return project


def _up(args: argparse.Namespace) -> int:
    from chalk.deploy.local import daemon  # noqa: PLC0415

    project = _local_project("start")
    if args.detach:
        pid = daemon.ensure_running(project)
        if pid is None:
            running = daemon.controller_pid(project)
            where = "in another process, not as a daemon" if running is None else f"pid {running}"
            print(f"the local controller is already running ({where})")
        else:
            print(f"started the local controller (pid {pid}); logs in {daemon.logs_dir(project)}")
        return 0
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return daemon.run_foreground(project)


def _down(args: argparse.Namespace) -> int:
    from chalk.deploy.local import daemon  # noqa: PLC0415

    project = _local_project("stop")
    if daemon.stop(project):
        print("stopped the local controller and its replicas")
        return 0
    left = daemon.stop_orphans(project)
    print("the local controller was not running", end="")
    print(f"; stopped {left} replicas it had left running" if left else "")
    return 0


def _status(args: argparse.Namespace) -> int:
    from chalk.catalog import open_catalog  # noqa: PLC0415
    from chalk.common.config import find_project  # noqa: PLC0415
    from chalk.deploy.groups import list_groups  # noqa: PLC0415

    project = find_project()
    catalog = open_catalog(project, create=False)
    # The groups as `list` and `get` show them (from the cluster on Kubernetes; locally
    # Unknown once the controller stopped reporting).
    groups = list_groups(project, catalog)
    if project.config.backend == "kubernetes":
        namespace = project.config.kubernetes.namespace
        header = {"kubernetes": {"namespace": namespace}}
        line = f"backend: Kubernetes (namespace {namespace}); no local controller"
    else:
        header, line = _local_controller(project, catalog)
    if args.output_format != "table":
        emit({**header, "groups": [_group_json(group) for group in groups]}, args.output_format)
        return 0
    print(line)
    if groups:
        emit_table(["NAME", "STATUS", "READY", "URL", "REASON"], [_row(g) for g in groups])
    return 0


def _local_controller(project: Project, catalog: Catalog) -> tuple[dict[str, Any], str]:
    """The local controller as JSON and as the line `status` prints."""
    from chalk.deploy.local import daemon  # noqa: PLC0415
    from chalk.deploy.local.controller import BACKEND  # noqa: PLC0415

    beat = catalog.state.controller(BACKEND)
    pid = daemon.controller_pid(project)
    age = None if beat is None else (dt.datetime.now(dt.UTC) - beat.heartbeat_at).total_seconds()
    metrics = None
    if beat is not None and beat.metrics_port is not None:
        metrics = f"http://127.0.0.1:{beat.metrics_port}/metrics"
    controller = {
        "controller": {
            "running": pid is not None,
            "pid": pid,
            "heartbeatAgeSeconds": age,
            "metricsEndpoint": metrics,
        }
    }
    if pid is None:
        line = "local controller: not running (start it with `chalk up --detach`)"
    elif age is None:
        line = f"local controller: starting (pid {pid}, no heartbeat yet)"
    elif not catalog.local_controller_running():
        line = (
            f"local controller: not responding (pid {pid}, last heartbeat {age:.1f}s ago); "
            f"its groups show Unknown"
        )
    else:
        served = f", metrics {metrics}" if metrics else ""
        line = f"local controller: running (pid {pid}, heartbeat {age:.1f}s ago{served})"
    return controller, line


def _group_json(group: ScalingGroup) -> dict[str, Any]:
    return {
        "name": group.name,
        "status": group.status,
        "reason": group.reason,
        "readyReplicas": group.ready_replicas,
        "desiredReplicas": group.desired_replicas,
        "url": group.url,
    }


def _row(group: ScalingGroup) -> dict[str, Any]:
    return {
        "NAME": group.name,
        "STATUS": group.status,
        "READY": f"{group.ready_replicas}/{group.desired_replicas}",
        "URL": group.url,
        "REASON": group.reason.splitlines()[0] if group.reason else "",
    }
