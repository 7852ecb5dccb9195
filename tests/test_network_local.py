"""LocalTransport and LocalTransportRegistry: routing, isolation, drops, taps, lifecycle."""

from __future__ import annotations

import asyncio

import pytest

from converge.core.agent import Agent
from converge.core.identity import Identity
from converge.core.message import Message
from converge.core.topic import Topic
from converge.errors import TransportError, UndeliverableError
from converge.network.transport import LocalTransport, LocalTransportRegistry, Transport
from converge.observability.metrics import MetricsCollector


pytestmark = pytest.mark.usefixtures("no_leaked_tasks")  # from conftest


@pytest.fixture
def registry():
    return LocalTransportRegistry.isolated()


@pytest.fixture
async def trio(registry):
    ts = [LocalTransport(name, registry=registry) for name in ("a", "b", "c")]
    for t in ts:
        await t.start()
    yield ts
    for t in ts:
        await t.stop()


async def test_recipient_routing_delivers_only_to_recipient(trio):
    a, b, c = trio
    msg = Message(sender="a", recipient="b", payload={"x": 1})
    assert await a.send(msg) == ["b"]
    assert await b.receive(timeout=1) is msg
    assert a.queue.empty() and b.queue.empty() and c.queue.empty()


async def test_recipient_may_be_the_sender_itself(trio):
    a, _, _ = trio
    await a.send(Message(sender="a", recipient="a"))
    assert (await a.receive(timeout=1)).recipient == "a"


async def test_unknown_recipient_raises_and_is_counted(registry, trio):
    a, _, _ = trio
    metrics = MetricsCollector()
    a.metrics_collector = metrics  # settable after construction
    seen, seen_on_registry = [], []
    a.add_drop_listener(lambda m, reason, detail: seen.append((m, reason, detail)))
    registry.add_drop_listener(lambda m, reason, detail: seen_on_registry.append(reason))
    msg = Message(sender="a", recipient="nobody")
    with pytest.raises(UndeliverableError, match="nobody"):
        await a.send(msg)
    assert a.drops["unknown_recipient"] == 1
    assert metrics.get_counter("transport_dropped_total", labels={"reason": "unknown_recipient"}) == 1
    assert seen[0][0] is msg and seen[0][1] == "unknown_recipient" and "nobody" in seen[0][2]
    assert seen_on_registry == ["unknown_recipient"]


async def test_topic_routing_reaches_subscribers_only(registry, trio):
    a, b, c = trio
    registry.subscribe("b", "market")
    registry.subscribe("a", "market")  # the sender is skipped even when subscribed
    msg = Message(sender="a", topics=[Topic("market", {"pair": "EURUSD"})])
    assert await a.send(msg) == ["b"]
    assert await b.receive(timeout=1) is msg
    assert a.queue.empty() and c.queue.empty()


async def test_topic_without_subscribers_falls_back_to_broadcast(trio):
    a, b, c = trio
    msg = Message(sender="a", topics=[Topic("nobody-listens")])
    assert sorted(await a.send(msg)) == ["b", "c"]
    assert await b.receive(timeout=1) is msg
    assert await c.receive(timeout=1) is msg
    assert a.queue.empty()


async def test_broadcast_reaches_everyone_but_the_sender(trio):
    a, b, c = trio
    msg = Message(sender="a", recipient="")  # empty recipient counts as none
    assert sorted(await a.send(msg)) == ["b", "c"]
    assert await b.receive(timeout=1) is msg and await c.receive(timeout=1) is msg
    assert a.queue.empty()


async def test_broadcast_to_nobody_is_counted_not_raised(registry):
    metrics = MetricsCollector()
    async with LocalTransport("alone", registry=registry, metrics_collector=metrics) as alone:
        assert await alone.send(Message(sender="alone")) == []
    assert alone.drops["no_route"] == 1
    assert metrics.get_counter("transport_dropped_total", labels={"reason": "no_route"}) == 1


async def test_isolated_registries_never_see_each_other():
    r1, r2 = LocalTransportRegistry.isolated(), LocalTransportRegistry.isolated()
    assert r1 is not r2
    a1, b1 = LocalTransport("a", registry=r1), LocalTransport("b", registry=r1)
    a2 = LocalTransport("a", registry=r2)
    for t in (a1, b1, a2):
        await t.start()
    try:
        await a1.send(Message(sender="a"))
        assert b1.queue.qsize() == 1
        assert a2.queue.empty()
        with pytest.raises(UndeliverableError):
            await a2.send(Message(sender="a", recipient="b"))
        assert r2.agents() == ["a"] and sorted(r1.agents()) == ["a", "b"]
    finally:
        for t in (a1, b1, a2):
            await t.stop()


async def test_default_registry_is_shared_and_resettable():
    LocalTransportRegistry.reset_default()
    try:
        default = LocalTransportRegistry()
        assert LocalTransportRegistry() is default is LocalTransportRegistry.default()
        t = LocalTransport("x")
        assert t.registry is default
        await t.start()
        assert default.agents() == ["x"]
        LocalTransportRegistry.reset_default()
        assert LocalTransportRegistry() is not default
        assert LocalTransportRegistry().agents() == []
        assert default.agents() == []  # the old default was cleared too
        await t.stop()
    finally:
        LocalTransportRegistry.reset_default()


async def test_tap_sees_every_successful_send(registry, trio):
    a, b, c = trio
    seen = []
    registry.add_tap(lambda m, delivered: seen.append((m.id, sorted(delivered))))
    m1 = Message(sender="a", recipient="b")
    m2 = Message(sender="b")
    await a.send(m1)
    await b.send(m2)
    with pytest.raises(UndeliverableError):
        await a.send(Message(sender="a", recipient="zz"))
    assert seen == [(m1.id, ["b"]), (m2.id, ["a", "c"])]


async def test_failing_tap_does_not_break_delivery(registry, trio, caplog):
    a, b, _ = trio

    def bad_tap(message, delivered):
        raise RuntimeError("tap is broken")

    registry.add_tap(bad_tap)
    await a.send(Message(sender="a", recipient="b"))
    assert b.queue.qsize() == 1
    assert "tap is broken" in caplog.text
    registry.remove_tap(bad_tap)
    caplog.clear()
    await a.send(Message(sender="a", recipient="b"))
    assert "tap is broken" not in caplog.text


async def test_for_agent_auto_subscribes_topics_across_restart(registry):
    agent = Agent(Identity.generate())
    agent.topics = [Topic("jobs", {"kind": "ocr"}), {"namespace": "alerts"}, "news"]
    sub = LocalTransport.for_agent(agent, registry=registry)
    pub = LocalTransport("pub", registry=registry)
    other = LocalTransport("other", registry=registry)
    for t in (sub, pub, other):
        await t.start()
    try:
        assert registry.topic_subscriptions[agent.id] == {"jobs", "alerts", "news"}
        await pub.send(Message(sender="pub", topics=[Topic("alerts")]))
        assert sub.queue.qsize() == 1 and other.queue.empty()
        await sub.stop()
        assert agent.id not in registry.topic_subscriptions  # stop drops subscriptions ...
        await sub.start()
        assert registry.get_subscribers_for_topics(["news"]) == {agent.id}  # ... start restores them
    finally:
        for t in (sub, pub, other):
            await t.stop()


async def test_registry_subscription_bookkeeping(registry):
    registry.subscribe("a", "t1")
    registry.subscribe("a", Topic("t2"))
    registry.subscribe("b", "t1")
    assert registry.get_subscribers_for_topics(["t1"]) == {"a", "b"}
    assert registry.auto_subscribe("c", [Topic("t3"), "t1"]) == ["t3", "t1"]
    registry.unsubscribe("a", "t1")
    registry.unsubscribe("nobody", "t1")  # no-op
    assert registry.get_subscribers_for_topics(["t1", "t2"]) == {"a", "b", "c"}
    registry.unregister("a")
    assert registry.get_subscribers_for_topics(["t2"]) == set()
    registry.clear()
    assert registry.get_subscribers_for_topics(["t1", "t3"]) == set()
    with pytest.raises(TypeError, match="namespace"):
        registry.subscribe("a", 42)


async def test_not_started_raises_runtime_error(registry):
    t = LocalTransport("a", registry=registry)
    with pytest.raises(RuntimeError, match="not started"):
        await t.send(Message())
    with pytest.raises(TransportError):
        await t.receive(timeout=0)


async def test_receive_timeout_raises_timeout_error(trio):
    a, _, _ = trio
    with pytest.raises(TimeoutError):
        await a.receive(timeout=0.01)
    with pytest.raises(TimeoutError):
        await a.receive(timeout=0)


async def test_blocking_receive_gets_a_later_message(trio):
    a, b, _ = trio
    waiter = asyncio.ensure_future(b.receive())
    await asyncio.sleep(0)
    msg = Message(sender="a", recipient="b")
    await a.send(msg)
    assert await waiter is msg


async def test_lifecycle_is_idempotent_and_context_managed(registry):
    t = LocalTransport("a", registry=registry)
    await t.stop()  # before start: fine
    async with t as same:
        assert same is t and t.started
        await t.start()  # twice: fine
        assert registry.agents() == ["a"]
    assert not t.started and registry.agents() == []
    await t.stop()
    assert isinstance(t, Transport)


async def test_stop_does_not_unregister_a_newer_transport_with_the_same_id(registry):
    old, new = LocalTransport("a", registry=registry), LocalTransport("a", registry=registry)
    await old.start()
    await new.start()
    await old.stop()
    assert registry.get_queue("a") is new.queue
    await new.stop()
