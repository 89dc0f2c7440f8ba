"""Scaling group records: desired spec with revision history, soft delete, reported status.

Reached as ``catalog.groups``. Clients write specs; the backend running a group writes its
status, replica counts, endpoints and URL back through ``report``.
"""

from __future__ import annotations

import builtins
import difflib
import secrets
from typing import Any

import sqlalchemy as sa

from chalk.catalog.errors import ConflictError, NotFoundError, ValidationError
from chalk.catalog.records import Endpoint, ScalingGroup
from chalk.catalog.schema import autoscaler_state, scaling_group_revisions, scaling_groups
from chalk.catalog.specs import GroupSpec
from chalk.catalog.transactions import Transactions
from chalk.common.apply_guard import check_write
from chalk.common.names import DNS_LABEL_MAX_LENGTH, is_dns_label

__all__ = ["GroupRevision", "GroupStore", "validate_group_name"]


def validate_group_name(name: str, environment: str = "dev", *, new: bool = False) -> str:
    """Check a scaling group name: a DNS-1123 label such that ``<environment>-<name>`` fits 63.

    ``new``: the name of a group about to be created, which must also start with a letter
    (a DNS-1035 label, as Kubernetes Service names must be), so that a group made on the
    local backend can move to Kubernetes. Existing groups keep their names.

    Examples
    --------
    >>> validate_group_name("ner")
    'ner'
    >>> validate_group_name("My_Model")
    Traceback (most recent call last):
    ...
    chalk.common.errors.ValidationError: scaling group name 'My_Model' is not valid: expected a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit)
    """  # noqa: E501
    if not isinstance(name, str) or not is_dns_label(name, max_length=None):
        raise ValidationError(
            f"scaling group name {name!r} is not valid: expected a DNS-1123 label (lowercase "
            f"letters, digits and '-', starting and ending with a letter or digit)"
        )
    if new and not name[0].isalpha():
        raise ValidationError(
            f"scaling group name {name!r} is not valid: expected it to start with a letter, "
            f"as Kubernetes Service names must (a DNS-1035 label); e.g. 'm-{name}'"
        )
    full = f"{environment}-{name}"
    if len(full) > DNS_LABEL_MAX_LENGTH:
        raise ValidationError(
            f"scaling group name {name!r} is too long: '{full}' must fit {DNS_LABEL_MAX_LENGTH} "
            f"characters, expected a name of at most {DNS_LABEL_MAX_LENGTH - len(environment) - 1}"
        )
    return name


class GroupRevision:
    """One stored revision of a group's spec."""

    __slots__ = ("created_at", "revision", "spec")

    def __init__(self, revision: int, spec: dict[str, Any], created_at: Any) -> None:
        self.revision = revision
        self.spec = spec
        self.created_at = created_at


class GroupStore:
    """Creates, updates, lists and soft-deletes scaling groups."""

    def __init__(self, catalog: Transactions) -> None:
        self._catalog = catalog

    def create(
        self, name: str, spec: dict[str, Any], *, backend: str, status: str = "Pending"
    ) -> ScalingGroup:
        """Store a new group at revision 1; a live group of that name is a ConflictError."""
        check_write(f"creating scaling group {name!r}")
        now = self._catalog.clock()
        group_id = f"sg-{secrets.token_hex(6)}"
        with self._catalog.write() as connection:
            existing = self._live_row(connection, name)
            if existing is not None:
                raise ConflictError(
                    f"scaling group {name!r} already exists (created "
                    f"{existing.created_at:%Y-%m-%d %H:%M:%S} UTC): expected a new name; change "
                    f"it with `chalk scaling-group update --name {name}` or delete it first"
                )
            connection.execute(
                sa.insert(scaling_groups).values(
                    id=group_id,
                    name=name,
                    backend=backend,
                    spec=spec,
                    revision=1,
                    status=status,
                    reason="",
                    desired_replicas=0,
                    ready_replicas=0,
                    available_replicas=0,
                    endpoints=[],
                    url=None,
                    created_at=now,
                    updated_at=now,
                )
            )
            connection.execute(
                sa.insert(scaling_group_revisions).values(
                    group_id=group_id, revision=1, spec=spec, created_at=now
                )
            )
            return _record(self._live_row(connection, name))

    def update(
        self, name: str, spec: dict[str, Any], *, expected_revision: int | None = None
    ) -> tuple[ScalingGroup, bool]:
        """Store ``spec`` as the group's next revision; an unchanged spec stores nothing.

        With ``expected_revision``, a group changed by someone else since it was read is a
        ConflictError rather than a silently lost change. Returns the group and whether
        anything changed.
        """
        check_write(f"updating scaling group {name!r}")
        now = self._catalog.clock()
        with self._catalog.write() as connection:
            row = self._require_live(connection, name)
            if expected_revision is not None and row.revision != expected_revision:
                raise ConflictError(
                    f"scaling group {name!r} changed while this update was prepared: expected "
                    f"revision {expected_revision}, found {row.revision}; run the update again"
                )
            if _normalised(row.spec) == _normalised(spec):
                return _record(row), False
            revision = row.revision + 1
            connection.execute(
                sa.update(scaling_groups)
                .where(scaling_groups.c.id == row.id)
                .values(spec=spec, revision=revision, updated_at=now)
            )
            connection.execute(
                sa.insert(scaling_group_revisions).values(
                    group_id=row.id, revision=revision, spec=spec, created_at=now
                )
            )
            return _record(self._live_row(connection, name)), True

    def get(self, name: str) -> ScalingGroup:
        """The live group named ``name``; NotFoundError (saying when, if deleted) otherwise."""
        with self._catalog.read() as connection:
            return _record(self._require_live(connection, name))

    def find(self, name: str) -> ScalingGroup | None:
        """The live group named ``name``, or None."""
        with self._catalog.read() as connection:
            row = self._live_row(connection, name)
        return None if row is None else _record(row)

    def find_deleted(self, name: str) -> ScalingGroup | None:
        """The most recently deleted group of that name, or None."""
        with self._catalog.read() as connection:
            row = connection.execute(
                sa.select(scaling_groups)
                .where(scaling_groups.c.name == name, scaling_groups.c.deleted_at.is_not(None))
                .order_by(scaling_groups.c.deleted_at.desc())
                .limit(1)
            ).first()
        return None if row is None else _record(row)

    def list(self, *, include_deleted: bool = False) -> list[ScalingGroup]:
        """Groups ordered by creation time (live ones only unless ``include_deleted``)."""
        query = sa.select(scaling_groups).order_by(scaling_groups.c.created_at)
        if not include_deleted:
            query = query.where(scaling_groups.c.deleted_at.is_(None))
        with self._catalog.read() as connection:
            return [_record(row) for row in connection.execute(query)]

    def delete(self, name: str) -> ScalingGroup:
        """Soft-delete: the record stays in history, its endpoints go, the name is free."""
        check_write(f"deleting scaling group {name!r}")
        now = self._catalog.clock()
        with self._catalog.write() as connection:
            row = self._require_live(connection, name)
            connection.execute(
                sa.update(scaling_groups)
                .where(scaling_groups.c.id == row.id)
                .values(
                    deleted_at=now,
                    updated_at=now,
                    status="Deleted",
                    endpoints=[],
                    ready_replicas=0,
                    available_replicas=0,
                    desired_replicas=0,
                )
            )
            # The autoscaler's memory of the group means nothing once it is gone.
            connection.execute(
                sa.delete(autoscaler_state).where(autoscaler_state.c.group_id == row.id)
            )
            deleted = connection.execute(
                sa.select(scaling_groups).where(scaling_groups.c.id == row.id)
            ).one()
        return _record(deleted)

    def history(self, name: str) -> builtins.list[GroupRevision]:
        """Every revision of the live group's spec, oldest first."""
        with self._catalog.read() as connection:
            row = self._require_live(connection, name)
            revisions = connection.execute(
                sa.select(scaling_group_revisions)
                .where(scaling_group_revisions.c.group_id == row.id)
                .order_by(scaling_group_revisions.c.revision)
            )
            return [GroupRevision(r.revision, dict(r.spec), r.created_at) for r in revisions]

    def report(
        self,
        group_id: str,
        *,
        status: str,
        reason: str = "",
        desired: int,
        ready: int,
        available: int,
        endpoints: builtins.list[Endpoint] | None = None,
        url: str | None = None,
    ) -> None:
        """The backend's view of a group; ``endpoints``/``url`` of None keep the stored ones."""
        values: dict[str, Any] = {
            "status": status,
            "reason": reason,
            "desired_replicas": desired,
            "ready_replicas": ready,
            "available_replicas": available,
            "updated_at": self._catalog.clock(),
        }
        if endpoints is not None:
            values["endpoints"] = [endpoint.to_json() for endpoint in endpoints]
        if url is not None:
            values["url"] = url
        with self._catalog.write() as connection:
            connection.execute(
                sa.update(scaling_groups)
                .where(scaling_groups.c.id == group_id, scaling_groups.c.deleted_at.is_(None))
                .values(**values)
            )

    def suggestion(self, name: str) -> str:
        """`` (did you mean 'x'?)`` when a live group has a close name, else ``""``."""
        with self._catalog.read() as connection:
            return _suggestion(connection, name)

    def _live_row(self, connection: sa.Connection, name: str) -> Any:
        return connection.execute(
            sa.select(scaling_groups).where(
                scaling_groups.c.name == name, scaling_groups.c.deleted_at.is_(None)
            )
        ).first()

    def _require_live(self, connection: sa.Connection, name: str) -> Any:
        row = self._live_row(connection, name)
        if row is not None:
            return row
        deleted = connection.execute(
            sa.select(scaling_groups.c.deleted_at)
            .where(scaling_groups.c.name == name, scaling_groups.c.deleted_at.is_not(None))
            .order_by(scaling_groups.c.deleted_at.desc())
            .limit(1)
        ).first()
        if deleted is not None:
            raise NotFoundError(
                f"scaling group {name!r} was deleted at {deleted.deleted_at:%Y-%m-%d %H:%M:%S} "
                f"UTC; create it again with `chalk scaling-group create --name {name} ...`"
            )
        raise NotFoundError(
            f"there is no scaling group named {name!r}{_suggestion(connection, name)}"
        )


def _normalised(spec: dict[str, Any]) -> dict[str, Any]:
    # A spec stored before a field existed, or given with tuples for lists, is still the same
    # spec: compare what GroupSpec makes of both.
    try:
        return GroupSpec.from_dict(spec).to_dict()
    except (KeyError, TypeError, ValueError):
        return spec


def _suggestion(connection: sa.Connection, name: str) -> str:
    names = connection.execute(
        sa.select(scaling_groups.c.name).where(scaling_groups.c.deleted_at.is_(None))
    ).scalars()
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _record(row: Any) -> ScalingGroup:
    return ScalingGroup(
        id=row.id,
        name=row.name,
        backend=row.backend,
        spec=dict(row.spec),
        revision=int(row.revision),
        status=row.status,
        reason=row.reason or "",
        desired_replicas=int(row.desired_replicas),
        ready_replicas=int(row.ready_replicas),
        available_replicas=int(row.available_replicas),
        endpoints=tuple(Endpoint.from_json(e) for e in row.endpoints or ()),
        url=row.url,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )
