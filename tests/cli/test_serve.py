"""``chalk serve`` ends as a user and Kubernetes expect: Ctrl-C with one line and exit code 130
(as every command), SIGTERM with a drain and exit code 0 (a stop asked for)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CHALK = str(Path(sys.executable).with_name("chalk"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"chalk serve ended early: {process.communicate()}"
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"chalk serve never answered at {url}")


@pytest.mark.parametrize(
    ("sent", "code", "said"),
    [(signal.SIGINT, 130, "interrupted\n"), (signal.SIGTERM, 0, "")],
    ids=["ctrl_c", "sigterm"],
)
def test_a_serving_server_ends_by_signal(
    tmp_path: Path, sent: signal.Signals, code: int, said: str
) -> None:
    (tmp_path / "chalk.yaml").write_text("project: demo\n")
    env = {key: value for key, value in os.environ.items() if key != "CHALK_CATALOG_URL"}
    port = _free_port()
    process = subprocess.Popen(
        [CHALK, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", process)
    finally:
        process.send_signal(sent)
        out, err = process.communicate(timeout=30)

    assert process.returncode == code, (out, err)
    assert "Traceback" not in err
    assert err.endswith(said), err
    if not said:
        assert "interrupted" not in err
