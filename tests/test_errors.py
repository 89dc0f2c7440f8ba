"""The error root: every error scalegroup raises on purpose is a ``ChalkError``, and the CLI
prints any of them as one line."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import chalk
from chalk.catalog.errors import CatalogError
from chalk.common.errors import ChalkError
from chalk.deploy.errors import DeployError

# Control flow that never reaches a user: the runtime's way to end a gRPC call with a status,
# a queued chunk's deadline, which the dispatcher turns into the call's error, and a failed
# DNS lookup, which the engine reads as "not known" (their subclasses too); private classes
# (``_CastFailure``) are left out by their name.
_INTERNAL = (
    "chalk.shim._methods.Abort",
    "chalk.engine.batching.QueueDeadline",
    "chalk.engine.addresses.AddressLookupError",
)


def _error_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(chalk.__path__, "chalk."):
        if module_info.name.endswith("__main__"):
            continue
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    internal = tuple(found[name] for name in _INTERNAL)
    return [
        error
        for name, error in sorted(found.items())
        if not error.__qualname__.startswith("_") and not issubclass(error, internal)
    ]


def test_every_error_of_every_part_is_a_chalk_error() -> None:
    errors = _error_classes()

    assert len(errors) > 30
    assert [e.__qualname__ for e in errors if not issubclass(e, ChalkError)] == []


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("chalk.deploy.local.dockerfile.DockerfileError", id="dockerfile"),
        pytest.param("chalk.deploy.local.dockerfile.BuildError", id="build"),
        pytest.param("chalk.deploy.kubernetes.backend.KubeError", id="kubernetes"),
    ],
)
def test_a_deploy_error_is_no_catalog_error(name: str) -> None:
    module, _, qualname = name.rpartition(".")
    error = getattr(importlib.import_module(module), qualname)

    assert issubclass(error, DeployError)
    assert not issubclass(error, CatalogError)


def test_an_error_keeps_its_builtin_base_beside_the_root() -> None:
    from chalk.deploy.local.dockerfile import DockerfileError
    from chalk.engine.errors import EngineTypeError
    from chalk.features.expr import ExpressionError

    assert issubclass(DockerfileError, ValueError)
    assert issubclass(EngineTypeError, TypeError)
    assert issubclass(ExpressionError, ValueError)
