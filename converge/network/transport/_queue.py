"""The receive queue of the local and TCP transports: an ``asyncio.Queue`` with a cheap timed get.

A runtime's listener calls ``receive(timeout=receive_timeout_sec)`` for every
message, and nearly every such wait ends with a message rather than a
timeout. ``async with asyncio.timeout(t): await queue.get()`` pays for a new
timer handle (a heap push and a cancel) on every one of them;
:meth:`ReceiveQueue.get_within` times its getter out through one re-armed
:class:`~converge._deadline.DeadlineTimer` per queue instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from converge._deadline import DeadlineTimer

T = TypeVar("T")


class ReceiveQueue(asyncio.Queue[T]):
    """An unbounded ``asyncio.Queue`` plus :meth:`get_within` and an optional delivery sink.

    ``sink``: when set, ``put_nowait`` first offers the item to ``sink(item) -> bool``
    — but only while the queue is empty, so FIFO order holds — and queues it only
    when the sink declines. A runtime installs its inbox as the sink, so a message
    reaches an idle agent without a hop through the listener task.
    """

    def __init__(self) -> None:
        super().__init__()
        self._deadlines = DeadlineTimer()
        self.sink: Callable[[T], bool] | None = None

    def put_nowait(self, item: T) -> None:
        sink = self.sink
        if sink is not None and self.empty() and sink(item):
            return
        super().put_nowait(item)

    async def get_within(self, timeout: float | None) -> T:
        """Like ``get()``, but raise :class:`TimeoutError` when nothing arrives within ``timeout`` seconds.

        Items are never lost: an item put at the moment the timeout fires stays
        queued for the next get (and wakes the next waiting getter, if any).
        """
        if not self.empty():
            return self.get_nowait()
        if timeout is None:
            return await self.get()
        if timeout <= 0:
            raise TimeoutError
        loop = self._get_loop()
        deadline = loop.time() + timeout
        getters: Any = self._getters  # type: ignore[attr-defined]
        while self.empty():
            getter: asyncio.Future[Any] = loop.create_future()
            getters.append(getter)
            self._deadlines.watch(getter, deadline)
            try:
                woken = await getter
            except BaseException:  # cancelled: leave the queue as asyncio.Queue.get does
                getter.cancel()
                self._discard(getters, getter)
                raise
            finally:
                self._deadlines.forget(getter)
            if woken is False:  # the deadline passed
                self._discard(getters, getter)
                raise TimeoutError
        return self.get_nowait()

    def _discard(self, getters: Any, getter: asyncio.Future[Any]) -> None:
        try:
            getters.remove(getter)
        except ValueError:
            pass
        if not self.empty() and not getter.cancelled():
            self._wakeup_next(getters)  # type: ignore[attr-defined]


async def receive_from(queue: asyncio.Queue[T], timeout: float | None) -> T:
    """The next item of ``queue``, or :class:`TimeoutError` after ``timeout`` seconds (any asyncio queue)."""
    if isinstance(queue, ReceiveQueue):
        if not queue.empty():  # the common case under load: no coroutine for the wait
            return queue.get_nowait()
        return await queue.get_within(timeout)
    if timeout is None:
        return await queue.get()
    if not queue.empty():
        return queue.get_nowait()
    async with asyncio.timeout(timeout):
        return await queue.get()


def install_sink(queue: asyncio.Queue[T], sink: Callable[[T], bool] | None) -> bool:
    """Set ``queue``'s delivery sink (see :class:`ReceiveQueue`); False when the queue has no sink support."""
    if not isinstance(queue, ReceiveQueue):
        return False
    queue.sink = sink
    return True


__all__ = ["ReceiveQueue", "install_sink", "receive_from"]
