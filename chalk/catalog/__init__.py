"""The catalog: persistent records and their types (model versions, scaling groups with
history, applied feature graphs, local images, backend state), on SQLite or PostgreSQL.

Imports nothing else from ``chalk``; every other part reads and writes through it.
"""

from __future__ import annotations

from chalk.catalog.errors import (
    CatalogError,
    ConflictError,
    NotFoundError,
    ResolveError,
    ValidationError,
)
from chalk.catalog.records import Endpoint, ModelVersion, Route, ScalingGroup
from chalk.catalog.store import Catalog, close_catalogs, open_catalog

__all__ = [
    "Catalog",
    "CatalogError",
    "ConflictError",
    "Endpoint",
    "ModelVersion",
    "NotFoundError",
    "ResolveError",
    "Route",
    "ScalingGroup",
    "ValidationError",
    "close_catalogs",
    "open_catalog",
]
