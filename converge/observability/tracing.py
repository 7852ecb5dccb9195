"""Tracing: ``trace()`` spans with trace/parent ids, and pluggable span exporters.

Spans nest through :mod:`contextvars`, so they follow ``await`` and tasks
created inside a span (a task copies the context at creation). A nested span's
``parent_id`` is the enclosing span's id (the reference never fills it).

Exporters are registered **process-wide** (the reference keeps one exporter in
a context variable, so tasks created before the registration never see it —
a lab that registers an exporter after starting runtimes would get nothing).
:func:`register_span_exporter` keeps the reference meaning "set the single
default exporter"; :func:`add_span_exporter` / :func:`remove_span_exporter`
manage additional ones, :func:`span_exporter` scopes one to a ``with`` block
and :func:`reset_span_exporters` clears everything (tests).

Cost without exporters: one small object, two context-variable writes and one
``perf_counter`` call per span. Trace and span ids are generated lazily, only
when something reads them (an exporter, :func:`get_current_trace_id`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Protocol, runtime_checkable

from converge.observability._exporters import InMemorySpanExporter, LoggingSpanExporter

_log = logging.getLogger("converge.observability.tracing")

# The trace id in force: an explicit string (set_trace_id) or the innermost span (lazy id).
_trace_var: ContextVar[Any] = ContextVar("converge_trace_id", default=None)
_span_var: ContextVar[Span | None] = ContextVar("converge_current_span", default=None)
_id_lock = threading.Lock()


def new_trace_id() -> str:
    """A fresh trace id (a uuid4 string, as in the reference)."""
    return str(uuid.uuid4())


def get_current_trace_id() -> str | None:
    """The trace id of the current context, or ``None`` outside any trace."""
    value = _trace_var.get()
    if value is None or isinstance(value, str):
        return value
    return value.trace_id


def set_trace_id(trace_id: str | None = None) -> None:
    """Set (or with ``None`` clear) the trace id for the current context.

    Spans opened afterwards in this context join that trace.
    """
    if trace_id is not None and not isinstance(trace_id, str):
        raise TypeError(f"trace_id must be a str or None, got {type(trace_id).__name__}")
    _trace_var.set(trace_id)


def get_current_span() -> Span | None:
    """The innermost open span of the current context, if any."""
    return _span_var.get()


@runtime_checkable
class SpanExporter(Protocol):
    """Receives every finished span. Must be quick; runs on the traced code's thread/loop."""

    def export(self, span: Span, duration_sec: float) -> None: ...


class Span:
    """One timed operation. Use as a context manager (normally via :func:`trace`).

    ``Span(trace_id, span_id, parent_id, name)`` keeps the reference's
    positional order. Ids left as ``None`` are resolved on enter (trace id from
    the context, parent from the enclosing span) and generated only when read.

    Attributes:
        name: the operation name.
        attributes: key/values attached by the caller (``trace(name, k=v)``, :meth:`set_attribute`).
        status: ``"unset"`` while open, then ``"ok"`` or ``"error"``.
        error: ``"ExcType: message"`` when the block raised.
        start_time: wall-clock start (seconds since the epoch), set on exit.
        duration_sec: monotonic duration, set on exit.
    """

    __slots__ = (
        "_trace_id", "_span_id", "_parent_id", "_parent", "_trace_src", "name", "attributes",
        "status", "error", "start_time", "duration_sec", "_t0", "_prev_trace", "_prev_span",
    )

    def __init__(
        self,
        trace_id: str | None = None,
        span_id: str | None = None,
        parent_id: str | None = None,
        name: str = "operation",
        attributes: dict[str, Any] | None = None,
    ) -> None:
        self._trace_id = trace_id
        self._span_id = span_id
        self._parent_id = parent_id
        self._parent: Span | None = None
        self._trace_src: Span | None = None
        self.name = name
        self.attributes = attributes
        self.status = "unset"
        self.error: str | None = None
        self.start_time: float | None = None
        self.duration_sec: float | None = None

    # -- ids (lazy) --------------------------------------------------------
    @property
    def trace_id(self) -> str:
        tid = self._trace_id
        if tid is None:
            src = self._trace_src
            candidate = src.trace_id if src is not None else new_trace_id()
            with _id_lock:  # two threads reading a fresh span must agree on its id
                if self._trace_id is None:
                    self._trace_id = candidate
                tid = self._trace_id
        return tid

    @property
    def span_id(self) -> str:
        sid = self._span_id
        if sid is None:
            candidate = str(uuid.uuid4())
            with _id_lock:
                if self._span_id is None:
                    self._span_id = candidate
                sid = self._span_id
        return sid

    @property
    def parent_id(self) -> str | None:
        if self._parent_id is None and self._parent is not None:
            self._parent_id = self._parent.span_id
        return self._parent_id

    @property
    def ids_generated(self) -> bool:
        """Whether this span's own span id exists yet (false on the no-exporter path)."""
        return self._span_id is not None

    def set_attribute(self, key: str, value: Any) -> None:
        if self.attributes is None:
            self.attributes = {}
        self.attributes[key] = value

    # -- context manager -----------------------------------------------------
    def __enter__(self) -> Span:
        prev_trace = _trace_var.get()
        prev_span = _span_var.get()
        if self._trace_id is None:
            if isinstance(prev_trace, str):
                self._trace_id = prev_trace
            else:
                self._trace_src = prev_trace  # a Span (lazy) or None (new trace on demand)
        if self._parent_id is None:
            self._parent = prev_span
        self._prev_trace = prev_trace
        self._prev_span = prev_span
        _trace_var.set(self)
        _span_var.set(self)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.duration_sec = duration = time.perf_counter() - self._t0
        if exc_type is None:
            self.status = "ok"
        else:
            self.status = "error"
            self.error = f"{exc_type.__name__}: {exc}"
        # set(), not token.reset(): exiting in another context (async generators) must not raise.
        _trace_var.set(self._prev_trace)
        _span_var.set(self._prev_span)
        self._prev_trace = self._prev_span = None
        exporters = _registry.exporters
        if exporters:
            self.start_time = time.time() - duration
            _registry.export(self, duration, exporters)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the span (reads, hence generates, its ids)."""
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_id": self.parent_id,
            "name": self.name,
            "start_time": self.start_time,
            "duration_sec": self.duration_sec,
            "status": self.status,
            "error": self.error,
            "attributes": dict(self.attributes or {}),
        }

    def __repr__(self) -> str:
        return f"Span(name={self.name!r}, status={self.status!r}, duration_sec={self.duration_sec!r})"


def trace(operation_name: str, **attributes: Any) -> Span:
    """A span named ``operation_name`` in the current trace (a new trace when there is none).

    Example::

        with trace("agent.decide", agent_id=agent.id) as span:
            ...
    """
    return Span(name=operation_name, attributes=attributes or None)


class _ExporterRegistry:
    """Process-wide exporters. ``exporters`` is an immutable tuple swapped under a lock,
    so the hot path reads it without locking."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._default: SpanExporter | None = None
        self._extra: tuple[SpanExporter, ...] = ()
        self.exporters: tuple[SpanExporter, ...] = ()
        self.export_errors = 0

    def _rebuild(self) -> None:
        self.exporters = ((self._default,) if self._default is not None else ()) + self._extra

    def set_default(self, exporter: SpanExporter | None) -> None:
        with self._lock:
            self._default = exporter
            self._rebuild()

    def add(self, exporter: SpanExporter) -> None:
        with self._lock:
            self._extra = (*self._extra, exporter)
            self._rebuild()

    def remove(self, exporter: SpanExporter) -> bool:
        with self._lock:
            if self._default is exporter:
                self._default = None
            elif exporter in self._extra:
                extra = list(self._extra)
                extra.remove(exporter)
                self._extra = tuple(extra)
            else:
                return False
            self._rebuild()
            return True

    def reset(self) -> None:
        with self._lock:
            self._default, self._extra = None, ()
            self._rebuild()

    def export(self, span: Span, duration: float, exporters: tuple[SpanExporter, ...]) -> None:
        for exporter in exporters:
            try:
                exporter.export(span, duration)
            except Exception:  # an exporter must never break the traced code
                self.export_errors += 1
                _log.exception("span exporter %r failed on span %r", exporter, span.name)


_registry = _ExporterRegistry()


def register_span_exporter(exporter: SpanExporter | None) -> None:
    """Set the default exporter (process-wide); ``None`` unregisters it.

    Exporters added with :func:`add_span_exporter` are kept.
    """
    if exporter is not None and not callable(getattr(exporter, "export", None)):
        raise TypeError(f"a span exporter needs an export(span, duration_sec) method, got {type(exporter).__name__}")
    _registry.set_default(exporter)


def add_span_exporter(exporter: SpanExporter) -> None:
    """Add an exporter next to the default one (process-wide)."""
    if not callable(getattr(exporter, "export", None)):
        raise TypeError(f"a span exporter needs an export(span, duration_sec) method, got {type(exporter).__name__}")
    _registry.add(exporter)


def remove_span_exporter(exporter: SpanExporter) -> bool:
    """Remove an exporter (default or added); ``False`` when it was not registered."""
    return _registry.remove(exporter)


def get_span_exporters() -> tuple[SpanExporter, ...]:
    """The exporters currently registered, default first."""
    return _registry.exporters


def reset_span_exporters() -> None:
    """Unregister every exporter."""
    _registry.reset()


def span_export_error_count() -> int:
    """How many exporter calls raised since start-up (each was logged)."""
    return _registry.export_errors


@contextlib.contextmanager
def span_exporter(exporter: SpanExporter) -> Iterator[SpanExporter]:
    """Register ``exporter`` for the duration of a ``with`` block."""
    add_span_exporter(exporter)
    try:
        yield exporter
    finally:
        remove_span_exporter(exporter)


__all__ = [
    "InMemorySpanExporter",
    "LoggingSpanExporter",
    "Span",
    "SpanExporter",
    "add_span_exporter",
    "get_current_span",
    "get_current_trace_id",
    "get_span_exporters",
    "new_trace_id",
    "register_span_exporter",
    "remove_span_exporter",
    "reset_span_exporters",
    "set_trace_id",
    "span_export_error_count",
    "span_exporter",
    "trace",
]
