"""This project's features: `chalk apply` imports this package and stores its @features classes."""

from features.document import Document

__all__ = ["Document"]
