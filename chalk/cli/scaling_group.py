"""``chalk scaling-group create|update|list|get|top|delete``: scaling groups from the command line.

The spec flags are read and checked by ``chalk.cli.spec_flags``; groups are shown by
``chalk.cli.group_views`` (their load by ``chalk.cli.group_usage`` and ``group_top``);
``chalk.deploy.groups`` does the rest on the project's backend: it
stores the spec and wakes the local controller, or applies the group's objects to Kubernetes.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Final

from chalk.cli.output import add_output_flag, emit, emit_table
from chalk.cli.spec_flags import (
    add_spec_flags,
    emit_dry_run,
    naming_flag,
    naming_group,
    note_unused_scaling_flags,
    read_spec_flags,
)

# The catalog, the deployers and chalk.cli.group_views (which imports the catalog) are imported
# where a command uses them, so that `chalk scaling-group --help` loads none of them (see
# chalk.cli's docstring); `list` loads the catalog and chalk.deploy.groups, not gRPC or polars.
if TYPE_CHECKING:
    from chalk.catalog import Catalog
    from chalk.catalog.specs import GroupSpec
    from chalk.common.config import Project

__all__ = ["checked_image", "register", "what_replicas_do"]

_EVENTS_SHOWN: Final = 20
# `get`'s replica columns; each replica's load (chalk.cli.group_usage) goes after PORT.
_REPLICA_COLUMNS: Final = (
    "REPLICA",
    "STATE",
    "READY",
    "RESTARTS",
    "PORT",
    "AGE",
    "LAST EXIT REASON",
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``chalk scaling-group`` and its subcommands to the ``chalk`` command."""
    parser = subparsers.add_parser(
        "scaling-group",
        help="create, change, inspect and delete scaling groups",
        description="Scaling groups run an image as autoscaled replicas. Exit codes: 0 done, "
        "1 a value was not valid or the command failed, 2 the command line could not be read.",
    )
    commands = parser.add_subparsers(dest="scaling_group_command", metavar="COMMAND", required=True)

    create = commands.add_parser(
        "create",
        help="create a scaling group",
        description="Create a scaling group running IMAGE. The image's tag is pinned to its "
        "current build; the local controller starts the replicas.",
    )
    _add_name(create)
    create.add_argument(
        "--image",
        required=True,
        type=_image_reference,
        help="the image to run, e.g. ner:latest (`name` means `name:latest`)",
    )
    create.add_argument(
        "--port",
        type=int,
        help="the port the image serves on (default: the image's EXPOSE, else the --port in "
        "its entrypoint, else 8080)",
    )
    _add_wait(create)
    add_spec_flags(create, on_update=False)
    create.set_defaults(run=_create)

    update = commands.add_parser(
        "update",
        help="change a scaling group (flags not given keep their value)",
        description="Change a scaling group: flags not given keep their current value, and "
        "its replicas roll to the new spec (a change of only the scaling or the tags keeps "
        "them). The image tag is pinned again, so with no other "
        "flag this picks up a rebuilt image.",
    )
    _add_name(update)
    update.add_argument("--image", type=_image_reference, help="a new image to run, e.g. ner:v2")
    update.add_argument("--port", type=int, help="the port the image serves on")
    _add_wait(update)
    add_spec_flags(update, on_update=True)
    update.set_defaults(run=_update)

    listing = commands.add_parser("list", help="list the live scaling groups")
    add_output_flag(listing)
    listing.set_defaults(run=_list)

    get = commands.add_parser(
        "get",
        help="show a scaling group: spec, replicas with their load, URL and recent events",
        description="Show a scaling group. Each replica's row has its metrics endpoint, its CPU "
        "and memory against the group's limits (as the local controller last sampled them) and "
        "the calls in flight its runtime reports; '-' where unknown.",
    )
    _add_name(get)
    add_output_flag(get)
    get.set_defaults(run=_get)

    top = commands.add_parser(
        "top",
        help="show every group's replicas with their CPU, memory and calls in flight, refreshed",
        description="Show every live group's replicas with their CPU and memory against their "
        "limits and the calls in flight, refreshed every --interval seconds until Ctrl-C; "
        "--once (or -o json|yaml) prints once.",
    )
    top.add_argument(
        "--interval",
        type=_positive_seconds,
        default=2.0,
        help="seconds between refreshes (default 2)",
    )
    top.add_argument("--name", help="show only this scaling group, e.g. ner (default: every one)")
    top.add_argument("--once", action="store_true", help="print once and exit (for scripts)")
    add_output_flag(top)
    top.set_defaults(run=_top)

    delete = commands.add_parser(
        "delete",
        help="delete a scaling group",
        description="Delete a scaling group: its replicas and URL stop, and its record stays "
        "in the catalog's history, marked deleted. The name is free again.",
    )
    _add_name(delete)
    delete.add_argument(
        "--force",
        action="store_true",
        help="delete it even though the applied features call it (their queries then fail)",
    )
    add_output_flag(delete)
    delete.set_defaults(run=_delete)


def _add_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="the scaling group's name, e.g. ner")


def _add_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help="return once the group serves its new spec; fail at once, saying why, when it "
        "cannot (its replicas keep crashing, or no controller runs)",
    )


def checked_image(text: str) -> str:
    """An ``--image`` flag's reference, stripped; an invalid one is refused, saying why (it
    could never be built or pulled)."""
    from chalk.common.names import image_reference_problem  # noqa: PLC0415

    problem = image_reference_problem(text.strip()) if text.strip() else "it is empty"
    if problem is not None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an image reference ({problem}): expected name[:tag] with a "
            f"lowercase name, such as 'ner:latest'"
        )
    return text.strip()


def _positive_seconds(text: str) -> float:
    from chalk.common.bounds import check_bound  # noqa: PLC0415
    from chalk.common.errors import ValidationError  # noqa: PLC0415

    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    try:
        check_bound("refresh_seconds", seconds, what="the interval")
    except ValidationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return seconds


def _image_reference(text: str) -> str:
    """``--image`` as stored: ``name`` means ``name:latest``."""
    from chalk.catalog.images import normalize_tag  # noqa: PLC0415

    return normalize_tag(checked_image(text))


def _open(name: str, *, dry_run: bool = False) -> tuple[Project, Catalog]:
    """The project and its catalog, for a command on group ``name``; a dry run creates no
    catalog (it reads one not made yet as empty)."""
    from chalk.catalog import open_catalog  # noqa: PLC0415
    from chalk.catalog.groups import validate_group_name  # noqa: PLC0415
    from chalk.common.config import find_project  # noqa: PLC0415

    project = find_project()
    naming_flag("--name", "name", validate_group_name, name, project.config.environment)
    return project, open_catalog(project, create=not dry_run)


def _create(args: argparse.Namespace) -> int:
    from chalk.catalog import ConflictError  # noqa: PLC0415
    from chalk.catalog.specs import GroupSpec  # noqa: PLC0415
    from chalk.cli.group_views import TIME_FORMAT, group_json, image_text  # noqa: PLC0415
    from chalk.deploy.groups import create_group, wait_until_serving  # noqa: PLC0415

    with naming_group(args.name):
        flags = read_spec_flags(args)
        base = GroupSpec(image=args.image)
        spec = base.with_changes(**flags.changes(base))
    project, catalog = _open(args.name, dry_run=args.dry_run)
    live = catalog.groups.find(args.name)
    if live is not None:
        # Said here too, not only by the store, so it is not hidden behind an image error.
        raise ConflictError(
            f"scaling group {args.name!r} already exists (created "
            f"{live.created_at:{TIME_FORMAT}} UTC): expected a new name; change it with "
            f"`chalk scaling-group update --name {args.name}` or delete it first"
        )
    group, stored = create_group(
        project,
        catalog,
        args.name,
        spec,
        port_given=args.port is not None,
        dry_run=args.dry_run,
    )
    note_unused_scaling_flags(flags, stored.scaling, args.name, project=project)
    if group is None:
        document = {"name": args.name, "spec": stored.to_dict()}
        emit_dry_run(project, args.name, stored, document, args.output_format)
        return 0
    if args.wait:
        group = wait_until_serving(catalog, args.name, project=project)
    if args.output_format == "table":
        started = "serves" if args.wait else f"{_who_starts(project)} starts its replicas"
        print(
            f"created scaling group {group.name!r} ({image_text(stored)}, port {stored.port}); "
            f"{started}: see `chalk scaling-group get --name {group.name}`"
        )
    else:
        emit(group_json(group), args.output_format)
    return 0


def _update(args: argparse.Namespace) -> int:
    from chalk.catalog.specs import GroupSpec  # noqa: PLC0415
    from chalk.cli.group_views import group_json, image_text  # noqa: PLC0415
    from chalk.deploy.groups import update_group, wait_until_serving  # noqa: PLC0415

    with naming_group(args.name):
        flags = read_spec_flags(args)
    project, catalog = _open(args.name, dry_run=args.dry_run)
    read = catalog.groups.get(args.name)
    current = GroupSpec.from_dict(read.spec)
    with naming_group(args.name):
        changes = flags.changes(current)
    group, stored, changed = update_group(
        project,
        catalog,
        args.name,
        changes,
        dry_run=args.dry_run,
        expected_revision=read.revision,
    )
    note_unused_scaling_flags(flags, stored.scaling, args.name, project=project)
    if group is None:
        document = {"name": args.name, "changed": changed, "spec": stored.to_dict()}
        emit_dry_run(project, args.name, stored, document, args.output_format, current=current)
        return 0
    if args.wait:
        group = wait_until_serving(catalog, args.name, project=project)
    if args.output_format != "table":
        emit(group_json(group), args.output_format)
    elif changed:
        print(
            f"updated scaling group {group.name!r} to revision {group.revision} "
            f"({image_text(stored)}); "
            f"{what_replicas_do(project, current, stored, args.wait, idle=read.status == 'Idle')}"
        )
    else:
        print(f"scaling group {group.name!r} is unchanged (revision {group.revision})")
    return 0


def what_replicas_do(
    project: Project, before: GroupSpec, after: GroupSpec, waited: bool, *, idle: bool = False
) -> str:
    """What the update does to the running replicas: a change of only the scaling (locally,
    also of the tags) keeps them, as the controller resizes and restarts nothing; any other
    change rolls them. ``idle``: the group was at zero (``Idle``) before the update.

    Examples
    --------
    >>> from dataclasses import replace
    >>> from pathlib import Path
    >>> from chalk.catalog.resources import AutoScalingSpec
    >>> from chalk.catalog.specs import GroupSpec
    >>> from chalk.common.config import Project, ProjectConfig
    >>> config = ProjectConfig(project="demo", backend="kubernetes")
    >>> kube = Project(Path("/p"), Path("/p/chalk.yaml"), config)
    >>> zero = GroupSpec(image="a:1", scaling=AutoScalingSpec(min_replicas=0, max_replicas=2))
    >>> what_replicas_do(kube, zero, replace(zero, image="a:2"), False, idle=True)
    'it stays at zero: the next call starts a replica of this revision'
    >>> one = replace(zero, scaling=AutoScalingSpec(min_replicas=1, max_replicas=2))
    >>> what_replicas_do(kube, zero, one, False, idle=True)
    'it leaves zero: 1 replica starts'
    """
    kept = ("scaling",) if project.config.backend == "kubernetes" else ("scaling", "tags")
    only_scaling = _without(before, kept) == _without(after, kept)
    if idle:
        starting = after.scaling.min_replicas
        if starting > 0:
            started = "replica starts" if starting == 1 else "replicas start"
            return f"it leaves zero: {starting} {started}"
        if only_scaling:
            return "it stays at zero (only the scaling changed)"
        if project.config.backend == "kubernetes":
            return "it stays at zero: the next call starts a replica of this revision"
        return "a replica of this revision starts, and goes back to zero when idle"
    if only_scaling:
        return f"its replicas are kept (only the {' or the '.join(kept)} changed)"
    return "its replicas serve it" if waited else "its replicas roll to it"


def _without(spec: GroupSpec, fields: tuple[str, ...]) -> dict[str, object]:
    return {key: value for key, value in spec.to_dict().items() if key not in fields}


def _who_starts(project: Project) -> str:
    if project.config.backend == "kubernetes":
        return f"Kubernetes (namespace {project.config.kubernetes.namespace})"
    return "the local controller"


def _list(args: argparse.Namespace) -> int:
    from chalk.catalog import open_catalog  # noqa: PLC0415
    from chalk.cli.group_views import TIME_FORMAT, group_json  # noqa: PLC0415
    from chalk.common.config import find_project  # noqa: PLC0415
    from chalk.deploy.groups import list_groups  # noqa: PLC0415

    project = find_project()
    groups = list_groups(project, open_catalog(project, create=False))
    if args.output_format != "table":
        emit([group_json(group) for group in groups], args.output_format)
        return 0
    emit_table(
        ["ID", "NAME", "IMAGE", "STATUS", "READY/DESIRED", "URL", "CREATED"],
        [
            {
                "ID": group.id,
                "NAME": group.name,
                "IMAGE": group.spec.get("image"),
                "STATUS": group.status,
                "READY/DESIRED": f"{group.ready_replicas}/{group.desired_replicas}",
                "URL": group.url,
                "CREATED": f"{group.created_at:{TIME_FORMAT}}",
            }
            for group in groups
        ],
    )
    return 0


def _get(args: argparse.Namespace) -> int:
    from chalk.catalog import open_catalog  # noqa: PLC0415
    from chalk.catalog.specs import GroupSpec  # noqa: PLC0415
    from chalk.cli.group_usage import USAGE_COLUMNS, replica_loads, unknown_note  # noqa: PLC0415
    from chalk.cli.group_views import (  # noqa: PLC0415
        TIME_FORMAT,
        autoscaler_text,
        event_json,
        group_json,
        one_line,
        print_group,
        replica_json,
        replica_row,
    )
    from chalk.common.config import find_project  # noqa: PLC0415
    from chalk.deploy.groups import observe_group  # noqa: PLC0415
    from chalk.deploy.rollout import rollout_of  # noqa: PLC0415

    project = find_project()
    catalog = open_catalog(project, create=False)
    view = observe_group(project, catalog, args.name)
    group, replicas, events = view.group, view.replicas, view.events[-_EVENTS_SHOWN:]
    now = catalog.clock()
    loads = replica_loads(group, replicas, now=now)
    specs = {revision.revision: revision.spec for revision in catalog.groups.history(group.name)}
    rollout = rollout_of(group, replicas, specs)
    signals = catalog.state.autoscaler_state(group.id).get("signals")  # local groups only
    if args.output_format != "table":
        document = group_json(group)
        document["rollout"] = None if rollout is None else rollout.to_json()
        document["autoscaler"] = signals
        document["replicas"] = [replica_json(load.replica) | load.document() for load in loads]
        document["events"] = [event_json(event) for event in events]
        emit(document, args.output_format)
        return 0
    print_group(
        group,
        GroupSpec.from_dict(group.spec),
        rollout=rollout.message if rollout else None,
        autoscaler=autoscaler_text(signals),
    )
    print("\nReplica states:" + ("" if replicas else " <none>"))
    if replicas:
        emit_table(
            [*_REPLICA_COLUMNS[:5], *USAGE_COLUMNS, *_REPLICA_COLUMNS[5:]],
            [replica_row(load.replica, now) | load.row() for load in loads],
        )
        note = unknown_note(group)
        if note is not None:
            print(f"({note})")
    print("\nEvents:" + ("" if events else " <none>"))
    if events:
        emit_table(
            ["TIME", "TYPE", "REASON", "MESSAGE"],
            [
                {
                    "TIME": f"{e.time:{TIME_FORMAT}}",
                    "TYPE": e.type,
                    "REASON": e.reason,
                    "MESSAGE": one_line(e.message),
                }
                for e in events
            ],
        )
    return 0


def _top(args: argparse.Namespace) -> int:
    from chalk.catalog import open_catalog  # noqa: PLC0415
    from chalk.cli.group_top import run_top  # noqa: PLC0415
    from chalk.common.config import find_project  # noqa: PLC0415

    project = find_project()
    return run_top(
        project,
        open_catalog(project, create=False),
        interval_s=args.interval,
        once=args.once,
        name=args.name,
        fmt=args.output_format,
    )


def _delete(args: argparse.Namespace) -> int:
    from chalk.cli.group_views import group_json  # noqa: PLC0415
    from chalk.deploy.groups import delete_group  # noqa: PLC0415
    from chalk.deploy.local.lock import controller_pid  # noqa: PLC0415
    from chalk.engine.callers import refuse_delete_of_called  # noqa: PLC0415

    project, catalog = _open(args.name)
    catalog.groups.get(args.name)  # a missing group is said before anything else
    if not args.force:
        refuse_delete_of_called(catalog, args.name, force_hint="--force")
    deleted = delete_group(project, catalog, args.name)
    if args.output_format != "table":
        emit(group_json(deleted), args.output_format)
    elif project.config.backend == "local" and controller_pid(project) is None:
        # Deleting starts no controller (chalk down means down): the next one stops what is left.
        print(
            f"deleted scaling group {deleted.name!r}; its record stays in the catalog's history. "
            f"The local controller is not running: a replica of the group still running stops "
            f"when it next runs (`chalk up`), or now with `chalk down`"
        )
    else:
        print(
            f"deleted scaling group {deleted.name!r}; its replicas and URL stop, and its "
            f"record stays in the catalog's history"
        )
    return 0
