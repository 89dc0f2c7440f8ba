"""``chalk image build|list``: the project's local image store from the command line."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chalk.cli.output import add_output_flag, emit, emit_table

# The catalog and the image store are imported where a command uses them, so that
# `chalk image --help` loads neither (see chalk.cli's docstring).
if TYPE_CHECKING:
    from chalk.catalog import Catalog
    from chalk.catalog.records import LocalImage
    from chalk.deploy.local.images import BuildResult

__all__ = ["register"]

_SHORT_DIGEST = len("sha256:") + 12


def register(subparsers: Any) -> None:
    """Add ``chalk image`` and its subcommands."""
    parser = subparsers.add_parser("image", help="build and list local images")
    commands = parser.add_subparsers(dest="image_command", metavar="COMMAND", required=True)

    build = commands.add_parser(
        "build", help="snapshot a build context into this project's local image store"
    )
    build.add_argument(
        "context", metavar="DIR", help="the build context: a folder with a Dockerfile"
    )
    build.add_argument(
        "-t",
        "--tag",
        dest="tags",
        action="append",
        default=[],
        metavar="NAME[:TAG]",
        help="tag the image (repeatable); NAME means NAME:latest",
    )
    build.add_argument(
        "-f", "--file", dest="dockerfile", type=Path, help="the Dockerfile (default DIR/Dockerfile)"
    )
    build.set_defaults(run=_build)

    listing = commands.add_parser("list", help="list the local images")
    add_output_flag(listing)
    listing.set_defaults(run=_list)


def _build(args: argparse.Namespace) -> int:
    from chalk.catalog import open_catalog  # noqa: PLC0415
    from chalk.common.config import find_project  # noqa: PLC0415
    from chalk.deploy.local.images import build_image, check_tag  # noqa: PLC0415

    project = find_project()
    tags = [check_tag(tag) for tag in args.tags]
    result = build_image(
        Path(args.context), store_dir=project.state_dir / "images", dockerfile=args.dockerfile
    )
    for step in result.steps:
        print(f"line {step.line}: {step.instruction} -> {step.outcome}")
    catalog = open_catalog(project)
    before = {tag: _current_digest(catalog, tag) for tag in tags}
    catalog.images.save(result.image, tags)
    print(_summary(result, before))
    return 0


def _list(args: argparse.Namespace) -> int:
    from chalk.catalog import open_catalog  # noqa: PLC0415
    from chalk.common.config import find_project  # noqa: PLC0415

    images = open_catalog(find_project(), create=False).images.list()
    if args.output_format != "table":
        emit([_json(image) for image in images], args.output_format)
        return 0
    emit_table(["TAGS", "DIGEST", "COMMAND", "PORT", "CREATED"], [_row(i) for i in images])
    return 0


def _current_digest(catalog: Catalog, tag: str) -> str | None:
    from chalk.catalog import NotFoundError  # noqa: PLC0415

    try:
        return catalog.images.get(tag).digest
    except NotFoundError:
        return None


def _summary(result: BuildResult, before: dict[str, str | None]) -> str:
    """``built sha256:... tagged ner:latest (moved from sha256:...)``."""
    digest = result.image.digest
    tagged = []
    for tag, previous in before.items():
        if previous is None:
            tagged.append(tag)
        elif previous == digest:
            tagged.append(f"{tag} (unchanged)")
        else:
            tagged.append(f"{tag} (moved from {previous[:_SHORT_DIGEST]})")
    if not tagged:
        return f"built {digest} (untagged: name it by its digest, or build with -t NAME:TAG)"
    return f"built {digest} tagged {', '.join(tagged)}"


def _command(image: LocalImage) -> str:
    return shlex.join([*image.entrypoint, *image.cmd])


def _row(image: LocalImage) -> dict[str, Any]:
    from chalk.deploy.local.images import image_port  # noqa: PLC0415

    return {
        "TAGS": ", ".join(image.tags) or "<none>",
        "DIGEST": image.digest[:_SHORT_DIGEST],
        "COMMAND": _command(image),
        "PORT": image_port(image),
        "CREATED": f"{image.created_at:%Y-%m-%d %H:%M:%S}",
    }


def _json(image: LocalImage) -> dict[str, Any]:
    from chalk.deploy.local.images import image_port  # noqa: PLC0415

    return {
        "digest": image.digest,
        "tags": list(image.tags),
        "entrypoint": list(image.entrypoint),
        "cmd": list(image.cmd),
        "env": image.env,
        "workdir": image.workdir,
        "exposedPort": image.exposed_port,
        "port": image_port(image),
        "snapshotPath": image.snapshot_path,
        "createdAt": image.created_at.isoformat(),
    }
