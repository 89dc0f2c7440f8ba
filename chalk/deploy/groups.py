"""Creating, updating and deleting scaling groups on the project's backend.

The client and the CLI call these; they store the desired spec in the catalog (pinning the
image digest and resolving the port on the local backend) and make sure the local controller
runs to act on it. The controller does the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from chalk.catalog import Catalog, ScalingGroup
from chalk.catalog.config import Project
from chalk.catalog.errors import ValidationError
from chalk.catalog.groups import validate_group_name
from chalk.catalog.images import normalize_tag
from chalk.catalog.specs import GroupSpec
from chalk.deploy.local import daemon
from chalk.deploy.local.images import image_argv, image_port

__all__ = ["create_group", "delete_group", "pin_image", "update_group"]


def pin_image(catalog: Catalog, spec: GroupSpec, *, port_given: bool) -> GroupSpec:
    """Fix the spec's image to its current digest; take the port from the image if not given.

    A tag rebuilt later touches no running group until the group is updated.
    """
    image = catalog.images.get(spec.image)
    port = spec.port
    if not port_given:
        port = image_port(image, image_argv(image, spec.entrypoint))
    return replace(spec, image=normalize_tag(spec.image), image_digest=image.digest, port=port)


def create_group(
    project: Project,
    catalog: Catalog,
    name: str,
    spec: GroupSpec,
    *,
    port_given: bool,
    dry_run: bool = False,
) -> tuple[ScalingGroup | None, GroupSpec]:
    """Store a new group; with ``dry_run`` only build and check the spec it would store."""
    validate_group_name(name, project.config.environment)
    _require_local(project)
    spec = pin_image(catalog, spec, port_given=port_given)
    if dry_run:
        return None, spec
    group = catalog.groups.create(name, spec.to_dict(), backend=project.config.backend)
    daemon.ensure_running(project)
    return group, spec


def update_group(
    project: Project,
    catalog: Catalog,
    name: str,
    changes: Mapping[str, Any],
    *,
    dry_run: bool = False,
) -> tuple[ScalingGroup | None, GroupSpec, bool]:
    """Apply ``changes`` (fields of GroupSpec; None keeps the current value) to a live group.

    A new image reference, or the same tag rebuilt, is pinned again. Returns the group, the
    spec and whether anything changed (an unchanged spec stores nothing and rolls nothing).
    """
    _require_local(project)
    group = catalog.groups.get(name)
    current = GroupSpec.from_dict(group.spec)
    unknown = set(changes) - set(GroupSpec.__dataclass_fields__)
    if unknown:
        raise ValidationError(f"cannot change {', '.join(sorted(unknown))} of a scaling group")
    spec = current.with_changes(**changes)
    spec = pin_image(catalog, spec, port_given=True)
    if dry_run:
        return None, spec, spec != current
    stored, changed = catalog.groups.update(name, spec.to_dict())
    daemon.ensure_running(project)
    return stored, spec, changed


def delete_group(project: Project, catalog: Catalog, name: str) -> ScalingGroup:
    """Soft-delete the group; the controller stops its replicas and its URL."""
    deleted = catalog.groups.delete(name)
    if project.config.backend == "local":
        daemon.ensure_running(project)
    return deleted


def _require_local(project: Project) -> None:
    if project.config.backend != "local":
        raise ValidationError(
            f"backend {project.config.backend!r} in {project.config_path} is not available in "
            f"this version: expected 'local'; the Kubernetes backend is being built"
        )
