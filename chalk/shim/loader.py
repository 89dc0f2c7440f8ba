"""Finds the user's handler and lifecycle hooks from dotted paths (``module.func``)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Hooks", "load_callable", "load_hooks"]


@dataclass(frozen=True, slots=True)
class Hooks:
    """The handler and the optional functions run before serving and after draining."""

    handler: Callable[..., Any]
    on_startup: Callable[[], Any] | None
    on_shutdown: Callable[[], Any] | None


def load_callable(dotted_path: str, *, role: str = "handler") -> Callable[..., Any]:
    """Import ``module.func`` and return ``func``; the working directory is importable.

    Examples
    --------
    >>> load_callable("os.path.join") is os.path.join
    True
    """
    module_name, _, attribute = dotted_path.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(
            f"--{role.replace('_', '-')} must be a dotted path like 'model.handler', "
            f"got {dotted_path!r}"
        )
    _ensure_cwd_importable()
    module = importlib.import_module(module_name)
    function = getattr(module, attribute, None)
    if function is None:
        raise AttributeError(f"module {module_name!r} has no {role} named {attribute!r}")
    if not callable(function):
        raise TypeError(f"{dotted_path!r} is a {type(function).__name__}, expected a function")
    return function  # type: ignore[no-any-return]


def load_hooks(handler: str, on_startup: str | None, on_shutdown: str | None) -> Hooks:
    """Load the handler; a hook not named by a flag defaults to the module's own, if any."""
    function = load_callable(handler)
    module = sys.modules[handler.rpartition(".")[0]]
    return Hooks(
        handler=function,
        on_startup=(
            load_callable(on_startup, role="on_startup")
            if on_startup
            else _module_hook(module, "on_startup")
        ),
        on_shutdown=(
            load_callable(on_shutdown, role="on_shutdown")
            if on_shutdown
            else _module_hook(module, "on_shutdown")
        ),
    )


def _module_hook(module: object, name: str) -> Callable[[], Any] | None:
    hook = getattr(module, name, None)
    return hook if callable(hook) else None


def _ensure_cwd_importable() -> None:
    # A console script's sys.path starts with its bin directory, not the working directory.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
