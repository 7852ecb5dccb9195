"""The runtime inbox: a FIFO buffer between the transport listener and the step loop."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("converge.runtime.inbox")


class Inbox:
    """FIFO of received messages.

    Args:
        maxsize: capacity; ``None`` or ``0`` means unbounded.
        drop_when_full: when full, drop the *incoming* message instead of
            making ``push`` wait for space. Every drop is logged, counted in
            :attr:`dropped` and reported to drop listeners (the runtime turns
            them into the ``inbox_dropped_total`` metric and the lab shows them).

    A custom inbox is any object with ``async push(message)`` and
    ``poll(batch_size=10) -> list``.
    """

    def __init__(self, maxsize: int | None = None, *, drop_when_full: bool = False) -> None:
        if maxsize is not None and maxsize < 0:
            raise ValueError(f"maxsize must be >= 0 or None, got {maxsize}")
        self.maxsize = maxsize or 0
        self.drop_when_full = drop_when_full
        self.dropped = 0
        self.accepted = 0
        self._items: deque[Any] = deque()
        self._space: asyncio.Event | None = None
        self._drop_listeners: list[Callable[[Any], None]] = []

    def add_drop_listener(self, fn: Callable[[Any], None]) -> None:
        self._drop_listeners.append(fn)

    def remove_drop_listener(self, fn: Callable[[Any], None]) -> None:
        if fn in self._drop_listeners:
            self._drop_listeners.remove(fn)

    def full(self) -> bool:
        return bool(self.maxsize) and len(self._items) >= self.maxsize

    async def push(self, message: Any) -> bool:
        """Append ``message``. Returns False when it was dropped because the inbox is full."""
        while self.full():
            if self.drop_when_full:
                self.dropped += 1
                logger.warning("inbox full (maxsize=%d): dropped message %s", self.maxsize, getattr(message, "id", "?"))
                for fn in self._drop_listeners:
                    fn(message)
                return False
            if self._space is None:
                self._space = asyncio.Event()
            self._space.clear()
            await self._space.wait()
        self._items.append(message)
        self.accepted += 1
        return True

    def try_push(self, message: Any) -> bool:
        """Append ``message`` if there is room now; False (and nothing done) when the inbox is full.

        The runtime's listener uses this to skip a coroutine per message; a full
        inbox then goes through :meth:`push`, which waits or drops (and counts).
        """
        if self.maxsize and len(self._items) >= self.maxsize:
            return False
        self._items.append(message)
        self.accepted += 1
        return True

    def poll(self, batch_size: int = 10) -> list[Any]:
        """Take up to ``batch_size`` messages (FIFO) without waiting."""
        items = self._items
        if not items:
            return []
        n = min(batch_size, len(items))
        out = [items.popleft() for _ in range(n)]
        if self._space is not None:
            self._space.set()
        return out

    def peek(self) -> list[Any]:
        """A snapshot of the queued messages, oldest first, without consuming them."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)


__all__ = ["Inbox"]
