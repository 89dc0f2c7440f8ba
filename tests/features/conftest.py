"""Feature-package fixtures: ``isolated_imports`` for tests that import a throwaway project."""

from __future__ import annotations

from tests.support.projects import isolated_imports

# Checked by mypy in test_typing.py, not imported: its classes would join the registry.
collect_ignore = ["typing_cases.py"]

__all__ = ["isolated_imports"]
