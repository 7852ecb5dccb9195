"""Token-bucket rate limiting of messages, globally, per sender and per topic (reference section 9.4).

Buckets are keyed ``<direction>:global``, ``<direction>:sender:<sender>`` and
``<direction>:topic:<namespace>``; their state ``{"tokens", "last_ts"}`` lives
in a :class:`~converge.core.store.Store` under ``rate_limit:<key>``.

Differences from the reference (its quirk 20):

* **no partial charge** — every bucket of a message is checked first and a
  token is taken from all of them only when all allow it (the reference charged
  the buckets before the first denial);
* a topic namespace that appears twice in one message is charged once;
* the clock is injectable (``clock=``), so tests need no sleeping;
* denials are counted by scope in :attr:`RateLimiter.limited`, and
  :class:`RateLimitHook` also counts ``rate_limit_dropped_total{direction,scope}``
  next to the reference counters ``rate_limit_<direction>_dropped_total``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from converge.core.message import Message
from converge.core.store import Store
from converge.errors import ConfigError
from converge.network.transport.hooks import MessageHook

_log = logging.getLogger("converge.extensions.rate_limit")
_PREFIX = "rate_limit:"


@dataclass(frozen=True)
class TokenBucketConfig:
    """A bucket of ``capacity`` tokens refilled at ``refill_tokens_per_sec``; one message costs one token.

    A capacity below 1 denies everything (as in the reference).
    """

    capacity: float
    refill_tokens_per_sec: float

    def __post_init__(self) -> None:
        for name in ("capacity", "refill_tokens_per_sec"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"TokenBucketConfig.{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class RateDecision:
    """The outcome of :meth:`RateLimiter.check`.

    Attributes:
        allowed: whether the message may pass (tokens were taken only then).
        scope: ``"global"``, ``"sender"`` or ``"topic"`` — the first bucket (in
            that order) that lacked a token; ``None`` when allowed.
        key: that bucket's key, e.g. ``"egress:sender:ab12..."``.
    """

    allowed: bool
    scope: str | None = None
    key: str | None = None


class RateLimiter:
    """Token buckets for ingress/egress messages.

    Args:
        store: where bucket state lives (default: a new ``MemoryStore``).
        global_config / sender_config / topic_config: bucket settings per scope; ``None`` disables a scope.
        clock: monotonic seconds (injectable for tests).

    Attributes:
        limited: ``Counter`` of denials keyed ``"<direction>:<scope>"``.
        allowed: ``Counter`` of passes keyed by direction.
    """

    def __init__(
        self, *, store: Store | None = None, global_config: TokenBucketConfig | None = None,
        sender_config: TokenBucketConfig | None = None, topic_config: TokenBucketConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if store is None:
            from converge.extensions.storage.memory import MemoryStore

            store = MemoryStore()
        for name, cfg in (("global_config", global_config), ("sender_config", sender_config), ("topic_config", topic_config)):
            if cfg is not None and not isinstance(cfg, TokenBucketConfig):
                raise ConfigError(f"{name} must be a TokenBucketConfig or None, got {type(cfg).__name__}")
        self.store = store
        self.global_config = global_config
        self.sender_config = sender_config
        self.topic_config = topic_config
        self.clock = clock
        self.limited: Counter[str] = Counter()
        self.allowed: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _buckets(self, message: Message, direction: str) -> list[tuple[str, str, TokenBucketConfig]]:
        buckets: list[tuple[str, str, TokenBucketConfig]] = []
        if self.global_config is not None:
            buckets.append(("global", f"{direction}:global", self.global_config))
        if self.sender_config is not None and message.sender:
            buckets.append(("sender", f"{direction}:sender:{message.sender}", self.sender_config))
        if self.topic_config is not None:
            seen: set[str] = set()
            for topic in message.topics:
                ns = getattr(topic, "namespace", None)
                if ns is None or ns in seen:
                    continue
                seen.add(ns)
                buckets.append(("topic", f"{direction}:topic:{ns}", self.topic_config))
        return buckets

    def check(self, message: Message, *, direction: str) -> RateDecision:
        """Decide for one message; takes a token from every bucket only when all allow it."""
        if not isinstance(direction, str) or not direction:
            raise ValueError(f"direction must be a non-empty str such as 'ingress' or 'egress', got {direction!r}")
        buckets = self._buckets(message, direction)
        if not buckets:
            self.allowed[direction] += 1
            return RateDecision(True)
        with self._lock:
            now = self.clock()
            levels = [self._level(key, cfg, now) for _, key, cfg in buckets]
            for (scope, key, _), tokens in zip(buckets, levels, strict=True):
                if tokens < 1.0:
                    self.limited[f"{direction}:{scope}"] += 1
                    return RateDecision(False, scope, key)
            for (_, key, _), tokens in zip(buckets, levels, strict=True):
                self.store.put(_PREFIX + key, {"tokens": tokens - 1.0, "last_ts": now})
        self.allowed[direction] += 1
        return RateDecision(True)

    def allow_message(self, message: Message, *, direction: str) -> bool:
        """``True`` when the message may pass (reference API)."""
        return self.check(message, direction=direction).allowed

    def _level(self, key: str, cfg: TokenBucketConfig, now: float) -> float:
        """Tokens in a bucket at ``now`` after refill (a new bucket starts full). Nothing is written."""
        state = self.store.get(_PREFIX + key)
        if not isinstance(state, dict) or "tokens" not in state or "last_ts" not in state:
            return float(cfg.capacity)
        elapsed = max(0.0, now - float(state["last_ts"]))
        return min(float(cfg.capacity), float(state["tokens"]) + elapsed * cfg.refill_tokens_per_sec)

    def tokens(self, key: str) -> float | None:
        """The stored (not yet refilled) token count of a bucket key like ``"egress:global"``."""
        state = self.store.get(_PREFIX + key)
        return float(state["tokens"]) if isinstance(state, dict) and "tokens" in state else None


class RateLimitHook(MessageHook):
    """A transport ``MessageHook`` that drops messages over the limit.

    ``pre_send`` checks ``"egress"``, ``post_receive`` checks ``"ingress"``; a
    denied message becomes ``None`` (the hooked transport drops it), is logged
    with its scope, and is counted in ``rate_limit_<direction>_dropped_total``
    and ``rate_limit_dropped_total{direction,scope}`` when a collector is given.

    Attributes:
        dropped: ``Counter`` of drops keyed ``"<direction>:<scope>"``.
        errors: errors reported to :meth:`on_error`, as ``(stage, exception)``.
    """

    def __init__(self, rate_limiter: RateLimiter, *, metrics_collector: Any = None) -> None:
        self.rate_limiter = rate_limiter
        self.metrics_collector = metrics_collector
        self.dropped: Counter[str] = Counter()
        self.errors: list[tuple[str, BaseException]] = []

    def _filter(self, message: Message, direction: str) -> Message | None:
        decision = self.rate_limiter.check(message, direction=direction)
        if decision.allowed:
            return message
        self.dropped[f"{direction}:{decision.scope}"] += 1
        _log.info(
            "rate limit: dropped %s message %s from %r (bucket %s empty)",
            direction, message.id, message.sender, decision.key,
        )
        mc = self.metrics_collector
        if mc is not None:
            mc.inc(f"rate_limit_{direction}_dropped_total")
            mc.inc("rate_limit_dropped_total", labels={"direction": direction, "scope": decision.scope})
        return None

    def pre_send(self, message: Message) -> Message | None:
        return self._filter(message, "egress")

    def post_receive(self, message: Message) -> Message | None:
        return self._filter(message, "ingress")

    def on_error(self, stage: str, error: Exception, context: dict[str, Any]) -> None:
        """Record and log an error raised by a hook at ``stage`` (the transport re-raises it)."""
        self.errors.append((stage, error))
        del self.errors[:-100]
        _log.warning("transport hook error at %s: %s (%s)", stage, error, context)


__all__ = ["RateDecision", "RateLimitHook", "RateLimiter", "TokenBucketConfig"]
