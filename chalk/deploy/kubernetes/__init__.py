"""The Kubernetes backend: a scaling group as a Deployment, a headless Service, an HTTPRoute
and a HorizontalPodAutoscaler, applied with server-side apply through the official client.

``manifests`` is pure; only ``backend`` imports ``kubernetes``, so importing this package
stays cheap.
"""

from __future__ import annotations
