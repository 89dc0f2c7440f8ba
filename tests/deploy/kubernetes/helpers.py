"""What the Kubernetes backend's tests share: the ``chalk`` console script, run for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["scaling_group"]

CHALK = str(Path(sys.executable).with_name("chalk"))


def scaling_group(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``chalk scaling-group ARGS`` in the project at ``root``, with this process's env."""
    return subprocess.run(
        [CHALK, "scaling-group", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
    )
