"""The OpenAPI document of the feature server, generated from its pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from chalk import __version__
from chalk.features.wire import (
    ARROW_STREAM,
    FINGERPRINTS_HEADER,
    GRAPH_VERSION_HEADER,
    MAX_BODY_HEADER,
    MODEL_CALLS_HEADER,
)
from chalk.server.models import (
    ErrorResponse,
    HealthResponse,
    InvokeRequest,
    InvokeResponse,
    OnlineQueryRequest,
    OnlineQueryResponse,
)

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 for every endpoint, schemas from the models the handlers validate with.

    Examples
    --------
    >>> document = openapi_document()
    >>> sorted(document["paths"])[:2]
    ['/healthz', '/metrics']
    """
    models: list[type[BaseModel]] = [
        OnlineQueryRequest,
        OnlineQueryResponse,
        InvokeRequest,
        InvokeResponse,
        ErrorResponse,
        HealthResponse,
    ]
    _, schemas = models_json_schema([(model, "validation") for model in models], ref_template=_REF)
    errors = {
        status: _json(f"{text}: the errors say which feature, input or field", "ErrorResponse")
        for status, text in (
            ("400", "A bad request"),
            ("401", "A missing or wrong bearer token"),
            ("413", "A body over the limit"),
            ("504", "The request's deadline passed"),
        )
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "scalegroup feature server", "version": __version__},
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/query/online": {
                "post": {
                    "summary": "Compute features for one row or several",
                    "requestBody": _json("The query", "OnlineQueryRequest"),
                    "responses": {
                        "200": _json("The features", "OnlineQueryResponse"),
                        **errors,
                        "409": _json(
                            "A feature the server's graph lacks or defines differently",
                            "ErrorResponse",
                        ),
                        "502": _json("A model's handler failed", "ErrorResponse"),
                        "503": _json("No graph applied, or no replica reached", "ErrorResponse"),
                    },
                }
            },
            "/v1/query/offline": {
                "post": {
                    "summary": "Compute features for one block of rows (Arrow IPC in and out)",
                    "description": (
                        "The input rows as one Arrow IPC stream, columns named by feature, at "
                        "most the body limit; the answer is an Arrow IPC stream of the primary "
                        "key (when given) and the outputs, rows in input order. Send larger "
                        "inputs as several blocks, several at once, and join the answers in "
                        "order (ChalkClient and `chalk offline-query --server` do)."
                    ),
                    "parameters": [
                        {
                            "name": "output",
                            "in": "query",
                            "required": True,
                            "description": "A feature to compute (repeatable)",
                            "schema": {"type": "array", "items": {"type": "string"}},
                            "style": "form",
                            "explode": True,
                        },
                        {
                            "name": FINGERPRINTS_HEADER,
                            "in": "header",
                            "required": False,
                            "description": (
                                "A JSON object: the fingerprint of each feature the caller "
                                "defines; one the server defines differently is a 409"
                            ),
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": _arrow("The input rows"),
                    "responses": {
                        "200": {
                            **_arrow("The features, rows in input order"),
                            "headers": {
                                GRAPH_VERSION_HEADER: _header("The applied graph's version"),
                                MODEL_CALLS_HEADER: _header(
                                    "A JSON object: per scaling group, the model calls made"
                                ),
                            },
                        },
                        **errors,
                        "409": _json(
                            "A feature the server's graph lacks or defines differently",
                            "ErrorResponse",
                        ),
                        "413": {
                            **errors["413"],
                            "headers": {MAX_BODY_HEADER: _header("The body limit, in bytes")},
                        },
                        "415": _json(f"A body that is not {ARROW_STREAM}", "ErrorResponse"),
                        "502": _json("A model's handler failed", "ErrorResponse"),
                        "503": _json("No graph applied, or no replica reached", "ErrorResponse"),
                    },
                }
            },
            "/v1/models/{group}/invoke": {
                "post": {
                    "summary": "Call a scaling group's model on columns of inputs",
                    "parameters": [
                        {
                            "name": "group",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "requestBody": _json("The input columns", "InvokeRequest"),
                    "responses": {
                        "200": _json("The model's outputs", "InvokeResponse"),
                        **errors,
                        "404": _json("No such scaling group", "ErrorResponse"),
                        "502": _json("The model's handler failed", "ErrorResponse"),
                        "503": _json("No replica could be reached", "ErrorResponse"),
                    },
                }
            },
            "/healthz": _probe("The process answers", security=False),
            "/readyz": _probe("The catalog answers and a graph is loaded", security=False),
            "/metrics": {
                "get": {
                    "summary": "Prometheus figures, summed over the workers",
                    "responses": {"200": {"description": "Prometheus text format"}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1 JSON"}},
                }
            },
        },
    }


def _json(description: str, model: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=model)}}},
    }


def _arrow(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}}},
    }


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


def _probe(summary: str, *, security: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": _json("Ready", "HealthResponse"),
            "503": _json("Not ready, and why", "HealthResponse"),
        },
    }
    if not security:
        operation["security"] = []
    return {"get": operation}
