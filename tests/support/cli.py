"""Running ``chalk`` in the test's own process, as the console script would."""

from __future__ import annotations

import pytest

from chalk.cli import main


def run_chalk(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``chalk *argv`` through ``chalk.cli.main``: its exit code, stdout and stderr."""
    with pytest.raises(SystemExit) as ended:
        main(list(argv))
    captured = capsys.readouterr()
    return int(ended.value.code or 0), captured.out, captured.err
