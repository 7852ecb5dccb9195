"""Observability: logging, tracing, metrics, replay and the ops HTTP server.

``__all__`` keeps the reference's five names; the tracing and logging helpers
live in :mod:`converge.observability.tracing` and :mod:`converge.observability.logging`.
"""

from __future__ import annotations

from converge.observability.coordination_metrics import CoordinationMetrics
from converge.observability.metrics import MetricsCollector
from converge.observability.replay import ReplayLog, ReplayRunner
from converge.observability.runtime_ops import RuntimeOpsServer

__all__ = ["CoordinationMetrics", "MetricsCollector", "ReplayLog", "ReplayRunner", "RuntimeOpsServer"]
