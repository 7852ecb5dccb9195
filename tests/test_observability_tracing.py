"""Tracing: parent/child ids, durations, async propagation, exporters, the no-exporter path."""

from __future__ import annotations

import asyncio
import logging

import pytest

from converge.errors import MissingExtraError
from converge.observability import tracing
from converge.observability.tracing import (
    InMemorySpanExporter,
    LoggingSpanExporter,
    Span,
    add_span_exporter,
    get_current_span,
    get_current_trace_id,
    get_span_exporters,
    new_trace_id,
    register_span_exporter,
    remove_span_exporter,
    reset_span_exporters,
    set_trace_id,
    span_export_error_count,
    span_exporter,
    trace,
)


@pytest.fixture(autouse=True)
def _clean_exporters():
    reset_span_exporters()
    set_trace_id(None)
    yield
    reset_span_exporters()


@pytest.fixture
def spans():
    exp = InMemorySpanExporter()
    register_span_exporter(exp)
    return exp


def test_nested_spans_carry_parent_ids_and_durations(spans):
    with trace("outer", agent="a1") as outer:
        with trace("inner") as inner:
            with trace("leaf"):
                pass
        with trace("sibling"):
            pass
    by = {s.name: s for s in spans.spans}
    assert [s.name for s in spans.spans] == ["leaf", "inner", "sibling", "outer"]  # exported as they finish
    assert by["outer"].parent_id is None
    assert by["inner"].parent_id == outer.span_id
    assert by["leaf"].parent_id == inner.span_id
    assert by["sibling"].parent_id == outer.span_id
    assert len({s.trace_id for s in spans.spans}) == 1
    assert len({s.span_id for s in spans.spans}) == 4
    assert by["outer"].attributes == {"agent": "a1"}
    for s in spans.spans:
        assert s.status == "ok" and s.duration_sec is not None and s.duration_sec >= 0
        assert s.start_time is not None
    assert by["outer"].duration_sec >= by["inner"].duration_sec >= by["leaf"].duration_sec


async def test_spans_follow_awaits_and_tasks(spans):
    async def child(name: str) -> None:
        with trace(name):
            await asyncio.sleep(0)

    with trace("root") as root:
        await child("awaited")
        await asyncio.gather(asyncio.create_task(child("task-1")), asyncio.create_task(child("task-2")))
    by = {s.name: s for s in spans.spans}
    for name in ("awaited", "task-1", "task-2"):
        assert by[name].parent_id == root.span_id
        assert by[name].trace_id == root.trace_id
    assert get_current_span() is None and get_current_trace_id() is None


async def test_concurrent_tasks_have_separate_traces(spans):
    async def work(name: str) -> str:
        with trace(name) as s:
            await asyncio.sleep(0.001)
            with trace(name + ".child"):
                await asyncio.sleep(0)
            return s.trace_id

    t1, t2 = await asyncio.gather(work("a"), work("b"))
    assert t1 != t2
    by = {s.name: s for s in spans.spans}
    assert by["a.child"].trace_id == t1 and by["b.child"].trace_id == t2
    assert by["a.child"].parent_id == by["a"].span_id


def test_error_status_and_exception_propagates(spans):
    with pytest.raises(ZeroDivisionError):
        with trace("boom"):
            1 / 0  # noqa: B018
    (s,) = spans.spans
    assert s.status == "error" and s.error.startswith("ZeroDivisionError")


def test_trace_ids_set_and_restored():
    tid = new_trace_id()
    set_trace_id(tid)
    assert get_current_trace_id() == tid
    with trace("x") as span:
        assert span.trace_id == tid
        assert get_current_trace_id() == tid
    set_trace_id(None)
    assert get_current_trace_id() is None
    with trace("y") as y:
        inside = get_current_trace_id()
    assert inside == y.trace_id and inside != tid
    assert get_current_trace_id() is None
    with pytest.raises(TypeError):
        set_trace_id(123)  # type: ignore[arg-type]


def test_no_exporter_path_generates_no_ids():
    assert get_span_exporters() == ()
    with trace("outer") as outer:
        with trace("inner") as inner:
            pass
    # Ids are never generated when nothing reads them: no uuid per span.
    assert not outer.ids_generated and not inner.ids_generated
    assert outer._trace_id is None and inner._trace_id is None
    assert outer.duration_sec is not None and outer.status == "ok"
    # ...yet they exist, consistently, as soon as something asks.
    assert inner.parent_id == outer.span_id and inner.trace_id == outer.trace_id


def test_registration_is_process_wide_for_tasks_started_earlier():
    async def main() -> list[str]:
        exp = InMemorySpanExporter()
        started = asyncio.Event()
        go = asyncio.Event()

        async def runtime_like() -> None:
            started.set()
            await go.wait()
            with trace("late"):
                pass

        task = asyncio.create_task(runtime_like())  # copies the context before registration
        await started.wait()
        register_span_exporter(exp)
        go.set()
        await task
        return [s.name for s in exp.spans]

    assert asyncio.run(main()) == ["late"]


def test_default_plus_added_exporters_and_removal():
    a, b, c = InMemorySpanExporter(), InMemorySpanExporter(), InMemorySpanExporter()
    register_span_exporter(a)
    add_span_exporter(b)
    register_span_exporter(c)  # replaces the default only
    assert get_span_exporters() == (c, b)
    with trace("one"):
        pass
    assert (len(a), len(b), len(c)) == (0, 1, 1)
    assert remove_span_exporter(b) is True and remove_span_exporter(b) is False
    register_span_exporter(None)
    assert get_span_exporters() == ()
    with span_exporter(a):
        with trace("two"):
            pass
    with trace("three"):
        pass
    assert [s.name for s in a.spans] == ["two"]
    with pytest.raises(TypeError):
        register_span_exporter(object())  # type: ignore[arg-type]


def test_failing_exporter_is_logged_and_never_breaks_code(spans, caplog):
    class Broken:
        def export(self, span: Span, duration_sec: float) -> None:
            raise RuntimeError("exporter down")

    add_span_exporter(Broken())
    before = span_export_error_count()
    with caplog.at_level(logging.ERROR, logger="converge.observability.tracing"):
        with trace("work") as s:
            result = 42
    assert result == 42 and s.status == "ok"
    assert span_export_error_count() == before + 1
    assert "exporter down" in caplog.text and "work" in caplog.text
    assert [x.name for x in spans.spans] == ["work"]  # the other exporter still got it


def test_in_memory_exporter_is_a_bounded_ring():
    exp = InMemorySpanExporter(maxlen=3)
    register_span_exporter(exp)
    for i in range(5):
        with trace(f"s{i}"):
            pass
    assert [s.name for s in exp.spans] == ["s2", "s3", "s4"]
    assert exp.evicted == 2
    assert exp.by_name("s3")[0].name == "s3"
    exp.clear()
    assert len(exp) == 0
    with pytest.raises(ValueError):
        InMemorySpanExporter(maxlen=0)


def test_logging_exporter_writes_structured_records(caplog):
    register_span_exporter(LoggingSpanExporter(level=logging.INFO))
    with caplog.at_level(logging.INFO, logger="converge.trace"):
        with trace("logged", k="v"):
            pass
    (rec,) = [r for r in caplog.records if r.name == "converge.trace"]
    assert rec.props["name"] == "logged" and rec.props["attributes"] == {"k": "v"}
    assert rec.props["span_id"] and rec.props["duration_sec"] >= 0


def test_span_constructor_keeps_reference_order(spans):
    with Span("trace-1", "span-1", None, "manual") as s:
        with trace("child") as c:
            pass
    assert (s.trace_id, s.span_id, s.parent_id, s.name) == ("trace-1", "span-1", None, "manual")
    assert c.trace_id == "trace-1" and c.parent_id == "span-1"
    assert s.to_dict()["span_id"] == "span-1"


def test_otel_bridge_names_the_extra_when_missing():
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("opentelemetry-sdk is installed; the bridge is exercised by the next test")
    from converge.observability.otel import OpenTelemetrySpanExporter

    with pytest.raises(MissingExtraError, match=r"converge\[otel\]"):
        OpenTelemetrySpanExporter(object())


def test_otel_bridge_exports_parent_links():
    pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter as OtelMemory

    from converge.observability.otel import OpenTelemetrySpanExporter

    sink = OtelMemory()
    register_span_exporter(OpenTelemetrySpanExporter(sink))
    with trace("parent"):
        with trace("child", n=1):
            pass
    child, parent = sink.get_finished_spans()
    assert child.parent.span_id == parent.context.span_id
    assert child.context.trace_id == parent.context.trace_id
    assert child.attributes["n"] == 1


def test_module_keeps_reference_names():
    for name in ("SpanExporter", "Span", "trace", "get_current_trace_id", "set_trace_id", "new_trace_id", "register_span_exporter"):
        assert name in tracing.__all__
