"""``ChalkClient(api_server=...)``'s online queries: a thin HTTP client of ``chalk serve``.

Sends each input as JSON by its feature's type with the fingerprint of every feature named that
this process defines (the server checks the other names), and turns the server's JSON errors
back into the exceptions an in-process query raises.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

from chalk.catalog.errors import NotFoundError, UnknownGroupError
from chalk.common.errors import ChalkError
from chalk.engine.errors import EngineError, ModelCallError
from chalk.engine.plan import PlanError
from chalk.engine.query import QueryError, feature_name
from chalk.features import FeatureGraph
from chalk.features.wire import feature_fingerprint, value_from_json, value_to_json

__all__ = [
    "API_SERVER_ENV",
    "API_TOKEN_ENV",
    "ApiServerClient",
    "ApiServerError",
    "FeatureMismatchError",
]

API_SERVER_ENV: Final = "CHALK_API_SERVER"
API_TOKEN_ENV: Final = "CHALK_API_TOKEN"
_TIMEOUT_S: Final = 60.0


class ApiServerError(ChalkError, RuntimeError):
    """The feature server answered an error no in-process query raises (auth, limits, ...)."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class FeatureMismatchError(QueryError):
    """The server's applied graph lacks a feature the query names, or defines it differently."""


# The server's error codes as the exceptions the same failure raises in process.
_ERRORS: Final[dict[str, type[Exception]]] = {
    "INVALID_QUERY": QueryError,
    "INVALID_TYPE": QueryError,
    "INVALID_VALUE": QueryError,
    "UNKNOWN_FEATURE": QueryError,
    "MISSING_PRIMARY_KEY": QueryError,
    "INVALID_PLAN": PlanError,
    "ENGINE_ERROR": EngineError,
    "FEATURE_MISMATCH": FeatureMismatchError,
    "NO_GRAPH": NotFoundError,
    "UNKNOWN_GROUP": UnknownGroupError,
    "MODEL_HANDLER_ERROR": ModelCallError,
    "MODEL_UNAVAILABLE": ModelCallError,
    "MODEL_SIGNATURE_MISMATCH": ModelCallError,
    "MODEL_ERROR": ModelCallError,
}


class ApiServerClient:
    """Online queries sent to ``chalk serve`` at ``url`` (one keep-alive connection pool).

    ``token`` (default: ``$CHALK_API_TOKEN``) is sent as a bearer token. Thread-safe.
    """

    def __init__(self, url: str, *, token: str | None = None) -> None:
        try:
            import httpx  # noqa: PLC0415 (an extra: scalegroup[server])
        except ImportError:
            raise ImportError(
                "ChalkClient(api_server=...) needs httpx: pip install 'scalegroup[server]'"
            ) from None
        token = token or os.environ.get(API_TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=_TIMEOUT_S)
        self._transport_errors = httpx.TransportError

    def query(
        self, graph: FeatureGraph, inputs: Mapping[Any, Any], outputs: Sequence[Any]
    ) -> dict[str, Any]:
        """One row of ``outputs`` for ``inputs``, as plain Python values by fqn.

        ``graph`` holds the features this process defines; a feature it lacks travels by its
        name alone (its value as JSON by its Python type) and comes back as its JSON value.
        """
        row = {}
        for key, value in inputs.items():
            fqn = feature_name(key)
            known = graph.features.get(fqn)
            row[fqn] = value_to_json(value, known.arrow_type if known is not None else None)
        wanted = [feature_name(output) for output in outputs]
        fingerprints = {
            fqn: feature_fingerprint(graph.features[fqn])
            for fqn in [*row, *wanted]
            if fqn in graph.features
        }
        body = {"inputs": row, "outputs": wanted, "fingerprints": fingerprints}
        try:
            reply = self._http.post("/v1/query/online", json=body)
        except self._transport_errors as error:
            raise ApiServerError(
                f"cannot reach the feature server at {self.url}: {error}: expected `chalk "
                f"serve` answering there ({API_SERVER_ENV} or ChalkClient(api_server=...))",
                status=0,
                code="UNREACHABLE",
            ) from None
        answer = _json(reply)
        if reply.status_code != 200:
            raise _error(self.url, reply.status_code, answer)
        return {item["field"]: _value(graph, item) for item in answer["data"]}

    def close(self) -> None:
        self._http.close()


def _value(graph: FeatureGraph, item: Mapping[str, Any]) -> Any:
    known = graph.features.get(item["field"])
    if known is None:
        return item["value"]
    return value_from_json(item["value"], known.arrow_type, what=item["field"])


def _json(reply: Any) -> Any:
    try:
        return reply.json()
    except ValueError:
        return {"errors": [{"code": "NOT_JSON", "message": reply.text[:200]}]}


def _error(url: str, status: int, answer: Any) -> Exception:
    errors = answer.get("errors") if isinstance(answer, dict) else None
    first = errors[0] if errors else {"code": "UNKNOWN", "message": str(answer)[:200]}
    code, message = str(first.get("code")), str(first.get("message"))
    kind = _ERRORS.get(code)
    if kind is not None:
        return kind(message)
    return ApiServerError(f"{url} answered {status}: {message}", status=status, code=code)
