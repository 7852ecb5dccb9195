"""RuntimeOpsServer over real HTTP on 127.0.0.1: status codes, content types, lifecycle, no thread leaks."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from converge.observability import MetricsCollector, RuntimeOpsServer


class FakeRuntime:
    """Only what the ops server needs: is_healthy() / is_ready()."""

    def __init__(self) -> None:
        self.healthy = True
        self.ready = True

    def is_healthy(self) -> bool:
        if self.healthy == "raise":
            raise RuntimeError("health probe crashed")
        return self.healthy

    def is_ready(self) -> bool:
        return self.ready


def request(server: RuntimeOpsServer, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def served():
    runtime, metrics = FakeRuntime(), MetricsCollector()
    server = RuntimeOpsServer(runtime, metrics)
    server.start()
    try:
        yield server, runtime, metrics
    finally:
        server.stop()


def test_health_and_ready_status_codes(served):
    server, runtime, _ = served
    status, headers, body = request(server, "GET", "/health")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert headers["content-type"] == "application/json"
    assert request(server, "GET", "/ready?probe=1")[0] == 200  # query ignored
    runtime.healthy, runtime.ready = False, False
    status, headers, body = request(server, "GET", "/health")
    assert (status, json.loads(body)) == (503, {"status": "unhealthy"})
    status, _, body = request(server, "GET", "/ready")
    assert (status, json.loads(body)) == (503, {"status": "not_ready"})
    runtime.healthy = "raise"
    assert request(server, "GET", "/health")[0] == 503


def test_metrics_endpoint(served):
    server, _, metrics = served
    status, headers, body = request(server, "GET", "/metrics")
    assert status == 200 and body == b""
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    metrics.inc("messages_received", 3)
    metrics.inc("transport_dropped_total", labels={"reason": "no_route"})
    status, _, body = request(server, "GET", "/metrics")
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert fams["messages_received"].samples[0].value == 3
    assert fams["transport_dropped"].samples[0].labels == {"reason": "no_route"}


def test_unknown_path_and_method(served):
    server, _, _ = served
    status, headers, body = request(server, "GET", "/nope")
    assert (status, json.loads(body)) == (404, {"error": "not found"})
    assert headers["content-type"] == "application/json"
    for method in ("POST", "PUT", "DELETE"):
        status, headers, _ = request(server, method, "/health")
        assert status == 405 and headers["allow"] == "GET"
    status, _, body = request(server, "HEAD", "/health")
    assert status == 405 and body == b""


def test_lifecycle_is_idempotent_and_leaves_no_threads():
    before = set(threading.enumerate())
    server = RuntimeOpsServer(FakeRuntime())
    assert server.address is None and server.url is None
    server.stop()  # before start: no-op
    server.start()
    server.start()  # idempotent
    host, port = server.address
    assert host == "127.0.0.1" and port > 0 and server.url == f"http://127.0.0.1:{port}"
    for _ in range(3):
        assert request(server, "GET", "/health")[0] == 200
    status, _, body = request(server, "GET", "/metrics")
    assert status == 200 and body == b""  # no collector anywhere
    server.stop()
    server.stop()
    assert server.address is None and not server.running
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(OSError), socket.create_connection((host, port), timeout=1):
        pass


def test_falls_back_to_the_runtimes_collector():
    runtime = FakeRuntime()
    runtime.metrics_collector = MetricsCollector()
    runtime.metrics_collector.inc("runtime_steps_total", 4)
    server = RuntimeOpsServer(runtime)
    server.start()
    try:
        assert b"runtime_steps_total 4" in request(server, "GET", "/metrics")[2]
    finally:
        server.stop()


def test_bind_error_propagates_and_bad_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        server = RuntimeOpsServer(FakeRuntime(), port=s.getsockname()[1])
        with pytest.raises(OSError):
            server.start()
        assert not server.running
    with pytest.raises(ValueError, match="port"):
        RuntimeOpsServer(FakeRuntime(), port=70000)


async def test_async_start_stop_do_not_block_the_loop():
    before = set(threading.enumerate())
    server = RuntimeOpsServer(FakeRuntime(), MetricsCollector())
    async with server:
        status, _, _ = await asyncio.to_thread(request, server, "GET", "/ready")
        assert status == 200
    assert not server.running
    assert {t for t in set(threading.enumerate()) - before if t.is_alive() and "asyncio" not in t.name} == set()
