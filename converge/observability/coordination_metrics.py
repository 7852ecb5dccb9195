"""Task and pool lifecycle counters (reference section 8.4)."""

from __future__ import annotations

from typing import Any, Protocol


class _Collector(Protocol):
    def inc(self, metric_name: str, value: int = 1, **kwargs: Any) -> None: ...

    def gauge(self, metric_name: str, value: float, **kwargs: Any) -> None: ...


class CoordinationMetrics:
    """Counts task and pool events into a metrics collector.

    Each event method increments ``<event>_total`` by one; :meth:`pool_size` and
    :meth:`pending_tasks` set gauges. The task and pool managers call these.

    Attributes:
        collector: the :class:`~converge.observability.metrics.MetricsCollector` (or any
            object with ``inc`` and ``gauge``).
    """

    def __init__(self, collector: _Collector) -> None:
        if not callable(getattr(collector, "inc", None)) or not callable(getattr(collector, "gauge", None)):
            raise TypeError(f"collector needs inc() and gauge() methods, got {type(collector).__name__}")
        self.collector = collector

    def task_submitted(self) -> None:
        self.collector.inc("task_submitted_total")

    def task_claimed(self) -> None:
        self.collector.inc("task_claimed_total")

    def task_completed(self) -> None:
        self.collector.inc("task_completed_total")

    def task_failed(self) -> None:
        self.collector.inc("task_failed_total")

    def task_cancelled(self) -> None:
        self.collector.inc("task_cancelled_total")

    def task_released(self) -> None:
        """A claim released after its TTL (an addition to the reference set)."""
        self.collector.inc("task_released_total")

    def pool_created(self) -> None:
        self.collector.inc("pool_created_total")

    def pool_join(self) -> None:
        self.collector.inc("pool_join_total")

    def pool_leave(self) -> None:
        self.collector.inc("pool_leave_total")

    def pool_size(self, size: int) -> None:
        self.collector.gauge("pool_size", float(size))

    def pending_tasks(self, size: int) -> None:
        self.collector.gauge("pending_tasks", float(size))


__all__ = ["CoordinationMetrics"]
