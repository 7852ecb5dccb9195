"""In-process store."""

from __future__ import annotations

import threading
from typing import Any

from converge.core.store import Store
from converge.extensions.storage._common import check_key


class MemoryStore(Store):
    """A dict behind a lock. Values are held **by reference** (no copy, no codec),
    as in the reference: mutating a stored object mutates the stored value.
    ``put_if_absent`` and ``compare_and_set`` are atomic within the process.
    """

    atomic_put_if_absent = True
    supports_locking = False

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self._lock = threading.RLock()

    def put(self, key: str, value: Any) -> None:
        check_key(key)
        with self._lock:
            self._data[key] = value

    def get(self, key: str) -> Any | None:
        check_key(key)
        return self._data.get(key)

    def delete(self, key: str) -> None:
        check_key(key)
        with self._lock:
            self._data.pop(key, None)

    def list(self, prefix: str = "") -> list[str]:
        check_key(prefix, name="prefix")
        with self._lock:
            if not prefix:
                return list(self._data)
            return [k for k in self._data if k.startswith(prefix)]

    def put_if_absent(self, key: str, value: Any) -> bool:
        check_key(key)
        with self._lock:
            if key in self._data:
                return False
            self._data[key] = value
            return True

    def compare_and_set(self, key: str, expected: Any, value: Any) -> bool:
        check_key(key)
        with self._lock:
            if self._data.get(key) != expected:
                return False
            self._data[key] = value
            return True

    def compare_and_delete(self, key: str, expected: Any) -> bool:
        check_key(key)
        with self._lock:
            if key not in self._data or self._data[key] != expected:
                return False
            del self._data[key]
            return True

    def __len__(self) -> int:
        return len(self._data)


__all__ = ["MemoryStore"]
