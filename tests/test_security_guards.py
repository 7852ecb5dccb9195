"""ReplayGuard and PayloadLimits: windows on an injected clock, bounded memory, limits, real transports."""

from __future__ import annotations

import dataclasses

import pytest

from converge.core.identity import Identity
from converge.core.message import Message
from converge.core.topic import Topic
from converge.errors import ConfigError
from converge.network.identity_registry import IdentityRegistry
from converge.network.transport import HookedTransport, LocalTransport, LocalTransportRegistry
from converge.network.transport.guards import (
    PAYLOAD_DEPTH_REJECTED,
    PAYLOAD_SIZE_REJECTED,
    REPLAY_REJECTED,
    TIMESTAMP_REJECTED,
    PayloadLimits,
    ReplayGuard,
)
from converge.network.transport.tcp import TcpTransport, tcp_topic
from converge.observability.metrics import MetricsCollector

T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def msg(clock: Clock | None = None, **kw) -> Message:
    if clock is not None:
        kw.setdefault("timestamp", int(clock.now * 1000))
    return Message(sender=kw.pop("sender", "alice"), payload=kw.pop("payload", {"n": 1}), **kw)


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"d": value}
    return value


# -- ReplayGuard ---------------------------------------------------------------
def test_replay_rejected_within_window_and_counted():
    clock, mc = Clock(), MetricsCollector()
    guard = ReplayGuard(window_sec=60, max_future_skew_sec=5, clock=clock, metrics_collector=mc)
    m = msg(clock)
    assert guard.post_receive(m) is m
    clock.now += 30
    assert guard.post_receive(m) is None
    assert guard.post_receive(dataclasses.replace(m, payload={"other": True})) is None  # same (sender, id)
    assert guard.rejected == {REPLAY_REJECTED: 2}
    assert mc.get_counter("message_guard_rejected_total", labels={"guard": "replay", "reason": REPLAY_REJECTED}) == 2
    assert guard.explain_drop(m)[0] == REPLAY_REJECTED
    assert guard.explain_drop(msg(clock)) is None  # only explains its own latest rejection


def test_same_id_from_another_sender_is_not_a_replay():
    clock = Clock()
    guard = ReplayGuard(clock=clock)
    m = msg(clock, sender="a\x00b", id="c")
    assert guard.post_receive(m) is m
    for sender, msg_id in (("bob", "c"), ("a", "b\x00c"), ("a\x00", "bc")):  # no ambiguous (sender, id) splits
        other = dataclasses.replace(m, sender=sender, id=msg_id)
        assert guard.post_receive(other) is other


def test_a_replay_after_the_window_is_still_rejected_because_it_is_stale():
    clock = Clock()
    guard = ReplayGuard(window_sec=60, max_future_skew_sec=5, clock=clock)
    m = msg(clock)
    assert guard.post_receive(m) is m
    for step in (10, 30, 54, 61, 3600):  # the id is forgotten after 60 s, the message is too old by then
        clock.now = T0 + step
        assert guard.post_receive(m) is None
    assert len(guard) == 0  # the window was purged
    assert guard.rejected[REPLAY_REJECTED] == 3 and guard.rejected[TIMESTAMP_REJECTED] == 2


def test_sender_clock_ahead_cannot_outlive_the_window():
    clock = Clock()
    guard = ReplayGuard(window_sec=60, max_future_skew_sec=5, clock=clock)
    ahead = msg(timestamp=int((T0 + 5) * 1000))  # within the allowed skew
    assert guard.post_receive(ahead) is ahead
    too_far = msg(timestamp=int((T0 + 6) * 1000))
    assert guard.post_receive(too_far) is None
    for t in range(1, 200):  # no moment at which the first message can come back
        clock.now = T0 + t
        assert guard.post_receive(ahead) is None, t


def test_memory_is_bounded_and_evictions_are_counted():
    clock, mc = Clock(), MetricsCollector()
    guard = ReplayGuard(max_entries=100, clock=clock, metrics_collector=mc)
    for i in range(1000):
        assert guard.post_receive(msg(clock, id=f"{i}-" + "x" * 10_000)) is not None  # long ids cost 16 bytes each
    assert len(guard) == 100
    assert guard.evictions == 900
    assert mc.get_counter("message_guard_evictions_total", labels={"guard": "replay"}) == 900
    assert guard.post_receive(msg(clock, id="999-" + "x" * 10_000)) is None  # recent ids are still remembered


def test_timestamp_check_can_be_disabled():
    clock = Clock()
    guard = ReplayGuard(window_sec=10, check_timestamps=False, clock=clock)
    old = msg(timestamp=0)
    assert guard.post_receive(old) is old
    assert guard.post_receive(old) is None


@pytest.mark.parametrize(
    "kwargs",
    [{"window_sec": 0}, {"window_sec": float("nan")}, {"max_entries": 0}, {"max_entries": 1.5},
     {"window_sec": 60, "max_age_sec": 59, "max_future_skew_sec": 1}, {"max_future_skew_sec": -1}, {"window_sec": True},
     {"window_sec": 10, "max_future_skew_sec": 30}, {"max_age_sec": 0}],
)
def test_bad_replay_settings_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        ReplayGuard(**kwargs)


def test_outgoing_messages_pass_the_replay_guard():
    guard = ReplayGuard()
    m = msg()
    assert guard.pre_send(m) is m and guard.pre_send(m) is m


# -- PayloadLimits ---------------------------------------------------------------
def test_payload_limits_size_depth_items():
    mc = MetricsCollector()
    limits = PayloadLimits(max_bytes=1000, max_depth=5, max_items=50, metrics_collector=mc)
    ok = msg(payload={"a": "x" * 900})
    assert limits.post_receive(ok) is ok
    assert limits.post_receive(msg(payload={"a": "x" * 1000})) is None
    assert limits.post_receive(msg(payload={"a": "é" * 600})) is None  # counted in UTF-8 bytes
    assert limits.post_receive(msg(payload={"a": b"\0" * 1000})) is None
    assert limits.post_receive(msg(payload=nested(5))) is not None
    assert limits.post_receive(msg(payload=nested(6))) is None
    assert limits.post_receive(msg(payload={"l": [[[[[1]]]]]})) is None
    assert limits.post_receive(msg(payload={"l": list(range(60))})) is None
    assert limits.post_receive(msg(payload={str(i): 1 for i in range(30)})) is None  # keys count too
    assert limits.post_receive(msg(payload={}, topics=[Topic("t", {"big": "y" * 2000})])) is None  # topic attributes count
    assert limits.rejected == {PAYLOAD_SIZE_REJECTED: 6, PAYLOAD_DEPTH_REJECTED: 2}
    assert mc.counter_total("message_guard_rejected_total") == 8


def test_payload_limits_survive_cycles_and_huge_depth_without_recursion():
    limits = PayloadLimits(max_depth=32)
    cyclic: list = []
    cyclic.append(cyclic)
    assert limits.post_receive(msg(payload={"c": cyclic})) is None
    deep: list = []
    cur = deep
    for _ in range(200_000):  # far beyond the interpreter's recursion limit
        nxt: list = []
        cur.append(nxt)
        cur = nxt
    assert limits.measure(msg(payload={"d": deep}))[0] == PAYLOAD_DEPTH_REJECTED


def test_payload_limits_on_send_only_when_asked():
    big = msg(payload={"a": "x" * 5000})
    assert PayloadLimits(max_bytes=100).pre_send(big) is big
    assert PayloadLimits(max_bytes=100, check_outgoing=True).pre_send(big) is None


@pytest.mark.parametrize("kwargs", [{"max_bytes": 0}, {"max_depth": -1}, {"max_items": 2.0}, {"max_depth": None}])
def test_bad_payload_limits_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        PayloadLimits(**kwargs)


# -- with real transports --------------------------------------------------------
async def test_guards_on_a_hooked_local_transport_count_drops_and_keep_serving():
    registry = LocalTransportRegistry.isolated()
    mc = MetricsCollector()
    guard, limits = ReplayGuard(metrics_collector=mc), PayloadLimits(max_bytes=10_000, metrics_collector=mc)
    receiver = HookedTransport(LocalTransport("b", registry=registry), [limits, guard], metrics_collector=mc)
    sender = LocalTransport("a", registry=registry)
    seen_drops: list[tuple[str, str]] = []
    registry.add_drop_listener(lambda m, reason, detail: seen_drops.append((m.id, detail)))
    async with receiver, sender:
        m = msg(recipient="b")
        for outgoing in (m, m, msg(recipient="b", payload={"x": "y" * 20_000}), msg(recipient="b", payload={"last": 1})):
            await sender.send(outgoing)
        first = await receiver.receive(timeout=1)
        last = await receiver.receive(timeout=1)  # the replay and the big one were skipped, not mistaken for silence
        assert (first.id, last.payload) == (m.id, {"last": 1})
        with pytest.raises(TimeoutError):
            await receiver.receive(timeout=0.05)
    assert sum(receiver.own_drops.values()) == 2
    assert mc.counter_total("transport_dropped_total") == 2
    assert mc.counter_total("message_guard_rejected_total") == 2
    assert len(seen_drops) == 2 and "ReplayGuard" in seen_drops[0][1] and "PayloadLimits" in seen_drops[1][1]


async def test_guards_behind_signature_verification_over_tcp():
    alice = Identity.generate()
    keys = IdentityRegistry()
    keys.register_identity(alice)
    mc = MetricsCollector()
    receiver = HookedTransport(
        TcpTransport("127.0.0.1", 0, "b"), [PayloadLimits(max_depth=8, metrics_collector=mc), ReplayGuard(metrics_collector=mc)], metrics_collector=mc
    )
    sender = TcpTransport("127.0.0.1", 0, "a")
    async with receiver, sender:
        route = [tcp_topic("127.0.0.1", receiver.base_transport.port)]
        good = Message(topics=route, payload={"n": 1}).sign(alice)
        deep = Message(topics=route, payload=nested(20)).sign(alice)
        for m in (good, good, deep, Message(topics=route, payload={"forged": 1}, sender=alice.fingerprint)):
            await sender.send(m)
        got = await receiver.receive_verified(keys, timeout=2)
        assert got is not None and got.id == good.id
        # the replay and the too-deep message are skipped (counted under their guard reason);
        # only the unsigned one comes back as None
        assert await receiver.receive_verified(keys, timeout=2) is None
        with pytest.raises(TimeoutError):
            await receiver.receive_verified(keys, timeout=0.2)
    for reason in (REPLAY_REJECTED, PAYLOAD_DEPTH_REJECTED):
        assert mc.get_counter("transport_dropped_total", labels={"reason": reason}) == 1
    assert mc.get_counter("transport_dropped_total", labels={"reason": "signature_rejected"}) == 1
    assert mc.counter_total("message_guard_rejected_total") == 2
    assert receiver.hooks[1].rejected == {REPLAY_REJECTED: 1} and receiver.hooks[0].rejected == {PAYLOAD_DEPTH_REJECTED: 1}


async def test_guard_rejections_reach_the_transport_under_their_own_reason():
    """HookedTransport asks a dropping hook's ``explain_drop`` for the reason."""
    registry = LocalTransportRegistry.isolated()
    receiver = HookedTransport(LocalTransport("b", registry=registry), [ReplayGuard()])
    sender = LocalTransport("a", registry=registry)
    async with receiver, sender:
        m = msg(recipient="b")
        await sender.send(m)
        await sender.send(m)
        await receiver.receive(timeout=1)
        with pytest.raises(TimeoutError):
            await receiver.receive(timeout=0.05)
    assert receiver.own_drops == {REPLAY_REJECTED: 1}
