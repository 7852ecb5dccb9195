"""Ready-made span exporters: an in-memory ring buffer and a logging exporter.

Re-exported by :mod:`converge.observability.tracing`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from converge.observability.tracing import Span


class InMemorySpanExporter:
    """Keeps the last ``maxlen`` finished spans (a ring buffer) for tests and the lab.

    Attributes:
        evicted: how many spans were pushed out of the buffer by newer ones.
    """

    def __init__(self, maxlen: int = 10_000) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be >= 1, got {maxlen}")
        self._spans: deque[Span] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.evicted = 0

    def export(self, span: Span, duration_sec: float) -> None:
        with self._lock:
            if len(self._spans) == self._spans.maxlen:
                self.evicted += 1
            self._spans.append(span)

    @property
    def spans(self) -> list[Span]:
        """Finished spans, oldest first."""
        with self._lock:
            return list(self._spans)

    def by_name(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def __len__(self) -> int:
        return len(self._spans)


class LoggingSpanExporter:
    """Writes each finished span as a structured log record."""

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.DEBUG) -> None:
        self.logger = logger or logging.getLogger("converge.trace")
        self.level = level

    def export(self, span: Span, duration_sec: float) -> None:
        if self.logger.isEnabledFor(self.level):
            self.logger.log(self.level, "span %s", span.name, extra={"props": span.to_dict()})


__all__ = ["InMemorySpanExporter", "LoggingSpanExporter"]
