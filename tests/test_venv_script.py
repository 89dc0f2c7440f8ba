"""scripts/_venv.sh refuses a Python it cannot use in one plain sentence, before installing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "_venv.sh"


def test_a_python_that_is_not_there_is_named_as_not_found() -> None:
    env = {**os.environ, "PYTHON": "python3.99"}
    done = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "scalegroup needs Python 3.11 or newer; 'python3.99' was not found.",
        "Set PYTHON=/path/to/python3.11 and run again.",
    ]
    assert done.stdout == ""
