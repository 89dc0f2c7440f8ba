"""``answered_by``: which routes' answers may be kept under a scope."""

from __future__ import annotations

import pyarrow as pa
import pytest

from chalk.catalog.records import Endpoint, Route
from chalk.engine.cache.answers import answered_by
from chalk.engine.cache.store import AnswerScope

SCHEMA = pa.schema({"x": pa.int64()})
SCOPE = AnswerScope("ner", "ner", 1, 60.0, pa.int64(), "5eed")


def route(version: int = 1, digest: str = "5eed", serving: int = 1) -> Route:
    return Route(
        "ner",
        "ner",
        version,
        SCHEMA,
        SCHEMA,
        None,
        (Endpoint("127.0.0.1:1"),),
        version_digest=digest,
        serving=(("ner", serving),),
    )


@pytest.mark.parametrize(
    ("answering", "kept"),
    [
        pytest.param(route(), True, id="same-registration"),
        pytest.param(route(digest="f00d"), False, id="registered-again"),
        pytest.param(route(version=2, serving=2), False, id="another-version"),
        pytest.param(route(serving=2), False, id="mid-roll"),
    ],
)
def test_only_a_settled_route_to_the_scopes_registration_fills_it(
    answering: Route, kept: bool
) -> None:
    assert answered_by(answering, SCOPE) is kept
