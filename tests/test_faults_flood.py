"""Inbox flood at 10x capacity with ``drop_when_full``: memory stays bounded, drops are counted, the agent keeps stepping."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from converge.core.agent import Agent
from converge.core.identity import Identity
from converge.core.message import Message
from converge.network.transport import LocalTransport, LocalTransportRegistry
from converge.network.transport.tcp import TcpTransport, tcp_topic
from converge.observability.metrics import MetricsCollector
from converge.runtime import AgentRuntime

CAPACITY = 50
FLOOD = 10 * CAPACITY
HISTORY, BATCH = 4, 10


@pytest.fixture(autouse=True)
async def no_leaked_tasks():
    yield
    await asyncio.sleep(0)
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []


class InboxWatch:
    """A runtime hook that records the largest inbox seen as messages arrive and steps run."""

    def __init__(self) -> None:
        self.max_inbox = 0
        self.steps_during_flood = 0
        self.flooding = True

    def on_message_received(self, ctx) -> None:
        self.max_inbox = max(self.max_inbox, len(ctx.runtime.inbox))

    def on_step(self, record) -> None:
        if self.flooding and not record.idle:
            self.steps_during_flood += 1


class SlowAgent(Agent):
    """Thinks 2 ms per step (the flood outpaces it) and keeps only the ids it saw (no message objects)."""

    def __init__(self) -> None:
        super().__init__(Identity.generate())
        self.seen: list[str] = []

    async def adecide(self, messages, tasks, **kwargs):
        self.seen.extend(m.payload["n"] for m in messages)
        await asyncio.sleep(0.002)
        return []


async def _local_pair():
    registry = LocalTransportRegistry.isolated()
    receiver = LocalTransport("receiver", registry=registry)
    sender = LocalTransport("sender", registry=registry)
    await sender.start()
    return receiver, sender, lambda payload: Message(recipient="receiver", payload=payload)


async def _tcp_pair():
    receiver = TcpTransport("127.0.0.1", 0, "receiver")
    sender = TcpTransport("127.0.0.1", 0, "sender")
    await sender.start()
    return receiver, sender, lambda payload: Message(topics=[tcp_topic("127.0.0.1", receiver.port)], payload=payload)


@pytest.mark.parametrize("pair", [_local_pair, _tcp_pair], ids=["local", "tcp"])
async def test_flood_at_ten_times_capacity(pair):
    mc = MetricsCollector()
    agent = SlowAgent()
    seen = agent.seen
    transport, sender, make = await pair()
    watch = InboxWatch()
    runtime = AgentRuntime(agent, transport, metrics_collector=mc, inbox_kwargs={"maxsize": CAPACITY, "drop_when_full": True},
                           runtime_hooks=[watch], history_size=HISTORY, batch_size=BATCH, receive_timeout_sec=0.2,
                           scheduler_timeout_sec=0.05)
    alive: list[weakref.ref] = []
    await runtime.start()
    try:
        for burst in range(FLOOD // 25):
            for i in range(25):
                m = make({"n": f"{burst}-{i}", "pad": "x" * 2000})
                alive.append(weakref.ref(m))
                await sender.send(m)
                del m
            await asyncio.sleep(0.001)  # bursts over >= 20 ms, so steps (2 ms each) interleave with the flood
        async with asyncio.timeout(10):
            while runtime.inbox.accepted + runtime.inbox.dropped < FLOOD:
                await asyncio.sleep(0.01)
        watch.flooding = False
        async with asyncio.timeout(10):
            while len(seen) < runtime.inbox.accepted:
                await asyncio.sleep(0.01)
        steps_after = runtime.step_count
        assert runtime.is_healthy()
    finally:
        await runtime.stop()
        await sender.stop()

    inbox = runtime.inbox
    assert watch.max_inbox <= CAPACITY  # bounded at every arrival
    assert inbox.accepted + inbox.dropped == FLOOD and inbox.dropped > 0
    assert mc.get_counter("inbox_dropped_total") == inbox.dropped  # every drop is counted
    assert mc.get_counter("messages_received") == FLOOD
    assert len(seen) == inbox.accepted == len(set(seen))  # everything accepted was decided on, once
    assert watch.steps_during_flood >= 1 and steps_after > 1  # the agent kept stepping
    gc.collect()
    retained = sum(r() is not None for r in alive)
    # Only the step history (and the listener's last message) keep messages: memory does not grow with the flood.
    assert retained <= HISTORY * BATCH + 1
    print(f"flood {FLOOD} into capacity {CAPACITY}: accepted {inbox.accepted}, dropped {inbox.dropped}, "
          f"max inbox {watch.max_inbox}, steps during flood {watch.steps_during_flood}, retained {retained}")
