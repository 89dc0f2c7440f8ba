"""What every backend offers the group commands (``Backend``), and what it shows (``GroupView``).

A leaf of ``chalk.deploy``: ``backends`` and each backend's module import it, and it imports
neither, so no backend module and ``backends`` import each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from chalk.catalog import Catalog, ScalingGroup
from chalk.catalog.records import Event, Replica
from chalk.catalog.specs import GroupSpec

__all__ = ["Backend", "GroupView"]


@dataclass(frozen=True, slots=True)
class GroupView:
    """A group with what its backend shows of it now: its replicas and recent events."""

    group: ScalingGroup
    replicas: tuple[Replica, ...]
    events: tuple[Event, ...]


class Backend(Protocol):
    """What every backend does for the group commands."""

    def prepare(self, catalog: Catalog, spec: GroupSpec, *, port_given: bool) -> GroupSpec:
        """The spec to store: its image checked (and pinned where the backend can)."""
        ...

    def create(self, catalog: Catalog, name: str, spec: GroupSpec) -> ScalingGroup:
        """Store and start a new group."""
        ...

    def update(
        self, catalog: Catalog, name: str, spec: GroupSpec, *, expected_revision: int
    ) -> tuple[ScalingGroup, bool]:
        """Store and roll out a changed spec; returns the group and whether it changed."""
        ...

    def delete(self, catalog: Catalog, name: str) -> ScalingGroup:
        """Stop the group and soft-delete its record."""
        ...

    def observe(self, catalog: Catalog, group: ScalingGroup) -> GroupView:
        """The group as it runs now (the record refreshed where the backend keeps none)."""
        ...

    def manifests(self, name: str, spec: GroupSpec) -> list[dict[str, Any]] | None:
        """What ``--dry-run`` shows for the backend, or None when the stored spec is all."""
        ...
