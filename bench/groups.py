"""A scaling group routed straight to one runtime, shared by the benchmarks (run as scripts, so
bench/ is on sys.path and they import this module as ``groups``)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from chalk.catalog import Endpoint, open_catalog
from chalk.client import ChalkClient

__all__ = ["route_to_runtime"]


def route_to_runtime(client: ChalkClient, group: str, target: str, **spec: Any) -> None:
    """Register model ``group`` (float64 ``x`` in, float64 ``y`` out) and a scaling group of
    that name whose one endpoint is ``target``, reported Ready; ``spec`` adds fields to its
    spec (e.g. ``batch_max_delay_ms=0``).

    The group is stored under the kubernetes backend, so no local controller runs: the catalog
    routes to the endpoint as reported, and the runtime at ``target`` is the one replica.
    """
    catalog = open_catalog(client.project)
    # Through the catalog, not the client: image "x" is in no local image store, and the
    # client's registration checks that it is.
    version = catalog.models.register(
        group,
        input_schema=pa.schema({"x": pa.float64()}),
        output_schema=pa.schema({"y": pa.float64()}),
        image="x",
    )
    model = {"name": version.model_name, "version": version.model_version}
    stored = catalog.groups.create(
        group, {"image": "x", "port": 8080, "model": model, **spec}, backend="kubernetes"
    )
    catalog.groups.report(
        stored.id, status="Ready", desired=1, ready=1, available=1, endpoints=[Endpoint(target)]
    )
