"""Prometheus' programs for the tests (Debian's prometheus package): skipped without one, failed
under CI (CI=true); and ``promtool test rules`` evaluating a PromQL expression we hand to
Prometheus (KEDA's demand query) over given input series."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

__all__ = ["require_prometheus_tool", "run_expression_test"]


def require_prometheus_tool(name: str) -> str:
    """The path of ``name`` (``prometheus`` or ``promtool``, from Debian's prometheus package);
    skips the test without it (fails it under CI=true)."""
    found = shutil.which(name)
    if found is None:
        reason = (
            f"{name} (Debian's prometheus package) is not installed (apt-get install "
            "prometheus; scripts/test does it as root)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; under CI it is required")
        pytest.skip(reason)
    return found


def run_expression_test(
    directory: Path, expr: str, series: Mapping[str, float], expected: float
) -> subprocess.CompletedProcess[str]:
    """Run ``promtool test rules`` asserting that ``expr``, one minute after ``series``
    (each a constant value) start, is exactly one sample with no labels valued ``expected``;
    promtool's result (returncode 0 when it holds, its report in stdout and stderr)."""
    test = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": name, "values": f"{value} {value}"} for name, value in series.items()
                ],
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "1m",
                        "exp_samples": [{"labels": "{}", "value": expected}],
                    }
                ],
            }
        ],
    }
    path = directory / "query_test.yml"
    path.write_text(yaml.safe_dump(test))
    return subprocess.run(
        [require_prometheus_tool("promtool"), "test", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
