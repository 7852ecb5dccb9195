"""The lab's bounded memory of what happened, and the event bus views observe.

Everything is kept in ring buffers of ``retention`` entries, so a long run
does not grow memory. Views subscribe to events (no polling).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from converge.core.message import Message

logger = logging.getLogger("converge_lab")

# Event kinds
MESSAGE = "message"
STEP = "step"
HIT = "breakpoint"
PENDING = "pending"
STATE = "state"
SPAN = "span"
ERROR = "error"


@dataclass
class MessageEntry:
    """One message seen by the lab: delivered, injected, rejected or undeliverable."""

    at: float
    message: Message
    delivered_to: tuple[str, ...]
    status: str  # "delivered" | "injected" | "rejected" | "undeliverable" | "dropped"
    reason: str = ""
    _verified: bool | None = field(default=None, repr=False)


class Journal:
    """Ring buffers + listeners. Not thread-safe: used on the lab's event loop."""

    def __init__(self, retention: int) -> None:
        if retention < 1:
            raise ValueError(f"retention must be >= 1, got {retention}")
        self.retention = retention
        self.messages: deque[MessageEntry] = deque(maxlen=retention)
        self.steps: deque[Any] = deque(maxlen=retention)
        self.spans: deque[Any] = deque(maxlen=retention)
        self.hits: deque[Any] = deque(maxlen=retention)
        self.errors: deque[tuple[float, str, str]] = deque(maxlen=retention)
        self.counts: dict[str, int] = {}
        self._listeners: list[Callable[[str, Any], None]] = []

    def subscribe(self, fn: Callable[[str, Any], None]) -> Callable[[], None]:
        """Call ``fn(kind, item)`` on every event; returns an unsubscribe function."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    def emit(self, kind: str, item: Any) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        for fn in list(self._listeners):
            try:
                fn(kind, item)
            except Exception as exc:  # a broken view must not break the network; keep it visible
                logger.error("lab listener %r failed on %s event: %s", fn, kind, exc, exc_info=True)
                self.errors.append((time.time(), f"listener:{kind}", f"{type(exc).__name__}: {exc}"))

    def add_message(self, message: Message, delivered_to: tuple[str, ...], status: str, reason: str = "") -> None:
        entry = MessageEntry(time.time(), message, delivered_to, status, reason)
        self.messages.append(entry)
        self.emit(MESSAGE, entry)

    def add_error(self, where: str, text: str) -> None:
        self.errors.append((time.time(), where, text))
        self.emit(ERROR, (where, text))
