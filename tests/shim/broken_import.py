"""A handler module that fails at import, as a model with a missing dependency does."""

from __future__ import annotations

import not_installed_model_library  # type: ignore[import-not-found]  # noqa: F401


def handler(event: object, context: object) -> object:
    return event
