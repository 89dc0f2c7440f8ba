"""Reconciles scaling groups onto a backend: local processes or Kubernetes."""

from __future__ import annotations
