"""HookedTransport, MessageHook and verified receive (forged, tampered, unknown, unsigned)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from converge.core.identity import Identity
from converge.core.message import Message
from converge.errors import SignatureError, UndeliverableError
from converge.network.identity_registry import IdentityRegistry
from converge.network.transport import HookedTransport, LocalTransport, LocalTransportRegistry, MessageHook
from converge.network.transport.tcp import TcpTransport
from converge.observability.metrics import MetricsCollector


pytestmark = pytest.mark.usefixtures("no_leaked_tasks")  # from conftest


@pytest.fixture
async def pair():
    registry = LocalTransportRegistry.isolated()
    a, b = LocalTransport("a", registry=registry), LocalTransport("b", registry=registry)
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


class Stamp:
    """Adds a key to the payload on the way out and on the way in."""

    def __init__(self, key):
        self.key = key

    def pre_send(self, message):
        return dataclasses.replace(message, payload={**message.payload, self.key: "out"})

    def post_receive(self, message):
        return dataclasses.replace(message, payload={**message.payload, self.key: "in"})


class DropIf:
    def __init__(self, key):
        self.key = key
        self.seen = []

    def pre_send(self, message):
        self.seen.append(message.id)
        return None if message.payload.get(self.key) else message

    def post_receive(self, message):
        return None if message.payload.get(self.key) else message


class Boom:
    def __init__(self, on_error_raises=False):
        self.errors = []
        self.on_error_raises = on_error_raises

    def pre_send(self, message):
        raise ValueError("pre_send exploded")

    def post_receive(self, message):
        raise ValueError("post_receive exploded")

    def on_error(self, stage, error, context):
        self.errors.append((stage, str(error), context))
        if self.on_error_raises:
            raise RuntimeError("on_error exploded too")


def test_hooks_satisfy_the_protocol():
    assert isinstance(Stamp("k"), MessageHook)
    assert not isinstance(object(), MessageHook)


async def test_hooks_modify_in_registration_order(pair):
    a, b = pair
    sender = HookedTransport(a, [Stamp("first"), Stamp("second")])
    receiver = HookedTransport(b, [Stamp("third")])
    await sender.send(Message(sender="a", recipient="b", payload={"x": 1}))
    got = await receiver.receive(timeout=1)
    assert got.payload == {"x": 1, "first": "out", "second": "out", "third": "in"}


async def test_pre_send_drop_skips_later_hooks_and_the_base(pair):
    a, b = pair
    metrics = MetricsCollector()
    later = DropIf("never-set")
    hooked = HookedTransport(a, [DropIf("secret"), later], metrics_collector=metrics)
    seen = []
    hooked.add_drop_listener(lambda m, reason, detail: seen.append((m.payload, reason)))
    msg = Message(sender="a", recipient="b", payload={"secret": True})
    assert await hooked.send(msg) is None  # no exception
    assert b.queue.empty() and later.seen == []
    assert hooked.drops["hook_dropped"] == 1 and seen == [({"secret": True}, "hook_dropped")]
    assert metrics.get_counter("transport_dropped_total", labels={"reason": "hook_dropped"}) == 1
    assert await hooked.send(Message(sender="a", recipient="b", payload={})) == ["b"]


async def test_post_receive_drop_is_skipped_not_a_timeout(pair):
    a, b = pair
    receiver = HookedTransport(b, [DropIf("spam")])
    await a.send(Message(sender="a", recipient="b", payload={"spam": 1}))
    await a.send(Message(sender="a", recipient="b", payload={"n": 2}))
    assert (await receiver.receive(timeout=1)).payload == {"n": 2}
    assert receiver.drops["hook_dropped"] == 1
    await a.send(Message(sender="a", recipient="b", payload={"spam": 3}))
    with pytest.raises(TimeoutError):
        await receiver.receive(timeout=0.05)  # only a dropped message arrived
    assert receiver.drops["hook_dropped"] == 2


async def test_hook_error_calls_on_error_and_reraises(pair, caplog):
    a, b = pair
    boom = Boom()
    hooked = HookedTransport(a, [boom])
    msg = Message(sender="a", recipient="b")
    with pytest.raises(ValueError, match="pre_send exploded"):
        await hooked.send(msg)
    assert boom.errors == [("pre_send", "pre_send exploded", {"message_id": msg.id})]
    assert b.queue.empty() and hooked.drops["hook_error"] == 1

    loud = Boom(on_error_raises=True)
    receiver = HookedTransport(b, [loud])
    await a.send(msg)
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError, match="post_receive exploded"):
        await receiver.receive(timeout=1)
    assert loud.errors[0][0] == "post_receive"
    assert "on_error exploded too" in caplog.text


async def test_async_hooks_are_awaited(pair):
    a, b = pair

    class AsyncHook:
        async def pre_send(self, message):
            await asyncio.sleep(0)
            return dataclasses.replace(message, payload={"async": True})

        async def post_receive(self, message):
            return message

    await HookedTransport(a, [AsyncHook()]).send(Message(sender="a", recipient="b"))
    assert (await HookedTransport(b, [AsyncHook()]).receive(timeout=1)).payload == {"async": True}


async def test_drop_listeners_and_metrics_are_forwarded_to_the_base(pair):
    a, _ = pair
    metrics = MetricsCollector()
    hooked = HookedTransport(a, [DropIf("x")])
    hooked.metrics_collector = metrics
    seen = []
    listener = lambda m, reason, detail: seen.append(reason)  # noqa: E731
    hooked.add_drop_listener(listener)
    with pytest.raises(UndeliverableError):
        await hooked.send(Message(sender="a", recipient="ghost"))
    await hooked.send(Message(sender="a", recipient="b", payload={"x": 1}))
    assert seen == ["unknown_recipient", "hook_dropped"]
    assert a.metrics_collector is metrics
    assert hooked.drops == {"unknown_recipient": 1, "hook_dropped": 1}
    assert hooked.own_drops == {"hook_dropped": 1}
    hooked.remove_drop_listener(listener)
    with pytest.raises(UndeliverableError):
        await hooked.send(Message(sender="a", recipient="ghost"))
    assert seen == ["unknown_recipient", "hook_dropped"]
    assert metrics.get_counter("transport_dropped_total", labels={"reason": "unknown_recipient"}) == 2


async def test_registry_drop_listener_sees_hook_drops():
    registry = LocalTransportRegistry.isolated()
    seen = []
    registry.add_drop_listener(lambda m, reason, detail: seen.append((m.payload, reason)))
    async with HookedTransport(LocalTransport("a", registry=registry), [DropIf("x")]) as hooked:
        await hooked.send(Message(sender="a", recipient="a", payload={"x": 1}))
        with pytest.raises(UndeliverableError):
            await hooked.send(Message(sender="a", recipient="ghost", payload={}))
    assert seen == [({"x": 1}, "hook_dropped"), ({}, "unknown_recipient")]


async def test_lifecycle_delegates():
    registry = LocalTransportRegistry.isolated()
    base = LocalTransport("a", registry=registry)
    async with HookedTransport(base) as hooked:
        assert base.started and registry.agents() == ["a"]
        await hooked.send(Message(sender="a", recipient="a"))
        assert (await hooked.receive(timeout=1)).recipient == "a"
    assert not base.started


# -- verified receive ---------------------------------------------------------


@pytest.fixture
def ids():
    alice, mallory = Identity.generate(), Identity.generate()
    keys = IdentityRegistry()
    keys.register_identity(alice)
    keys.register_identity(mallory)
    return alice, mallory, keys


def _cases(alice, mallory):
    genuine = Message(recipient="b", payload={"amount": 10}).sign(alice)
    forged = dataclasses.replace(Message(recipient="b", payload={"amount": 10}).sign(mallory), sender=alice.fingerprint)
    tampered = dataclasses.replace(genuine, payload={"amount": 10_000})
    stranger = Message(recipient="b", payload={}).sign(Identity.generate())
    unsigned = Message(sender=alice.fingerprint, recipient="b")
    return genuine, {"forged": forged, "tampered": tampered, "unknown sender": stranger, "unsigned": unsigned}


async def test_receive_verified_rejects_forged_tampered_unknown_and_unsigned(pair, ids):
    a, b = pair
    alice, mallory, keys = ids
    metrics = MetricsCollector()
    b.metrics_collector = metrics
    rejected = []
    b.add_drop_listener(lambda m, reason, detail: rejected.append((m, reason, detail)))
    genuine, bad = _cases(alice, mallory)
    for msg in bad.values():
        await a.send(msg)
        assert await b.receive_verified(keys, timeout=1) is None
    await a.send(genuine)
    assert await b.receive_verified(keys, timeout=1) is genuine
    assert [m for m, _, _ in rejected] == list(bad.values())
    assert {reason for _, reason, _ in rejected} == {"signature_rejected"}
    assert "no public key registered" in rejected[2][2] and "unsigned" in rejected[3][2]
    assert b.drops["signature_rejected"] == 4
    assert metrics.get_counter("transport_dropped_total", labels={"reason": "signature_rejected"}) == 4
    with pytest.raises(TimeoutError):
        await b.receive_verified(keys, timeout=0.01)


async def test_receive_verified_over_tcp_rejects_a_message_tampered_in_flight(ids):
    alice, mallory, keys = ids
    a, b = TcpTransport("127.0.0.1", 0, "a"), TcpTransport("127.0.0.1", 0, "b")
    async with a, b:
        genuine = Message(topics=[b.address_topic], payload={"amount": 10}).sign(alice)
        await a.send(dataclasses.replace(genuine, payload={"amount": 99}))
        await a.send(genuine)
        assert await b.receive_verified(keys, timeout=5) is None
        assert await b.receive_verified(keys, timeout=5) == genuine
        assert b.drops["signature_rejected"] == 1


async def test_hooked_receive_verified(pair, ids):
    a, b = pair
    alice, mallory, keys = ids
    genuine, bad = _cases(alice, mallory)
    hooked = HookedTransport(b, [Stamp("seen")])
    await a.send(bad["forged"])
    assert await hooked.receive_verified(keys, timeout=1) is None
    await a.send(genuine)
    got = await hooked.receive_verified(keys, timeout=1)
    assert got.payload == {"amount": 10, "seen": "in"}
    dropper = HookedTransport(b, [DropIf("amount")])
    await a.send(genuine)
    with pytest.raises(TimeoutError):  # the dropped message is skipped, like receive(); None only for bad signatures
        await dropper.receive_verified(keys, timeout=0.2)
    assert hooked.drops["signature_rejected"] == 1 and dropper.own_drops["hook_dropped"] == 1


def test_identity_registry_basics():
    alice = Identity.generate()
    keys = IdentityRegistry({alice.fingerprint: alice.public_key})
    assert alice.fingerprint in keys and len(keys) == 1 and list(keys) == [alice.fingerprint]
    assert keys.get(alice.fingerprint) == alice.public_key and keys.get("nobody") is None
    keys.unregister(alice.fingerprint)
    keys.unregister(alice.fingerprint)  # no error when absent
    assert alice.fingerprint not in keys
    with pytest.raises(SignatureError, match="32 raw"):
        keys.register("x", b"short")
    with pytest.raises(TypeError, match="agent_id"):
        keys.register("", alice.public_key)
