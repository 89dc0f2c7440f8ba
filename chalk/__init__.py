"""scalegroup: serve ML models as autoscaled scaling groups and call them from features.

The package keeps the product documents' import paths (``chalk.features``, ``chalk.functions``,
``chalk.client``, ``chalk.scaling``); docs/architecture.md says which part may import which.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
