"""Creating, updating and deleting scaling groups on the project's backend.

The client and the CLI call these; they store the desired spec in the catalog (pinning the
image digest and resolving the port on the local backend) and make sure the local controller
runs to act on it. The controller does the rest.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from chalk.catalog import Catalog, ScalingGroup
from chalk.catalog.config import Project
from chalk.catalog.errors import CatalogError, ValidationError
from chalk.catalog.groups import validate_group_name
from chalk.catalog.guard import check_write
from chalk.catalog.images import normalize_tag
from chalk.catalog.resources import AutoScalingSpec, ScalingGroupResourceRequest
from chalk.catalog.specs import GroupSpec, ModelRef
from chalk.deploy.local import daemon
from chalk.deploy.local.images import image_argv, image_port

__all__ = [
    "DeployTimeout",
    "create_group",
    "delete_group",
    "deploy_model_version",
    "pin_image",
    "update_group",
    "wait_until_serving",
]


def pin_image(catalog: Catalog, spec: GroupSpec, *, port_given: bool) -> GroupSpec:
    """Fix the spec's image to its current digest; take the port from the image if not given.

    A tag rebuilt later touches no running group until the group is updated.
    """
    image = catalog.images.get(spec.image)
    port = spec.port
    from_image = spec.port_from_image and not port_given
    if from_image:
        port = image_port(image, image_argv(image, spec.entrypoint))
    return replace(
        spec,
        image=normalize_tag(spec.image),
        image_digest=image.digest,
        port=port,
        port_from_image=from_image,
    )


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
    if not dry_run:
        check_write(f"creating scaling group {name!r}")
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
    expected_revision: int | None = None,
) -> tuple[ScalingGroup | None, GroupSpec, bool]:
    """Apply ``changes`` (fields of GroupSpec; None keeps the current value) to a live group.

    ``expected_revision`` is the revision the caller read (and computed ``changes`` from); a
    group changed since is a ConflictError instead of a silently reverted change.

    A new image reference, or the same tag rebuilt, is pinned again. Returns the group, the
    spec and whether anything changed (an unchanged spec stores nothing and rolls nothing).
    """
    if not dry_run:
        check_write(f"updating scaling group {name!r}")
    _require_local(project)
    group = catalog.groups.get(name)
    current = GroupSpec.from_dict(group.spec)
    unknown = set(changes) - set(GroupSpec.__dataclass_fields__)
    if unknown:
        raise ValidationError(f"cannot change {', '.join(sorted(unknown))} of a scaling group")
    spec = current.with_changes(**changes)
    spec = pin_image(catalog, spec, port_given=changes.get("port") is not None)
    if dry_run:
        return None, spec, spec != current
    revision = group.revision if expected_revision is None else expected_revision
    stored, changed = catalog.groups.update(name, spec.to_dict(), expected_revision=revision)
    daemon.ensure_running(project)
    return stored, spec, changed


def delete_group(project: Project, catalog: Catalog, name: str) -> ScalingGroup:
    """Soft-delete the group; the controller stops its replicas and its URL."""
    check_write(f"deleting scaling group {name!r}")
    deleted = catalog.groups.delete(name)
    if project.config.backend == "local":
        daemon.ensure_running(project)
    return deleted


INPUT_ARGS_ENV: Final = "CHALK_INPUT_ARGS"


class DeployTimeout(CatalogError):
    """A deployment did not start serving in time."""


def deploy_model_version(
    project: Project,
    catalog: Catalog,
    name: str,
    model_name: str,
    model_version: int | str,
    *,
    scaling: AutoScalingSpec | None = None,
    resources: ScalingGroupResourceRequest | None = None,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    tags: Mapping[str, str] | None = None,
    entrypoint: tuple[str, ...] | None = None,
    dry_run: bool = False,
    expected_revision: int | None = None,
) -> tuple[ScalingGroup | None, GroupSpec, bool]:
    """Run a model version in group ``name``: create the group, or update it to the version.

    ``CHALK_INPUT_ARGS`` is set from the input_schema's field order, so argument i of a
    ``catalog_call`` reaches the handler under field i's name. On update, None keeps the
    current scaling, resources, environment and port. Returns the group (None on a dry run),
    the spec, and whether anything changed.
    """
    if not dry_run:
        check_write(
            f"deploying model {model_name!r} version {model_version} to scaling group {name!r}"
        )
    version = catalog.models.get(model_name, model_version)
    model = ModelRef(version.model_name, version.model_version)
    input_args = {INPUT_ARGS_ENV: ",".join(version.input_schema.names)}
    live = catalog.groups.find(name)
    if live is None:
        spec = GroupSpec(
            image=version.image,
            model=model,
            scaling=scaling or AutoScalingSpec(),
            resources=resources or ScalingGroupResourceRequest(),
            env={**(env or {}), **input_args},
        ).with_changes(port=port, tags=tags, entrypoint=entrypoint)
        group, stored = create_group(
            project, catalog, name, spec, port_given=port is not None, dry_run=dry_run
        )
        return group, stored, True
    current = GroupSpec.from_dict(live.spec)
    user_env = (
        dict(env)
        if env is not None
        else {k: v for k, v in current.env.items() if k != INPUT_ARGS_ENV}
    )
    changes = {
        "image": version.image,
        "model": model,
        "scaling": scaling,
        "resources": resources,
        "env": {**user_env, **input_args},
        "port": port,
        "tags": tags,
        "entrypoint": entrypoint,
    }
    return update_group(
        project,
        catalog,
        name,
        changes,
        dry_run=dry_run,
        expected_revision=live.revision if expected_revision is None else expected_revision,
    )


def wait_until_serving(
    catalog: Catalog, name: str, *, timeout_s: float = 300.0, poll_s: float = 0.1
) -> ScalingGroup:
    """Wait until the group's current revision serves and no older replica does."""
    give_up = time.monotonic() + timeout_s
    group = catalog.groups.get(name)
    while time.monotonic() < give_up:
        group = catalog.groups.get(name)
        if group.status == "Failed":
            raise CatalogError(f"scaling group {name!r} failed: {group.reason}")
        if _serves_current_revision(catalog, group):
            return group
        time.sleep(poll_s)
    raise DeployTimeout(
        f"scaling group {name!r} did not serve revision {group.revision} within {timeout_s:.0f}s: "
        f"status {group.status}" + (f" ({group.reason})" if group.reason else "")
    )


def _serves_current_revision(catalog: Catalog, group: ScalingGroup) -> bool:
    rows = catalog.state.replicas(group.id)
    ready_new = sum(1 for r in rows if r.revision == group.revision and r.ready)
    old_serving = any(r.revision != group.revision and r.ready for r in rows)
    wanted = max(1, GroupSpec.from_dict(group.spec).scaling.min_replicas)
    return ready_new >= wanted and not old_serving and bool(group.endpoints)


def _require_local(project: Project) -> None:
    if project.config.backend != "local":
        raise ValidationError(
            f"backend {project.config.backend!r} in {project.config_path} is not available in "
            f"this version: expected 'local'; the Kubernetes backend is being built"
        )
