"""Creating, updating, observing and deleting scaling groups on the project's backend.

The client and the CLI call these, whichever backend chalk.yaml names: each function asks
``backend_for`` for it. The local backend stores the desired spec (pinning the image digest
and resolving the port) and starts the local controller when none runs; the Kubernetes
backend applies the group's objects to the cluster and stores the spec beside them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from chalk.catalog import Catalog, ScalingGroup
from chalk.catalog.errors import CatalogError, NotFoundError, ValidationError
from chalk.catalog.groups import validate_group_name
from chalk.catalog.records import Replica
from chalk.catalog.resources import AutoScalingSpec, ScalingGroupResourceRequest
from chalk.catalog.specs import GroupSpec, ModelRef
from chalk.common.apply_guard import check_write
from chalk.common.config import Project
from chalk.deploy.backends import Backend, GroupView, backend_for, pin_image
from chalk.deploy.errors import DeployError
from chalk.deploy.rollout import rollout_of
from chalk.deploy.states import GroupStatus

__all__ = [
    "DeployTimeout",
    "GroupView",
    "check_model_image",
    "create_group",
    "delete_group",
    "deploy_model_version",
    "dry_run_manifests",
    "list_groups",
    "observe_group",
    "pin_image",
    "update_group",
    "wait_until_serving",
]


def check_model_image(project: Project, catalog: Catalog, model_name: str, image: str) -> None:
    """Refuse to register a model version whose image the project's backend cannot run.

    Locally the image must be in the local image store (``chalk image build``). On Kubernetes
    the image lives in a registry, which cannot be checked offline, so none is checked.
    """
    if project.config.backend == "kubernetes":
        return
    try:
        catalog.images.get(image)
    except NotFoundError as error:
        raise NotFoundError(f"cannot register model {model_name!r}: {error}") from None


def create_group(
    project: Project,
    catalog: Catalog,
    name: str,
    spec: GroupSpec,
    *,
    port_given: bool,
    dry_run: bool = False,
) -> tuple[ScalingGroup | None, GroupSpec]:
    """Store and start a new group; with ``dry_run`` only build and check the spec it would
    store (no cluster is asked)."""
    if not dry_run:
        check_write(f"creating scaling group {name!r}")
    validate_group_name(name, project.config.environment, new=True)
    backend = backend_for(project)
    spec = backend.prepare(catalog, spec, port_given=port_given)
    if dry_run:
        return None, spec
    return backend.create(catalog, name, spec), spec


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
    backend = backend_for(project)
    group = catalog.groups.get(name)
    current = GroupSpec.from_dict(group.spec)
    unknown = set(changes) - set(GroupSpec.__dataclass_fields__)
    if unknown:
        raise ValidationError(f"cannot change {', '.join(sorted(unknown))} of a scaling group")
    spec = current.with_changes(**changes)
    spec = backend.prepare(catalog, spec, port_given=changes.get("port") is not None)
    if dry_run:
        return None, spec, spec != current
    revision = group.revision if expected_revision is None else expected_revision
    stored, changed = backend.update(catalog, name, spec, expected_revision=revision)
    return stored, spec, changed


def delete_group(project: Project, catalog: Catalog, name: str) -> ScalingGroup:
    """Stop the group (its replicas, objects and URL) and soft-delete its record."""
    check_write(f"deleting scaling group {name!r}")
    return backend_for(project).delete(catalog, name)


def observe_group(project: Project, catalog: Catalog, name: str) -> GroupView:
    """The live group ``name`` as its backend shows it now, with replicas and events."""
    return backend_for(project).observe(catalog, catalog.groups.get(name))


def list_groups(project: Project, catalog: Catalog) -> list[ScalingGroup]:
    """Every live group, its status refreshed from its backend, oldest first."""
    backend = backend_for(project)
    return [backend.observe(catalog, group).group for group in catalog.groups.list()]


def dry_run_manifests(project: Project, name: str, spec: GroupSpec) -> list[dict[str, Any]] | None:
    """What the backend would apply for ``spec`` (Kubernetes objects), or None on a backend
    whose whole plan is the stored spec (local)."""
    return backend_for(project).manifests(name, spec)


INPUT_ARGS_ENV: Final = "CHALK_INPUT_ARGS"


class DeployTimeout(DeployError):
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
    batch_max_delay_ms: float | None = None,
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
        ).with_changes(
            port=port, tags=tags, entrypoint=entrypoint, batch_max_delay_ms=batch_max_delay_ms
        )
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
        "batch_max_delay_ms": batch_max_delay_ms,
    }
    return update_group(
        project,
        catalog,
        name,
        changes,
        dry_run=dry_run,
        expected_revision=live.revision if expected_revision is None else expected_revision,
    )


# Restarts of one replica of the revision being waited for after which the wait gives up.
CRASH_RESTARTS: Final = 3


def wait_until_serving(
    catalog: Catalog,
    name: str,
    *,
    project: Project | None = None,
    timeout_s: float = 300.0,
    poll_s: float = 0.1,
) -> ScalingGroup:
    """Wait until the group's current revision serves and no older replica does.

    A Kubernetes group (``project`` given) serves when its Deployment is rolled out and
    every replica is ready; its status is read from the cluster each poll. A local group's
    wait gives up at once when the revision cannot come up: its replicas keep crashing
    (``CRASH_RESTARTS`` restarts), or no local controller runs to start them.
    """
    backend: Backend | None = None
    if project is not None and project.config.backend == "kubernetes":
        backend = backend_for(project)
        poll_s = max(poll_s, 1.0)
    give_up = time.monotonic() + timeout_s
    group = catalog.groups.get(name)
    while time.monotonic() < give_up:
        group = catalog.groups.get(name)
        # Local replicas carry the group's revision (a pod carries its ReplicaSet's).
        replicas: list[Replica] = []
        if backend is not None:
            group = backend.observe(catalog, group).group
        else:
            replicas = list(catalog.state.replicas(group.id))
            if not catalog.local_controller_running():
                raise CatalogError(
                    f"scaling group {name!r} cannot roll out revision {group.revision}: the "
                    f"local controller is not running: expected it to start the replicas; "
                    f"run `chalk up`"
                )
        if group.status == GroupStatus.FAILED:
            raise CatalogError(f"scaling group {name!r} failed: {group.reason}")
        if group.status == GroupStatus.CRASH_LOOP_BACK_OFF and any(
            r.revision == group.revision and r.restarts >= CRASH_RESTARTS for r in replicas
        ):
            raise CatalogError(
                f"scaling group {name!r} cannot serve revision {group.revision}: its replicas "
                f"keep crashing ({group.reason}){_still_serving(catalog, group, replicas)}: "
                f"expected them to start; their last log lines are in `chalk scaling-group get "
                f"--name {name}`"
            )
        # On Kubernetes, Ready means rolled out, and Idle (KEDA keeps it at zero; an apply
        # does not wake it) that the next call starts the current revision; a group with no
        # gateway has no endpoint outside the cluster and still serves inside it.
        serving = (
            group.status in (GroupStatus.READY, GroupStatus.IDLE)
            if backend is not None
            else _serves_current_revision(catalog, group)
        )
        if serving:
            return group
        time.sleep(poll_s)
    raise DeployTimeout(
        f"scaling group {name!r} did not serve revision {group.revision} within {timeout_s:.0f}s: "
        f"status {group.status}" + (f" ({group.reason})" if group.reason else "")
    )


def _still_serving(catalog: Catalog, group: ScalingGroup, replicas: list[Replica]) -> str:
    """``; <the old version> still serves`` while older replicas serve, else nothing."""
    specs = {r.revision: r.spec for r in catalog.groups.history(group.name)}
    rollout = rollout_of(group, replicas, specs)
    if rollout is None:
        return ""
    return f"; {rollout.serving} (revision {rollout.serving_revision}) still serves"


def _serves_current_revision(catalog: Catalog, group: ScalingGroup) -> bool:
    rows = catalog.state.replicas(group.id)
    ready_new = sum(1 for r in rows if r.revision == group.revision and r.ready)
    old_serving = any(r.revision != group.revision and r.ready for r in rows)
    wanted = max(1, GroupSpec.from_dict(group.spec).scaling.min_replicas)
    return ready_new >= wanted and not old_serving and bool(group.endpoints)
