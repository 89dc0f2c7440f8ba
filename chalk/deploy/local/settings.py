"""The local controller's settings: timings and places, passed in (tests shorten them)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ControllerSettings"]


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """Timings and places; tests shorten the timings."""

    logs_dir: Path
    pass_interval_s: float = 0.5
    heartbeat_interval_s: float = 2.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    ready_recheck_s: float = 2.0
    # A Running replica is unready only after this many failed probes in a row.
    unready_after_failures: int = 3
    # How long a leaving replica stays out of the endpoints before its SIGTERM.
    endpoint_drain_s: float = 1.0
    metrics_timeout_s: float = 0.5
    # While a group is at zero replicas (or waking from it), how often its demand is read
    # between passes: a call held for it waits at most this long for a replica to start.
    demand_poll_s: float = 0.1
    # The controller's own /metrics on 127.0.0.1: 0 picks a free port, None serves none.
    metrics_port: int | None = 0
    # How often each replica's CPU and memory reading is written into its catalog row.
    usage_interval_s: float = 2.0
    # Each log under logs_dir is cut back (to <name>.1) past this size; logs of replicas gone
    # and unchanged for log_keep_unused_s are removed. Checked every log_check_interval_s.
    log_max_bytes: int = 10 * 2**20
    log_keep_unused_s: float = 7 * 24 * 3600.0
    log_check_interval_s: float = 30.0
    interpreter_bin: Path = field(default_factory=lambda: Path(sys.executable).parent)
    nvidia_smi_path: str | None = None
