"""The catalog's errors: each names the user's thing (the model, the group, the call name).

All are ``ChalkError``s, which the CLI prints as one line. ``ValidationError`` is the shared one
of ``chalk.common``, re-exported because the catalog raises it for every malformed value.
"""

from __future__ import annotations

from chalk.common.errors import ChalkError, ValidationError

__all__ = [
    "BadCallNameError",
    "CatalogError",
    "ConflictError",
    "ControllerDownError",
    "DeletedGroupError",
    "NoModelError",
    "NoReadyReplicaError",
    "NotFoundError",
    "ResolveError",
    "SchemaVersionError",
    "UnknownGroupError",
    "UnreachableGroupError",
    "ValidationError",
]


class CatalogError(ChalkError):
    """Base of every error the catalog raises on purpose."""


class NotFoundError(CatalogError, LookupError):
    """A named record does not exist."""


class ConflictError(CatalogError):
    """A write would break a uniqueness rule (a live name, an alias already taken)."""


class ResolveError(CatalogError):
    """``Catalog.resolve`` cannot route a ``model.<group>`` call."""


class SchemaVersionError(CatalogError):
    """The catalog database was written by a newer scalegroup than this one."""


class BadCallNameError(ResolveError):
    """The name given to ``catalog_call`` is not of the form ``model.<group>``."""


class UnknownGroupError(ResolveError, NotFoundError):
    """No live scaling group has that name."""


class DeletedGroupError(ResolveError, NotFoundError):
    """The scaling group was deleted."""


class NoModelError(ResolveError):
    """The scaling group hosts no model version."""


class NoReadyReplicaError(ResolveError):
    """The scaling group has no replica ready to take calls. ``Catalog.resolve`` no longer
    raises it (such a group's route has no endpoints, and the engine holds the call); kept
    for the callers that still catch it."""


class ControllerDownError(ResolveError):
    """The local controller's heartbeat is missing or stale, so local endpoints are unknown."""


class UnreachableGroupError(ResolveError):
    """The scaling group runs, but at no endpoint this reader reaches (a Kubernetes group with
    no gateway, called from outside its cluster)."""
