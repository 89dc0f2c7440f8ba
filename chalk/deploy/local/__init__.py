"""The local backend: images snapshotted on disk, replicas as processes, the controller."""

from __future__ import annotations
