"""Token-bucket rate limiting: exact burst numbers with an injected clock, refill, no partial charge, hooks."""

from __future__ import annotations

import asyncio

import pytest

from converge.core.identity import Identity
from converge.core.message import Message
from converge.core.topic import Topic
from converge.errors import ConfigError
from converge.extensions.rate_limit import RateLimiter, RateLimitHook, TokenBucketConfig
from converge.extensions.storage.memory import MemoryStore
from converge.network.transport.hooks import HookedTransport, MessageHook
from converge.network.transport.local import LocalTransport, LocalTransportRegistry
from converge.observability import MetricsCollector


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def msg(sender: str = "alice", *topics: str) -> Message:
    return Message(sender=sender, topics=[Topic(t) for t in topics], payload={})


def test_burst_is_cut_at_capacity_and_refills_over_time():
    clock = FakeClock()
    rl = RateLimiter(global_config=TokenBucketConfig(5, 2.0), clock=clock)
    results = [rl.allow_message(msg(), direction="egress") for _ in range(20)]
    assert results.count(True) == 5 and results[:5] == [True] * 5 and not any(results[5:])
    assert rl.limited["egress:global"] == 15 and rl.allowed["egress"] == 5
    clock.now += 1.0  # +2 tokens
    assert [rl.allow_message(msg(), direction="egress") for _ in range(3)] == [True, True, False]
    clock.now += 0.25  # half a token: still denied
    assert rl.allow_message(msg(), direction="egress") is False
    clock.now += 0.25
    assert rl.allow_message(msg(), direction="egress") is True
    clock.now += 3600  # refill is capped at capacity
    assert sum(rl.allow_message(msg(), direction="egress") for _ in range(10)) == 5
    # directions have separate buckets
    assert rl.allow_message(msg(), direction="ingress") is True


def test_state_layout_in_store():
    store, clock = MemoryStore(), FakeClock()
    rl = RateLimiter(store=store, global_config=TokenBucketConfig(3, 1.0), sender_config=TokenBucketConfig(2, 1.0), clock=clock)
    rl.allow_message(msg("bob", "jobs"), direction="ingress")
    assert store.get("rate_limit:ingress:global") == {"tokens": 2.0, "last_ts": 1000.0}
    assert store.get("rate_limit:ingress:sender:bob") == {"tokens": 1.0, "last_ts": 1000.0}
    assert rl.tokens("ingress:global") == 2.0 and rl.tokens("ingress:topic:jobs") is None


def test_per_sender_buckets_are_independent():
    rl = RateLimiter(sender_config=TokenBucketConfig(2, 0.0), clock=FakeClock())
    got = {s: [rl.allow_message(msg(s), direction="ingress") for _ in range(3)] for s in ("a", "b")}
    assert got == {"a": [True, True, False], "b": [True, True, False]}
    assert rl.limited["ingress:sender"] == 2
    # an empty sender has no sender bucket (reference behaviour)
    assert all(rl.allow_message(msg(""), direction="ingress") for _ in range(5))


def test_no_partial_charge_when_a_later_bucket_denies():
    clock = FakeClock()
    rl = RateLimiter(global_config=TokenBucketConfig(10, 0.0), topic_config=TokenBucketConfig(1, 0.0), clock=clock)
    assert rl.allow_message(msg("a", "hot"), direction="egress") is True
    for _ in range(5):  # the "hot" topic is empty: denied, and the global bucket must not pay for it
        assert rl.allow_message(msg("a", "hot"), direction="egress") is False
    assert rl.tokens("egress:global") == 9.0
    assert rl.limited == {"egress:topic": 5}
    # the 9 remaining global tokens are all still usable by other topics
    assert sum(rl.allow_message(msg("a", f"t{i}"), direction="egress") for i in range(12)) == 9


def test_first_denying_scope_in_order_global_sender_topic():
    rl = RateLimiter(global_config=TokenBucketConfig(1, 0), sender_config=TokenBucketConfig(1, 0),
                     topic_config=TokenBucketConfig(1, 0), clock=FakeClock())
    assert rl.check(msg("a", "t"), direction="egress").allowed
    d = rl.check(msg("a", "t"), direction="egress")
    assert (d.allowed, d.scope, d.key) == (False, "global", "egress:global")
    rl2 = RateLimiter(sender_config=TokenBucketConfig(1, 0), topic_config=TokenBucketConfig(1, 0), clock=FakeClock())
    rl2.check(msg("a", "t"), direction="egress")
    assert rl2.check(msg("a", "u"), direction="egress").scope == "sender"
    assert rl2.check(msg("b", "t"), direction="egress").scope == "topic"


def test_duplicate_topic_namespace_charged_once_and_multi_topic_all_or_nothing():
    rl = RateLimiter(topic_config=TokenBucketConfig(1, 0), clock=FakeClock())
    assert rl.allow_message(msg("a", "x", "x"), direction="egress") is True
    assert rl.allow_message(msg("a", "y"), direction="egress") is True
    # "z" has a token but "y" does not: nothing is taken from "z"
    assert rl.allow_message(msg("a", "z", "y"), direction="egress") is False
    assert rl.tokens("egress:topic:z") is None
    assert rl.allow_message(msg("a", "z"), direction="egress") is True


def test_no_buckets_allows_everything_and_sub_one_capacity_denies():
    assert RateLimiter().allow_message(msg(), direction="egress") is True
    rl = RateLimiter(global_config=TokenBucketConfig(0.5, 100.0), clock=FakeClock())
    assert rl.allow_message(msg(), direction="egress") is False


def test_config_validation():
    with pytest.raises(ConfigError, match="capacity"):
        TokenBucketConfig(-1, 1)
    with pytest.raises(ConfigError, match="refill_tokens_per_sec"):
        TokenBucketConfig(1, float("nan"))
    with pytest.raises(ConfigError):
        RateLimiter(global_config={"capacity": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="direction"):
        RateLimiter().allow_message(msg(), direction="")
    with pytest.raises(AttributeError):
        TokenBucketConfig(1, 1).capacity = 2  # type: ignore[misc]


def test_hook_counts_drops_by_scope_and_reference_names():
    metrics = MetricsCollector()
    rl = RateLimiter(global_config=TokenBucketConfig(2, 0), clock=FakeClock())
    hook = RateLimitHook(rl, metrics_collector=metrics)
    assert isinstance(hook, MessageHook)
    sent = [hook.pre_send(msg()) for _ in range(5)]
    assert sum(m is not None for m in sent) == 2
    received = [hook.post_receive(msg()) for _ in range(3)]
    assert sum(m is not None for m in received) == 2
    assert metrics.get_counter("rate_limit_egress_dropped_total") == 3
    assert metrics.get_counter("rate_limit_ingress_dropped_total") == 1
    assert metrics.get_counter("rate_limit_dropped_total", labels={"direction": "egress", "scope": "global"}) == 3
    assert hook.dropped == {"egress:global": 3, "ingress:global": 1}
    hook.on_error("pre_send", RuntimeError("x"), {"message_id": "m"})
    assert hook.errors[0][0] == "pre_send"


async def test_hook_limits_a_real_local_transport_burst():
    registry = LocalTransportRegistry.isolated()
    metrics = MetricsCollector()
    a, b = Identity.generate(), Identity.generate()
    rl = RateLimiter(sender_config=TokenBucketConfig(3, 0), clock=FakeClock())
    hooked_a = HookedTransport(LocalTransport(a.fingerprint, registry=registry), [RateLimitHook(rl, metrics_collector=metrics)])
    tb = LocalTransport(b.fingerprint, registry=registry)
    await hooked_a.start()
    await tb.start()
    try:
        for i in range(10):
            await hooked_a.send(Message(recipient=b.fingerprint, payload={"i": i}).sign(a))
        got = []
        with pytest.raises(TimeoutError):
            while True:
                got.append((await tb.receive(timeout=0.2)).payload["i"])
        assert got == [0, 1, 2]
        assert metrics.get_counter("rate_limit_egress_dropped_total") == 7
    finally:
        await hooked_a.stop()
        await tb.stop()
    await asyncio.sleep(0)
