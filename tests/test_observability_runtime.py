"""Observability wired into a real AgentRuntime: Prometheus after a run, /metrics during a run,
spans from runtimes started before the exporter, record-then-replay gives the same decisions."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from converge.core.decisions import SendMessage
from converge.core.identity import Identity
from converge.core.message import Message
from converge.errors import UndeliverableError
from converge.network.transport.local import LocalTransport, LocalTransportRegistry
from converge.observability import MetricsCollector, ReplayLog, ReplayRunner, RuntimeOpsServer
from converge.observability.tracing import InMemorySpanExporter, register_span_exporter, reset_span_exporters
from converge.runtime import AgentRuntime
from converge.testing.agents import FunctionAgent
from conftest import eventually as wait_for


@pytest.fixture
def registry():
    return LocalTransportRegistry.isolated()


@pytest.fixture(autouse=True)
def _no_exporters():
    reset_span_exporters()
    yield
    reset_span_exporters()


def doubler(agent, messages, tasks):
    """Deterministic per message, so decisions do not depend on how messages were batched."""
    return [
        SendMessage(Message(id=f"re-{m.id}", recipient=m.sender, payload={"n": m.payload["n"] * 2}, timestamp=0))
        for m in messages if "n" in m.payload
    ]


def runtime_for(agent, registry, **kw):
    return AgentRuntime(agent, LocalTransport(agent.id, registry=registry), receive_timeout_sec=0.2,
                        scheduler_timeout_sec=0.05, **kw)




def scrape(url: str, path: str) -> tuple[int, str, str]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read().decode()
    finally:
        conn.close()


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


class Peer:
    """A registered sender: an identity with a started LocalTransport, so replies reach it."""

    def __init__(self, registry) -> None:
        self.identity = Identity.generate()
        self.transport = LocalTransport(self.identity.fingerprint, registry=registry)

    async def __aenter__(self) -> Peer:
        await self.transport.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.transport.stop()


async def send_numbers(registry, target_id: str, sender: Identity, count: int) -> list[Message]:
    msgs = [Message(recipient=target_id, payload={"n": i}, timestamp=1000 + i).sign(sender) for i in range(count)]
    for m in msgs:
        registry.get_queue(target_id).put_nowait(m)
    return msgs


async def test_prometheus_output_contains_runtime_counters_and_drop_counters(registry):
    metrics = MetricsCollector()
    worker = FunctionAgent(doubler)
    client = FunctionAgent(lambda a, m, t: [])
    rw = runtime_for(worker, registry, metrics_collector=metrics, inbox_kwargs={"maxsize": 2, "drop_when_full": True})
    rc = runtime_for(client, registry, metrics_collector=metrics)
    async with rc:
        async with rw:
            rw.pause()  # let the inbox fill up so it has to drop
            await send_numbers(registry, worker.id, client.identity, 5)
            await wait_for(lambda: metrics.get_counter("inbox_dropped_total") == 3)
            rw.resume()
            await wait_for(lambda: len(rc.inbox) + sum(len(r.messages) for r in rc.history) == 2)
            # a message to an unknown agent is undeliverable: raised, logged and counted, not silent
            with pytest.raises(UndeliverableError):
                await rw.transport.send(Message(recipient="nobody", payload={}))
    text = metrics.format_prometheus()
    fams = families(text)
    assert fams["messages_received"].samples[0].value >= 4  # 2 accepted by the worker, 2 replies
    assert fams["messages_sent"].samples[0].value == 2
    assert fams["runtime_steps"].samples[0].value >= 1
    assert fams["inbox_dropped"].samples[0].value == 3
    drops = {s.labels["reason"]: s.value for s in fams["transport_dropped"].samples}
    assert drops["unknown_recipient"] >= 1
    step_hist = fams["runtime_step_seconds"]
    assert step_hist.type == "histogram"
    assert any(s.name == "runtime_step_seconds_count" and s.value >= 1 for s in step_hist.samples)
    assert "# HELP inbox_dropped_total Inbound messages dropped because the inbox was full." in text


async def test_metrics_scraped_over_http_during_a_run(registry):
    before = set(threading.enumerate())
    metrics = MetricsCollector()
    worker = FunctionAgent(doubler)
    rt = runtime_for(worker, registry, metrics_collector=metrics)
    rt.ops_server = RuntimeOpsServer(rt, metrics)
    async with Peer(registry) as peer, rt:
        sender = peer.identity
        url = rt.ops_server.url
        status, ctype, body = await asyncio.to_thread(scrape, url, "/health")
        assert status == 200 and ctype == "application/json"
        assert (await asyncio.to_thread(scrape, url, "/ready"))[0] == 200
        await send_numbers(registry, worker.id, sender, 3)
        await wait_for(lambda: metrics.get_counter("messages_sent") == 3)
        status, ctype, body = await asyncio.to_thread(scrape, url, "/metrics")
        assert status == 200 and ctype == "text/plain; version=0.0.4; charset=utf-8"
        fams = families(body)
        assert fams["messages_received"].samples[0].value == 3
        assert fams["messages_sent"].samples[0].value == 3
        assert fams["runtime_steps"].samples[0].value >= 1
        assert peer.transport.queue.qsize() == 3
    assert rt.ops_server.url is None
    leaked = {t for t in set(threading.enumerate()) - before if t.is_alive() and not t.name.startswith("asyncio")}
    assert leaked == set()


async def test_spans_from_a_runtime_started_before_the_exporter(registry):
    worker = FunctionAgent(doubler)
    rt = runtime_for(worker, registry)
    async with rt:
        exporter = InMemorySpanExporter()
        register_span_exporter(exporter)  # after start: the loop task must still see it
        await send_numbers(registry, worker.id, Identity.generate(), 1)
        await wait_for(lambda: exporter.by_name("executor.execute"))
    step = next(s for s in exporter.by_name("runtime.step") if any(c.parent_id == s.span_id for c in exporter.spans))
    children = {s.name: s for s in exporter.spans if s.parent_id == step.span_id}
    assert {"agent.decide", "executor.execute"} <= set(children)
    assert all(c.trace_id == step.trace_id for c in children.values())
    assert step.attributes == {"agent_id": worker.id}
    assert step.duration_sec >= children["agent.decide"].duration_sec


async def test_replay_log_recorded_in_one_run_reproduces_decisions(registry, tmp_path):
    path = tmp_path / "run.jsonl"
    log = ReplayLog(path)
    worker = FunctionAgent(doubler)
    rt = runtime_for(worker, registry, replay_log=log)
    async with Peer(registry) as peer:
        async with rt:
            sent = await send_numbers(registry, worker.id, peer.identity, 6)
            await wait_for(lambda: sum(len(r.messages) for r in rt.history) == 6)
        log.close()
        live = [d for r in rt.history for d in r.proposed]
        assert len(live) == 6 and peer.transport.queue.qsize() == 6

        recorded = ReplayLog.from_file(path)
        inbound = recorded.messages(direction="inbound", agent_id=worker.id)
        assert [m.id for m in inbound] == [m.id for m in sent]
        assert all(m.verify(peer.identity.public_key) for m in inbound)  # signatures survived the file
        outbound = recorded.messages(direction="outbound", agent_id=worker.id)
        assert len(outbound) == 6 and all(m.verify(worker.identity.public_key) for m in outbound)

        fresh = FunctionAgent(doubler)
        replayed = await ReplayRunner(recorded).replay_into_agent(fresh, agent_id=worker.id)
        assert replayed == live

        # and through a fresh runtime's inbox, stepping manually
        other = FunctionAgent(doubler)
        rt2 = runtime_for(other, registry, manual=True)
        async with rt2:
            await ReplayRunner(recorded).replay(inbox=rt2.inbox, direction="inbound", agent_id=worker.id)
            rec = await rt2.step()
        assert list(rec.proposed) == live
        assert [o.status for o in rec.outcomes] == ["ok"] * 6
