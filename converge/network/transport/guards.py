"""Message guards: replay protection and payload limits, as transport hooks.

Both guards are :class:`~converge.network.transport.hooks.MessageHook` s for
:class:`~converge.network.transport.hooks.HookedTransport`::

    transport = HookedTransport(TcpTransport(...), [ReplayGuard(), PayloadLimits()])
    runtime = AgentRuntime(agent, transport, identity_registry=registry)

* :class:`ReplayGuard` rejects a message whose ``(sender, id)`` it already
  accepted within ``window_sec``, and a message whose signed ``timestamp`` is
  older than ``max_age_sec`` or more than ``max_future_skew_sec`` ahead.
  Because ``max_age_sec + max_future_skew_sec < window_sec``, an id is only
  forgotten once a copy of its message is too old to be accepted anyway, so a
  captured message cannot be replayed at any time (as long as the window holds
  the id; see ``max_entries``). Memory is bounded: at most ``max_entries``
  16-byte digests, whatever the size of the ids.
* :class:`PayloadLimits` rejects a message whose payload (with its topics'
  attributes) is estimated larger than ``max_bytes``, nests containers deeper
  than ``max_depth`` or holds more than ``max_items`` values. The walk is
  iterative and stops at the first limit, so a hostile payload costs at most
  ``max_items`` steps and never recursion.

Put the guards behind signature verification: ``HookedTransport.receive_verified``
(used by a runtime with an ``identity_registry``) verifies first and runs the
hooks after, so a forged copy cannot use up the id of a real message.

Every rejection is logged (WARNING, with id, sender and reason), counted in the
guard's :attr:`rejected` counter and, with a ``metrics_collector``, in
``message_guard_rejected_total{guard, reason}``. The guard returns ``None``, so
the hooked transport drops the message and counts it in its own drop accounting
(metrics ``transport_dropped_total``, drop listeners, a lab's message table).
:meth:`explain_drop` tells a transport the specific reason (``replay_rejected``,
``timestamp_rejected``, ``payload_size_rejected``, ``payload_depth_rejected``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from converge.errors import ConfigError

if TYPE_CHECKING:
    from converge.core.message import Message

logger = logging.getLogger(__name__)

GUARD_METRIC = "message_guard_rejected_total"
EVICTION_METRIC = "message_guard_evictions_total"

REPLAY_REJECTED = "replay_rejected"
"""The ``(sender, id)`` was already accepted within the window."""
TIMESTAMP_REJECTED = "timestamp_rejected"
"""The signed timestamp is older than ``max_age_sec`` or too far in the future."""
PAYLOAD_SIZE_REJECTED = "payload_size_rejected"
"""The payload is estimated larger than ``max_bytes`` or holds more than ``max_items`` values."""
PAYLOAD_DEPTH_REJECTED = "payload_depth_rejected"
"""The payload nests containers deeper than ``max_depth``."""


def _positive(name: str, value: Any, *, integer: bool = False) -> Any:
    ok_type = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type) or not math.isfinite(value) or value <= 0:
        kind = "an int" if integer else "a number"
        raise ConfigError(f"{name} must be {kind} > 0, got {value!r}")
    return value


class _Guard:
    """Counting, logging and ``explain_drop`` shared by the guards."""

    guard_name = "guard"

    def __init__(self, metrics_collector: Any) -> None:
        self.metrics_collector = metrics_collector
        self.rejected: Counter[str] = Counter()
        self._last: tuple[str, str, str] | None = None

    def _reject(self, message: Message, reason: str, detail: str) -> None:
        self.rejected[reason] += 1
        self._last = (message.id, reason, detail)
        mc = self.metrics_collector
        if mc is not None:
            mc.inc(GUARD_METRIC, labels={"guard": self.guard_name, "reason": reason})
        logger.warning(
            "%s rejected message %.64s from %.64s: %s (%s)", type(self).__name__, message.id, message.sender, reason, detail
        )

    def explain_drop(self, message: Message) -> tuple[str, str] | None:
        """``(reason, detail)`` of this guard's latest rejection if it was ``message``, else ``None``."""
        last = self._last
        if last is None or last[0] != message.id:
            return None
        return last[1], last[2]

    def pre_send(self, message: Message) -> Message | None:
        """Outgoing messages pass unchanged (the guards protect the receiving side)."""
        return message


class ReplayGuard(_Guard):
    """Reject replayed and stale messages (a ``post_receive`` hook).

    Args:
        window_sec: how long an accepted ``(sender, id)`` is remembered.
        max_age_sec: oldest accepted message timestamp, in seconds before now;
            ``None`` means ``window_sec - max_future_skew_sec - 1``.
        max_future_skew_sec: how far a timestamp may be ahead of ``clock``.
        check_timestamps: ``False`` skips the timestamp checks (then a replay
            arriving after ``window_sec`` is accepted again).
        max_entries: the most ids remembered. When full, the oldest id is
            forgotten early (counted in :attr:`evictions` and
            ``message_guard_evictions_total``, logged) — size it above the
            number of messages expected per window.
        clock: wall-clock seconds (compared with message timestamps, which are
            milliseconds since the epoch); inject one in tests.
        metrics_collector: optional collector for the rejection/eviction counters.

    Raises:
        ConfigError: a limit is not positive, or ``max_age_sec + max_future_skew_sec``
            is not below ``window_sec`` (replays of forgotten ids would pass).

    Attributes:
        rejected: rejections by reason; evictions: ids forgotten before their window ended.
    """

    guard_name = "replay"

    def __init__(
        self,
        *,
        window_sec: float = 300.0,
        max_age_sec: float | None = None,
        max_future_skew_sec: float = 30.0,
        check_timestamps: bool = True,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.time,
        metrics_collector: Any = None,
    ) -> None:
        super().__init__(metrics_collector)
        self.window_sec = float(_positive("window_sec", window_sec))
        self.max_future_skew_sec = float(_positive("max_future_skew_sec", max_future_skew_sec))
        if max_age_sec is None:
            max_age_sec = max(self.window_sec - self.max_future_skew_sec - 1.0, 0.0) if check_timestamps else self.window_sec
        self.max_age_sec = float(_positive("max_age_sec", max_age_sec))
        if check_timestamps and self.max_age_sec + self.max_future_skew_sec >= self.window_sec:
            raise ConfigError(
                f"max_age_sec ({self.max_age_sec:g}) + max_future_skew_sec ({self.max_future_skew_sec:g}) must be below "
                f"window_sec ({self.window_sec:g}); otherwise an id is forgotten while its message is still fresh"
            )
        self.check_timestamps = check_timestamps
        self.max_entries = _positive("max_entries", max_entries, integer=True)
        self.clock = clock
        self.evictions = 0
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        """How many ids are remembered now."""
        return len(self._seen)

    @staticmethod
    def _key(message: Message) -> bytes:
        sender = str(message.sender).encode("utf-8", "surrogatepass")
        h = hashlib.blake2b(len(sender).to_bytes(8, "big"), digest_size=16)  # length-prefixed: no ambiguous splits
        h.update(sender)
        h.update(str(message.id).encode("utf-8", "surrogatepass"))
        return h.digest()

    def _expire(self, now: float) -> None:
        seen = self._seen
        horizon = now - self.window_sec
        while seen:
            key, at = next(iter(seen.items()))
            if at >= horizon:
                break
            del seen[key]

    def _check_timestamp(self, message: Message, now: float) -> str | None:
        ts = message.timestamp
        if isinstance(ts, bool) or not isinstance(ts, int):
            return f"timestamp of type {type(ts).__name__} is not an integer of milliseconds"
        try:
            age = now - ts / 1000.0
        except OverflowError:
            return f"timestamp {ts} is out of range"
        if age > self.max_age_sec:
            return f"timestamp is {age:.1f}s old, above max_age_sec={self.max_age_sec:g}"
        if -age > self.max_future_skew_sec:
            return f"timestamp is {-age:.1f}s in the future, above max_future_skew_sec={self.max_future_skew_sec:g}"
        return None

    def post_receive(self, message: Message) -> Message | None:
        """The message, or ``None`` when it is a replay or its timestamp is out of bounds."""
        now = self.clock()
        self._expire(now)
        if self.check_timestamps:
            problem = self._check_timestamp(message, now)
            if problem is not None:
                self._reject(message, TIMESTAMP_REJECTED, problem)
                return None
        key = self._key(message)
        first = self._seen.get(key)
        if first is not None:
            self._reject(message, REPLAY_REJECTED, f"id already accepted {now - first:.1f}s ago (window {self.window_sec:g}s)")
            return None
        if len(self._seen) >= self.max_entries:
            self._seen.popitem(last=False)
            self.evictions += 1
            if self.metrics_collector is not None:
                self.metrics_collector.inc(EVICTION_METRIC, labels={"guard": self.guard_name})
            if self.evictions == 1 or self.evictions % 1000 == 0:
                logger.warning(
                    "ReplayGuard is full (max_entries=%d): forgot a live id early (%d so far); raise max_entries",
                    self.max_entries, self.evictions,
                )
        self._seen[key] = now
        return message

    def __repr__(self) -> str:
        return f"ReplayGuard(window_sec={self.window_sec:g}, entries={len(self._seen)}/{self.max_entries}, rejected={sum(self.rejected.values())})"


_SCALAR_SIZE = 9  # the largest msgpack encoding of an int/float
_CONTAINER_SIZE = 5  # the largest msgpack map/array header
_OPAQUE_SIZE = 16  # in-process objects (local transport) are not descended into


def _scalar_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass")) + 5
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value) + 5
    if value is None or isinstance(value, (bool, int, float)):
        return _SCALAR_SIZE
    return _OPAQUE_SIZE


class PayloadLimits(_Guard):
    """Reject oversized and deeply nested payloads (a ``post_receive`` hook).

    The size is an estimate of the msgpack encoding of the payload and of every
    topic's attributes: UTF-8 length of strings and keys, length of bytes, 9
    bytes per number, 5 per container header; other in-process objects (only
    possible on the local transport) count 16 bytes and are not descended into.

    Args:
        max_bytes: largest accepted estimated size.
        max_depth: deepest accepted container nesting (the payload itself is depth 1).
        max_items: most values (keys, items and containers) accepted.
        check_outgoing: also check in ``pre_send`` (a refused outgoing message is
            dropped and counted by the hooked transport like any hook drop).
        metrics_collector: optional collector for ``message_guard_rejected_total``.

    Raises:
        ConfigError: a limit is not a positive int.

    Attributes:
        rejected: rejections by reason.
    """

    guard_name = "payload"

    def __init__(
        self,
        *,
        max_bytes: int = 1024 * 1024,
        max_depth: int = 32,
        max_items: int = 100_000,
        check_outgoing: bool = False,
        metrics_collector: Any = None,
    ) -> None:
        super().__init__(metrics_collector)
        self.max_bytes = _positive("max_bytes", max_bytes, integer=True)
        self.max_depth = _positive("max_depth", max_depth, integer=True)
        self.max_items = _positive("max_items", max_items, integer=True)
        self.check_outgoing = check_outgoing

    def measure(self, message: Message) -> tuple[str, str] | None:
        """``(reason, detail)`` of the first limit ``message`` breaks, or ``None`` when it is within limits."""
        roots: list[Any] = [message.payload, *(getattr(t, "attributes", None) for t in message.topics)]
        stack: list[tuple[Any, int]] = [(root, 1) for root in roots if root is not None]
        size = items = 0
        while stack:
            value, depth = stack.pop()
            items += 1
            if isinstance(value, (Mapping, list, tuple)) and len(value) > self.max_items:
                return PAYLOAD_SIZE_REJECTED, f"payload holds more than max_items={self.max_items} values"
            if isinstance(value, Mapping):
                if depth > self.max_depth:
                    return PAYLOAD_DEPTH_REJECTED, f"payload nests deeper than max_depth={self.max_depth}"
                size += _CONTAINER_SIZE
                for k, v in value.items():
                    size += _scalar_size(k)
                    items += 1
                    stack.append((v, depth + 1))
            elif isinstance(value, (list, tuple)):
                if depth > self.max_depth:
                    return PAYLOAD_DEPTH_REJECTED, f"payload nests deeper than max_depth={self.max_depth}"
                size += _CONTAINER_SIZE
                stack.extend((v, depth + 1) for v in value)
            else:
                size += _scalar_size(value)
            if size > self.max_bytes:
                return PAYLOAD_SIZE_REJECTED, f"payload is larger than max_bytes={self.max_bytes}"
            if items > self.max_items or len(stack) > self.max_items:
                return PAYLOAD_SIZE_REJECTED, f"payload holds more than max_items={self.max_items} values"
        return None

    def _filter(self, message: Message) -> Message | None:
        problem = self.measure(message)
        if problem is None:
            return message
        self._reject(message, *problem)
        return None

    def post_receive(self, message: Message) -> Message | None:
        """The message, or ``None`` when it breaks a limit."""
        return self._filter(message)

    def pre_send(self, message: Message) -> Message | None:
        """The message (checked only with ``check_outgoing=True``)."""
        return self._filter(message) if self.check_outgoing else message

    def __repr__(self) -> str:
        return f"PayloadLimits(max_bytes={self.max_bytes}, max_depth={self.max_depth}, max_items={self.max_items})"


__all__ = [
    "PAYLOAD_DEPTH_REJECTED",
    "PAYLOAD_SIZE_REJECTED",
    "REPLAY_REJECTED",
    "TIMESTAMP_REJECTED",
    "PayloadLimits",
    "ReplayGuard",
]
