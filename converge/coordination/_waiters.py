"""Completion events for ``TaskManager.wait_until_done``, safe to signal from any thread."""

from __future__ import annotations

import asyncio
import threading


class Waiters:
    """task id -> events of coroutines waiting for that task to finish."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_task: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def register(self, task_id: str) -> asyncio.Event:
        event = asyncio.Event()
        with self._lock:
            self._by_task.setdefault(task_id, []).append((asyncio.get_running_loop(), event))
        return event

    def unregister(self, task_id: str, event: asyncio.Event) -> None:
        with self._lock:
            entries = [e for e in self._by_task.get(task_id, []) if e[1] is not event]
            if entries:
                self._by_task[task_id] = entries
            else:
                self._by_task.pop(task_id, None)

    def signal(self, task_id: str) -> None:
        with self._lock:
            entries = list(self._by_task.get(task_id, ()))
        if not entries:
            return
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, event in entries:
            if loop is current:
                event.set()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._by_task.values())


__all__ = ["Waiters"]
