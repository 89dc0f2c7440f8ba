"""The JSON bodies of the feature server's API as pydantic models: requests are validated
with them and the OpenAPI document is generated from them (``chalk.server.openapi``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

__all__ = [
    "CacheFigures",
    "ErrorItem",
    "ErrorMeta",
    "ErrorResponse",
    "FeatureResult",
    "HealthResponse",
    "InvokeMeta",
    "InvokeRequest",
    "InvokeResponse",
    "OnlineQueryRequest",
    "OnlineQueryResponse",
    "QueryMeta",
    "ServingVersion",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OnlineQueryRequest(_Strict):
    """One row (``inputs``) or several (``rows``) of input features, and the outputs wanted."""

    inputs: dict[str, Any] | None = Field(
        None, description="One row: each input feature's fully qualified name and its value."
    )
    rows: list[dict[str, Any]] | None = Field(
        None, description="Several rows, each mapping the same input features to values."
    )
    outputs: list[str] = Field(
        min_length=1, description="The features to compute, by fully qualified name."
    )
    fingerprints: dict[str, str] | None = Field(
        None,
        description=(
            "The caller's fingerprint of each feature it names; a feature the server's graph "
            "lacks or defines differently is answered with 409."
        ),
    )
    use_cache: StrictBool = Field(
        True,
        description=(
            "False: the model answers of features with max_staleness are neither read from "
            "nor kept in the answer cache."
        ),
    )

    @model_validator(mode="after")
    def _one_shape(self) -> OnlineQueryRequest:
        if (self.inputs is None) == (self.rows is None):
            raise ValueError("expected exactly one of 'inputs' (one row) or 'rows' (a list)")
        if self.rows is not None and not self.rows:
            raise ValueError("'rows' is empty: expected at least one row")
        return self


class ErrorItem(_Strict):
    code: str
    message: str
    feature: str | None = None


class FeatureResult(_Strict):
    field: str = Field(description="The feature's fully qualified name.")
    value: Any = Field(
        description="Its value in JSON: timestamps and dates ISO 8601, bytes base64."
    )
    error: ErrorItem | None = None


class CacheFigures(_Strict):
    hits: int = Field(description="Distinct argument rows answered from the answer cache.")
    misses: int = Field(description="Distinct argument rows looked up, not found, and sent.")
    errors: int = Field(description="Lookups the store failed (their rows were misses).")
    bytes: int = Field(description="What the group's answers take in the store after the query.")
    evictions: int = Field(
        description="The group's answers the store dropped for room while the query ran."
    )


class QueryMeta(_Strict):
    query_id: str
    execution_duration_s: float
    graph_version: int = Field(description="The applied feature graph the query ran on.")
    answer_cache: dict[str, CacheFigures] | None = Field(
        None,
        description=(
            "Per scaling group whose answers were looked up in the answer cache (features "
            "with max_staleness): its hits, misses, errors, bytes and evictions; absent when "
            "none was."
        ),
    )


class OnlineQueryResponse(_Strict):
    data: list[FeatureResult] | list[list[FeatureResult]] = Field(
        description="One list of results for 'inputs'; one list per row for 'rows'."
    )
    errors: list[ErrorItem]
    meta: QueryMeta


class InvokeRequest(_Strict):
    inputs: dict[str, list[Any]] = Field(
        description="One column per field of the model's input_schema, named by the field."
    )


class ServingVersion(_Strict):
    model_name: str
    model_version: int


class InvokeMeta(_Strict):
    group: str
    model_name: str
    model_version: int
    serving_versions: list[ServingVersion] = Field(
        description=(
            "The model versions the group's ready replicas run, any of which may have "
            "answered: more than one while a rollout is in progress; empty when not known "
            "(a Kubernetes rollout in progress)."
        )
    )
    execution_duration_s: float


class InvokeResponse(_Strict):
    outputs: list[Any] = Field(description="One value per input row, in row order.")
    meta: InvokeMeta


class ErrorMeta(_Strict):
    graph_version: int = Field(description="The applied feature graph the query ran on.")


class ErrorResponse(_Strict):
    data: list[Any]
    errors: list[ErrorItem]
    meta: ErrorMeta | None = Field(
        None, description="Present when a query failed after its graph was chosen."
    )


class HealthResponse(_Strict):
    status: str
    graph_version: int | None = None
    reason: str | None = None
