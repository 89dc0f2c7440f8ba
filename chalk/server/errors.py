"""The one JSON error shape of the feature server, and the one table from our error classes
to HTTP statuses and codes.

Every error our parts raise on purpose is a ``ChalkError``; the table maps the ones a client
can act on to their own status, and any other ``ChalkError`` to 500 with its message. Nothing
else in the server names an error class.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any, Final

from chalk.catalog.errors import (
    BadCallNameError,
    CatalogError,
    ControllerDownError,
    NoReadyReplicaError,
    NotFoundError,
    UnknownGroupError,
    UnreachableGroupError,
)
from chalk.common.errors import ChalkError, ValidationError
from chalk.engine.errors import (
    EngineError,
    ModelArgumentCountError,
    ModelCallError,
    ModelCallTypeError,
    ModelHandlerError,
    ModelTransportError,
    ModelUnavailableError,
)
from chalk.engine.plan import PlanError
from chalk.engine.query import QueryError
from chalk.features import ExpressionError, GraphError
from chalk.features.wire import WireValueError
from chalk.server.graphs import NoGraphError

__all__ = ["ApiError", "api_error", "error_body", "on_graph"]


class ApiError(ChalkError):
    """An error answered as JSON: ``status``, a stable ``code`` and a message for people.

    ``feature`` names the feature, input or field concerned when there is one.
    """

    def __init__(self, status: int, code: str, message: str, feature: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.feature = feature
        # The applied graph a failed query ran on, when it got that far (see ``on_graph``).
        self.graph_version: int | None = None

    def body(self) -> dict[str, Any]:
        body = error_body([self])
        if self.graph_version is not None:
            body["meta"] = {"graph_version": self.graph_version}
        return body


def on_graph(error: Exception, graph_version: int, features: Container[str] = ()) -> Exception:
    """``error`` as answered for a query that ran on ``graph_version`` (ours gain the version,
    and the feature among ``features`` their message opens with; any other error is left as
    it is).

    Examples
    --------
    >>> found = on_graph(QueryError("doc.n: no replica"), 3, {"doc.n"})
    >>> found.feature, found.graph_version
    ('doc.n', 3)
    """
    found = api_error(error)
    if found is None:
        return error
    found.graph_version = graph_version
    if found.feature is None:
        named = found.message.split(": ", 1)[0]
        if named in features:
            found.feature = named
    return found


# First match wins: subclasses before their bases. (status, code) per class of error.
_STATUSES: Final[tuple[tuple[type[BaseException], int, str], ...]] = (
    (ModelHandlerError, 502, "MODEL_HANDLER_ERROR"),
    (ModelTransportError, 503, "MODEL_UNAVAILABLE"),
    (ModelUnavailableError, 503, "MODEL_UNAVAILABLE"),
    (ModelArgumentCountError, 500, "MODEL_SIGNATURE_MISMATCH"),
    (ModelCallTypeError, 500, "MODEL_SIGNATURE_MISMATCH"),
    (NoReadyReplicaError, 503, "MODEL_UNAVAILABLE"),
    (ControllerDownError, 503, "MODEL_UNAVAILABLE"),
    (UnreachableGroupError, 503, "MODEL_UNAVAILABLE"),
    (ModelCallError, 502, "MODEL_ERROR"),
    (UnknownGroupError, 404, "UNKNOWN_GROUP"),
    (BadCallNameError, 404, "UNKNOWN_GROUP"),
    (NoGraphError, 503, "NO_GRAPH"),
    (WireValueError, 400, "INVALID_VALUE"),
    (QueryError, 400, "INVALID_QUERY"),
    (GraphError, 400, "UNKNOWN_FEATURE"),
    (PlanError, 400, "INVALID_PLAN"),
    (EngineError, 400, "ENGINE_ERROR"),
    (ExpressionError, 500, "INVALID_GRAPH"),
    (NotFoundError, 404, "NOT_FOUND"),
    (ValidationError, 400, "INVALID_QUERY"),
    (CatalogError, 500, "CATALOG_ERROR"),
    (ChalkError, 500, "ERROR"),
)


def api_error(error: BaseException) -> ApiError | None:
    """``error`` as the server answers it, or None when it is not one of ours (a bug: 500)."""
    if isinstance(error, ApiError):
        return error
    for kind, status, code in _STATUSES:
        if isinstance(error, kind):
            return ApiError(status, code, str(error))
    return None


def error_body(errors: list[ApiError]) -> dict[str, Any]:
    """The JSON of failed requests: an empty ``data`` and the ``errors``.

    Examples
    --------
    >>> error_body([ApiError(400, "INVALID_QUERY", "no outputs")])
    {'data': [], 'errors': [{'code': 'INVALID_QUERY', 'message': 'no outputs', 'feature': None}]}
    """
    return {
        "data": [],
        "errors": [
            {"code": error.code, "message": error.message, "feature": error.feature}
            for error in errors
        ],
    }
