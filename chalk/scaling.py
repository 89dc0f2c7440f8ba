"""The product docs' import path for a scaling group's autoscaling and resource specs.

Users' deployment scripts import from here; the types live in ``chalk.catalog.resources``.
"""

from __future__ import annotations

from chalk.catalog.resources import AutoScalingSpec, GpuRequest, ScalingGroupResourceRequest

__all__ = ["AutoScalingSpec", "GpuRequest", "ScalingGroupResourceRequest"]
