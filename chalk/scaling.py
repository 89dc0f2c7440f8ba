"""The product docs' import path for a scaling group's autoscaling and resource specs.

Users' deployment scripts import from here; the specs live in ``chalk.catalog.resources``, the
GPU request in ``chalk.common.quantities``.
"""

from __future__ import annotations

from chalk.catalog.resources import AutoScalingSpec, ScalingGroupResourceRequest
from chalk.common.quantities import GpuRequest

__all__ = ["AutoScalingSpec", "GpuRequest", "ScalingGroupResourceRequest"]
