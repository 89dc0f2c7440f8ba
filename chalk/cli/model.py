"""``chalk model register|list|get|deploy``: the model registry from the command line."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Final

from chalk.cli.output import add_output_flag, emit, emit_table
from chalk.cli.scaling_group import checked_image, what_replicas_do
from chalk.cli.spec_flags import (
    add_spec_flags,
    emit_dry_run,
    naming_group,
    note_unused_scaling_flags,
    read_spec_flags,
)

# The catalog, pyarrow and the deployers are imported where a command uses them, so that
# `chalk model --help` loads none of them (see chalk.cli's docstring).
if TYPE_CHECKING:
    import pyarrow as pa

    from chalk.catalog import ModelVersion

__all__ = ["register"]

_COLUMNS = ["NAME", "VERSION", "IMAGE", "INPUT", "OUTPUT", "ALIASES", "DETERMINISTIC", "CREATED"]


def register(subparsers: Any) -> None:
    """Add ``chalk model`` and its subcommands."""
    parser = subparsers.add_parser("model", help="register and inspect model versions")
    commands = parser.add_subparsers(dest="model_command", metavar="COMMAND", required=True)

    add = commands.add_parser("register", help="register the next version of a model")
    add.add_argument("--name", required=True, help="model name, e.g. ner")
    add.add_argument(
        "--image", required=True, type=checked_image, help="image reference, e.g. ner:latest"
    )
    add.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="FIELD=TYPE",
        help="an argument field in call order (repeat), e.g. text=large_string",
    )
    add.add_argument(
        "--output",
        action="append",
        required=True,
        metavar="FIELD=TYPE",
        help="the result field, e.g. e=string (exactly one)",
    )
    add.add_argument("--alias", action="append", default=[], help="an alias (repeatable)")
    add.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    add.add_argument(
        "--non-deterministic",
        action="store_true",
        help="the model may answer the same arguments differently: its calls are never "
        "deduplicated, merged or cached (max_staleness has no effect on them)",
    )
    add_output_flag(add)
    add.set_defaults(run=_register)

    listing = commands.add_parser("list", help="list model versions")
    listing.add_argument("--name", help="only this model")
    add_output_flag(listing)
    listing.set_defaults(run=_list)

    deploy = commands.add_parser(
        "deploy",
        help="serve a model version from a scaling group (created, or updated to the version)",
    )
    deploy.add_argument("--name", required=True, help="the scaling group, e.g. ner")
    deploy.add_argument("--model", required=True, help="the registered model's name")
    deploy.add_argument("--version", required=True, help="the model version (number or alias)")
    deploy.add_argument("--port", type=int, help="the port the image serves on")
    deploy.add_argument("--wait", action="store_true", help="return once the new version serves")
    add_spec_flags(deploy, on_update=True)
    deploy.set_defaults(run=_deploy, image=None)

    get = commands.add_parser("get", help="show one model version")
    get.add_argument("--name", required=True)
    get.add_argument("--version", help="version number or alias (default: latest)")
    add_output_flag(get)
    get.set_defaults(run=_get)


def _register(args: argparse.Namespace) -> int:
    from chalk.catalog import open_catalog  # noqa: PLC0415
    from chalk.common.config import find_project  # noqa: PLC0415
    from chalk.deploy.groups import check_model_image  # noqa: PLC0415

    # Every flag is checked before the catalog is opened (or created) and the image looked up,
    # so a flag's mistake is said first.
    input_schema = _fields(args.input, "--input")
    output_schema = _fields(args.output, "--output")
    metadata = _pairs(args.metadata, "--metadata")
    _check_aliases(args.alias)
    project = find_project()
    catalog = open_catalog(project)
    check_model_image(project, catalog, args.name, args.image)
    version = catalog.models.register(
        args.name,
        input_schema=input_schema,
        output_schema=output_schema,
        image=args.image,
        aliases=args.alias,
        metadata=metadata,
        deterministic=not args.non_deterministic,
    )
    if args.output_format == "table":
        kind = "" if version.deterministic else " (non-deterministic)"
        print(f"registered {version.model_name} version {version.model_version}{kind}")
    else:
        emit(version.to_json(), args.output_format)
    return 0


def _list(args: argparse.Namespace) -> int:
    from chalk.catalog import open_catalog  # noqa: PLC0415
    from chalk.common.config import find_project  # noqa: PLC0415

    versions = open_catalog(find_project(), create=False).models.list(args.name)
    if args.output_format != "table":
        emit([version.to_json() for version in versions], args.output_format)
        return 0
    emit_table(
        _COLUMNS,
        [_row(version) for version in versions],
    )
    return 0


def _get(args: argparse.Namespace) -> int:
    from chalk.catalog import open_catalog  # noqa: PLC0415
    from chalk.common.config import find_project  # noqa: PLC0415

    version = open_catalog(find_project(), create=False).models.get(args.name, args.version)
    if args.output_format != "table":
        emit(version.to_json(), args.output_format)
        return 0
    emit_table(_COLUMNS, [_row(version)])
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from chalk.catalog import open_catalog  # noqa: PLC0415
    from chalk.catalog.specs import GroupSpec  # noqa: PLC0415
    from chalk.common.config import find_project  # noqa: PLC0415
    from chalk.deploy.groups import deploy_model_version, wait_until_serving  # noqa: PLC0415

    with naming_group(args.name):
        flags = read_spec_flags(args)
    project = find_project()
    catalog = open_catalog(project, create=not args.dry_run)
    live = catalog.groups.find(args.name)
    current = None if live is None else GroupSpec.from_dict(live.spec)
    base = current or GroupSpec(image="-")
    with naming_group(args.name):
        changes = flags.changes(base)
    group, spec, changed = deploy_model_version(
        project,
        catalog,
        args.name,
        args.model,
        args.version,
        scaling=changes["scaling"],
        resources=changes["resources"],
        env=changes["env"],
        port=args.port,
        tags=changes["tags"],
        entrypoint=changes["entrypoint"],
        batch_max_delay_ms=changes["batch_max_delay_ms"],
        dry_run=args.dry_run,
        expected_revision=live.revision if live else None,
    )
    note_unused_scaling_flags(flags, spec.scaling, args.name, project=project)
    if group is None:
        document = {"name": args.name, "changed": changed, "spec": spec.to_dict()}
        emit_dry_run(project, args.name, spec, document, args.output_format, current=current)
        return 0
    if args.wait:
        group = wait_until_serving(catalog, args.name, project=project)
    if args.output_format != "table":
        emit(
            {"name": group.name, "revision": group.revision, "spec": spec.to_dict()},
            args.output_format,
        )
    elif changed:
        version = spec.model.version if spec.model else args.version
        idle = live is not None and live.status == "Idle"
        print(
            f"scaling group {group.name!r} serves {args.model} version {version} at revision "
            f"{group.revision}; {what_replicas_do(project, base, spec, args.wait, idle=idle)}"
        )
    else:
        print(f"scaling group {group.name!r} already serves that version (unchanged)")
    return 0


def _row(version: ModelVersion) -> dict[str, Any]:
    return {
        "NAME": version.model_name,
        "VERSION": version.model_version,
        "IMAGE": version.image,
        "INPUT": ", ".join(f"{f.name}: {f.type}" for f in version.input_schema),
        "OUTPUT": ", ".join(f"{f.name}: {f.type}" for f in version.output_schema),
        "ALIASES": ", ".join(version.aliases),
        "DETERMINISTIC": "yes" if version.deterministic else "no",
        "CREATED": f"{version.created_at:%Y-%m-%d %H:%M:%S}",
    }


def _fields(texts: list[str], flag: str) -> pa.Schema:
    import pyarrow as pa  # noqa: PLC0415

    from chalk.catalog.models import parse_arrow_type  # noqa: PLC0415

    return pa.schema(
        pa.field(name, parse_arrow_type(arrow_type, what=f"{flag} {name!r}"))
        for name, arrow_type in _pairs(texts, flag).items()
    )


def _check_aliases(aliases: list[str]) -> None:
    from chalk.catalog import ValidationError  # noqa: PLC0415
    from chalk.common.bounds import check_bound  # noqa: PLC0415

    repeated = sorted({alias for alias in aliases if aliases.count(alias) > 1})
    if repeated:
        raise ValidationError(f"--alias gives {repeated[0]!r} twice: expected each alias once")
    check_bound("aliases", len(aliases), what="--alias (the number of aliases)")


# Each NAME=VALUE flag of `chalk model register` with an example of its own.
_PAIR_EXAMPLES: Final = {
    "--input": "--input text=large_string",
    "--output": "--output entities=large_string",
    "--metadata": "--metadata owner=nlp-team",
}


def _pair(text: str, flag: str) -> tuple[str, str]:
    from chalk.catalog import ValidationError  # noqa: PLC0415

    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ValidationError(
            f"{flag} takes NAME=VALUE: expected e.g. {_PAIR_EXAMPLES[flag]}, got {text!r}"
        )
    return name.strip(), value.strip()


def _pairs(texts: list[str], flag: str) -> dict[str, str]:
    """Repeated ``flag NAME=VALUE`` as a dict; a NAME given twice is an error."""
    from chalk.catalog import ValidationError  # noqa: PLC0415
    from chalk.common.bounds import check_bound  # noqa: PLC0415

    pairs: dict[str, str] = {}
    for text in texts:
        name, value = _pair(text, flag)
        if name in pairs:
            raise ValidationError(
                f"{flag} gives {name!r} twice ({name}={pairs[name]} and {name}={value}): "
                f"expected each name once"
            )
        pairs[name] = value
    if flag == "--metadata":
        check_bound("metadata", len(pairs), what="--metadata (the number of entries)")
        for name, value in pairs.items():
            check_bound("metadata_value_length", len(value), what=f"--metadata {name}'s length")
    return pairs
