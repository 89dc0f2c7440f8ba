"""What every pytest run here shares: doctests leave no feature class behind.

A doctest's ``@features`` class (``chalk/features/dsl.py`` defines a ``Document``) would stay
in the process's registry and, being the latest with its namespace, take the place of a test
module's class for the rest of that process: with the tests spread over xdist workers, a
doctest can run between a module's collection and its tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _doctest_features_forgotten(request: pytest.FixtureRequest) -> Iterator[None]:
    if not isinstance(request.node, pytest.DoctestItem):
        yield
        return
    from chalk.features.dsl import _REGISTRY  # noqa: PLC0415

    before = dict(_REGISTRY)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(before)
