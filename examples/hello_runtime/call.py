"""Start ``chalk-remote-call`` on the example handler, call it over gRPC, and stop it.

The smallest example: ``python examples/hello_runtime/call.py`` (the main job is the NER
quickstart, ``bash scripts/quickstart``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa

from chalk.shim import RemoteCallClient
from chalk.shim.client import wait_until_serving

HERE = Path(__file__).resolve().parent
TEXTS = [
    "Alice flew from Paris to New York with Bob.",
    "The meeting with Acme Corp is on Monday.",
    None,
    "nothing to see here",
]


def start_runtime() -> tuple[subprocess.Popen[str], int]:
    """Start the runtime on a free loopback port; returns the process and its port."""
    env = dict(os.environ, CHALK_REMOTE_CALL_HOST="127.0.0.1", CHALK_INPUT_ARGS="text")
    process = subprocess.Popen(
        ["chalk-remote-call", "--handler", "model.handler", "--port", "0"],
        cwd=HERE,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        record = json.loads(line)
        if "port" in record:
            threading.Thread(target=_relay, args=(process.stderr,), daemon=True).start()
            return process, int(record["port"])
    raise SystemExit(f"the runtime exited with code {process.wait()} before listening")


def _relay(stream: object) -> None:
    for line in stream:  # type: ignore[attr-defined]
        print(f"   runtime: {json.loads(line)['message']}", file=sys.stderr)


async def call(port: int) -> pa.Array:
    """Wait for health SERVING, then send the texts in one call."""
    target = f"127.0.0.1:{port}"
    await wait_until_serving(target)
    async with RemoteCallClient() as client:
        started = time.perf_counter()
        # The column name does not matter: CHALK_INPUT_ARGS names the argument "text".
        result = await client.call(target, {"document.text": pa.array(TEXTS)}, name="hello")
        print(f"==> one call, {len(TEXTS)} rows, {1000 * (time.perf_counter() - started):.1f} ms")
        return result


def main() -> None:
    print("==> starting chalk-remote-call --handler model.handler on 127.0.0.1")
    process, port = start_runtime()
    try:
        result = asyncio.run(call(port))
        for text, names in zip(TEXTS, result.to_pylist(), strict=True):
            print(f"   {text!r:48} -> {names!r}")
    finally:
        print("==> stopping the runtime (SIGTERM drains in-flight calls)")
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    print(f"==> runtime exited with code {code}")
    sys.exit(code)


if __name__ == "__main__":
    main()
