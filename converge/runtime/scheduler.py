"""Event-driven scheduler: the step loop sleeps until notified or a timeout passes."""

from __future__ import annotations

import asyncio


class Scheduler:
    """Wraps one event. Notifications coalesce; a notify before a wait makes the wait return at once.

    A custom scheduler is any object with ``notify()`` and ``async wait_for_work(timeout) -> bool``.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    @property
    def pending(self) -> bool:
        return self._event.is_set()

    async def wait_for_work(self, timeout: float | None = None) -> bool:
        """True when woken by :meth:`notify`, False on timeout."""
        event = self._event
        if not event.is_set():
            if timeout is not None and timeout <= 0:
                return False
            try:
                async with asyncio.timeout(timeout):
                    await event.wait()
            except TimeoutError:
                return False
        event.clear()
        return True


__all__ = ["Scheduler"]
