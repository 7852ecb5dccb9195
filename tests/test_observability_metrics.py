"""Metrics: collector behaviour and Prometheus text exposition checked with prometheus_client's parser."""

from __future__ import annotations

import math
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from converge.observability import CoordinationMetrics, MetricsCollector
from converge.observability.metrics import format_prometheus, series_key


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_reference_example_plus_help_lines():
    m = MetricsCollector()
    m.inc("messages_sent", 2)
    m.inc("decisions_executed")
    m.gauge("pool_size", 3.0)
    lines = m.format_prometheus().splitlines()
    # Appendix A.3 of the reference, with a HELP line before each TYPE line.
    assert [ln for ln in lines if not ln.startswith("# HELP")] == [
        "# TYPE decisions_executed counter", "decisions_executed 1",
        "# TYPE messages_sent counter", "messages_sent 2",
        "# TYPE pool_size gauge", "pool_size 3.0",
    ]
    assert lines[0] == "# HELP decisions_executed Decisions that passed safety checks and were executed."
    assert m.format_prometheus().endswith("\n")
    assert MetricsCollector().format_prometheus() == ""


def test_exposition_parses_with_labels_histograms_and_help():
    m = MetricsCollector()
    m.inc("transport_dropped_total", labels={"reason": "no_route"})
    m.inc("transport_dropped_total", 2, labels={"reason": "queue \"full\"\n"})
    m.inc("transport_dropped_total")
    m.inc("messages_received", 5)
    m.gauge("pending_tasks", 4)
    m.gauge("temperature", float("inf"), labels={"room": "a"})
    m.describe("custom_latency_seconds", "Latency of custom work.", buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 3.0):
        m.observe("custom_latency_seconds", v, labels={"op": "x"})
    m.observe("runtime_step_seconds", 0.002)
    text = m.format_prometheus()
    fams = families(text)
    # counters are exposed under the parser's OpenMetrics names (without _total)
    drop = fams["transport_dropped"]
    assert drop.type == "counter" and drop.documentation.startswith("Messages a transport could not deliver")
    samples = {tuple(sorted(s.labels.items())): s.value for s in drop.samples}
    assert samples == {(): 1.0, (("reason", "no_route"),): 1.0, (("reason", 'queue "full"\n'),): 2.0}
    assert fams["messages_received"].samples[0].value == 5
    assert fams["pending_tasks"].type == "gauge" and fams["pending_tasks"].samples[0].value == 4
    assert math.isinf(fams["temperature"].samples[0].value)
    hist = fams["custom_latency_seconds"]
    assert hist.type == "histogram" and hist.documentation == "Latency of custom work."
    by = {(s.name, s.labels.get("le")): s.value for s in hist.samples}
    assert by[("custom_latency_seconds_bucket", "0.1")] == 1
    assert by[("custom_latency_seconds_bucket", "1.0")] == 2
    assert by[("custom_latency_seconds_bucket", "+Inf")] == 3
    assert by[("custom_latency_seconds_count", None)] == 3
    assert by[("custom_latency_seconds_sum", None)] == pytest.approx(3.55)
    assert all(s.labels.get("op") == "x" for s in hist.samples)
    assert fams["runtime_step_seconds"].type == "histogram"
    # one TYPE line per metric, counters before gauges before histograms
    type_lines = [ln.split()[2:] for ln in text.splitlines() if ln.startswith("# TYPE")]
    names = [n for n, _ in type_lines]
    assert len(names) == len(set(names))
    kinds = [k for _, k in type_lines]
    assert kinds == sorted(kinds, key=["counter", "gauge", "histogram"].index)
    assert names[:2] == sorted(names[:2])


def test_names_are_sanitised_to_valid_prometheus_names():
    m = MetricsCollector()
    m.inc("a.b-c")
    m.inc("9lives")
    m.inc("weird name/éx", labels={"bad-label": "v", "1st": "w"})
    m.gauge("ok:colon_name", 1)
    text = m.format_prometheus()
    assert "a_b_c 1" in text and "# TYPE _9lives counter" in text
    fams = families(text)
    assert {"a_b_c", "_9lives", "weird_name__x", "ok:colon_name"} <= set(fams)
    (sample,) = fams["weird_name__x"].samples
    assert sample.labels == {"bad_label": "v", "_1st": "w"}


def test_same_name_different_kinds_stays_parseable():
    m = MetricsCollector()
    m.inc("x")
    m.gauge("x", 2.0)
    fams = families(m.format_prometheus())
    assert fams["x"].type == "counter" and fams["x_gauge"].type == "gauge"


def test_snapshot_getters_and_clear():
    m = MetricsCollector()
    m.inc("c", labels={"k": "v"})
    m.inc("c", 2)
    m.gauge("g", 1.5)
    m.observe("h", 0.3)
    snap = m.snapshot()
    assert snap["counters"] == {'c{k="v"}': 1, "c": 2}
    assert snap["gauges"] == {"g": 1.5}
    assert snap["histograms"]["h"]["count"] == 1 and snap["histograms"]["h"]["sum"] == 0.3
    assert m.get_counter("c", labels={"k": "v"}) == 1 and m.get_counter("missing") == 0
    assert m.counter_total("c") == 3
    assert m.get_gauge("g") == 1.5 and m.get_histogram("h")["count"] == 1
    assert series_key("c", {"b": 1, "a": "x"}) == 'c{a="x",b="1"}'
    snap["counters"]["c"] = 99  # a copy
    assert m.get_counter("c") == 2
    m.clear()
    assert m.format_prometheus() == "" and format_prometheus(m) == ""
    with pytest.raises(ValueError):
        m.inc("")
    with pytest.raises(ValueError):
        MetricsCollector(buckets=(1.0, 0.5))


def test_counters_are_thread_safe():
    m = MetricsCollector()

    def work() -> None:
        for _ in range(2000):
            m.inc("n")
            m.observe("lat", 0.001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.get_counter("n") == 8000 and m.get_histogram("lat")["count"] == 8000


def test_coordination_metrics():
    m = MetricsCollector()
    cm = CoordinationMetrics(m)
    assert cm.collector is m
    for method in ("task_submitted", "task_claimed", "task_completed", "task_failed", "task_cancelled",
                   "pool_created", "pool_join", "pool_leave"):
        getattr(cm, method)()
    cm.task_submitted()
    cm.pool_size(3)
    cm.pending_tasks(7)
    assert m.get_counter("task_submitted_total") == 2
    assert m.get_counter("pool_leave_total") == 1
    assert m.gauges == {"pool_size": 3.0, "pending_tasks": 7.0}
    fams = families(m.format_prometheus())
    assert fams["task_submitted"].samples[0].value == 2
    with pytest.raises(TypeError):
        CoordinationMetrics(object())  # type: ignore[arg-type]


def test_default_help_covers_the_reference_metric_table():
    import re

    from converge.observability._metric_help import DEFAULT_HELP

    reference = [
        "messages_received", "decisions_executed", "messages_sent", "tools_invoked",
        "rate_limit_egress_dropped_total", "rate_limit_ingress_dropped_total",
        "task_submitted_total", "task_claimed_total", "task_completed_total", "task_failed_total",
        "task_cancelled_total", "pool_created_total", "pool_join_total", "pool_leave_total",
        "pending_tasks", "pool_size", "webhook_inbound_accepted_total", "webhook_inbound_rejected_total",
        "webhook_inbound_error_total", "webhook_outbound_sent_total", "webhook_outbound_retry_total",
        "webhook_outbound_circuit_open_total", "webhook_dead_letter_total",
        # drop counters of the network and runtime layers
        "transport_dropped_total", "inbox_dropped_total", "messages_rejected_total", "runtime_step_errors_total",
        "decisions_ignored_total", "llm_tokens_total", "llm_cost_usd_total",
    ]
    assert set(reference) <= set(DEFAULT_HELP)
    assert all(re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", n) and text.endswith(".") for n, text in DEFAULT_HELP.items())
    m = MetricsCollector()
    assert m.help_text("messages_sent") == DEFAULT_HELP["messages_sent"]
    m.describe("messages_sent", "Overridden\\text\nwith newline.")
    m.inc("messages_sent")
    assert families(m.format_prometheus())["messages_sent"].documentation == "Overridden\\text\nwith newline."
    assert m.help_text("unknown_thing") == "converge metric unknown_thing"


def test_package_exports_and_no_optional_imports():
    import subprocess
    import sys

    import converge.observability as obs

    assert sorted(obs.__all__) == ["CoordinationMetrics", "MetricsCollector", "ReplayLog", "ReplayRunner", "RuntimeOpsServer"]
    code = (
        "import sys, converge.observability, converge.observability.tracing, converge.observability.logging, "
        "converge.observability.otel, converge.extensions.rate_limit\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'prometheus_client', 'opentelemetry', 'IPython', 'ipywidgets', 'pandas', 'redis', 'websockets'})\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
