"""Scaling group commands on the Kubernetes backend: the catalog record and the cluster's
objects kept together.

``chalk.deploy.backends.backend_for`` returns this for ``backend: kubernetes``. It connects
to the cluster only when a command needs it (``--dry-run`` does not), so the ``kubernetes``
client is imported then and not before.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

from chalk.catalog import Catalog, Endpoint, ScalingGroup
from chalk.catalog.errors import NotFoundError, ValidationError
from chalk.catalog.images import normalize_tag
from chalk.catalog.resources import AutoScalingSpec
from chalk.catalog.specs import DEFAULT_PORT, GroupSpec
from chalk.common.config import Project
from chalk.common.errors import ChalkError
from chalk.deploy.kubernetes.keda import refuse_what_needs_keda
from chalk.deploy.kubernetes.manifests import (
    Placement,
    ServerFeatures,
    group_endpoints,
    group_manifests,
    placement_of,
)
from chalk.deploy.local.image_runtime import argv_port
from chalk.deploy.states import GroupStatus
from chalk.deploy.views import GroupView

if TYPE_CHECKING:
    from chalk.deploy.kubernetes.backend import KubernetesBackend

__all__ = ["KubernetesGroups", "is_registry_image"]

_DIGEST: Final = re.compile(r"@(sha256:[0-9a-f]{64})$")


def is_registry_image(reference: str) -> bool:
    """Whether ``reference`` names its registry host (``ghcr.io/x/y:1``,
    ``registry.local:5000/y``, ``localhost/y``) rather than being a bare ``name:tag``.

    Examples
    --------
    >>> is_registry_image("ghcr.io/acme/ner:1"), is_registry_image("registry.local:5000/y")
    (True, True)
    >>> is_registry_image("ner:latest"), is_registry_image("acme/ner:1")
    (False, False)
    """
    first, slash, _rest = reference.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def _connect(project: Project) -> KubernetesBackend:
    from chalk.deploy.kubernetes.backend import connect  # noqa: PLC0415

    return connect(project)


class KubernetesGroups:
    """Creates, updates, observes and deletes groups as objects in the project's namespace.

    Parameters
    ----------
    project
        The project; its chalk.yaml names the namespace, context and gateway.
    connect
        Opens the cluster connection (tests pass their own).
    env
        The environment deciding the endpoints (``KUBERNETES_SERVICE_HOST``): ``os.environ``.
    """

    def __init__(
        self,
        project: Project,
        *,
        connect: Callable[[Project], KubernetesBackend] = _connect,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._project = project
        self._connect = connect
        self._env = env
        self._cluster: KubernetesBackend | None = None

    def _backend(self) -> KubernetesBackend:
        if self._cluster is None:
            self._cluster = self._connect(self._project)
        return self._cluster

    def prepare(self, catalog: Catalog, spec: GroupSpec, *, port_given: bool) -> GroupSpec:
        """Refuse an image only this project's local store has; keep a registry image as named.

        The cluster pulls the image itself, so its digest is pinned only when the reference
        carries one (``name@sha256:...``). The port is the given one, else the ``--port`` of
        the entrypoint, else 8080 (an image in a registry is not read here).
        """
        image = spec.image if "@" in spec.image else normalize_tag(spec.image)
        if not is_registry_image(image):
            _refuse_local_image(catalog, image)
        port = spec.port
        from_image = spec.port_from_image and not port_given
        if from_image:
            port = _entrypoint_port(spec.entrypoint) or DEFAULT_PORT
        digest = _DIGEST.search(image)
        return replace(
            spec,
            image=image,
            image_digest=digest.group(1) if digest else None,
            port=port,
            port_from_image=from_image,
        )

    def create(self, catalog: Catalog, name: str, spec: GroupSpec) -> ScalingGroup:
        """Apply the objects, then store the record; a failure of either leaves neither."""
        cluster = self._backend()
        self._refuse_what_needs_keda(name, spec.scaling, keda=cluster.features().keda)
        applied = False
        try:
            cluster.check(name, cluster.manifests(name, spec))
            applied = True
            cluster.apply(name, spec)
            group = catalog.groups.create(name, spec.to_dict(), backend="kubernetes")
        except BaseException:
            if applied:
                with contextlib.suppress(Exception):
                    cluster.delete(name)
            raise
        return self._report_applied(catalog, group, spec)

    def update(
        self, catalog: Catalog, name: str, spec: GroupSpec, *, expected_revision: int
    ) -> tuple[ScalingGroup, bool]:
        """Store the spec, then apply it (also when unchanged: that repairs drift and changes
        nothing otherwise). A failed apply marks the group Failed with the reason."""
        # A missing group says so before the cluster is asked (as delete does).
        before = GroupSpec.from_dict(catalog.groups.get(name).spec).scaling
        keda = self._backend().features().keda
        # Before the spec is stored.
        self._refuse_what_needs_keda(name, spec.scaling, keda=keda, stored=before)
        stored, changed = catalog.groups.update(
            name, spec.to_dict(), expected_revision=expected_revision
        )
        try:
            self._backend().apply(name, spec)
        except ChalkError as error:
            catalog.groups.report(
                stored.id,
                status=GroupStatus.FAILED.value,
                reason=str(error),
                desired=stored.desired_replicas,
                ready=stored.ready_replicas,
                available=stored.available_replicas,
            )
            raise
        return self._report_applied(catalog, stored, spec), changed

    def delete(self, catalog: Catalog, name: str) -> ScalingGroup:
        """Delete the group's objects, then soft-delete its record."""
        catalog.groups.get(name)  # a missing group says so before the cluster is asked
        self._backend().delete(name)
        return catalog.groups.delete(name)

    def observe(self, catalog: Catalog, group: ScalingGroup) -> GroupView:
        """Read the cluster's view of the group and record it in the catalog."""
        scaling = GroupSpec.from_dict(group.spec).scaling
        state = self._backend().observe(group.name, group.id, idle_seconds=_idle_seconds(scaling))
        catalog.groups.report(
            group.id,
            status=state.status,
            reason=state.reason or self._note(group),
            desired=state.desired,
            ready=state.ready,
            available=state.available,
        )
        try:
            refreshed = catalog.groups.get(group.name)
        except NotFoundError:
            refreshed = group
        return GroupView(refreshed, state.replicas, state.events)

    def manifests(self, name: str, spec: GroupSpec) -> list[dict[str, Any]]:
        """The objects for the newest servers (a dry run asks no cluster: KEDA is assumed,
        the Prometheus server KEDA would read is not)."""
        self._refuse_what_needs_keda(name, spec.scaling, keda=True)
        return group_manifests(name, spec, self.placement(), ServerFeatures())

    def _refuse_what_needs_keda(
        self,
        name: str,
        scaling: AutoScalingSpec,
        *,
        keda: bool,
        stored: AutoScalingSpec | None = None,
    ) -> None:
        cluster = "the cluster" if self._cluster is None else self._cluster.cluster
        refuse_what_needs_keda(
            name,
            scaling,
            keda=keda,
            prometheus_url=self.placement().prometheus_url,
            cluster=cluster,
            config_path=str(self._project.config_path),
            stored=stored,
        )

    def placement(self) -> Placement:
        return placement_of(self._project)

    def _endpoints(self, name: str, spec: GroupSpec) -> tuple[list[Endpoint], str | None, str]:
        env = os.environ if self._env is None else self._env
        return group_endpoints(name, spec, self.placement(), env)

    def _note(self, group: ScalingGroup) -> str:
        return self._endpoints(group.name, GroupSpec.from_dict(group.spec))[2]

    def _report_applied(
        self, catalog: Catalog, group: ScalingGroup, spec: GroupSpec
    ) -> ScalingGroup:
        endpoints, url, note = self._endpoints(group.name, spec)
        state = self._backend().observe(
            group.name, group.id, idle_seconds=_idle_seconds(spec.scaling)
        )
        catalog.groups.report(
            group.id,
            status=state.status,
            reason=state.reason or note,
            desired=state.desired,
            ready=state.ready,
            available=state.available,
            endpoints=endpoints,
            url=url,
        )
        return catalog.groups.get(group.name)


def _refuse_local_image(catalog: Catalog, reference: str) -> None:
    try:
        catalog.images.get(reference)
    except NotFoundError:
        return  # a bare name of a public registry image, such as python:3.11
    name = reference.rsplit("/", 1)[-1]
    raise ValidationError(
        f"image {reference!r} is only in this project's local image store, and a Kubernetes "
        f"cluster pulls images from a registry: expected an image reference with a registry "
        f"host such as 'ghcr.io/<you>/{name}'; push the image to a registry (build it with "
        f"docker and `docker push`) and give that reference"
    )


def _entrypoint_port(entrypoint: tuple[str, ...] | None) -> int | None:
    return argv_port(entrypoint or ())


def _idle_seconds(scaling: AutoScalingSpec) -> int | None:
    """The group's idle time before zero; None when it never goes to zero."""
    return scaling.effective_idle_seconds if scaling.scales_to_zero else None
