"""Number and table formatting shared by the benchmarks (run as scripts, so bench/ is on
sys.path and they import this module as ``report``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

__all__ = ["format_grid", "number", "progress_printer"]


def number(value: float) -> str:
    """A figure with as many digits as it needs: 1,234,567 / 123 / 12.3 / 1.234."""
    if value >= 100_000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def format_grid(header: Sequence[str], body: Sequence[Sequence[str]], left: int) -> str:
    """Columns padded to their widest cell; the first ``left`` columns align left."""
    cells = [tuple(header), *(tuple(line) for line in body)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if column < left else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def progress_printer() -> Callable[[str], None]:
    """A function printing a message to stderr after the seconds since this call."""
    began = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f}s] {message}", file=sys.stderr, flush=True)

    return progress
