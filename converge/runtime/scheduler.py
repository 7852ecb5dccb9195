"""Event-driven scheduler: the step loop sleeps until notified or a timeout passes."""

from __future__ import annotations

import asyncio

from converge._deadline import DeadlineTimer


class Scheduler:
    """A wake-up flag with waiters. Notifications coalesce; a notify before a wait makes the wait return at once.

    The timeout of :meth:`wait_for_work` is served by one re-armed timer per
    scheduler rather than a new ``asyncio.timeout`` per wait: the step loop
    waits once per step, and nearly every wait ends with a notification.

    A custom scheduler is any object with ``notify()`` and ``async wait_for_work(timeout) -> bool``.
    """

    def __init__(self) -> None:
        self._pending = False
        self._waiters: list[asyncio.Future[bool]] = []
        self._timer = DeadlineTimer()

    def notify(self) -> None:
        """Wake every waiter (or the next wait, if nobody is waiting)."""
        self._pending = True
        if self._waiters:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(True)

    @property
    def pending(self) -> bool:
        return self._pending

    async def wait_for_work(self, timeout: float | None = None) -> bool:
        """True when woken by :meth:`notify`, False on timeout."""
        if not self._pending and timeout is not None and timeout <= 0:
            # A zero timeout polls, but still yields once: a step loop with
            # scheduler_timeout_sec=0 whose steps never suspend would otherwise
            # hold the event loop forever (its own listener included).
            await asyncio.sleep(0)
            if not self._pending:
                return False
        if not self._pending:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[bool] = loop.create_future()
            self._waiters.append(waiter)
            if timeout is not None:
                self._timer.watch(waiter, loop.time() + timeout)
            try:
                woken = await waiter
            finally:
                self._waiters.remove(waiter)
                if timeout is not None:
                    self._timer.forget(waiter)
            if not woken:
                return False
        self._pending = False
        return True


__all__ = ["Scheduler"]
