"""A store wrapper that records a schema version and reports when it changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from converge.core.store import Store

SCHEMA_VERSION_KEY = "__meta__:schema_version"


class VersionedStore(Store):
    """Delegates every operation to ``store`` and keeps a schema version at
    :data:`SCHEMA_VERSION_KEY`.

    Args:
        store: the wrapped store.
        on_version_change: called as ``on_version_change(last_seen, current)``
            by :meth:`check_version` when the stored version differs from the
            last one ``check_version`` saw (initially ``None``).

    The capability flags are the wrapped store's.
    """

    def __init__(self, store: Store, *, on_version_change: Callable[[Any, Any], None] | None = None) -> None:
        missing = [m for m in ("put", "get", "delete", "list") if not callable(getattr(store, m, None))]
        if missing:
            raise TypeError(f"VersionedStore wraps a Store; {type(store).__name__} lacks {', '.join(missing)}")
        self.store = store
        self.on_version_change = on_version_change
        self.atomic_put_if_absent = bool(getattr(store, "atomic_put_if_absent", False))
        self.supports_locking = bool(getattr(store, "supports_locking", False))
        self._last_seen: Any = None

    def __repr__(self) -> str:
        return f"VersionedStore({self.store!r})"

    def get_version(self) -> Any:
        """The stored schema version, or ``None`` when unset."""
        return self.store.get(SCHEMA_VERSION_KEY)

    def set_version(self, version: Any) -> None:
        """Store ``version`` as the schema version."""
        self.store.put(SCHEMA_VERSION_KEY, version)

    def check_version(self) -> Any:
        """Return the stored version; report a change to ``on_version_change``.

        The first check after ``set_version(1)`` calls ``on_version_change(None, 1)``;
        checks that see the same version again call nothing. Without a
        callback the last seen version is not tracked.
        """
        current = self.get_version()
        if self.on_version_change is not None and current != self._last_seen:
            self.on_version_change(self._last_seen, current)
            self._last_seen = current  # only after the callback succeeded, so a failure is reported again
        return current

    def put(self, key: str, value: Any) -> None:
        self.store.put(key, value)

    def get(self, key: str) -> Any | None:
        return self.store.get(key)

    def delete(self, key: str) -> None:
        self.store.delete(key)

    def list(self, prefix: str = "") -> list[str]:
        return self.store.list(prefix)

    def put_if_absent(self, key: str, value: Any) -> bool:
        return self.store.put_if_absent(key, value)

    def compare_and_set(self, key: str, expected: Any, value: Any) -> bool:
        return self.store.compare_and_set(key, expected, value)

    def compare_and_delete(self, key: str, expected: Any) -> bool:
        return self.store.compare_and_delete(key, expected)


__all__ = ["SCHEMA_VERSION_KEY", "VersionedStore"]
