"""``POST /v1/models/<group>/invoke``: JSON columns named by the model's input_schema, sent
to the group through the process's ``ModelCaller``, the answers back as JSON; the meta says
which model versions the group's ready replicas run (more than one mid-roll)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import pyarrow as pa

from chalk.catalog import Catalog
from chalk.catalog.records import Route
from chalk.deploy.rollout import serving_revision
from chalk.engine.calls import ModelCaller
from chalk.engine.recorder import CallRecorder
from chalk.features.wire import WireValueError, value_from_json, value_to_json
from chalk.server.errors import ApiError
from chalk.server.models import InvokeRequest

__all__ = ["Schemas", "invoke"]

# How long a group's schemas are reused before the catalog is read again.
_SCHEMA_TTL_S: Final = 1.0


class Schemas:
    """The route (model and schemas, endpoints aside) of each group and the model version
    that serves it, read at most every ``ttl_s``: a redeploy is seen within that time."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        ttl_s: float = _SCHEMA_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._catalog = catalog
        self._ttl_s = ttl_s
        self._clock = clock
        self._routes: dict[str, tuple[Route, tuple[str, int], float]] = {}
        self._lock = threading.Lock()

    def served(self, group: str) -> tuple[Route, tuple[str, int]]:
        """The group's route and the (model, version) whose replicas answer its calls: while
        a rollout's new version has no ready replica the old one still serves."""
        now = self._clock()
        with self._lock:
            found = self._routes.get(group)
        if found is not None and now - found[2] < self._ttl_s:
            return found[0], found[1]
        route = self._catalog.resolve(f"model.{group}", serving=False)
        serving = self._serving(group, route)
        with self._lock:
            self._routes[group] = (route, serving, now)
        return route, serving

    def _serving(self, name: str, route: Route) -> tuple[str, int]:
        asked = (route.model_name, route.model_version)
        if len(route.serving) == 1:
            return route.serving[0]
        group = self._catalog.groups.find(name)
        if group is None:
            return asked
        revision = serving_revision(group, self._catalog.state.replicas(group.id))
        if revision == group.revision:
            return asked
        specs = {r.revision: r.spec for r in self._catalog.groups.history(name)}
        model = (specs.get(revision) or {}).get("model")
        return (str(model["name"]), int(model["version"])) if model else asked


async def invoke(
    group: str,
    request: InvokeRequest,
    schemas: Schemas,
    caller: ModelCaller,
    recorder: CallRecorder | None = None,
) -> dict[str, Any]:
    """Call ``group``'s model on the request's columns; the JSON answer."""
    started = time.perf_counter()
    route, (model_name, model_version) = await asyncio.to_thread(schemas.served, group)
    args = _arguments(group, route.input_schema, request.inputs)
    call = caller.call(
        feature=f"scaling group {group!r}",
        name=f"model.{group}",
        args=args,
        recorder=recorder,
    )
    answer = await call  # the caller runs on the server's loop
    output_type = route.output_schema.field(0).type
    return {
        "outputs": [value_to_json(value, output_type) for value in answer.to_pylist()],
        "meta": {
            "group": group,
            "model_name": model_name,
            "model_version": model_version,
            # Mid-roll the replicas of more than one version answer, and any may have.
            "serving_versions": [
                {"model_name": name, "model_version": version} for name, version in route.serving
            ],
            "execution_duration_s": time.perf_counter() - started,
        },
    }


def _arguments(group: str, schema: pa.Schema, inputs: dict[str, list[Any]]) -> list[pa.Array]:
    expected = ", ".join(f"{field.name}: {field.type}" for field in schema)
    unknown = sorted(set(inputs) - set(schema.names))
    missing = [name for name in schema.names if name not in inputs]
    if unknown or missing:
        given = ", ".join(inputs) or "none"
        raise ApiError(
            400,
            "INVALID_INPUT",
            f"scaling group {group!r}: the inputs do not match the model's input_schema: "
            f"expected columns {expected}, got {given}",
            feature=(unknown or missing)[0],
        )
    lengths = {len(column) for column in inputs.values()}
    if len(lengths) > 1:
        raise ApiError(
            400,
            "INVALID_INPUT",
            f"scaling group {group!r}: the input columns have different lengths "
            f"({sorted(lengths)}): expected one value per row in every column",
        )
    args = []
    for field in schema:
        what = f"input {field.name!r} of scaling group {group!r}"
        try:
            values = [value_from_json(v, field.type, what=what) for v in inputs[field.name]]
        except WireValueError as error:
            raise ApiError(400, "INVALID_TYPE", str(error), feature=field.name) from None
        try:
            args.append(pa.array(values, field.type))
        except (pa.ArrowException, TypeError, ValueError) as error:
            raise ApiError(
                400,
                "INVALID_TYPE",
                f"{what}: the values do not fit its type {field.type}: {error}",
                feature=field.name,
            ) from None
    return args
