"""In-process metrics: counters, gauges and latency histograms, with Prometheus text output.

Labelled series are stored under the key ``name{label="value",...}`` (labels
sorted), so ``snapshot()["counters"]`` stays a flat ``dict[str, int]`` as in
the reference while Prometheus output groups series by metric name.
"""

from __future__ import annotations

import threading
from typing import Any


def series_key(name: str, labels: dict[str, Any] | None = None) -> str:
    """The storage key of a (possibly labelled) series."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(str(labels[k]))}"' for k in sorted(labels))
    return f"{name}{{{inner}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class MetricsCollector:
    """Thread-safe counters, gauges and histograms.

    ``inc``/``gauge``/``snapshot`` keep the reference signatures; ``labels=``
    and :meth:`observe` are additions.
    """

    DEFAULT_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.gauges: dict[str, float] = {}
        self.histograms: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def inc(self, metric_name: str, value: int = 1, *, labels: dict[str, Any] | None = None) -> None:
        key = series_key(metric_name, labels)
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + value

    def gauge(self, metric_name: str, value: float, *, labels: dict[str, Any] | None = None) -> None:
        key = series_key(metric_name, labels)
        with self._lock:
            self.gauges[key] = value

    def observe(self, metric_name: str, value: float, *, labels: dict[str, Any] | None = None) -> None:
        """Record one observation (e.g. a latency in seconds) in a histogram."""
        key = series_key(metric_name, labels)
        with self._lock:
            h = self.histograms.get(key)
            if h is None:
                h = self.histograms[key] = {"buckets": [0] * len(self.DEFAULT_BUCKETS), "sum": 0.0, "count": 0}
            h["sum"] += value
            h["count"] += 1
            for i, bound in enumerate(self.DEFAULT_BUCKETS):
                if value <= bound:
                    h["buckets"][i] += 1

    def get_counter(self, metric_name: str, *, labels: dict[str, Any] | None = None) -> int:
        return self.counters.get(series_key(metric_name, labels), 0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "counters": dict(self.counters),
                "gauges": dict(self.gauges),
                "histograms": {k: {"sum": v["sum"], "count": v["count"], "buckets": list(v["buckets"])} for k, v in self.histograms.items()},
            }


__all__ = ["MetricsCollector", "series_key"]
