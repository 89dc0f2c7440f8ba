"""Fixtures that start real runtime processes on 127.0.0.1 and stop them afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chalk.shim.client import wait_until_serving
from tests.support.reference_runtime import ReferenceRuntime, ensure_reference_runtime
from tests.support.runtime_process import RuntimeProcess, start_runtime

StartRuntime = Callable[..., RuntimeProcess]

# Both gRPC server cores, for the tests whose behaviour is the core's: they take
# ``pytestmark = BOTH_CORES`` or ``@BOTH_CORES``; the other tests run on the default one.
SERVER_CORES = ("cython", "grpcio")
BOTH_CORES = pytest.mark.parametrize("server_core", SERVER_CORES)

# Imported only by runtime processes, to show how an import failure is reported.
collect_ignore = ["broken_import.py"]


@pytest.fixture
def server_core() -> str:
    """The server core the runtimes of a test run on (``BOTH_CORES`` parametrizes it)."""
    return "cython"


@pytest.fixture
def start(tmp_path: Path, server_core: str) -> Iterator[StartRuntime]:
    """Start our runtime (``start("model_handlers.double", ...)``); every process is reaped."""
    started: list[RuntimeProcess] = []

    def _start(handler: str, **kwargs: Any) -> RuntimeProcess:
        kwargs.setdefault("log_path", tmp_path / f"runtime-{len(started)}.log")
        kwargs["env"] = {"CHALK_REMOTE_CALL_SERVER_CORE": server_core, **(kwargs.get("env") or {})}
        runtime = start_runtime(handler, **kwargs)
        started.append(runtime)
        return runtime

    yield _start
    for runtime in started:
        if runtime.process.poll() is None:
            runtime.process.kill()
            runtime.process.wait()


@pytest.fixture
def serving(start: StartRuntime) -> Callable[..., RuntimeProcess]:
    """Start our runtime and wait until its health check says SERVING."""

    def _serving(handler: str, **kwargs: Any) -> RuntimeProcess:
        runtime = start(handler, **kwargs)
        asyncio.run(wait_until_serving(runtime.target, timeout_s=20))
        return runtime

    return _serving


@pytest.fixture(scope="session")
def reference() -> ReferenceRuntime:
    """The reference runtime chalk-remote-call-python, in its own cached virtual environment."""
    return ensure_reference_runtime()
