"""``chalk scaling-group create|update|list|get|delete``: scaling groups from the command line.

Flags are read and checked here, each error naming its flag, before the catalog is touched;
``chalk.deploy.groups`` does the rest on the project's backend: it stores the spec and wakes the
local controller, or applies the group's objects to the Kubernetes cluster.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import yaml

from chalk.catalog import Catalog, ConflictError, ScalingGroup, ValidationError, open_catalog
from chalk.catalog.groups import validate_group_name
from chalk.catalog.images import normalize_tag
from chalk.catalog.records import Event, Replica
from chalk.catalog.resources import AutoScalingSpec, ScalingGroupResourceRequest
from chalk.catalog.specs import GroupSpec, parse_entrypoint, parse_env, parse_tags
from chalk.cli.output import add_output_flag, emit, emit_table
from chalk.common.config import Project, find_project
from chalk.deploy.groups import (
    create_group,
    delete_group,
    dry_run_manifests,
    list_groups,
    observe_group,
    update_group,
)

__all__ = ["SpecFlags", "add_spec_flags", "emit_dry_run", "read_spec_flags", "register"]

_MAX_PORT: Final = 65535
_EVENTS_SHOWN: Final = 20
_TIME: Final = "%Y-%m-%d %H:%M:%S"
# The flag that sets each AutoScalingSpec field, to put the library's messages in flag terms.
_SCALING_FLAGS: Final = {
    "min_replicas": "--min-replicas",
    "max_replicas": "--max-replicas",
    "target_cpu_utilization_percentage": "--target-cpu",
}
_BOUNDS: Final = ("min_replicas", "max_replicas")
_RESOURCE_FIELDS: Final = ("cpu", "memory", "gpu")

_T = TypeVar("_T")


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
    add_spec_flags(create, on_update=False)
    create.set_defaults(run=_create)

    update = commands.add_parser(
        "update",
        help="change a scaling group (flags not given keep their value)",
        description="Change a scaling group: flags not given keep their current value, and "
        "its replicas roll to the new spec. The image tag is pinned again, so with no other "
        "flag this picks up a rebuilt image.",
    )
    _add_name(update)
    update.add_argument("--image", type=_image_reference, help="a new image to run, e.g. ner:v2")
    update.add_argument("--port", type=int, help="the port the image serves on")
    add_spec_flags(update, on_update=True)
    update.set_defaults(run=_update)

    listing = commands.add_parser("list", help="list the live scaling groups")
    add_output_flag(listing)
    listing.set_defaults(run=_list)

    get = commands.add_parser(
        "get", help="show a scaling group: spec, replicas, URL and recent events"
    )
    _add_name(get)
    add_output_flag(get)
    get.set_defaults(run=_get)

    delete = commands.add_parser(
        "delete",
        help="delete a scaling group",
        description="Delete a scaling group: its replicas and URL stop, and its record stays "
        "in the catalog's history, marked deleted. The name is free again.",
    )
    _add_name(delete)
    add_output_flag(delete)
    delete.set_defaults(run=_delete)


def _add_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="the scaling group's name, e.g. ner")


def add_spec_flags(parser: argparse.ArgumentParser, *, on_update: bool) -> None:
    keep = " (default: keep the current value)" if on_update else ""
    one = " (default: keep the current value; 1 for a new group)" if on_update else " (default 1)"
    parser.add_argument(
        "--replicas",
        type=int,
        metavar="N",
        help=f"run exactly N replicas: sets both --min-replicas and --max-replicas{keep}",
    )
    parser.add_argument(
        "--min-replicas",
        type=int,
        metavar="N",
        help=f"the fewest replicas, at least 1{one}",
    )
    parser.add_argument(
        "--max-replicas",
        type=int,
        metavar="N",
        help=f"the most replicas; autoscales when above --min-replicas{one}",
    )
    parser.add_argument(
        "--target-cpu",
        type=int,
        metavar="PERCENT",
        help="CPU use, in percent of the requested CPU, to keep replicas at (1 to 100; "
        f"default 80 when the group autoscales){keep}",
    )
    parser.add_argument(
        "--cpu", help=f"CPU per replica such as 2 or 500m (default request 100m, limit 1){keep}"
    )
    parser.add_argument(
        "--memory",
        help=f"memory per replica such as 4Gi or 512Mi (default request 256Mi, limit 1Gi){keep}",
    )
    parser.add_argument(
        "--gpu", help=f"GPUs per replica: type:count such as nvidia-tesla-t4:1, or count{keep}"
    )
    parser.add_argument(
        "--tags",
        metavar="K=V,...",
        help='tags such as --tags="team=nlp,tier=gold"'
        + ("; replaces the whole set (--tags= removes every tag)" if on_update else ""),
    )
    parser.add_argument(
        "--entrypoint",
        metavar="ARG,...",
        help="the command to run instead of the image's, comma-separated and never run "
        'through a shell, e.g. --entrypoint="python,-m,server"'
        + ("; replaces the current one" if on_update else ""),
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable of every replica (repeatable)"
        + ("; merged into the current ones, a KEY given replaces its value" if on_update else ""),
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything and print what would be stored: the spec, or with backend "
        "kubernetes the objects to apply (as YAML, or as JSON with -o json); store nothing "
        "and start nothing",
    )
    add_output_flag(parser)


def _image_reference(text: str) -> str:
    """``--image`` as stored: ``name`` means ``name:latest``."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"expected an image reference such as 'ner:latest', got {text!r}"
        )
    return normalize_tag(text.strip())


@dataclass(frozen=True, slots=True)
class SpecFlags:
    """The spec flags given on the command line, each checked on its own; None when not given.

    ``scaling`` and ``resources`` hold only the fields given, to merge into a current spec;
    ``scaling_flags`` names the flag that set each scaling field, for messages.
    """

    image: str | None
    port: int | None
    scaling: dict[str, int]
    scaling_flags: dict[str, str]
    resources: dict[str, str]
    env: dict[str, str]
    entrypoint: tuple[str, ...] | None
    tags: dict[str, str] | None

    def changes(self, current: GroupSpec) -> dict[str, Any]:
        """GroupSpec fields to replace; scaling, resources and env merged into ``current``'s."""
        scaling = None
        if self.scaling:
            merged = {**current.scaling.to_dict(), **self.scaling}
            scaling = _scaling_spec(merged, self.scaling_flags)
        resources = None
        if self.resources:
            resources = ScalingGroupResourceRequest.from_dict(
                {**current.resources.to_dict(), **self.resources}
            )
        return {
            "image": self.image,
            "port": self.port,
            "scaling": scaling,
            "resources": resources,
            "env": {**current.env, **self.env} if self.env else None,
            "entrypoint": self.entrypoint,
            "tags": self.tags,
        }


def read_spec_flags(args: argparse.Namespace) -> SpecFlags:
    if args.port is not None and not 1 <= args.port <= _MAX_PORT:
        raise ValidationError(f"--port is out of range: expected 1..{_MAX_PORT}, got {args.port}")
    scaling, scaling_flags = _scaling_flags(args)
    resources: dict[str, str] = {}
    for field in _RESOURCE_FIELDS:
        value = getattr(args, field)
        if value is not None:
            _naming_flag(f"--{field}", field, ScalingGroupResourceRequest.from_dict, {field: value})
            resources[field] = value
    entrypoint = None
    if args.entrypoint is not None:
        entrypoint = _naming_flag("--entrypoint", "entrypoint", parse_entrypoint, args.entrypoint)
    tags = None
    if args.tags is not None:
        tags = _naming_flag("--tags", "tags", parse_tags, args.tags)
    return SpecFlags(
        image=args.image,
        port=args.port,
        scaling=scaling,
        scaling_flags=scaling_flags,
        resources=resources,
        env=_naming_flag("--env", "env", parse_env, args.env),
        entrypoint=entrypoint,
        tags=tags,
    )


def _scaling_flags(args: argparse.Namespace) -> tuple[dict[str, int], dict[str, str]]:
    """The AutoScalingSpec fields given and the flag of each, checked without the current spec."""
    flags = dict(_SCALING_FLAGS)
    given = {
        "min_replicas": args.min_replicas,
        "max_replicas": args.max_replicas,
        "target_cpu_utilization_percentage": args.target_cpu,
    }
    if args.replicas is not None:
        for field in _BOUNDS:
            if given[field] is not None and given[field] != args.replicas:
                flag = _SCALING_FLAGS[field]
                raise ValidationError(
                    f"--replicas {args.replicas} sets both --min-replicas and --max-replicas: "
                    f"expected {flag} {args.replicas} or no {flag}, got {flag} {given[field]}; "
                    f"give --min-replicas and --max-replicas instead to autoscale"
                )
            given[field] = args.replicas
            flags[field] = "--replicas"
    scaling = {field: value for field, value in given.items() if value is not None}
    for field, value in scaling.items():
        # A replica count alone stands for both bounds, so only its own range is checked.
        alone = dict.fromkeys(_BOUNDS, value) if field in _BOUNDS else {field: value}
        _scaling_spec(alone, dict.fromkeys(_SCALING_FLAGS, flags[field]))
    if set(_BOUNDS) <= scaling.keys():
        _scaling_spec({field: scaling[field] for field in _BOUNDS}, flags)
    return scaling, flags


def _naming_flag(flag: str, field: str, build: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``build(...)``, its ValidationError reworded to name ``flag`` (the field's flag)."""
    try:
        return build(*args, **kwargs)
    except ValidationError as error:
        message = str(error)
        if message.startswith(flag):
            raise
        if message.startswith(f"{field} "):
            raise ValidationError(f"{flag}{message[len(field) :]}") from None
        raise ValidationError(f"{flag}: {message}") from None


def _scaling_spec(values: Mapping[str, object], flags: Mapping[str, str]) -> AutoScalingSpec:
    """``AutoScalingSpec.from_dict(values)``, its errors naming flags instead of fields."""
    try:
        return AutoScalingSpec.from_dict(values)
    except ValidationError as error:
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, flags)) + r")\b")
        raise ValidationError(pattern.sub(lambda m: flags[m[1]], str(error))) from None


def _open(name: str) -> tuple[Project, Catalog]:
    project = find_project()
    _naming_flag("--name", "name", validate_group_name, name, project.config.environment)
    return project, open_catalog(project)


def _create(args: argparse.Namespace) -> int:
    flags = read_spec_flags(args)
    base = GroupSpec(image=args.image)
    spec = base.with_changes(**flags.changes(base))
    project, catalog = _open(args.name)
    live = catalog.groups.find(args.name)
    if live is not None:
        # Said here too, not only by the store, so it is not hidden behind an image error.
        raise ConflictError(
            f"scaling group {args.name!r} already exists (created "
            f"{live.created_at:{_TIME}} UTC): expected a new name; change it with "
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
    if group is None:
        document = {"name": args.name, "spec": stored.to_dict()}
        emit_dry_run(project, args.name, stored, document, args.output_format)
    elif args.output_format == "table":
        print(
            f"created scaling group {group.name!r} ({_image_text(stored)}, port {stored.port}); "
            f"{_who_starts(project)} starts its replicas: see "
            f"`chalk scaling-group get --name {group.name}`"
        )
    else:
        emit(_group_json(group), args.output_format)
    return 0


def _update(args: argparse.Namespace) -> int:
    flags = read_spec_flags(args)
    project, catalog = _open(args.name)
    read = catalog.groups.get(args.name)
    current = GroupSpec.from_dict(read.spec)
    group, stored, changed = update_group(
        project,
        catalog,
        args.name,
        flags.changes(current),
        dry_run=args.dry_run,
        expected_revision=read.revision,
    )
    if group is None:
        document = {"name": args.name, "changed": changed, "spec": stored.to_dict()}
        emit_dry_run(project, args.name, stored, document, args.output_format)
    elif args.output_format != "table":
        emit(_group_json(group), args.output_format)
    elif changed:
        print(
            f"updated scaling group {group.name!r} to revision {group.revision} "
            f"({_image_text(stored)}); its replicas roll to it"
        )
    else:
        print(f"scaling group {group.name!r} is unchanged (revision {group.revision})")
    return 0


def emit_dry_run(
    project: Project, name: str, spec: GroupSpec, document: dict[str, Any], fmt: str
) -> None:
    """The stored spec (local), or the objects Kubernetes would get: YAML documents, or a
    ``List`` with ``-o json``."""
    manifests = dry_run_manifests(project, name, spec)
    if manifests is None:
        emit(document, "json" if fmt == "json" else "yaml")
    elif fmt == "json":
        emit({"apiVersion": "v1", "kind": "List", "items": manifests}, "json")
    else:
        sys.stdout.write(yaml.safe_dump_all(manifests, sort_keys=False))


def _who_starts(project: Project) -> str:
    if project.config.backend == "kubernetes":
        return f"Kubernetes (namespace {project.config.kubernetes.namespace})"
    return "the local controller"


def _list(args: argparse.Namespace) -> int:
    project = find_project()
    groups = list_groups(project, open_catalog(project))
    if args.output_format != "table":
        emit([_group_json(group) for group in groups], args.output_format)
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
                "CREATED": f"{group.created_at:{_TIME}}",
            }
            for group in groups
        ],
    )
    return 0


def _get(args: argparse.Namespace) -> int:
    project = find_project()
    catalog = open_catalog(project)
    view = observe_group(project, catalog, args.name)
    group, replicas, events = view.group, view.replicas, view.events[-_EVENTS_SHOWN:]
    if args.output_format != "table":
        document = _group_json(group)
        document["replicas"] = [_replica_json(replica) for replica in replicas]
        document["events"] = [_event_json(event) for event in events]
        emit(document, args.output_format)
        return 0
    _print_group(group, GroupSpec.from_dict(group.spec))
    now = catalog.clock()
    print("\nReplica states:" + ("" if replicas else " <none>"))
    if replicas:
        emit_table(
            ["REPLICA", "STATE", "READY", "RESTARTS", "PORT", "AGE", "LAST EXIT REASON"],
            [_replica_row(replica, now) for replica in replicas],
        )
    print("\nEvents:" + ("" if events else " <none>"))
    if events:
        emit_table(
            ["TIME", "TYPE", "REASON", "MESSAGE"],
            [
                {
                    "TIME": f"{e.time:{_TIME}}",
                    "TYPE": e.type,
                    "REASON": e.reason,
                    "MESSAGE": _one_line(e.message),
                }
                for e in events
            ],
        )
    return 0


def _one_line(message: str) -> str:
    """A multi-line event message (a crash with its log's last lines) as its first line and
    its last, the one that usually says what went wrong; -o json/yaml keep it whole."""
    lines = [line for line in message.splitlines() if line.strip()]
    if len(lines) <= 1:
        return message.strip()
    return f"{lines[0]} ... {lines[-1]}"


def _delete(args: argparse.Namespace) -> int:
    project, catalog = _open(args.name)
    deleted = delete_group(project, catalog, args.name)
    if args.output_format != "table":
        emit(_group_json(deleted), args.output_format)
    else:
        print(
            f"deleted scaling group {deleted.name!r}; its replicas and URL stop, and its "
            f"record stays in the catalog's history"
        )
    return 0


def _group_json(group: ScalingGroup) -> dict[str, Any]:
    """A scaling group as ``-o json|yaml`` shows it: status and counts, then the stored spec."""
    return {
        "id": group.id,
        "name": group.name,
        "status": group.status,
        "reason": group.reason,
        "image": group.spec.get("image"),
        "imageDigest": group.spec.get("image_digest"),
        "port": group.spec.get("port"),
        "desiredReplicas": group.desired_replicas,
        "readyReplicas": group.ready_replicas,
        "availableReplicas": group.available_replicas,
        "url": group.url,
        "tags": group.tags,
        "revision": group.revision,
        "backend": group.backend,
        "createdAt": group.created_at.isoformat(),
        "updatedAt": group.updated_at.isoformat(),
        "deletedAt": None if group.deleted_at is None else group.deleted_at.isoformat(),
        "spec": group.spec,
    }


def _replica_json(replica: Replica) -> dict[str, Any]:
    return {
        "replica": replica.replica_id,
        "revision": replica.revision,
        "state": replica.state,
        "ready": replica.ready,
        "restarts": replica.restarts,
        "pid": replica.pid,
        "port": replica.port,
        "endpoint": replica.endpoint,
        "lastExitReason": replica.last_exit_reason,
        "startedAt": None if replica.started_at is None else replica.started_at.isoformat(),
    }


def _event_json(event: Event) -> dict[str, Any]:
    return {
        "time": event.time.isoformat(),
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
    }


def _print_group(group: ScalingGroup, spec: GroupSpec) -> None:
    scaling = spec.scaling
    replicas = f"min {scaling.min_replicas}, max {scaling.max_replicas}"
    if scaling.effective_target_cpu is not None:
        replicas += f", target CPU {scaling.effective_target_cpu}%"
    amounts = spec.resources.requests_and_limits()
    resources = "; ".join(
        f"{kind} " + ", ".join(f"{name}={value}" for name, value in values.items())
        for kind, values in amounts.items()
    )
    gpu = spec.resources.gpu_request
    if gpu is not None and gpu.type is not None:
        resources += f" (GPU type {gpu.type})"
    lines = {
        "Name": group.name,
        "ID": group.id,
        "Status": group.status,
        "Reason": group.reason,
        "URL": group.url or "<none yet>",
        "Replicas": (
            f"{group.desired_replicas} desired, {group.ready_replicas} ready, "
            f"{group.available_replicas} available ({replicas})"
        ),
        "Image": _image_text(spec),
        "Port": str(spec.port),
        "Resources": resources,
        "Entrypoint": ",".join(spec.entrypoint) if spec.entrypoint else "(the image's)",
        "Env": ", ".join(f"{k}={v}" for k, v in sorted(spec.env.items())) or "<none>",
        "Tags": ", ".join(f"{k}={v}" for k, v in sorted(spec.tags.items())) or "<none>",
        "Model": "<none>"
        if spec.model is None
        else f"{spec.model.name} version {spec.model.version}",
        "Revision": str(group.revision),
        "Created": f"{group.created_at:{_TIME}} UTC",
    }
    if not group.reason:
        del lines["Reason"]
    width = max(len(key) for key in lines) + 2
    for key, value in lines.items():
        first, *rest = value.splitlines() or [""]
        print(f"{key + ':':<{width}}{first}".rstrip())
        for line in rest:
            print(f"{'':<{width}}{line}".rstrip())


def _replica_row(replica: Replica, now: dt.datetime) -> dict[str, Any]:
    return {
        "REPLICA": replica.replica_id,
        "STATE": replica.state,
        "READY": "yes" if replica.ready else "no",
        "RESTARTS": replica.restarts,
        "PORT": replica.port,
        "AGE": None if replica.started_at is None else _age(now - replica.started_at),
        "LAST EXIT REASON": replica.last_exit_reason.splitlines()[0]
        if replica.last_exit_reason
        else "",
    }


def _age(elapsed: dt.timedelta) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: the largest whole unit, as kubectl shows ages."""
    seconds = max(0, int(elapsed.total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _image_text(spec: GroupSpec) -> str:
    if spec.image_digest is None:
        return spec.image
    return f"{spec.image} @ {spec.image_digest}"
