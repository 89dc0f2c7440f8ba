"""Installs the reference runtime, chalk-remote-call-python, into a virtual environment of its own.

Kept outside the work tree (``~/.cache/scalegroup`` or ``$SCALEGROUP_CACHE``) and reused across
runs, so its ``chalk-remote-call`` script never shadows ours. Used by the interop tests and by
``bench/shim.py``.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Final

__all__ = ["REFERENCE_VERSION", "ReferenceRuntime", "ensure_reference_runtime"]

REFERENCE_VERSION: Final = "1.10.10"
# The reference's generated client needs grpcio and protobuf, which its wheel does not require.
_PACKAGES: Final = (f"chalk-remote-call-python=={REFERENCE_VERSION}", "grpcio", "protobuf")


class ReferenceRuntime:
    """Paths into the reference runtime's virtual environment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = root / "bin" / "python"
        self.script = root / "bin" / "chalk-remote-call"


def _cache_dir() -> Path:
    base = os.environ.get("SCALEGROUP_CACHE") or Path.home() / ".cache" / "scalegroup"
    return Path(base)


def ensure_reference_runtime() -> ReferenceRuntime:
    """The reference runtime's venv, created (once, under a file lock) when missing."""
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    runtime = ReferenceRuntime(cache / f"chalk-remote-call-python-{REFERENCE_VERSION}")
    done = runtime.root / ".installed"
    with open(cache / ".reference.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            venv.EnvBuilder(with_pip=True, clear=True).create(runtime.root)
            install = subprocess.run(
                [str(runtime.python), "-m", "pip", "install", "--quiet", *_PACKAGES],
                capture_output=True,
                text=True,
                check=False,
            )
            if install.returncode != 0:
                raise RuntimeError(
                    f"installing {' '.join(_PACKAGES)} into {runtime.root} failed:\n"
                    f"{install.stdout}\n{install.stderr}"
                )
            done.write_text(sys.version)
    return runtime
