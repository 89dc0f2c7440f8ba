"""A local group's stored spec read back, or a permanent error naming the group.

A spec the controller cannot read (written by hand, or by a newer chalk) is not retried:
the group is marked Failed with this error's message until its spec changes.
"""

from __future__ import annotations

from chalk.catalog import ScalingGroup
from chalk.catalog.errors import CatalogError
from chalk.catalog.specs import GroupSpec

__all__ = ["StoredSpecError", "stored_spec"]


class StoredSpecError(CatalogError):
    """A group's stored spec cannot be read as a GroupSpec."""


def stored_spec(group: ScalingGroup) -> GroupSpec:
    """``group``'s spec as a GroupSpec.

    Raises
    ------
    StoredSpecError
        When the stored spec is not one ``chalk scaling-group create`` could have stored; the
        message names the group, its revision and what is wrong.
    """
    try:
        return GroupSpec.from_dict(group.spec)
    except (CatalogError, KeyError, TypeError, ValueError, AttributeError) as error:
        detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
        raise StoredSpecError(
            f"the stored spec of scaling group {group.name!r} (revision {group.revision}) "
            f"cannot be read ({detail}): expected a spec as `chalk scaling-group create` "
            f"stores it; update the group or delete it"
        ) from None
