"""Applied feature graphs: every ``chalk apply`` stores a numbered version and activates it.

Reached as ``catalog.graphs``; ``chalk apply`` writes, queries from the CLI read the active one.
"""

from __future__ import annotations

import builtins
from typing import Any

import sqlalchemy as sa

from chalk.catalog.errors import NotFoundError
from chalk.catalog.records import FeatureGraphRecord
from chalk.catalog.schema import feature_graphs
from chalk.catalog.transactions import Transactions

__all__ = ["GraphStore"]


class GraphStore:
    """Stores feature graphs (JSON) by version; exactly one is active once any exists."""

    def __init__(self, catalog: Transactions) -> None:
        self._catalog = catalog

    def apply(self, graph: dict[str, Any]) -> FeatureGraphRecord:
        """Store ``graph`` as the next version and make it the active one."""
        now = self._catalog.clock()
        with self._catalog.write() as connection:
            version = connection.execute(
                sa.select(sa.func.coalesce(sa.func.max(feature_graphs.c.version), 0) + 1)
            ).scalar_one()
            connection.execute(sa.update(feature_graphs).values(active=False))
            connection.execute(
                sa.insert(feature_graphs).values(
                    version=version, graph=graph, active=True, created_at=now
                )
            )
        return FeatureGraphRecord(version=int(version), graph=graph, active=True, created_at=now)

    def active(self) -> FeatureGraphRecord | None:
        """The active graph, or None before the first apply."""
        with self._catalog.read() as connection:
            row = connection.execute(
                sa.select(feature_graphs).where(feature_graphs.c.active.is_(True))
            ).first()
        return None if row is None else _record(row)

    def get(self, version: int) -> FeatureGraphRecord:
        """One stored version."""
        with self._catalog.read() as connection:
            row = connection.execute(
                sa.select(feature_graphs).where(feature_graphs.c.version == version)
            ).first()
        if row is None:
            raise NotFoundError(f"there is no applied feature graph version {version}")
        return _record(row)

    def activate(self, version: int) -> FeatureGraphRecord:
        """Make a stored version the active one again (a rollback)."""
        with self._catalog.write() as connection:
            found = connection.execute(
                sa.select(feature_graphs.c.version).where(feature_graphs.c.version == version)
            ).first()
            if found is None:
                raise NotFoundError(f"there is no applied feature graph version {version}")
            connection.execute(
                sa.update(feature_graphs).values(active=feature_graphs.c.version == version)
            )
        return self.get(version)

    def list(self) -> builtins.list[FeatureGraphRecord]:
        """Every stored version, oldest first."""
        with self._catalog.read() as connection:
            rows = connection.execute(sa.select(feature_graphs).order_by(feature_graphs.c.version))
            return [_record(row) for row in rows]


def _record(row: Any) -> FeatureGraphRecord:
    return FeatureGraphRecord(
        version=int(row.version),
        graph=dict(row.graph),
        active=bool(row.active),
        created_at=row.created_at,
    )
