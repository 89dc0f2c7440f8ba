"""``chalk apply``: import the project's feature modules, check the graph against the catalog,
print the plan against the active graph, and store the new graph as the active version.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chalk.cli.output import add_output_flag, emit

if TYPE_CHECKING:
    from chalk.catalog import Catalog
    from chalk.features.diff import GraphDiff
    from chalk.features.graph import FeatureDef, FeatureGraph

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``chalk apply``."""
    parser = subparsers.add_parser(
        "apply",
        help="check the project's feature classes against the catalog and make them active",
        description=(
            "Import every .py file under the project root (minus .chalkignore), check the "
            "@features classes against the catalog, print the plan against the active graph "
            "and store the new graph as the active version."
        ),
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and store nothing")
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="store a graph with no features even though the active one has some",
    )
    add_output_flag(parser)
    parser.set_defaults(run=_apply)


def _apply(args: argparse.Namespace) -> int:
    from chalk.common.config import find_project  # noqa: PLC0415
    from chalk.features.isolated_import import ChildImport  # noqa: PLC0415

    project = find_project()
    root = project.root
    # A child process imports the project: its code may exit, kill or hang the process it runs
    # in, and apply must still answer (chalk.features.isolated_import). It starts first, so
    # this process loads the catalog and the engine while the child imports.
    with ChildImport(root) as child:
        # Imported here, not above: `chalk apply --help` loads none of them (chalk.cli's
        # docstring).
        from chalk.catalog import open_catalog  # noqa: PLC0415
        from chalk.engine.validate import validate_graph  # noqa: PLC0415
        from chalk.features.diff import diff_graphs  # noqa: PLC0415
        from chalk.features.graph import FeatureGraph  # noqa: PLC0415

        imported = child.result()
    if imported.problems:
        return _fail(imported.problems, "importing the project's modules")
    # A dry run stores nothing, so it creates no catalog either: none yet reads as empty.
    catalog = open_catalog(project, create=not args.dry_run)
    if imported.clashes:
        return _fail(imported.clashes, "reading the feature classes")
    graph = FeatureGraph.from_json(imported.graph)
    invalid = [
        _located(root, problem.source, problem.message)
        for problem in validate_graph(graph, functools.partial(catalog.resolve, serving=False))
    ]
    if invalid:
        return _fail(invalid, "checking the feature graph against the catalog")
    for warning in _unhealthy_calls(catalog, graph):
        print(f"warning: {warning}", file=sys.stderr)
    active_version, active = _active_graph(catalog)
    if not imported.class_count and active is not None and active.features and not args.allow_empty:
        return _fail(
            [
                f"found no @features classes under {root}, so this apply would remove all "
                f"{len(active.features)} features of the active graph (version "
                f"{active_version}): expected the project's feature classes; check that "
                f".chalkignore does not ignore their files, or pass --allow-empty to remove "
                f"every feature"
            ],
            "reading the feature classes",
        )
    diff = diff_graphs(active, graph)
    stored = None
    if not args.dry_run and (active_version is None or not diff.is_empty):
        stored = catalog.graphs.apply(graph.to_json()).version
    if args.output_format == "table":
        _print_plan(root, diff, active_version, stored, dry_run=args.dry_run)
    else:
        data = _plan_data(root, diff, active_version, stored, dry_run=args.dry_run)
        emit(data, args.output_format)
    return 0


def _unhealthy_calls(catalog: Catalog, graph: FeatureGraph) -> list[str]:
    """A call to a group that keeps crashing or failed is allowed (it may be fixed before the
    first query) but said, naming the group and the features calling it."""
    from chalk.deploy.states import GroupStatus  # noqa: PLC0415
    from chalk.engine.callers import groups_called  # noqa: PLC0415

    unhealthy = (GroupStatus.CRASH_LOOP_BACK_OFF, GroupStatus.FAILED)
    warnings = []
    for name, features in groups_called(graph).items():
        group = catalog.groups.find(name)
        if group is None or group.status not in unhealthy:
            continue
        reason = f" ({group.reason.splitlines()[0]})" if group.reason else ""
        warnings.append(
            f"{', '.join(features)} call{'s' if len(features) == 1 else ''} scaling group "
            f"{name!r}, which is {group.status}{reason}: their queries fail until it serves; "
            f"see `chalk scaling-group get --name {name}`"
        )
    return warnings


def _active_graph(catalog: Catalog) -> tuple[int | None, FeatureGraph | None]:
    from chalk.features.graph import FeatureGraph, GraphError  # noqa: PLC0415

    record = catalog.graphs.active()
    if record is None:
        return None, None
    try:
        return record.version, FeatureGraph.from_json(record.graph)
    except (GraphError, KeyError, TypeError, ValueError):
        # Written by another version of scalegroup: every feature shows as added.
        return record.version, None


def _fail(problems: Sequence[str], stage: str) -> int:
    count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
    lines = [f"error: chalk apply found {count} while {stage}; nothing was stored:"]
    lines.extend(f"  {problem}" for problem in problems)
    print("\n".join(lines), file=sys.stderr)
    return 1


def _located(root: Path, source: str | None, message: str) -> str:
    return message if source is None else f"{_shown(root, source)}: {message}"


def _shown(root: Path, source: str | None) -> str:
    """A ``file:line`` source relative to the project root when it lies inside it."""
    if source is None:
        return ""
    path, sep, line = source.rpartition(":")
    if not sep or not line.isdigit():
        path, line = source, ""
    try:
        relative = Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return source
    return f"{relative}:{line}" if line else relative


def _print_plan(
    root: Path, diff: GraphDiff, active: int | None, stored: int | None, *, dry_run: bool
) -> None:
    from chalk.features.diff import feature_summary  # noqa: PLC0415

    against = "nothing applied yet" if active is None else f"active version {active}"
    lines = [f"Plan against the feature graph ({against}):"]
    if not (diff.added or diff.changed or diff.kept):
        lines.append(f"  (no @features classes found under {root})")
    lines.extend(
        f"  + {f.fqn}  {feature_summary(f)}  ({_shown(root, f.source)})" for f in diff.added
    )
    lines.extend(f"  - {f.fqn}  {feature_summary(f)}" for f in diff.removed)
    for change in diff.changed:
        details = "; ".join(f"{what} {old} -> {new}" for what, old, new in change.differences)
        lines.append(f"  ~ {change.fqn}  {details}  ({_shown(root, change.new.source)})")
    lines.append(
        f"{len(diff.added)} to add, {len(diff.removed)} to remove, {len(diff.changed)} to "
        f"change, {len(diff.kept)} unchanged."
    )
    if dry_run:
        lines.append("Dry run: nothing stored.")
    elif stored is None:
        lines.append(f"No changes: feature graph version {active} stays active; nothing stored.")
    else:
        lines.append(f"Stored feature graph version {stored}; it is now active.")
    sys.stdout.write("\n".join(lines) + "\n")


def _plan_data(
    root: Path, diff: GraphDiff, active: int | None, stored: int | None, *, dry_run: bool
) -> dict[str, Any]:
    from chalk.features.diff import feature_summary  # noqa: PLC0415

    def described(feature: FeatureDef) -> dict[str, Any]:
        return {
            "feature": feature.fqn,
            "summary": feature_summary(feature),
            "source": _shown(root, feature.source) or None,
        }

    return {
        "active_version": active,
        "stored_version": stored,
        "dry_run": dry_run,
        "added": [described(f) for f in diff.added],
        "removed": [described(f) for f in diff.removed],
        "changed": [
            {
                **described(change.new),
                "changes": [
                    {"what": what, "old": old, "new": new} for what, old, new in change.differences
                ],
            }
            for change in diff.changed
        ],
        "unchanged": [f.fqn for f in diff.kept],
    }
