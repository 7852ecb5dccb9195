"""AgentRuntime: the step engine, manual mode, hooks, errors, fallback mode, lifecycle."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from converge.core.agent import Agent
from converge.core.decisions import ClaimTask, JoinPool, SendMessage, SubmitTask
from converge.core.identity import Identity
from converge.core.message import Message
from converge.core.task import Task
from converge.extensions.storage.memory import MemoryStore
from converge.network.discovery import DiscoveryService
from converge.network.transport.local import LocalTransport, LocalTransportRegistry
from converge.observability.metrics import MetricsCollector
from converge.runtime import AgentRuntime, Inbox, StepRecord
from converge.testing.agents import EchoAgent, FunctionAgent
from conftest import eventually as wait_for


@pytest.fixture
def registry():
    return LocalTransportRegistry.isolated()


def make_runtime(agent, registry, **kw):
    return AgentRuntime(agent, LocalTransport(agent.id, registry=registry), receive_timeout_sec=0.5, **kw)




def inject(registry, target_id, payload, sender=None):
    """Put a message signed by ``sender`` into ``target_id``'s queue as the transport would."""
    sender = sender or Identity.generate()
    msg = Message(recipient=target_id, payload=payload).sign(sender)
    registry.get_queue(target_id).put_nowait(msg)
    return msg


async def test_manual_step_runs_exactly_one_iteration(registry):
    agent = FunctionAgent(lambda a, m, t: [])
    rt = make_runtime(agent, registry, manual=True)
    async with rt:
        for i in range(3):
            inject(registry, agent.id, {"i": i})
        await wait_for(lambda: len(rt.inbox) == 3)
        await asyncio.sleep(0.05)
        assert agent.calls == []  # manual: the listener fills the inbox, nobody decides
        rec = await rt.step()
        assert isinstance(rec, StepRecord)
        assert rec.step == 1 and not rec.idle
        assert [m.payload["i"] for m in rec.messages] == [0, 1, 2]
        assert len(agent.calls) == 1
        idle = await rt.step()
        assert idle.idle and idle.step == 2 and len(agent.calls) == 1
        with pytest.raises(AttributeError):
            rec.step = 5  # frozen


async def test_records_decisions_outcomes_and_signs_outgoing(registry):
    a = FunctionAgent(lambda ag, m, t: [SendMessage(Message(recipient=b.id, payload={"hi": 1}))] if m else [])
    b = FunctionAgent(lambda ag, m, t: [])
    ra, rb = make_runtime(a, registry, manual=True), make_runtime(b, registry, manual=True)
    async with ra, rb:
        inject(registry, a.id, {"go": True})
        await wait_for(lambda: len(ra.inbox) == 1)
        rec = await ra.step()
        assert [o.status for o in rec.outcomes] == ["ok"]
        sent = rec.decisions[0].message
        assert sent.sender == a.id and sent.verify(a.identity.public_key)
        await wait_for(lambda: len(rb.inbox) == 1)
        got = (await rb.step()).messages[0]
        assert got.payload == {"hi": 1} and got.verify(a.identity.public_key)


async def test_fallback_mode_sends_messages_and_reports_ignored(registry):
    peer = FunctionAgent(lambda ag, m, t: [])
    a = FunctionAgent(lambda ag, m, t: [Message(recipient=peer.id, payload={"raw": 1}), JoinPool("p1")] if m else [])
    ra, rp = make_runtime(a, registry, manual=True), make_runtime(peer, registry, manual=True)
    async with ra, rp:
        assert ra.fallback_mode
        inject(registry, a.id, {})
        await wait_for(lambda: len(ra.inbox) == 1)
        rec = await ra.step()
        statuses = {type(o.decision).__name__: (o.status, o.detail) for o in rec.outcomes}
        assert statuses["Message"][0] == "ok"
        assert statuses["JoinPool"] == ("ignored", "no pool manager configured")
        await wait_for(lambda: len(rp.inbox) == 1)
        assert rp.inbox.peek()[0].verify(a.identity.public_key)


async def test_decide_error_is_recorded_and_runtime_keeps_serving(registry):
    calls = []

    def decide(agent, messages, tasks):
        calls.append(len(messages))
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return []

    metrics = MetricsCollector()
    errors = []

    class ErrHook:
        def on_error(self, ctx):
            errors.append((ctx.phase, str(ctx.error)))

    agent = FunctionAgent(decide)
    rt = make_runtime(agent, registry, metrics_collector=metrics, runtime_hooks=[ErrHook()])
    async with rt:
        inject(registry, agent.id, {"n": 1})
        await wait_for(lambda: len(rt.history) >= 1 and not rt.history[-1].idle)
        first = [r for r in rt.history if not r.idle][0]
        assert first.error == "RuntimeError: model exploded" and first.error_phase == "decide"
        inject(registry, agent.id, {"n": 2})
        await wait_for(lambda: len(calls) == 2)
        await wait_for(lambda: any(r.error is None and not r.idle for r in rt.history))
    assert errors == [("decide", "model exploded")]
    assert metrics.get_counter("runtime_step_errors_total") == 1
    assert rt.recent_errors and rt.recent_errors[0][1] == "decide"


async def test_sync_decide_runs_in_a_worker_thread(registry):
    seen = []

    class SyncAgent(Agent):
        def decide(self, messages, tasks, **kw):
            seen.append(threading.get_ident())
            return []

    agent = SyncAgent(Identity.generate())
    rt = make_runtime(agent, registry, manual=True)
    async with rt:
        inject(registry, agent.id, {})
        await wait_for(lambda: len(rt.inbox) == 1)
        await rt.step()
    assert seen and seen[0] != threading.get_ident()


async def test_fifteen_messages_during_slow_decide_are_all_handled_quickly(registry):
    handled = []

    async def slow(agent, messages, tasks):
        handled.extend(m.payload["i"] for m in messages)
        if len(handled) == 1:
            await asyncio.sleep(0.2)
        return []

    agent = FunctionAgent(slow)
    rt = make_runtime(agent, registry)
    async with rt:
        inject(registry, agent.id, {"i": 0})
        await wait_for(lambda: handled == [0])
        t0 = time.monotonic()
        for i in range(1, 16):
            inject(registry, agent.id, {"i": i})
        await wait_for(lambda: len(handled) == 16, timeout=2.0)
        elapsed = time.monotonic() - t0
    assert handled == list(range(16))
    # two batches (10 + 5) right after the slow decide; no scheduler timeout (1 s) in between
    assert elapsed < 0.9, elapsed


async def test_hooks_observe_hold_and_replace_decisions(registry):
    peer = FunctionAgent(lambda ag, m, t: [])
    original = SendMessage(Message(recipient="nobody", payload={"x": 1}))
    agent = FunctionAgent(lambda ag, m, t: [original] if m else [])
    gate = asyncio.Event()
    phases = []

    class Hook:
        def on_message_received(self, ctx):
            phases.append("received")

        async def before_decide(self, ctx):
            phases.append("before_decide")
            await gate.wait()

        def after_decide(self, ctx):
            phases.append("after_decide")
            return [SendMessage(Message(recipient=peer.id, payload={"edited": True}))]

        def before_execute(self, ctx):
            phases.append("before_execute")

        def after_execute(self, ctx):
            phases.append(("after_execute", [o.status for o in ctx.outcomes]))

        def on_step(self, record):
            phases.append("on_step")

    rt = make_runtime(agent, registry, runtime_hooks=[Hook()])
    rp = make_runtime(peer, registry, manual=True)
    async with rt, rp:
        inject(registry, agent.id, {})
        await wait_for(lambda: "before_decide" in phases)
        await asyncio.sleep(0.05)
        assert agent.calls == []  # held
        gate.set()
        await wait_for(lambda: "on_step" in phases)
        await wait_for(lambda: len(rp.inbox) == 1)
        assert rp.inbox.peek()[0].payload == {"edited": True}
    rec = [r for r in rt.history if not r.idle][0]
    assert rec.proposed == (original,)
    assert [o.status for o in rec.outcomes] == ["dropped", "ok"]
    assert phases == ["received", "before_decide", "after_decide", "before_execute", ("after_execute", ["ok"]), "on_step"]


async def test_stop_during_a_held_hook_is_clean(registry):
    held = asyncio.Event()

    class Hold:
        async def before_execute(self, ctx):
            held.set()
            await asyncio.Event().wait()  # never released

    agent = FunctionAgent(lambda ag, m, t: [Message(recipient=ag.id)] if m else [])
    rt = make_runtime(agent, registry, runtime_hooks=[Hold()])
    await rt.start()
    inject(registry, agent.id, {})
    await asyncio.wait_for(held.wait(), 2)
    await asyncio.wait_for(rt.stop(), 2)
    await rt.stop()  # idempotent
    assert not rt.running
    leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and "converge" in t.get_name()]
    assert leftovers == []


async def test_hook_exception_is_recorded_not_raised(registry):
    class Bad:
        def after_decide(self, ctx):
            raise ValueError("bad hook")

    agent = FunctionAgent(lambda ag, m, t: [Message(recipient=ag.id)] if m else [])
    rt = make_runtime(agent, registry, manual=True, runtime_hooks=[Bad()])
    async with rt:
        inject(registry, agent.id, {})
        await wait_for(lambda: len(rt.inbox) == 1)
        rec = await rt.step()
    assert rec.error == "ValueError: bad hook" and rec.error_phase == "hook:after_decide"
    assert rec.decisions == ()


async def test_discovery_registration_on_start_and_stop(registry):
    store = MemoryStore()
    discovery = DiscoveryService(store=store)
    agent = FunctionAgent(lambda *a: [], capabilities=["search"])
    rt = make_runtime(agent, registry, discovery_service=discovery)
    await rt.start()
    assert agent.id in discovery.descriptors
    assert store.get(f"discovery:agent:{agent.id}")["public_key"]
    await rt.stop()
    assert agent.id not in discovery.descriptors
    assert store.get(f"discovery:agent:{agent.id}") is None


async def test_stop_before_start_does_nothing(registry):
    stopped = []

    class A(FunctionAgent):
        def on_stop(self):
            stopped.append(True)

    rt = make_runtime(A(lambda *a: []), registry)
    await rt.stop()
    assert stopped == []


async def test_inbox_drop_when_full_counts_and_keeps_stepping(registry):
    metrics = MetricsCollector()
    agent = FunctionAgent(lambda ag, m, t: [])
    rt = make_runtime(agent, registry, manual=True, inbox_kwargs={"maxsize": 5, "drop_when_full": True},
                      metrics_collector=metrics)
    async with rt:
        for i in range(50):
            inject(registry, agent.id, {"i": i})
        await wait_for(lambda: rt.inbox.dropped == 45)
        rec = await rt.step()
    assert [m.payload["i"] for m in rec.messages] == [0, 1, 2, 3, 4]
    assert metrics.get_counter("inbox_dropped_total") == 45


async def test_inbox_without_drop_applies_backpressure():
    inbox = Inbox(maxsize=1)
    await inbox.push("a")
    pending = asyncio.create_task(inbox.push("b"))
    await asyncio.sleep(0.01)
    assert not pending.done()
    assert inbox.poll() == ["a"]
    await asyncio.wait_for(pending, 1)
    assert inbox.poll() == ["b"]


async def test_pause_and_resume(registry):
    agent = FunctionAgent(lambda ag, m, t: [])
    rt = make_runtime(agent, registry)
    async with rt:
        rt.pause()
        inject(registry, agent.id, {})
        await wait_for(lambda: len(rt.inbox) == 1)
        await asyncio.sleep(0.05)
        assert agent.calls == []
        rt.resume()
        await wait_for(lambda: len(agent.calls) == 1)


async def test_echo_ping_pong_between_running_runtimes(registry):
    a, b = EchoAgent(limit=5), EchoAgent(limit=5)
    ra, rb = make_runtime(a, registry), make_runtime(b, registry)
    async with ra, rb:
        registry.get_queue(a.id).put_nowait(Message(sender=b.id, recipient=a.id, payload={"n": 0}).sign(b.identity))
        await wait_for(lambda: a.replies == 5 and b.replies == 5)


async def test_errors_an_agent_reports_instead_of_raising_are_on_the_record(registry):
    class Reporting(FunctionAgent):
        def drain_errors(self):
            return [ValueError("model said nonsense")] if self.calls and len(self.calls) == 1 else []

    agent = Reporting(lambda ag, m, t: [])
    rt = make_runtime(agent, registry, manual=True)
    async with rt:
        inject(registry, agent.id, {})
        await wait_for(lambda: len(rt.inbox) == 1)
        rec = await rt.step()
    assert rec.error == "ValueError: model said nonsense" and rec.error_phase == "decide:output"


async def test_local_messages_go_straight_to_an_idle_inbox_and_keep_order_when_full(registry):
    agent = FunctionAgent(lambda ag, m, t: [])
    rt = make_runtime(agent, registry, manual=True, inbox_kwargs={"maxsize": 2})
    sender_id = Identity.generate()
    async with rt:
        queue = rt.transport.queue
        assert queue.sink is not None  # installed on start
        for i in range(5):  # 2 fit in the inbox directly, 3 wait in the transport queue (the listener blocks on push)
            registry.get_queue(agent.id).put_nowait(Message(recipient=agent.id, payload={"i": i}).sign(sender_id))
        assert [m.payload["i"] for m in rt.inbox.peek()] == [0, 1]
        got = []
        for _ in range(5):
            rec = await rt.step()
            got += [m.payload["i"] for m in rec.messages]
            await asyncio.sleep(0.01)
            if len(got) == 5:
                break
        assert got == [0, 1, 2, 3, 4]
    assert queue.sink is None  # removed on stop


async def test_no_direct_delivery_when_a_hook_watches_arrivals(registry):
    seen = []

    class Watch:
        def on_message_received(self, ctx):
            seen.append(ctx.message.payload)

    agent = FunctionAgent(lambda ag, m, t: [])
    rt = make_runtime(agent, registry, manual=True, runtime_hooks=[Watch()])
    async with rt:
        inject(registry, agent.id, {"x": 1})
        await wait_for(lambda: len(rt.inbox) == 1)
    assert seen == [{"x": 1}]
