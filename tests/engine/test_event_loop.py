"""The event-loop thread: a blocking wait on it sees Ctrl-C and cancels the call."""

from __future__ import annotations

import subprocess
import sys

_INTERRUPTED_WAIT = """
import asyncio, os, signal, sys, threading
import polars  # noqa: F401  (with polars loaded, an untimed wait did not see Ctrl-C)
from chalk.engine.event_loop import EventLoopThread

finished = []


async def slow_call():
    await asyncio.sleep(20)
    finished.append(True)


thread = EventLoopThread()
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
try:
    thread.run(slow_call())
except KeyboardInterrupt:
    print("interrupted after the call ended" if finished else "interrupted", flush=True)
    sys.exit(3)
print("the call ran to its end", flush=True)
"""


def test_ctrl_c_interrupts_a_blocking_wait_for_a_model_call() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_WAIT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.stdout.strip() == "interrupted", done.stderr
    assert done.returncode == 3
