"""The spec flags of ``chalk scaling-group create|update`` and ``chalk model deploy``: read and
checked here, each error naming its flag, before the catalog is touched; and what ``--dry-run``
prints.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from chalk.cli.output import add_output_flag, emit, emit_as_given
from chalk.common.bounds import check_bound

# The catalog's types and the deployers are imported where they are used, so that a parser that
# adds these flags loads none of them (see chalk.cli's docstring).
if TYPE_CHECKING:
    from chalk.catalog.resources import AutoScalingSpec
    from chalk.catalog.specs import GroupSpec
    from chalk.common.config import Project

__all__ = [
    "SpecFlags",
    "add_scaling_flags",
    "add_spec_flags",
    "emit_dry_run",
    "naming_flag",
    "naming_group",
    "note_unused_scaling_flags",
    "read_resource_flags",
    "read_scaling_flags",
    "read_spec_flags",
]

# The flag that sets each AutoScalingSpec field, to put the library's messages in flag terms.
_SCALING_FLAGS: Final = {
    "min_replicas": "--min-replicas",
    "max_replicas": "--max-replicas",
    "target_cpu_utilization_percentage": "--target-cpu",
    "queue_depth_target": "--queue-depth-target",
    "idle_seconds": "--idle-seconds",
}
_BOUNDS: Final = ("min_replicas", "max_replicas")
# What a count flag takes to clear its field (``--queue-depth-target none``).
_NONE: Final = "none"
_RESOURCE_FIELDS: Final = ("cpu", "memory", "gpu")

_T = TypeVar("_T")


def add_spec_flags(parser: argparse.ArgumentParser, *, on_update: bool) -> None:
    """The flags of a group's spec, ``--dry-run`` and ``-o``; ``on_update``: absent ones keep."""
    keep = " (default: keep the current value)" if on_update else ""
    add_scaling_flags(parser, on_update=on_update)
    parser.add_argument(
        "--queue-depth-target",
        type=_count_or_none,
        metavar="N",
        help="calls in flight or waiting per replica to aim for: the group runs at least "
        f"ceil(demand / N) replicas (1 to 10000, or none: not scaled on demand; default "
        f"none){keep}",
    )
    parser.add_argument(
        "--idle-seconds",
        type=int,
        metavar="S",
        help="with --min-replicas 0: seconds with no call and no demand before the group "
        f"scales to zero (1 to 604800; default 300){keep}",
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
        "--batch-max-delay",
        type=float,
        metavar="MS",
        help="how long, in milliseconds, a query's model call waits for a free replica slot "
        "(merging with other queries' calls meanwhile) before it goes anyway"
        + (
            " (default: keep the current value; 5 for a new group)" if on_update else " (default 5)"
        ),
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything and print what would be stored: the spec, or with backend "
        "kubernetes the objects to apply (as YAML, or as JSON with -o json); store nothing "
        "and start nothing",
    )
    add_output_flag(parser)


def add_scaling_flags(parser: argparse.ArgumentParser, *, on_update: bool = False) -> None:
    """The replica and resource flags (``--replicas``, ``--min-replicas``, ``--max-replicas``,
    ``--target-cpu``, ``--cpu``, ``--memory``); ``on_update``: absent ones keep."""
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
        help=f"the fewest replicas; 0 scales to zero when idle (see --idle-seconds){one}",
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


def read_scaling_flags(args: argparse.Namespace) -> AutoScalingSpec:
    """The scaling flags given as a whole spec, defaults for the others (errors name flags)."""
    scaling, flags = _scaling_flags(args)
    return _scaling_spec(scaling, flags)


@dataclass(frozen=True, slots=True)
class SpecFlags:
    """The spec flags given on the command line, each checked on its own; None when not given.

    ``scaling`` and ``resources`` hold only the fields given, to merge into a current spec;
    ``scaling_flags`` names the flag that set each scaling field, for messages.
    """

    image: str | None
    port: int | None
    scaling: dict[str, int | None]
    scaling_flags: dict[str, str]
    resources: dict[str, str]
    env: dict[str, str]
    entrypoint: tuple[str, ...] | None
    tags: dict[str, str] | None
    batch_max_delay_ms: float | None = None

    def changes(self, current: GroupSpec) -> dict[str, Any]:
        """GroupSpec fields to replace; scaling, resources and env merged into ``current``'s."""
        from chalk.catalog.resources import ScalingGroupResourceRequest  # noqa: PLC0415

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
            "batch_max_delay_ms": self.batch_max_delay_ms,
        }


@contextmanager
def naming_group(name: str) -> Iterator[None]:
    """Put the scaling group first in a ValidationError about its flags ("scaling group 'ner':
    --min-replicas is larger than --max-replicas: ..."), unless the message names it already."""
    from chalk.catalog import ValidationError  # noqa: PLC0415

    try:
        yield
    except ValidationError as error:
        message = str(error)
        if repr(name) in message:
            raise
        raise ValidationError(f"scaling group {name!r}: {message}") from None


def read_spec_flags(args: argparse.Namespace) -> SpecFlags:
    """The spec flags given, each checked on its own (a ValidationError names its flag)."""
    from chalk.catalog.specs import parse_entrypoint, parse_env, parse_tags  # noqa: PLC0415

    if args.port is not None:
        check_bound("port", args.port, what="--port")
    scaling, scaling_flags = _scaling_flags(args)
    resources = read_resource_flags(args)
    entrypoint = None
    if args.entrypoint is not None:
        entrypoint = naming_flag("--entrypoint", "entrypoint", parse_entrypoint, args.entrypoint)
    tags = None
    if args.tags is not None:
        tags = naming_flag("--tags", "tags", parse_tags, args.tags)
    return SpecFlags(
        image=args.image,
        port=args.port,
        scaling=scaling,
        scaling_flags=scaling_flags,
        resources=resources,
        env=naming_flag("--env", "env", parse_env, args.env),
        entrypoint=entrypoint,
        tags=tags,
        batch_max_delay_ms=_batch_max_delay(args.batch_max_delay),
    )


def read_resource_flags(
    args: argparse.Namespace, fields: tuple[str, ...] = _RESOURCE_FIELDS
) -> dict[str, str]:
    """The resource flags given (``--cpu``, ``--memory``, ``--gpu`` of ``fields``), each
    checked on its own (a ValidationError names its flag)."""
    from chalk.catalog.resources import ScalingGroupResourceRequest  # noqa: PLC0415

    resources: dict[str, str] = {}
    for field in fields:
        value = getattr(args, field)
        if value is not None:
            naming_flag(f"--{field}", field, ScalingGroupResourceRequest.from_dict, {field: value})
            resources[field] = value
    return resources


def _count_or_none(text: str) -> int | str:
    """A count flag's value: an integer, or ``none`` (kept as such: the field is cleared)."""
    if text.strip().lower() == _NONE:
        return _NONE
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or none, got {text!r}") from None


def _scaling_flags(args: argparse.Namespace) -> tuple[dict[str, int | None], dict[str, str]]:
    """The AutoScalingSpec fields given and the flag of each, checked without the current spec."""
    from chalk.catalog import ValidationError  # noqa: PLC0415

    flags = dict(_SCALING_FLAGS)
    given = {
        "min_replicas": args.min_replicas,
        "max_replicas": args.max_replicas,
        "target_cpu_utilization_percentage": args.target_cpu,
        # Only the spec flags have these (chalk server deploy takes neither).
        "queue_depth_target": getattr(args, "queue_depth_target", None),
        "idle_seconds": getattr(args, "idle_seconds", None),
    }
    if args.replicas == 0:
        raise ValidationError(
            "--replicas 0 would run no replica at all: expected --replicas 1 or more; for a "
            "group that scales to zero when idle give --min-replicas 0 --max-replicas N"
        )
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
    # A field given as ``none`` is cleared (None), one not given is absent.
    scaling = {
        field: None if value == _NONE else value
        for field, value in given.items()
        if value is not None
    }
    for field, value in scaling.items():
        if value is None:
            continue
        # Each count is checked alone against its own range: a maximum with a minimum of 1
        # (--replicas is checked as a maximum: it sets both), a minimum with a maximum of at
        # least 1 (a minimum may be 0).
        if field == "min_replicas" and flags[field] == "--replicas":
            continue
        alone: dict[str, int] = {field: value}
        if field == "max_replicas":
            alone = {"min_replicas": 1, "max_replicas": value}
        elif field == "min_replicas":
            alone = {"min_replicas": value, "max_replicas": max(value, 1)}
        _scaling_spec(alone, dict.fromkeys(_SCALING_FLAGS, flags[field]))
    if set(_BOUNDS) <= scaling.keys():
        _scaling_spec({field: scaling[field] for field in _BOUNDS}, flags)
    return scaling, flags


def note_unused_scaling_flags(
    flags: SpecFlags, scaling: AutoScalingSpec, name: str, *, project: Project | None = None
) -> None:
    """A note on stderr for each scaling flag given here that the resulting spec of the group
    ``name`` leaves without effect (kept, for when it takes effect): ``--idle-seconds`` on a
    group that never goes to zero, ``--queue-depth-target`` on one that never autoscales; and,
    on Kubernetes with no ``kubernetes.prometheus_url``, a stored queue-depth target the group
    keeps scaling without (on CPU alone)."""
    given = flags.scaling
    bounds = f"--min-replicas {scaling.min_replicas} --max-replicas {scaling.max_replicas}"
    if "idle_seconds" in given and not scaling.scales_to_zero:
        print(
            f"note: scaling group {name!r}: --idle-seconds {given['idle_seconds']} has no "
            f"effect while its minimum is {scaling.min_replicas} (only a group with "
            f"--min-replicas 0 goes idle); stored for when it is",
            file=sys.stderr,
        )
    if "queue_depth_target" in given and not scaling.autoscales:
        print(
            f"note: scaling group {name!r}: --queue-depth-target "
            f"{given['queue_depth_target']} has no effect while it runs a fixed count "
            f"({bounds}); give a --max-replicas above the minimum to scale on it; stored for "
            f"when it does",
            file=sys.stderr,
        )
    target = scaling.queue_depth_target
    if (
        project is not None
        and project.config.backend == "kubernetes"
        and project.config.kubernetes.prometheus_url is None
        and target is not None
        and scaling.autoscales
    ):
        print(
            f"note: scaling group {name!r}: its queue depth target {target} stays unused: on "
            f"Kubernetes KEDA reads demand from Prometheus, and {project.config_path} sets no "
            f"kubernetes.prometheus_url, so it scales on CPU alone; set the key, or clear the "
            f"target with --queue-depth-target none",
            file=sys.stderr,
        )


def naming_flag(flag: str, field: str, build: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``build(...)``, its ValidationError reworded to name ``flag`` (the field's flag)."""
    from chalk.catalog import ValidationError  # noqa: PLC0415

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
    from chalk.catalog import ValidationError  # noqa: PLC0415
    from chalk.catalog.resources import AutoScalingSpec  # noqa: PLC0415

    try:
        return AutoScalingSpec.from_dict(values)
    except ValidationError as error:
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, flags)) + r")\b")
        raise ValidationError(pattern.sub(lambda m: flags[m[1]], str(error))) from None


def emit_dry_run(
    project: Project,
    name: str,
    spec: GroupSpec,
    document: dict[str, Any],
    fmt: str,
    *,
    current: GroupSpec | None = None,
) -> None:
    """The stored spec (local), or the objects Kubernetes would get: YAML documents, or a
    ``List`` with ``-o json``; with ``current`` (the live group's spec), a note on stderr for
    each kind of object the group has now and would no longer have (applying deletes it: an
    HPA a ScaledObject replaces, say)."""
    import yaml  # noqa: PLC0415

    from chalk.deploy.groups import dry_run_manifests  # noqa: PLC0415

    manifests = dry_run_manifests(project, name, spec)
    if manifests is None:
        emit(document, "json" if fmt == "json" else "yaml")
        return
    if fmt == "json":
        emit_as_given({"apiVersion": "v1", "kind": "List", "items": manifests}, "json")
    else:
        sys.stdout.write(yaml.safe_dump_all(manifests, sort_keys=False))
    before: list[dict[str, Any]] = []
    if current is not None:
        from chalk.common.errors import ChalkError  # noqa: PLC0415

        # The live spec as this configuration renders it; one it no longer renders (say a
        # Prometheus URL since removed) gets no note: the objects above are what counts.
        with contextlib.suppress(ChalkError):
            before = dry_run_manifests(project, name, current) or []
    kept = {obj["kind"] for obj in manifests}
    for obj in before:
        if obj["kind"] not in kept:
            print(
                f"note: scaling group {name!r}: applying this deletes its {obj['kind']} "
                f"{obj['metadata']['name']!r} (the objects above have none)",
                file=sys.stderr,
            )


def _batch_max_delay(delay_ms: float | None) -> float | None:
    """``--batch-max-delay``, checked as the spec checks it (the message names the flag)."""
    from chalk.catalog.specs import GroupSpec  # noqa: PLC0415

    if delay_ms is not None:
        naming_flag(
            "--batch-max-delay",
            "batch_max_delay_ms",
            GroupSpec,
            image="-",
            batch_max_delay_ms=delay_ms,
        )
    return delay_ms
