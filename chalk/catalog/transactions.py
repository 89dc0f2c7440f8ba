"""What the catalog's record stores need of it: the clock and read/write transactions.

``Catalog`` (in ``store``) provides it; ``models``, ``groups``, ``state``, ``graphs`` and
``images`` depend on this protocol only, so no store imports ``store`` back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

import sqlalchemy as sa

__all__ = ["Clock", "Transactions", "utc_now"]

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class Transactions(Protocol):
    """A catalog as its record stores see it."""

    @property
    def clock(self) -> Clock:
        """The catalog's clock (timezone-aware UTC)."""
        ...

    def read(self) -> AbstractContextManager[sa.Connection]:
        """A connection in a read transaction."""
        ...

    def write(self) -> AbstractContextManager[sa.Connection]:
        """A connection in a write transaction: all of it lands, or none of it does."""
        ...
