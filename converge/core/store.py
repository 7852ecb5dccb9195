"""The key/value ``Store`` interface shared by pools, tasks, discovery and checkpoints."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class Store(ABC):
    """Synchronous key/value store.

    Capability flags tell callers what a backend guarantees:
    ``atomic_put_if_absent`` (true cross-process/instance atomicity of
    :meth:`put_if_absent`) and ``supports_locking``.
    """

    atomic_put_if_absent: bool = False
    supports_locking: bool = False

    @abstractmethod
    def put(self, key: str, value: Any) -> None:
        """Create or overwrite ``key``."""

    @abstractmethod
    def get(self, key: str) -> Any | None:
        """The value, or ``None`` when absent."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; no error when absent."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix`` (order unspecified)."""

    def put_if_absent(self, key: str, value: Any) -> bool:
        """Store ``value`` only if ``key`` is absent; True when stored.

        This default is not atomic; backends override it (see ``atomic_put_if_absent``).
        """
        if self.get(key) is not None:
            return False
        self.put(key, value)
        return True

    def compare_and_set(self, key: str, expected: Any, value: Any) -> bool:
        """Replace ``key`` with ``value`` only if it currently equals ``expected`` (encoded form).

        Backends with a native transaction override this to make it atomic;
        this default is a non-atomic read-compare-write.
        """
        if self.get(key) != expected:
            return False
        self.put(key, value)
        return True

    def compare_and_delete(self, key: str, expected: Any) -> bool:
        """Delete ``key`` only if its current value equals ``expected``; True when deleted.

        Backends override this to make it atomic (the built-in memory, file,
        SQLite and Redis stores do); this default is a non-atomic read-compare-delete.
        """
        current = self.get(key)
        if current is None or current != expected:
            return False
        self.delete(key)
        return True


__all__ = ["Store"]
