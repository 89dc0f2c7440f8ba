"""Replica process handles: CPU measured from readiness on, with a real process."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from chalk.deploy.local.processes import free_port, launch, log_tail
from tests.deploy.local.conftest import wait_for

# Uses half a second of CPU, as importing a framework or loading a model does, then idles.
BUSY_START = """
import time
while time.process_time() < 0.5:
    pass
print("started", flush=True)
time.sleep(120)
"""


def test_cpu_used_before_readiness_is_not_counted_as_load(tmp_path: Path) -> None:
    log = tmp_path / "replica.log"
    handle = launch(
        replica_id="r-1",
        group_id="g",
        revision=1,
        argv=[sys.executable, "-c", BUSY_START],
        env=dict(os.environ),
        cwd=tmp_path,
        port=free_port(),
        metrics_port=None,
        log_path=log,
    )
    try:
        # The clock is the caller's: one second between samples, however long the start took.
        at_start = handle.sample_cpu(0.0)
        wait_for(lambda: "started" in log.read_text(), what="the busy start to end")
        over_the_start = handle.sample_cpu(1.0)
        handle.mark_ready()
        at_ready = handle.cpu_millicores
        first_after_ready = handle.sample_cpu(2.0)
        since_ready = handle.sample_cpu(3.0)
    finally:
        handle.signal_group(signal.SIGKILL)
        assert handle.popen is not None
        handle.popen.wait()

    assert at_start is None
    assert over_the_start is not None
    assert over_the_start >= 400
    assert (at_ready, first_after_ready) == (None, None)
    assert since_ready is not None
    assert since_ready < 100


def test_a_log_tail_shows_the_runtime_records_as_severity_message_and_error(
    tmp_path: Path,
) -> None:
    record = {
        "timestamp": "2026-11-22T10:00:00+00:00",
        "severity": "ERROR",
        "logger": "chalk.shim.server",
        "message": "cannot load the handler 'model.handler'",
        "exception": 'Traceback (most recent call last):\n  File "model.py", line 1\n'
        "RuntimeError: weights not found",
    }
    log = tmp_path / "replica.log"
    log.write_text("plain output of the model\n" + json.dumps(record) + "\n")

    assert log_tail(log).splitlines() == [
        "plain output of the model",
        "ERROR cannot load the handler 'model.handler' | RuntimeError: weights not found",
    ]
