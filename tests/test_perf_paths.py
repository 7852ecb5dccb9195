"""Behaviour of the primitives rewritten for speed (benchmarks/README.md explains why).

The scheduler and the transport receive queues time out through one re-armed
timer (``converge._deadline.DeadlineTimer``) instead of ``asyncio.timeout`` per
wait; these tests pin the observable contract: wake-ups, timeouts, coalescing,
several waiters, cancellation, and no lost items.
"""

from __future__ import annotations

import asyncio

import pytest

from converge._deadline import DeadlineTimer
from converge.runtime.scheduler import Scheduler


async def test_deadline_timer_resolves_each_future_at_its_own_deadline() -> None:
    loop = asyncio.get_running_loop()
    timer = DeadlineTimer()
    late, early = loop.create_future(), loop.create_future()
    now = loop.time()
    timer.watch(late, now + 0.08)
    timer.watch(early, now + 0.02)  # earlier than the armed handle: re-arms it
    assert await early is False
    assert not late.done()
    assert await late is False
    assert loop.time() >= now + 0.08


async def test_deadline_timer_leaves_completed_and_forgotten_futures_alone() -> None:
    loop = asyncio.get_running_loop()
    timer = DeadlineTimer()
    done, forgotten = loop.create_future(), loop.create_future()
    timer.watch(done, loop.time() + 0.01)
    timer.watch(forgotten, loop.time() + 0.01)
    done.set_result(True)
    timer.forget(forgotten)
    await asyncio.sleep(0.03)
    assert done.result() is True
    assert not forgotten.done()
    timer.cancel()


async def test_scheduler_notify_before_wait_returns_at_once_and_coalesces() -> None:
    s = Scheduler()
    s.notify()
    s.notify()
    assert s.pending
    assert await s.wait_for_work(timeout=5) is True
    assert not s.pending
    assert await s.wait_for_work(timeout=0.01) is False


async def test_scheduler_times_out_and_wakes_on_notify() -> None:
    s = Scheduler()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await s.wait_for_work(timeout=0.03) is False
    assert loop.time() - t0 >= 0.03
    loop.call_later(0.01, s.notify)
    assert await s.wait_for_work(timeout=10) is True
    assert await s.wait_for_work(timeout=0) is False


async def test_scheduler_short_wait_after_long_wait_still_times_out() -> None:
    s = Scheduler()
    long_wait = asyncio.create_task(s.wait_for_work(timeout=10))
    await asyncio.sleep(0)
    assert await s.wait_for_work(timeout=0.02) is False  # re-arms the shared timer earlier
    assert not long_wait.done()
    s.notify()
    assert await long_wait is True


async def test_scheduler_wakes_every_waiter_and_survives_cancellation() -> None:
    s = Scheduler()
    waiters = [asyncio.create_task(s.wait_for_work(timeout=10)) for _ in range(3)]
    cancelled = asyncio.create_task(s.wait_for_work(timeout=10))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    s.notify()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert not s.pending  # the one notification was consumed


async def test_receive_queue_times_out_then_delivers_everything_in_order() -> None:
    from converge.network.transport._queue import ReceiveQueue

    q: ReceiveQueue[int] = ReceiveQueue()
    with pytest.raises(TimeoutError):
        await q.get_within(0.02)
    with pytest.raises(TimeoutError):
        await q.get_within(0)
    asyncio.get_running_loop().call_later(0.01, q.put_nowait, 1)
    assert await q.get_within(5) == 1
    q.put_nowait(2)
    q.put_nowait(3)
    assert [await q.get_within(0.01), await q.get_within(None)] == [2, 3]
    assert q.empty() and not q._getters  # no getter left behind by the timeouts


async def test_receive_queue_item_put_as_a_getter_times_out_is_not_lost() -> None:
    from converge.network.transport._queue import ReceiveQueue

    q: ReceiveQueue[str] = ReceiveQueue()
    short = asyncio.create_task(q.get_within(0.02))
    patient = asyncio.create_task(q.get_within(5))
    await asyncio.sleep(0.05)
    assert isinstance(short.exception(), TimeoutError)
    q.put_nowait("kept")
    assert await patient == "kept"


async def test_receive_queue_cancelled_getter_passes_the_item_on() -> None:
    from converge.network.transport._queue import ReceiveQueue

    q: ReceiveQueue[str] = ReceiveQueue()
    first = asyncio.create_task(q.get_within(5))
    second = asyncio.create_task(q.get_within(5))
    await asyncio.sleep(0)
    q.put_nowait("x")
    first.cancel()  # woken but cancelled before it ran: the item must reach the other getter
    assert await second == "x"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_local_and_tcp_receive_time_out_and_receive() -> None:
    from converge.core.message import Message
    from converge.network.transport.local import LocalTransport, LocalTransportRegistry
    from converge.network.transport.tcp import TcpTransport

    reg = LocalTransportRegistry.isolated()
    async with LocalTransport("a", registry=reg) as a, LocalTransport("b", registry=reg) as b:
        with pytest.raises(TimeoutError):
            await b.receive(timeout=0.01)
        await a.send(Message(sender="a", recipient="b", payload={"n": 1}))
        assert (await b.receive(timeout=1)).payload == {"n": 1}
    async with TcpTransport("127.0.0.1", 0, "a") as ta, TcpTransport("127.0.0.1", 0, "b") as tb:
        with pytest.raises(TimeoutError):
            await tb.receive(timeout=0.01)
        await ta.send(Message(sender="a", topics=[tb.address_topic], payload={"n": 2}))
        assert (await tb.receive(timeout=5)).payload == {"n": 2}


async def test_zero_scheduler_timeout_does_not_starve_the_event_loop() -> None:
    from converge.core.agent import Agent
    from converge.core.identity import Identity
    from converge.network.transport.local import LocalTransport, LocalTransportRegistry
    from converge.runtime import AgentRuntime

    agent = Agent(Identity.generate())
    rt = AgentRuntime(agent, LocalTransport(agent.id, registry=LocalTransportRegistry.isolated()),
                      scheduler_timeout_sec=0.0)
    async with rt:
        async with asyncio.timeout(5):
            await asyncio.sleep(0.01)  # returns only if the idle loop yields
        assert rt.step_count > 0


async def test_zero_timeout_wait_still_sees_a_notification() -> None:
    s = Scheduler()
    asyncio.get_running_loop().call_soon(s.notify)
    assert await s.wait_for_work(timeout=0) is True  # the yield let the notify in
    assert await s.wait_for_work(timeout=0) is False


async def test_inbox_try_push_respects_maxsize_and_counts() -> None:
    from converge.runtime.inbox import Inbox

    inbox = Inbox(maxsize=2)
    assert inbox.try_push("a") and inbox.try_push("b")
    assert not inbox.try_push("c")  # full: nothing done, the caller takes the waiting/dropping path
    assert inbox.accepted == 2 and inbox.dropped == 0
    assert inbox.poll(10) == ["a", "b"]


async def test_listener_fast_path_keeps_order_and_full_inbox_still_drops_and_counts() -> None:
    from converge.core.agent import Agent
    from converge.core.identity import Identity
    from converge.core.message import Message
    from converge.network.transport.local import LocalTransport, LocalTransportRegistry
    from converge.observability.metrics import MetricsCollector
    from converge.runtime import AgentRuntime

    reg = LocalTransportRegistry.isolated()
    agent = Agent(Identity.generate())
    rt = AgentRuntime(agent, LocalTransport(agent.id, registry=reg), manual=True,
                      inbox_kwargs={"maxsize": 3, "drop_when_full": True})
    async with LocalTransport("peer", registry=reg) as peer, rt:
        for i in range(5):
            await peer.send(Message(sender="peer", recipient=agent.id, payload={"i": i}))
        async with asyncio.timeout(5):
            while rt.inbox.accepted + rt.inbox.dropped < 5:
                await asyncio.sleep(0.001)
        assert [m.payload["i"] for m in rt.inbox.peek()] == [0, 1, 2]
        assert rt.inbox.dropped == 2
    mc = MetricsCollector()
    rt2 = AgentRuntime(agent, LocalTransport(agent.id, registry=reg), manual=True, metrics_collector=mc)
    async with LocalTransport("peer", registry=reg) as peer, rt2:
        await peer.send(Message(sender="peer", recipient=agent.id, payload={}))
        async with asyncio.timeout(5):
            while not len(rt2.inbox):
                await asyncio.sleep(0.001)
    assert mc.get_counter("messages_received") == 1  # observed messages take the full deliver() path


@pytest.mark.parametrize("cap, expected", [(None, 150), (100, 100), (7, 7)])
async def test_runtime_shows_at_most_max_visible_tasks_highest_priority_first(cap: int | None, expected: int) -> None:
    from converge.coordination.pool_manager import PoolManager
    from converge.coordination.task_manager import TaskManager
    from converge.core.identity import Identity
    from converge.core.task import Task
    from converge.extensions.storage.memory import MemoryStore
    from converge.network.transport.local import LocalTransport, LocalTransportRegistry
    from converge.runtime import AgentRuntime
    from converge.testing.agents import ScriptedAgent

    store = MemoryStore()
    tasks = TaskManager(store)
    for i in range(150):
        tasks.submit(Task(id=f"t{i:03d}", priority=i % 10, objective={"i": i}))
    agent = ScriptedAgent([], Identity.generate())
    rt = AgentRuntime(agent, LocalTransport(agent.id, registry=LocalTransportRegistry.isolated()),
                      pool_manager=PoolManager(store), task_manager=tasks, manual=True, max_visible_tasks=cap)
    async with rt:
        record = await rt.step()
    assert len(record.tasks) == expected
    priorities = [t.priority for t in record.tasks]
    assert priorities == sorted(priorities, reverse=True) and priorities[0] == 9


def test_max_visible_tasks_must_be_positive() -> None:
    from converge.core.agent import Agent
    from converge.core.identity import Identity
    from converge.network.transport.local import LocalTransport, LocalTransportRegistry
    from converge.runtime import AgentRuntime

    agent = Agent(Identity.generate())
    with pytest.raises(ValueError, match="max_visible_tasks"):
        AgentRuntime(agent, LocalTransport(agent.id, registry=LocalTransportRegistry.isolated()), max_visible_tasks=0)


@pytest.fixture
def restore_backend():  # type: ignore[no-untyped-def]
    from converge.core import identity

    yield identity
    identity._use_backend(None)


def test_both_ed25519_backends_make_the_same_signatures_and_verify_each_other(restore_backend) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("nacl")
    from converge.core.identity import Identity, verify_signature
    from converge.core.message import Message

    seed = Identity.generate().private_key
    assert seed is not None
    signed = {}
    for name in ("cryptography", "pynacl"):
        assert restore_backend._use_backend(name) == name == restore_backend.ed25519_backend()
        ident = Identity.from_private_key(seed)
        signed[name] = Message(sender=ident.fingerprint, payload={"b": 2, "a": [1, {"z": 0, "y": None}]}, timestamp=1, id="m").sign(ident)
    assert signed["cryptography"].signature == signed["pynacl"].signature
    for name in ("cryptography", "pynacl"):
        restore_backend._use_backend(name)
        msg = signed["pynacl" if name == "cryptography" else "cryptography"]
        assert msg.verify(Identity.from_private_key(seed).public_key)
        tampered = Message(msg.id, msg.sender, msg.recipient, msg.topics, {"b": 3}, msg.task_id, msg.timestamp, msg.signature)
        assert not tampered.verify(Identity.from_private_key(seed).public_key)
        assert not verify_signature(b"\x00" * 31, msg.signature, b"x")
        assert not verify_signature(Identity.generate().public_key, msg.signature[:63], b"x")


def test_backend_choice_falls_back_without_pynacl_and_rejects_unknown_names(restore_backend, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sys

    from converge.core.identity import Identity
    from converge.errors import ConfigError, MissingExtraError

    monkeypatch.setitem(sys.modules, "nacl.bindings", None)  # as if PyNaCl were not installed
    assert restore_backend._use_backend("auto") == "cryptography"
    ident = Identity.generate()
    assert ident.verify(b"data", ident.sign(b"data"))
    with pytest.raises(MissingExtraError, match="fast-crypto"):
        restore_backend._use_backend("pynacl")
    monkeypatch.setenv("CONVERGE_ED25519_BACKEND", "openssl")
    with pytest.raises(ConfigError, match="CONVERGE_ED25519_BACKEND"):
        restore_backend._use_backend(None)
