"""The root of every error scalegroup raises on purpose, and the error kinds parts share.

Each part's errors derive from ``ChalkError``; the CLI prints any of them as one ``error:`` line.
"""

from __future__ import annotations

__all__ = ["ChalkError", "ConfigError", "ValidationError"]


class ChalkError(Exception):
    """Base of every error scalegroup raises on purpose: its message is for the user.

    Examples
    --------
    >>> issubclass(ValidationError, ChalkError) and issubclass(ValidationError, ValueError)
    True
    """


class ValidationError(ChalkError, ValueError):
    """A value given by the user does not have the expected form."""


class ConfigError(ChalkError):
    """chalk.yaml is missing or invalid."""
