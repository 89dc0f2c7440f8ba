"""The seam between the group commands and the backend that runs groups.

``chalk.deploy.groups`` (called by the CLI and ``ChalkClient`` alike) asks ``backend_for`` for
the project's backend and calls the same methods on either: the local one stores the spec and
starts the local controller when none runs (it sees the change on its next pass); the
Kubernetes one applies objects to the cluster.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chalk.catalog import Catalog, ScalingGroup
from chalk.catalog.images import normalize_tag
from chalk.catalog.specs import GroupSpec
from chalk.common.config import Project
from chalk.deploy.states import GroupStatus
from chalk.deploy.views import Backend, GroupView

# The image store, the Kubernetes backend and the local controller are imported where they are
# used: reading groups (`chalk scaling-group list`) needs none of them.

__all__ = ["Backend", "GroupView", "LocalBackend", "backend_for", "pin_image"]


def pin_image(catalog: Catalog, spec: GroupSpec, *, port_given: bool) -> GroupSpec:
    """Fix the spec's image to its current digest; take the port from the image if not given.

    A tag rebuilt later touches no running group until the group is updated.
    """
    image = catalog.images.get(spec.image)
    port = spec.port
    from_image = spec.port_from_image and not port_given
    if from_image:
        from chalk.deploy.local.images import image_argv, image_port  # noqa: PLC0415

        port = image_port(image, image_argv(image, spec.entrypoint))
    return replace(
        spec,
        image=normalize_tag(spec.image),
        image_digest=image.digest,
        port=port,
        port_from_image=from_image,
    )


class LocalBackend:
    """Groups as local processes: the catalog holds the spec, the local controller acts."""

    def __init__(self, project: Project) -> None:
        self._project = project

    def prepare(self, catalog: Catalog, spec: GroupSpec, *, port_given: bool) -> GroupSpec:
        return pin_image(catalog, spec, port_given=port_given)

    def create(self, catalog: Catalog, name: str, spec: GroupSpec) -> ScalingGroup:
        group = catalog.groups.create(name, spec.to_dict(), backend=self._project.config.backend)
        _wake_controller(self._project)
        return group

    def update(
        self, catalog: Catalog, name: str, spec: GroupSpec, *, expected_revision: int
    ) -> tuple[ScalingGroup, bool]:
        stored = catalog.groups.update(name, spec.to_dict(), expected_revision=expected_revision)
        _wake_controller(self._project)
        return stored

    def delete(self, catalog: Catalog, name: str) -> ScalingGroup:
        # No controller is started for a delete: a running one sees it on its next pass, and
        # one started later stops the group's leftover replicas when it adopts them.
        return catalog.groups.delete(name)

    def observe(self, catalog: Catalog, group: ScalingGroup) -> GroupView:
        replicas = tuple(catalog.state.replicas(group.id))
        # Pending: no controller reported yet; Stopped: `chalk down` said so itself.
        reported = group.status not in (GroupStatus.PENDING, GroupStatus.STOPPED)
        if reported and not self._controller_reports(catalog):
            # What the controller last reported is stale once it stopped heartbeating (killed,
            # or the machine slept): say so rather than show a Ready group nothing serves.
            group = replace(
                group,
                status=GroupStatus.UNKNOWN.value,
                reason=f"the local controller is not running (chalk up); it last reported "
                f"{group.status}",
            )
        return GroupView(group, replicas, tuple(catalog.state.events(group.id)))

    def manifests(self, name: str, spec: GroupSpec) -> list[dict[str, Any]] | None:
        return None

    def _controller_reports(self, catalog: Catalog) -> bool:
        """A fresh heartbeat, from a controller that still holds its lock (a killed one's
        heartbeat stays fresh for a few seconds; its lock is released at once)."""
        from chalk.deploy.local.lock import controller_gone  # noqa: PLC0415

        return catalog.local_controller_running() and not controller_gone(self._project)


def _wake_controller(project: Project) -> None:
    from chalk.deploy.local import daemon  # noqa: PLC0415

    daemon.ensure_running(project)


def backend_for(project: Project) -> Backend:
    """The backend chalk.yaml names; the Kubernetes client loads only for Kubernetes."""
    if project.config.backend == "kubernetes":
        from chalk.deploy.kubernetes.groups import KubernetesGroups  # noqa: PLC0415

        return KubernetesGroups(project)
    return LocalBackend(project)
