"""Feature-package fixtures: ``isolated_imports`` for tests that import a throwaway project."""

from __future__ import annotations

from tests.support.projects import isolated_imports

__all__ = ["isolated_imports"]
