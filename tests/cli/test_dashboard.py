"""``chalk dashboard`` as a user runs it: prints its URL once the page answers there, refuses a
port in use or out of range naming it, and Ctrl-C ends it with one line and exit 130."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

CHALK = str(Path(sys.executable).with_name("chalk"))


def _project(root: Path) -> dict[str, str]:
    (root / "chalk.yaml").write_text("project: demo\n")
    return {key: value for key, value in os.environ.items() if key != "CHALK_CATALOG_URL"}


def _refused(root: Path, port: str) -> subprocess.CompletedProcess[str]:
    """``chalk dashboard --port PORT`` in a new project at ``root``, which should not start."""
    return subprocess.run(
        [CHALK, "dashboard", "--port", port],
        cwd=root,
        env=_project(root),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_prints_its_url_once_the_page_answers_and_ctrl_c_ends_it(tmp_path: Path) -> None:
    env = _project(tmp_path)
    process = subprocess.Popen(
        [CHALK, "dashboard"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert " at " in line, f"no URL printed: {line!r}"
        url = line.split(" at ", 1)[1].split()[0]
        page = httpx.get(url, timeout=10)
        asset = httpx.get(f"{url}static/dashboard/app.js", timeout=10)
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)

    assert line == f"dashboard of {tmp_path} at {url} (Ctrl-C ends it)\n"
    assert url.startswith("http://127.0.0.1:")
    assert page.status_code == 200
    assert '<script type="module" src="/static/dashboard/app.js">' in page.text
    assert asset.status_code == 200
    assert "javascript" in asset.headers["content-type"]
    assert process.returncode == 130
    assert (out, err) == ("", "interrupted\n")


def test_a_port_in_use_is_refused_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _refused(tmp_path, str(port))

    assert done.returncode == 1
    assert done.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")


def test_a_port_out_of_range_is_refused_naming_the_flag(tmp_path: Path) -> None:
    done = _refused(tmp_path, "70000")

    assert done.returncode == 1
    assert done.stderr == "error: --port must be from 0 to 65535 (0: any free port), got 70000\n"
