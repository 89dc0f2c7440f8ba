"""``python -m chalk.cli``: the ``chalk`` command (the local controller starts itself this way)."""

from __future__ import annotations

from chalk.cli import main

main()
