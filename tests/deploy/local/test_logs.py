"""Bounded logs: rotation under a live appending writer, and the tidy-up of .chalk/logs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalk.deploy.local.logs import rotate, tidy_logs
from tests.deploy.local.conftest import wait_for

# Appends numbered lines, as a replica's stdout does (the file opened for appending).
WRITER = """
import sys, time
with open(sys.argv[1], "ab", buffering=0) as log:
    n = 0
    while True:
        log.write(f"{n}\\n".encode())
        n += 1
        time.sleep(0.001)
"""
DAY_S = 24 * 3600.0


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "replica.log"
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(log)])
    yield log
    process.kill()
    process.wait()


def numbers(path: Path) -> list[int]:
    data = path.read_bytes()
    assert b"\0" not in data, f"{path} has a hole of NUL bytes"
    return [int(line) for line in data.splitlines()[:-1]]  # the last line may be half-written


def test_a_rotated_log_goes_on_from_its_start_under_a_live_writer(writer: Path) -> None:
    wait_for(lambda: writer.exists() and writer.stat().st_size > 2048, what="2 KiB of log")

    rotated = rotate(writer, max_bytes=1024)
    wait_for(lambda: len(numbers(writer)) > 10, what="lines after the rotation")

    before, after = numbers(writer.with_name("replica.log.1")), numbers(writer)
    assert rotated
    assert before[0] == 0
    assert after[0] > before[-1]
    assert after == list(range(after[0], after[0] + len(after)))


def write(path: Path, size: int, age_s: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_tidy_rotates_logs_in_use_and_removes_old_unused_ones(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    in_use = write(logs / "web" / "web-aaaaaa.log", 2000, age_s=30 * DAY_S)
    write(logs / "controller.log", 2000)
    write(logs / "web" / "web-bbbbbb.log", 2000, age_s=8 * DAY_S)
    write(logs / "web" / "web-bbbbbb.log.1", 10, age_s=9 * DAY_S)
    write(logs / "web" / "web-cccccc.log", 2000, age_s=DAY_S)

    tidy_logs(logs, max_bytes=1024, keep_unused_s=7 * DAY_S, in_use=[in_use], now_s=time.time())

    sizes = {
        str(p.relative_to(logs)): p.stat().st_size for p in sorted(logs.rglob("*")) if p.is_file()
    }
    assert sizes == {
        "controller.log": 0,
        "controller.log.1": 2000,
        "web/web-aaaaaa.log": 0,
        "web/web-aaaaaa.log.1": 2000,
        "web/web-cccccc.log": 2000,
    }


def test_tidy_of_a_missing_logs_folder_does_nothing(tmp_path: Path) -> None:
    tidy_logs(tmp_path / "logs", max_bytes=1, keep_unused_s=0, in_use=[], now_s=time.time())

    assert not (tmp_path / "logs").exists()
