"""Transport middleware: ``MessageHook`` and ``HookedTransport`` (reference §4.5).

Hooks run in registration order. ``pre_send`` sees each outgoing message and
``post_receive`` each incoming one; returning ``None`` drops the message,
returning a message (possibly a modified copy) passes it on. A hook may be
synchronous or return an awaitable. ``on_error(stage, error, context)`` is
optional and is called when that hook raises; the error is then re-raised.

Every drop is counted under ``hook_dropped`` (and a hook exception under
``hook_error``) in the wrapper's drop accounting, which also forwards drop
listeners and the metrics collector to the wrapped transport. A hook that
defines ``explain_drop(message) -> (reason, detail) | None`` (the message
guards do) names its own reason instead, e.g. ``replay_rejected``.

Difference from the reference (its quirk 12): ``receive`` does not turn a
hook drop into ``TimeoutError``; it keeps receiving until a message passes the
hooks or the timeout expires, so a drop is never mistaken for silence.
``receive_verified`` likewise keeps receiving past hook drops; it returns
``None`` only for a rejected signature.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from converge.network.transport.base import DropListener, DropReason, IdentityLookup, Transport

if TYPE_CHECKING:
    from converge.core.message import Message

logger = logging.getLogger(__name__)


@runtime_checkable
class MessageHook(Protocol):
    """Inspect, rewrite or drop messages around a transport.

    A hook may also define ``on_error(stage: str, error: Exception, context: dict) -> None``;
    ``stage`` is ``"pre_send"`` or ``"post_receive"`` and ``context`` holds ``message_id``.
    A hook may define ``explain_drop(message) -> tuple[str, str] | None``: after it
    returned ``None`` for ``message``, the ``(reason, detail)`` the drop is recorded
    under (instead of ``hook_dropped``).
    """

    def pre_send(self, message: Message) -> Message | None:
        """The message to send, or ``None`` to drop it."""
        ...

    def post_receive(self, message: Message) -> Message | None:
        """The message to deliver, or ``None`` to drop it."""
        ...


class HookedTransport(Transport):
    """A transport that runs :class:`MessageHook` s around another transport.

    Args:
        base_transport: the wrapped transport.
        hooks: hooks in the order they run.
        metrics_collector: collector for drop counters; also set on the base
            transport. When ``None``, the base transport's collector is used.

    Attributes:
        base_transport, hooks.
    """

    def __init__(
        self, base_transport: Transport, hooks: list[MessageHook] | None = None, *, metrics_collector: Any = None
    ) -> None:
        self.base_transport = base_transport
        self.hooks: list[MessageHook] = list(hooks or [])
        super().__init__(metrics_collector=metrics_collector)

    # -- forwarding of drop accounting -----------------------------------
    @property  # type: ignore[override]
    def metrics_collector(self) -> Any:
        own = self.__dict__.get("_metrics_collector")
        return own if own is not None else self.base_transport.metrics_collector

    @metrics_collector.setter
    def metrics_collector(self, collector: Any) -> None:
        self.__dict__["_metrics_collector"] = collector
        if collector is not None:
            self.base_transport.metrics_collector = collector

    @property
    def drops(self) -> Counter[str]:
        """Drops by this wrapper's hooks plus the wrapped transport's drops (a fresh ``Counter``)."""
        return self.own_drops + self.base_transport.drops

    @property
    def own_drops(self) -> Counter[str]:
        """Only the drops made by the hooks (a live ``Counter``)."""
        return self._own_drops()

    def add_drop_listener(self, listener: DropListener) -> None:
        """Listen to hook drops and to the wrapped transport's drops."""
        super().add_drop_listener(listener)
        self.base_transport.add_drop_listener(listener)

    def remove_drop_listener(self, listener: DropListener) -> None:
        super().remove_drop_listener(listener)
        self.base_transport.remove_drop_listener(listener)

    def _notify_external(self, message: Message | None, reason: str, detail: str) -> None:
        # hook drops reach the observers of the wrapped transport too (e.g. a lab's registry listener)
        self.base_transport._notify_external(message, reason, detail)

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        await self.base_transport.start()

    async def stop(self) -> None:
        await self.base_transport.stop()

    # -- hooks -------------------------------------------------------------
    async def _run(self, stage: str, message: Message) -> Message | None:
        current: Message | None = message
        for hook in self.hooks:
            try:
                result = getattr(hook, stage)(current)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                self._report_error(hook, stage, exc, message)
                raise
            if result is None:
                reason, detail = self._explain(hook, stage, current)
                self._record_drop(message, reason, detail, level=logging.INFO)
                return None
            current = result
        return current

    def _explain(self, hook: MessageHook, stage: str, message: Message) -> tuple[str, str]:
        """The ``(reason, detail)`` of a drop: the hook's own ``explain_drop`` if it has one."""
        fallback = (DropReason.HOOK_DROPPED, f"{stage} hook {type(hook).__name__} returned None")
        explain = getattr(hook, "explain_drop", None)
        if not callable(explain):
            return fallback
        try:
            explained = explain(message)
        except Exception:  # the drop is still recorded, under hook_dropped
            logger.exception("explain_drop of hook %r raised", hook)
            return fallback
        if explained is None:
            return fallback
        try:
            reason, detail = explained
        except (TypeError, ValueError):
            logger.warning("explain_drop of hook %r returned %r, not (reason, detail)", hook, explained)
            return fallback
        if not isinstance(reason, str) or not reason:
            logger.warning("explain_drop of hook %r returned the reason %r, not a non-empty str", hook, reason)
            return fallback
        return reason, f"{stage} hook {type(hook).__name__}: {detail}"

    def _report_error(self, hook: MessageHook, stage: str, error: Exception, message: Message) -> None:
        self._record_drop(message, DropReason.HOOK_ERROR, f"{stage} hook {type(hook).__name__} raised {error!r}")
        on_error = getattr(hook, "on_error", None)
        if callable(on_error):
            try:
                on_error(stage, error, {"message_id": message.id})
            except Exception:  # the original error is re-raised; this one is logged
                logger.exception("on_error of hook %r raised while handling %r", hook, error)

    async def send(self, message: Message) -> Any:
        """Run ``pre_send`` hooks, then send through the base transport.

        Returns:
            The base transport's result, or ``None`` when a hook dropped the
            message (counted under ``hook_dropped``; no exception).

        Raises:
            Exception: whatever a hook raised (after its ``on_error``), or the base send's errors.
        """
        outgoing = await self._run("pre_send", message) if self.hooks else message
        if outgoing is None:
            return None
        return await self.base_transport.send(outgoing)

    async def receive(self, timeout: float | None = None) -> Message:
        """The next message that passes every ``post_receive`` hook.

        Messages dropped by a hook are counted and skipped; the wait continues
        for the remainder of ``timeout``.

        Raises:
            TimeoutError: no message passed the hooks within ``timeout`` seconds.
        """
        if not self.hooks:
            return await self.base_transport.receive(timeout=timeout)
        async with asyncio.timeout(timeout):
            while True:
                message = await self.base_transport.receive()
                passed = await self._run("post_receive", message)
                if passed is not None:
                    return passed

    async def receive_verified(self, identity_registry: IdentityLookup, timeout: float | None = None) -> Message | None:
        """The base transport's verified receive, then the ``post_receive`` hooks.

        Messages dropped by a hook are counted (under the hook's reason) and
        skipped, as in :meth:`receive`; the wait continues for the remainder of
        ``timeout``.

        Returns:
            The next verified message that passes every hook, or ``None`` when a
            message's signature is rejected (``signature_rejected``).

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
        """
        if not self.hooks:
            return await self.base_transport.receive_verified(identity_registry, timeout=timeout)
        async with asyncio.timeout(timeout):
            while True:
                message = await self.base_transport.receive_verified(identity_registry)
                if message is None:
                    return None
                passed = await self._run("post_receive", message)
                if passed is not None:
                    return passed

    def __repr__(self) -> str:
        return f"<HookedTransport {self.base_transport!r} hooks={len(self.hooks)}>"


__all__ = ["HookedTransport", "MessageHook"]
