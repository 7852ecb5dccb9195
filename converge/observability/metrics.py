"""In-process metrics: counters, gauges and latency histograms, with Prometheus text output.

Labelled series are stored under the key ``name{label="value",...}`` (labels
sorted, see :func:`series_key`), so ``snapshot()["counters"]`` stays a flat
``dict[str, number]`` as in the reference, while :meth:`MetricsCollector.format_prometheus`
groups the series of one metric under a single ``# HELP``/``# TYPE`` header.

Differences from the reference (its quirk 22): ``# HELP`` lines are written
(texts from :meth:`MetricsCollector.describe` or the library defaults), every
invalid character of a name becomes ``_`` (not only ``.`` and ``-``), labelled
series and histograms are supported. Unlabelled counters and gauges render
exactly as in the reference apart from the added HELP line.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from converge.observability._metric_help import DEFAULT_HELP
from converge.observability._prometheus import CONTENT_TYPE, Labels, format_exposition

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


def series_key(name: str, labels: Mapping[str, Any] | None = None) -> str:
    """The storage key of a (possibly labelled) series: ``name`` or ``name{a="1",b="x"}``."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(str(labels[k]))}"' for k in sorted(labels))
    return f"{name}{{{inner}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _check_bounds(buckets: Iterable[float]) -> tuple[float, ...]:
    bounds = tuple(float(b) for b in buckets)
    if not bounds or any(b >= c for b, c in zip(bounds, bounds[1:])):
        raise ValueError(f"histogram buckets must be a non-empty strictly increasing sequence, got {bounds}")
    return bounds


class MetricsCollector:
    """Thread-safe counters, gauges and histograms.

    ``inc``/``gauge``/``snapshot``/``format_prometheus`` keep the reference
    behaviour; ``labels=``, :meth:`observe`, :meth:`describe` and the getters
    are additions.

    Args:
        buckets: default upper bounds of histogram buckets (seconds for latencies).
    """

    CONTENT_TYPE = CONTENT_TYPE
    DEFAULT_BUCKETS = DEFAULT_BUCKETS

    def __init__(self, *, buckets: Iterable[float] = DEFAULT_BUCKETS) -> None:
        self.counters: dict[str, Any] = {}
        self.gauges: dict[str, float] = {}
        self.histograms: dict[str, dict[str, Any]] = {}
        self._buckets = _check_bounds(buckets)
        self._metric_buckets: dict[str, tuple[float, ...]] = {}
        self._meta: dict[str, tuple[str, Labels]] = {}
        self._help: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- recording -----------------------------------------------------------
    def _key(self, name: str, labels: Mapping[str, Any] | None) -> str:
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric name must be a non-empty str, got {name!r}")
        key = series_key(name, labels)
        if key not in self._meta:
            items = tuple(sorted((str(k), str(v)) for k, v in labels.items())) if labels else ()
            self._meta[key] = (name, items)
        return key

    def inc(self, metric_name: str, value: int | float = 1, *, labels: Mapping[str, Any] | None = None) -> None:
        """Add ``value`` to a counter."""
        with self._lock:
            key = self._key(metric_name, labels)
            self.counters[key] = self.counters.get(key, 0) + value

    def gauge(self, metric_name: str, value: float, *, labels: Mapping[str, Any] | None = None) -> None:
        """Set a gauge (overwrites)."""
        with self._lock:
            self.gauges[self._key(metric_name, labels)] = value

    def observe(self, metric_name: str, value: float, *, labels: Mapping[str, Any] | None = None) -> None:
        """Record one observation (e.g. a latency in seconds) in a histogram."""
        with self._lock:
            key = self._key(metric_name, labels)
            h = self.histograms.get(key)
            if h is None:
                bounds = self._metric_buckets.get(metric_name, self._buckets)
                h = self.histograms[key] = {"le": bounds, "buckets": [0] * len(bounds), "sum": 0.0, "count": 0}
            h["sum"] += value
            h["count"] += 1
            counts = h["buckets"]
            for i, bound in enumerate(h["le"]):
                if value <= bound:
                    counts[i] += 1

    def describe(self, metric_name: str, help_text: str, *, buckets: Iterable[float] | None = None) -> None:
        """Set the ``# HELP`` text of a metric (and, for a histogram not yet observed, its buckets)."""
        with self._lock:
            self._help[metric_name] = help_text
            if buckets is not None:
                self._metric_buckets[metric_name] = _check_bounds(buckets)

    def help_text(self, metric_name: str) -> str:
        """The HELP text used for ``metric_name``."""
        return self._help.get(metric_name) or DEFAULT_HELP.get(metric_name) or f"converge metric {metric_name}"

    # -- reading -------------------------------------------------------------
    def get_counter(self, metric_name: str, *, labels: Mapping[str, Any] | None = None) -> Any:
        """The counter's value (0 when never incremented)."""
        return self.counters.get(series_key(metric_name, labels), 0)

    def get_gauge(self, metric_name: str, *, labels: Mapping[str, Any] | None = None) -> float | None:
        return self.gauges.get(series_key(metric_name, labels))

    def get_histogram(self, metric_name: str, *, labels: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """``{"le", "buckets", "sum", "count"}`` of a histogram series (a copy), or ``None``."""
        with self._lock:
            h = self.histograms.get(series_key(metric_name, labels))
            return None if h is None else _copy_hist(h)

    def counter_total(self, metric_name: str) -> Any:
        """Sum of every series of a counter, labelled or not."""
        with self._lock:
            return sum(v for k, v in self.counters.items() if self._name_of(k) == metric_name)

    def _name_of(self, key: str) -> str:
        meta = self._meta.get(key)
        return meta[0] if meta else key

    def snapshot(self) -> dict[str, Any]:
        """Copies of ``counters``, ``gauges`` and ``histograms``."""
        with self._lock:
            return {
                "counters": dict(self.counters),
                "gauges": dict(self.gauges),
                "histograms": {k: _copy_hist(v) for k, v in self.histograms.items()},
            }

    def clear(self) -> None:
        """Forget every series (HELP texts and bucket settings are kept)."""
        with self._lock:
            self.counters.clear()
            self.gauges.clear()
            self.histograms.clear()
            self._meta.clear()

    def format_prometheus(self) -> str:
        """Prometheus text exposition (format 0.0.4); ``""`` when nothing was recorded."""
        with self._lock:
            counters, gauges = dict(self.counters), dict(self.gauges)
            histograms = {k: _copy_hist(v) for k, v in self.histograms.items()}
            meta = dict(self._meta)
        return format_exposition(
            counters, gauges, histograms, lambda key: meta.get(key, (key, ())), self.help_text
        )


def _copy_hist(h: Mapping[str, Any]) -> dict[str, Any]:
    return {"le": tuple(h["le"]), "buckets": list(h["buckets"]), "sum": h["sum"], "count": h["count"]}


def format_prometheus(collector: MetricsCollector) -> str:
    """Module-level alias of :meth:`MetricsCollector.format_prometheus`."""
    return collector.format_prometheus()


__all__ = ["DEFAULT_BUCKETS", "MetricsCollector", "format_prometheus", "series_key"]
