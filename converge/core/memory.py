"""Bounded short-term chat memory for LLM agents."""

from __future__ import annotations

from collections import deque
from typing import Any


class ShortTermMemory:
    """The last ``max_messages`` chat turns (at least one)."""

    def __init__(self, max_messages: int = 20) -> None:
        self.max_messages = max(1, int(max_messages))
        self._messages: deque[dict[str, Any]] = deque(maxlen=self.max_messages)

    def append(self, role: str, content: str | dict[str, Any]) -> None:
        self._messages.append({"role": role, "content": content})

    def get_messages(self) -> list[dict[str, Any]]:
        return list(self._messages)

    def clear(self) -> None:
        self._messages.clear()

    def __len__(self) -> int:
        return len(self._messages)


__all__ = ["ShortTermMemory"]
