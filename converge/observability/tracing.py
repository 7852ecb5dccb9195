"""Minimal tracing seam (expanded by the observability layer): ``trace(name)`` spans."""

from __future__ import annotations

import contextvars
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

_current_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("converge_trace_id", default=None)
_exporter: contextvars.ContextVar[Any] = contextvars.ContextVar("converge_span_exporter", default=None)


class SpanExporter(Protocol):
    def export(self, span: Span, duration_sec: float) -> None: ...


@dataclass
class Span:
    trace_id: str
    span_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    parent_id: str | None = None
    name: str = "operation"

    def __enter__(self) -> Span:
        self._start = time.monotonic()
        self._prev = _current_trace.get()
        _current_trace.set(self.trace_id)
        return self

    def __exit__(self, *exc: Any) -> None:
        exporter = _exporter.get()
        if exporter is not None:
            exporter.export(self, time.monotonic() - self._start)
        _current_trace.set(self._prev)


def trace(operation_name: str) -> Span:
    return Span(trace_id=_current_trace.get() or str(uuid.uuid4()), name=operation_name)


def register_span_exporter(exporter: SpanExporter | None) -> None:
    _exporter.set(exporter)
