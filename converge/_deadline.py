"""Cheap timeouts for hot waits: one re-armed timer instead of one timer per wait.

``asyncio.timeout()`` schedules a ``TimerHandle`` on every wait and cancels it
on every wake-up. On a busy runtime almost every wait ends by a wake-up, and
each one pays for a heap push, a cancel and a later heap clean-up whose
comparisons run in Python (``TimerHandle.__lt__``). A :class:`DeadlineTimer`
instead keeps one handle for all the futures it watches: a wait records its
deadline, and only a wait whose deadline is *earlier* than the armed handle
re-schedules it. When the handle fires, expired futures resolve to ``False``
and the handle is re-armed for the nearest remaining deadline.

A watched future resolves to ``False`` (never to an exception), so a waiter
that is cancelled at the same moment leaves no unretrieved exception behind.
"""

from __future__ import annotations

import asyncio
import time

_RESOLUTION = time.get_clock_info("monotonic").resolution


class DeadlineTimer:
    """Resolve watched futures to ``False`` at their deadlines (loop time), using one timer handle."""

    __slots__ = ("_handle", "_waiters")

    def __init__(self) -> None:
        self._waiters: dict[asyncio.Future[bool], float] = {}
        self._handle: asyncio.TimerHandle | None = None

    def watch(self, future: asyncio.Future[bool], deadline: float) -> None:
        """Set ``future``'s result to ``False`` at loop time ``deadline`` unless it is done by then."""
        self._waiters[future] = deadline
        handle = self._handle
        if handle is None or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self._handle = future.get_loop().call_at(deadline, self._fire)

    def forget(self, future: asyncio.Future[bool]) -> None:
        """Stop watching ``future`` (the armed handle stays; it is not re-armed when nothing is left)."""
        self._waiters.pop(future, None)

    def cancel(self) -> None:
        """Forget every future and cancel the armed handle."""
        self._waiters.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        waiters = self._waiters
        if not waiters:
            return
        loop = next(iter(waiters)).get_loop()
        now = loop.time() + _RESOLUTION
        nearest: float | None = None
        for future, deadline in list(waiters.items()):
            if future.done():
                del waiters[future]
            elif deadline <= now:
                del waiters[future]
                future.set_result(False)
            elif nearest is None or deadline < nearest:
                nearest = deadline
        if nearest is not None:
            self._handle = loop.call_at(nearest, self._fire)


__all__ = ["DeadlineTimer"]
