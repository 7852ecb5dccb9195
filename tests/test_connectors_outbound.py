"""Outbound webhook dispatch against a real loopback HTTP server: retries, idempotency, breaker, dead letters."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from converge.core.message import Message
from converge.core.topic import Topic
from converge.errors import ConfigError
from converge.extensions.connectors import (
    CircuitBreaker,
    OutboundWebhookAction,
    WebhookConnector,
    WebhookGateway,
    WebhookRetryPolicy,
)


class Loopback:
    """A real HTTP server on 127.0.0.1 whose answers follow a script (status codes or "hang")."""

    def __init__(self) -> None:
        self.script: list[int | str] = []
        self.requests: list[dict] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.requests.append(
                        {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                    )
                    step = outer.script.pop(0) if outer.script else 200
                    outer.arrived.notify_all()
                if step == "hang":
                    outer.release.wait(10)
                    self.close_connection = True
                    return
                self.send_response(step)
                if step in (301, 302, 307):
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = do_PUT = do_GET = _serve

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def wait_for(self, n: int, timeout: float = 10.0) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= n, timeout), self.requests


@pytest.fixture
def loopback():
    server = Loopback()
    server.thread.start()
    yield server
    server.release.set()
    server.server.shutdown()
    server.server.server_close()
    server.thread.join(5)


class Sleeps:
    """Records the retry delays instead of sleeping them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class Mono:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(loopback: Loopback | None = None, *, attempts=5, timeout=0.5, **kwargs) -> WebhookConnector:
    kwargs.setdefault("sleep", Sleeps())
    return WebhookConnector(
        provider_profiles={},
        secrets={},
        retry_policy=WebhookRetryPolicy(max_attempts=attempts, base_delay_sec=0.05, request_timeout_sec=timeout),
        **kwargs,
    )


def action(url: str, **kwargs) -> OutboundWebhookAction:
    return OutboundWebhookAction(
        target=kwargs.pop("target", "acme-out"), method="post", url=url, body={"ok": True, "n": 1},
        headers={"X-Test": "1"}, **kwargs,
    )


async def test_fails_times_out_then_succeeds_with_one_idempotency_key(loopback):
    loopback.script = [500, "hang", 200]
    sleeps = Sleeps()
    connector = make(sleep=sleeps, rng=random.Random(7))
    assert await connector.dispatch_outbound_action(action(loopback.url)) is True

    assert len(loopback.requests) == 3
    keys = {r["headers"]["Idempotency-Key"] for r in loopback.requests}
    assert len(keys) == 1 and keys.pop()
    for request in loopback.requests:
        assert request["method"] == "POST" and request["path"] == "/hook"
        assert request["headers"]["Content-Type"] == "application/json"
        assert request["headers"]["X-Test"] == "1"
        assert json.loads(request["body"]) == {"ok": True, "n": 1}
    expected_rng = random.Random(7)
    policy = connector.retry_policy
    assert sleeps.delays == [policy.compute_delay(1, rng=expected_rng), policy.compute_delay(2, rng=expected_rng)]
    assert connector.metrics.get_counter("webhook_outbound_sent_total") == 1
    assert connector.metrics.get_counter("webhook_outbound_retry_total") == 2
    assert not connector.dead_letter and connector.store.list("webhook:dead_letter:") == []
    assert connector.breaker_for("acme-out").state == "closed"


async def test_dead_letter_when_attempts_run_out(loopback):
    loopback.script = [500, 503, 502]
    connector = make(attempts=3)
    assert await connector.dispatch_outbound_action(action(loopback.url, idempotency_key="k-1")) is False
    assert len(loopback.requests) == 3
    assert {r["headers"]["Idempotency-Key"] for r in loopback.requests} == {"k-1"}
    (key,) = connector.store.list("webhook:dead_letter:")
    entry = connector.store.get(key)
    assert entry == connector.dead_letter[0]
    assert entry["error"] == "max retries exceeded"
    assert entry["last_error"] == "http 502"
    assert entry["attempts"] == 3 and entry["reason"] == "max_retries"
    assert entry["action"] == dataclasses.asdict(action(loopback.url, idempotency_key="k-1"))
    assert connector.metrics.get_counter("webhook_dead_letter_total", labels={"reason": "max_retries"}) == 1
    assert connector.metrics.get_counter("webhook_outbound_retry_total") == 3


async def test_generated_idempotency_key_is_recorded_in_dead_letter(loopback):
    loopback.script = [500, 500]
    connector = make(attempts=2)
    await connector.dispatch_outbound_action(action(loopback.url))
    sent = loopback.requests[0]["headers"]["Idempotency-Key"]
    assert connector.dead_letter[0]["action"]["idempotency_key"] == sent


@pytest.mark.parametrize("status", [400, 404, 302])
async def test_non_retryable_status_is_final(loopback, status):
    loopback.script = [status]
    connector = make()
    assert await connector.dispatch_outbound_action(action(loopback.url)) is False
    assert [r["path"] for r in loopback.requests] == ["/hook"]  # one attempt, redirect not followed
    assert connector.dead_letter[0]["reason"] == "rejected"
    assert connector.dead_letter[0]["error"].startswith(f"http {status}")
    assert connector.breaker_for("acme-out").failures == 0


async def test_network_error_is_retried_then_dead_lettered():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    connector = make(attempts=2)
    assert await connector.dispatch_outbound_action(action(f"http://127.0.0.1:{port}/x")) is False
    entry = connector.dead_letter[0]
    assert entry["attempts"] == 2 and entry["last_error"].startswith("network error")


async def test_deadline(loopback):
    clock = Mono()
    connector = make(clock=clock)
    assert await connector.dispatch_outbound_action(action(loopback.url, deadline=clock.now - 1)) is False
    assert loopback.requests == [] and connector.dead_letter[-1]["error"] == "deadline exceeded"

    loopback.script = [500]
    # the wait before the second attempt (~0.05 s) would pass the deadline: stop at once
    assert await connector.dispatch_outbound_action(action(loopback.url, deadline=clock.now + 0.01)) is False
    assert len(loopback.requests) == 1 and connector.dead_letter[-1]["error"] == "deadline exceeded"


async def test_circuit_breaker_opens_and_lets_one_probe_through(loopback):
    mono = Mono()
    connector = make(attempts=1, breaker_factory=lambda: CircuitBreaker(2, 30.0, clock=mono))
    loopback.script = [500, 500]
    assert not await connector.dispatch_outbound_action(action(loopback.url))
    assert not await connector.dispatch_outbound_action(action(loopback.url))
    breaker = connector.breakers["acme-out"]
    assert breaker.state == "open" and breaker.is_open
    assert not await connector.dispatch_outbound_action(action(loopback.url))
    assert len(loopback.requests) == 2  # refused without a request
    assert connector.dead_letter[-1]["error"] == "circuit open"
    assert connector.metrics.get_counter("webhook_outbound_circuit_open_total") == 1
    other = await connector.dispatch_outbound_action(action(loopback.url, target="other"))
    assert other is True  # breakers are per target

    mono.now += 30
    assert breaker.state == "half_open" and not breaker.is_open
    loopback.script = [200]
    assert await connector.dispatch_outbound_action(action(loopback.url))
    assert breaker.state == "closed" and breaker.failures == 0


async def test_breaker_opening_mid_dispatch_stops_the_retries(loopback):
    loopback.script = [500, 500, 500, 500]
    connector = make(attempts=5, breaker_factory=lambda: CircuitBreaker(2, 30.0, clock=Mono()))
    assert not await connector.dispatch_outbound_action(action(loopback.url))
    assert len(loopback.requests) == 2
    assert connector.dead_letter[0]["error"] == "circuit open"


def test_circuit_breaker_states_with_injected_clock():
    mono = Mono()
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout_sec=10, clock=mono)
    assert breaker.allow_request() and breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "closed" and not breaker.is_open
    breaker.record_failure()
    assert breaker.state == "open" and breaker.is_open and not breaker.allow_request()
    mono.now += 9.9
    assert not breaker.allow_request()
    mono.now += 0.1
    assert breaker.state == "half_open" and not breaker.is_open
    assert breaker.allow_request()  # the probe
    assert not breaker.allow_request() and breaker.is_open  # only one probe at a time
    breaker.record_failure()  # the probe failed: open again for a full recovery period
    assert breaker.state == "open"
    mono.now += 10
    assert breaker.allow_request()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow_request() and breaker.allow_request()


def test_compute_delay_backoff_and_jitter():
    policy = WebhookRetryPolicy(base_delay_sec=0.25, max_delay_sec=10.0, jitter_ratio=0.0)
    assert [policy.compute_delay(a) for a in range(0, 8)] == [0.25, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert policy.compute_delay(10_000) == 10.0
    jittery = WebhookRetryPolicy(base_delay_sec=1.0, jitter_ratio=0.2)
    rng = random.Random(3)
    samples = [jittery.compute_delay(1, rng=rng) for _ in range(500)]
    assert all(0.8 <= s <= 1.2 for s in samples)
    assert max(samples) - min(samples) > 0.3  # jitter actually spreads the delays
    assert [jittery.compute_delay(2, rng=random.Random(5)) for _ in range(2)] == [
        jittery.compute_delay(2, rng=random.Random(5))
    ] * 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"max_attempts": 0}, "max_attempts"), ({"jitter_ratio": 1.5}, "jitter_ratio"),
     ({"request_timeout_sec": 0}, "request_timeout_sec"), ({"base_delay_sec": -1}, "base_delay_sec")],
)
def test_retry_policy_validation(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        WebhookRetryPolicy(**kwargs)


async def test_custom_senders_sync_in_worker_thread_async_awaited_garbage_fatal():
    threads: list[str] = []

    def sync_sender(act):
        threads.append(threading.current_thread().name)
        return 204, b""

    async def async_sender(act):
        return 200, b"{}"

    assert await make(outbound_sender=sync_sender).dispatch_outbound_action(action("http://example.invalid/x"))
    assert threads and threads[0] != threading.main_thread().name
    assert await make(outbound_sender=async_sender).dispatch_outbound_action(action("http://example.invalid/x"))

    connector = make(outbound_sender=lambda act: "not a tuple")
    assert not await connector.dispatch_outbound_action(action("http://example.invalid/x"))
    assert connector.dead_letter[0]["reason"] == "error" and connector.dead_letter[0]["attempts"] == 1


async def test_cancelled_dispatch_is_dead_lettered(loopback):
    loopback.script = ["hang"]
    connector = make(timeout=5.0)
    task = asyncio.create_task(connector.dispatch_outbound_action(action(loopback.url)))
    await asyncio.to_thread(loopback.wait_for, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert connector.dead_letter[0]["reason"] == "cancelled"
    assert len(connector.store.list("webhook:dead_letter:")) == 1
    loopback.release.set()  # let the abandoned worker thread finish before the loop closes


async def test_dispatcher_sends_queued_actions_and_messages(loopback):
    connector = make()
    runner = asyncio.create_task(connector.run_outbound_dispatcher(poll_interval_sec=0.02))
    await connector.submit_outbound_action(action(loopback.url))
    msg = Message(
        sender="agent-1",
        topics=[Topic("bridge.webhook.outbound", {"target": "t2", "url": loopback.url, "idempotency_key": "m-1"})],
        payload={"from": "message"},
    )
    assert await connector.submit_outbound_message(msg) is True
    await asyncio.to_thread(loopback.wait_for, 2)
    connector.stop_dispatcher()
    await asyncio.wait_for(runner, 5)
    bodies = [json.loads(r["body"]) for r in loopback.requests]
    assert bodies == [{"ok": True, "n": 1}, {"from": "message"}]
    assert loopback.requests[1]["headers"]["Idempotency-Key"] == "m-1"

    await connector.submit_outbound_action(action(loopback.url))  # dispatcher stopped: not lost
    assert await connector.dead_letter_pending() == 1
    assert connector.dead_letter[-1]["error"] == "dispatcher stopped"


async def test_a7_outbound_routing_message():
    connector = make()
    msg = Message(
        topics=[Topic("bridge.webhook.outbound", {"target": "acme-out", "method": "POST",
                                                   "url": "http://example.com/hook", "headers": {"X-Test": "1"}})],
        payload={"ok": True},
    )
    assert await connector.submit_outbound_message(msg)
    assert connector.outbound_actions.get_nowait() == OutboundWebhookAction(
        target="acme-out", method="POST", url="http://example.com/hook", body={"ok": True},
        headers={"X-Test": "1"}, idempotency_key=None, deadline=None,
    )


@pytest.mark.parametrize(
    ("topics", "reason"),
    [
        ([], "no_route"),
        ([Topic("other.ns", {"url": "http://x/"})], "no_route"),
        ([Topic("bridge.webhook.outbound", {"target": "x"})], "no_url"),
        ([Topic("bridge.webhook.outbound", {"url": "file:///etc/passwd"})], "invalid"),
    ],
)
async def test_unroutable_outbound_messages_are_counted(topics, reason):
    connector = make()
    assert await connector.submit_outbound_message(Message(topics=topics, payload={})) is False
    assert connector.outbound_actions.empty()
    assert connector.metrics.get_counter("webhook_outbound_dropped_total", labels={"reason": reason}) == 1


async def test_gateway_payloads_and_outbound_validation():
    connector = make()
    gateway = WebhookGateway(connector)
    status, body = await gateway.handle_outbound_payload({"target": "t", "url": "https://example.com/h", "body": {"a": 1}})
    assert (status, json.loads(body)) == (202, {"status": "queued"})
    assert connector.outbound_actions.get_nowait().body == {"a": 1}
    for bad, word in (
        ({"target": "t"}, "url"),
        ({"url": "https://example.com"}, "target"),
        ({"target": "t", "url": "ftp://example.com"}, "url"),
        ({"target": "t", "url": "https://e.com", "color": "red"}, "color"),
        ({"target": "t", "url": "https://e.com", "headers": []}, "headers"),
        ({"target": "t", "url": "https://e.com", "deadline": "soon"}, "deadline"),
    ):
        status, body = await gateway.handle_outbound_payload(bad)
        error = json.loads(body)["error"]
        assert status == 400 and error.startswith("invalid outbound payload: ") and word in error
    assert json.loads(gateway.health_payload()) == {"status": "ok"} and gateway.is_healthy()
    assert json.loads(gateway.ready_payload()) == {"status": "ready"}
    gateway.set_ready(False)
    assert json.loads(gateway.ready_payload()) == {"status": "not_ready"} and not gateway.is_ready()
    assert b"# TYPE webhook_outbound_dropped_total counter" in gateway.metrics_payload()


def test_action_validation_and_redacted_repr():
    act = OutboundWebhookAction(
        target="t", method="POST", url="https://user:pw@example.com/h?token=abc",
        body={}, headers={"Authorization": "Bearer s3cr3t", "X-Plain": "v"},
    )
    text = repr(act)
    assert "s3cr3t" not in text and "token=abc" not in text and "pw" not in text
    assert "X-Plain" in text and "https://example.com/h" in text
    with pytest.raises(ConfigError, match="url"):
        OutboundWebhookAction(target="t", method="POST", url="example.com/h", body={})
    with pytest.raises(ConfigError, match="method"):
        OutboundWebhookAction(target="t", method="PO ST", url="http://e.com", body={})
    with pytest.raises(ConfigError, match="deadline"):
        OutboundWebhookAction(target="t", method="POST", url="http://e.com", body={}, deadline=float("nan"))
