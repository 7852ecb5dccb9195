"""Bridge converge spans into OpenTelemetry (extra ``otel``).

``OpenTelemetrySpanExporter`` is a converge :class:`~converge.observability.tracing.SpanExporter`
that turns each finished span into an OpenTelemetry SDK ``ReadableSpan`` and
hands it to an OpenTelemetry span exporter (OTLP, console, Jaeger, ...)::

    from opentelemetry.sdk.trace.export import ConsoleSpanExporter
    from converge.observability.otel import OpenTelemetrySpanExporter
    from converge.observability.tracing import add_span_exporter

    add_span_exporter(OpenTelemetrySpanExporter(ConsoleSpanExporter()))

Ids are mapped deterministically: a uuid trace id becomes the 128-bit OTel
trace id, a span id its low 64 bits, so parent/child links survive. The
OpenTelemetry packages are imported when the exporter is created; without
them a :class:`~converge.errors.MissingExtraError` names the extra.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from converge._extras import require
from converge.observability.tracing import Span

_PURPOSE = "the OpenTelemetry span exporter"


def _id_int(value: str, bits: int) -> int:
    try:
        n = uuid.UUID(value).int
    except ValueError:
        n = int.from_bytes(hashlib.sha256(value.encode()).digest()[:16], "big")
    n &= (1 << bits) - 1
    return n or 1  # 0 is the invalid id in OpenTelemetry


class OpenTelemetrySpanExporter:
    """Forwards converge spans to an OpenTelemetry SDK span exporter.

    Args:
        otel_exporter: an ``opentelemetry.sdk.trace.export.SpanExporter``.
        service_name: the ``service.name`` resource attribute.

    Raises:
        MissingExtraError: OpenTelemetry is not installed (``pip install "converge[otel]"``).
    """

    def __init__(self, otel_exporter: Any, *, service_name: str = "converge") -> None:
        self._trace_api = require("opentelemetry.trace", "otel", purpose=_PURPOSE)
        self._sdk_trace = require("opentelemetry.sdk.trace", "otel", purpose=_PURPOSE)
        resources = require("opentelemetry.sdk.resources", "otel", purpose=_PURPOSE)
        self._resource = resources.Resource.create({"service.name": service_name})
        self.otel_exporter = otel_exporter

    def _context(self, trace_id: str, span_id: str) -> Any:
        api = self._trace_api
        return api.SpanContext(
            trace_id=_id_int(trace_id, 128), span_id=_id_int(span_id, 64), is_remote=False,
            trace_flags=api.TraceFlags(api.TraceFlags.SAMPLED),
        )

    def to_readable_span(self, span: Span, duration_sec: float) -> Any:
        """The OpenTelemetry ``ReadableSpan`` for a finished converge span."""
        api = self._trace_api
        start_ns = int((span.start_time or 0.0) * 1e9)
        parent_id = span.parent_id
        status = (
            api.Status(api.StatusCode.ERROR, span.error) if span.status == "error" else api.Status(api.StatusCode.OK)
        )
        attributes = {k: v if isinstance(v, (str, bool, int, float)) else str(v) for k, v in (span.attributes or {}).items()}
        attributes["converge.trace_id"] = span.trace_id
        attributes["converge.span_id"] = span.span_id
        return self._sdk_trace.ReadableSpan(
            name=span.name,
            context=self._context(span.trace_id, span.span_id),
            parent=self._context(span.trace_id, parent_id) if parent_id else None,
            resource=self._resource,
            attributes=attributes,
            kind=api.SpanKind.INTERNAL,
            status=status,
            start_time=start_ns,
            end_time=start_ns + int(duration_sec * 1e9),
        )

    def export(self, span: Span, duration_sec: float) -> None:
        self.otel_exporter.export([self.to_readable_span(span, duration_sec)])

    def shutdown(self) -> None:
        shutdown = getattr(self.otel_exporter, "shutdown", None)
        if callable(shutdown):
            shutdown()


__all__ = ["OpenTelemetrySpanExporter"]
