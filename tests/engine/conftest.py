"""Model-call fixtures: a SQLite catalog, real runtime processes on 127.0.0.1, and scaling
groups whose endpoints are those processes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from chalk.catalog import Catalog, Endpoint, open_catalog, store
from chalk.engine.calls import ModelCaller
from chalk.shim.client import wait_until_serving
from tests.support.reference_runtime import ReferenceRuntime, ensure_reference_runtime
from tests.support.runtime_process import HANDLERS_DIR, RuntimeProcess, start_runtime

ENGINE_HANDLERS = Path(__file__).resolve().parent
SHIM_HANDLERS = HANDLERS_DIR

StartRuntime = Callable[..., RuntimeProcess]
Deploy = Callable[..., None]
MakeCaller = Callable[..., ModelCaller]


@contextmanager
def sqlite_catalog(directory: Path) -> Iterator[Catalog]:
    """A fresh SQLite catalog file in ``directory``; its pooled connections closed afterwards."""
    url = f"sqlite:///{directory / 'catalog.db'}"
    yield open_catalog(url)
    with store._engines_lock:
        engine = store._engines.pop(url, None)
    if engine is not None:
        engine.dispose()


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    """A fresh SQLite catalog file; its pooled connections are closed afterwards."""
    with sqlite_catalog(tmp_path) as fresh:
        yield fresh


@contextmanager
def runtimes(directory: Path) -> Iterator[StartRuntime]:
    """Start our runtime (``start("call_handlers.entities")``) with metrics on, and wait until
    it is SERVING; handlers come from tests/engine unless ``cwd`` says otherwise, logs go to
    ``directory``. The reference runtime is started with ``command=...`` and
    ``pick_port=True``. All are reaped on leaving.
    """
    started: list[RuntimeProcess] = []

    def _start(handler: str, **kwargs: Any) -> RuntimeProcess:
        kwargs.setdefault("log_path", directory / f"runtime-{len(started)}.log")
        kwargs.setdefault("cwd", ENGINE_HANDLERS)
        ours = not kwargs.get("pick_port", False)
        if ours:
            kwargs.setdefault("args", ("--metrics-port", "0"))
        process = start_runtime(handler, **kwargs)
        started.append(process)
        if ours:
            asyncio.run(wait_until_serving(process.target, timeout_s=20))
        return process

    try:
        yield _start
    finally:
        for process in started:
            if process.process.poll() is None:
                process.process.kill()
                process.process.wait()


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[StartRuntime]:
    """``runtimes(tmp_path)`` for one test: ``runtime("call_handlers.entities")``."""
    with runtimes(tmp_path) as start:
        yield start


def deploy_group(
    catalog: Catalog,
    group: str,
    targets: Sequence[str],
    *,
    inputs: pa.Schema,
    output: pa.Schema,
    deterministic: bool = True,
) -> None:
    """Register a model named like its group, create the group, and report its endpoints.

    The kubernetes backend keeps the endpoints without a local controller's heartbeat.
    """
    version = catalog.models.register(
        group, input_schema=inputs, output_schema=output, image="x", deterministic=deterministic
    )
    model = {"name": version.model_name, "version": version.model_version}
    created = catalog.groups.create(
        group, {"image": "x", "port": 8080, "model": model}, backend="kubernetes"
    )
    count = len(targets)
    catalog.groups.report(
        created.id,
        status="Ready",
        desired=count,
        ready=count,
        available=count,
        endpoints=[Endpoint(target) for target in targets],
    )


@pytest.fixture
def deploy(catalog: Catalog) -> Deploy:
    """``deploy("ner", ["127.0.0.1:7001"], inputs=pa.schema(...), output=pa.schema(...))``:
    ``deploy_group`` on the test's catalog."""

    def _deploy(
        group: str,
        targets: Sequence[str],
        *,
        inputs: pa.Schema,
        output: pa.Schema,
        deterministic: bool = True,
    ) -> None:
        deploy_group(
            catalog, group, targets, inputs=inputs, output=output, deterministic=deterministic
        )

    return _deploy


@pytest.fixture
def make_caller(catalog: Catalog) -> Iterator[MakeCaller]:
    """``ModelCaller(catalog, **kwargs)`` with a short back-off; each is closed afterwards."""
    made: list[ModelCaller] = []

    def _make(**kwargs: Any) -> ModelCaller:
        kwargs.setdefault("backoff_s", 0.01)
        caller = ModelCaller(catalog, **kwargs)
        made.append(caller)
        return caller

    yield _make
    for caller in made:
        caller.close()


@pytest.fixture(scope="session")
def reference() -> ReferenceRuntime:
    """The reference runtime chalk-remote-call-python, in its own cached virtual environment."""
    return ensure_reference_runtime()
