"""The shared leaf part: the root error, name validators, quantities, configuration and the
apply guard. Every part may import it; it imports nothing else from ``chalk``.

Kept free of polars, SQLAlchemy, kubernetes and gRPC, so the runtime (``chalk.shim``) can use it.
"""

from __future__ import annotations

from chalk.common.errors import ChalkError, ConfigError, ValidationError

__all__ = ["ChalkError", "ConfigError", "ValidationError"]
