"""The ``Transport`` abstract base class and the drop accounting every transport shares.

Every concrete transport (local, TCP, WebSocket, hooked) derives from
:class:`Transport`, so they all:

* are async context managers (``async with transport: ...`` starts and stops it);
* count every message they drop or reject in :attr:`Transport.drops` (a
  ``Counter`` keyed by a :class:`DropReason` value), in an optional metrics
  collector as ``transport_dropped_total{reason=...}``, and in the log;
* call the drop listeners registered with :meth:`Transport.add_drop_listener`
  with ``(message_or_None, reason, detail)`` — a lab uses this to show
  rejected and undeliverable messages.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from converge.errors import TransportError

if TYPE_CHECKING:
    from converge.core.message import Message

logger = logging.getLogger(__name__)

DROP_METRIC = "transport_dropped_total"


class DropReason(StrEnum):
    """Why a transport dropped or rejected a message (the ``reason`` label)."""

    UNKNOWN_RECIPIENT = "unknown_recipient"
    """The message named a recipient that is not reachable through this transport."""
    NO_ROUTE = "no_route"
    """No destination: no ``transport.tcp`` route, or a broadcast that reached nobody."""
    SEND_FAILED = "send_failed"
    """Connecting or writing to the peer failed."""
    ENCODE_FAILED = "encode_failed"
    """The message could not be encoded for the wire (e.g. a payload value msgpack cannot pack)."""
    SIGNATURE_REJECTED = "signature_rejected"
    """``receive_verified``: no public key is registered for the sender, or the signature is bad."""
    MALFORMED_FRAME = "malformed_frame"
    """A frame whose body is not a msgpack map describing a valid message."""
    OVERSIZED_FRAME = "oversized_frame"
    """A frame whose length header exceeds ``max_frame_size``."""
    TRUNCATED_FRAME = "truncated_frame"
    """The peer disconnected in the middle of a frame."""
    HOOK_DROPPED = "hook_dropped"
    """A :class:`~converge.network.transport.hooks.MessageHook` returned ``None``."""
    HOOK_ERROR = "hook_error"
    """A hook raised; the message was not sent / not delivered and the error was re-raised."""


class DropListener(Protocol):
    """Called once per dropped or rejected message."""

    def __call__(self, message: Message | None, reason: str, detail: str) -> None: ...


class IdentityLookup(Protocol):
    """What :meth:`Transport.receive_verified` needs: ``get(agent_id) -> public key or None``.

    :class:`~converge.network.identity_registry.IdentityRegistry` and a plain
    ``dict`` both qualify.
    """

    def get(self, agent_id: str, /) -> bytes | None: ...


class _NotStartedError(TransportError, RuntimeError):
    """A transport was used before ``start()`` (a ``RuntimeError`` as in the reference)."""


class Transport(ABC):
    """Abstract transport: ``start``, ``stop``, ``send``, ``receive``.

    ``receive(timeout=...)`` returns within ``timeout`` seconds or raises
    :class:`TimeoutError`; without a timeout it blocks until a message arrives.

    Subclasses call ``super().__init__(metrics_collector=...)``; the drop
    bookkeeping still works (lazily) for third-party subclasses that do not.

    Attributes:
        metrics_collector: optional object with ``inc(name, value=1, *, labels=None)``
            (e.g. :class:`~converge.observability.metrics.MetricsCollector`);
            may be set or replaced after construction.
    """

    metrics_collector: Any = None
    _drop_listeners: tuple[DropListener, ...] = ()

    def __init__(self, *, metrics_collector: Any = None) -> None:
        self.metrics_collector = metrics_collector
        self._drops: Counter[str] = Counter()

    # -- the transport contract -----------------------------------------
    @abstractmethod
    async def start(self) -> None:
        """Start the transport (bind, connect, register). Idempotent in every built-in transport."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop the transport and release everything it owns. Idempotent; safe without ``start``."""

    @abstractmethod
    async def send(self, message: Message) -> Any:
        """Send ``message``; routing is transport-specific (see each subclass)."""

    @abstractmethod
    async def receive(self, timeout: float | None = None) -> Message:
        """The next message; raises :class:`TimeoutError` when ``timeout`` seconds pass first."""

    async def receive_verified(self, identity_registry: IdentityLookup, timeout: float | None = None) -> Message | None:
        """Receive one message and return it only if its signature verifies.

        The sender's public key is looked up with ``identity_registry.get(message.sender)``.
        A message whose sender has no registered key, or whose signature does not
        verify under that key (forged, tampered, unsigned), is **rejected**: this
        method returns ``None`` (as the reference does), and the rejection is
        logged, counted under ``signature_rejected`` and passed to the drop listeners.

        Raises:
            TimeoutError: no message arrived within ``timeout`` seconds.
        """
        message = await self.receive(timeout=timeout)
        return self._check_signature(message, identity_registry)

    def _check_signature(self, message: Message, identity_registry: IdentityLookup) -> Message | None:
        key = identity_registry.get(message.sender)
        if key is None:
            self._record_drop(message, DropReason.SIGNATURE_REJECTED, f"no public key registered for sender {message.sender!r}")
            return None
        if not message.verify(key):
            detail = "message is unsigned" if not message.signature else "signature does not verify with the sender's registered key"
            self._record_drop(message, DropReason.SIGNATURE_REJECTED, detail)
            return None
        return message

    # -- lifecycle sugar -------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- drop accounting ---------------------------------------------------
    @property
    def drops(self) -> Counter[str]:
        """Dropped/rejected message counts by reason (a live ``Counter``; missing reasons read 0)."""
        return self._own_drops()

    def _own_drops(self) -> Counter[str]:
        try:
            return self._drops
        except AttributeError:  # a subclass that did not call super().__init__()
            self._drops = Counter()
            return self._drops

    def add_drop_listener(self, listener: DropListener) -> None:
        """Call ``listener(message_or_None, reason, detail)`` for every drop or rejection.

        ``message`` is ``None`` when the drop happened before a message could be
        decoded (bad frames). Exceptions raised by a listener are logged and do
        not affect the transport.
        """
        self._drop_listeners = (*self._drop_listeners, listener)

    def remove_drop_listener(self, listener: DropListener) -> None:
        """Stop calling ``listener``; no error if it was not registered."""
        self._drop_listeners = tuple(fn for fn in self._drop_listeners if fn is not listener)

    def _record_drop(
        self, message: Message | None, reason: str, detail: str, *, level: int = logging.WARNING
    ) -> None:
        """Count, log and announce one dropped or rejected message."""
        reason = str(reason)
        self._own_drops()[reason] += 1
        collector = self.metrics_collector
        if collector is not None:
            collector.inc(DROP_METRIC, labels={"reason": reason})
        if logger.isEnabledFor(level):
            msg_id = message.id if message is not None else None
            logger.log(level, "%s dropped message %s: %s (%s)", type(self).__name__, msg_id, reason, detail)
        if self._drop_listeners:
            notify_all(self._drop_listeners, message, reason, detail)
        self._notify_external(message, reason, detail)

    def _notify_external(self, message: Message | None, reason: str, detail: str) -> None:
        """Tell observers beyond this transport (e.g. a local registry's drop listeners). Default: none."""


def notify_all(listeners: tuple[Callable[..., Any], ...], *args: Any) -> None:
    """Call each listener with ``args``; a listener's exception is logged, not propagated."""
    for fn in listeners:
        try:
            fn(*args)
        except Exception:  # observers must not break delivery; the failure is logged
            logger.exception("listener %r raised", fn)


__all__ = ["DROP_METRIC", "DropListener", "DropReason", "IdentityLookup", "Transport"]
