"""Store backends: memory, file, SQLite, Redis, and the versioned wrapper.

Import them from their modules (``converge.extensions.storage.sqlite_store.SQLiteStore``,
as the reference documents) or from here; names load on first access, so
``RedisStore`` only needs the ``redis`` package once a store is created.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "MemoryStore": "converge.extensions.storage.memory",
    "FileStore": "converge.extensions.storage.file",
    "SQLiteStore": "converge.extensions.storage.sqlite_store",
    "RedisStore": "converge.extensions.storage.redis_store",
    "VersionedStore": "converge.extensions.storage.versioned",
    "SCHEMA_VERSION_KEY": "converge.extensions.storage.versioned",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'converge.extensions.storage' has no attribute {name!r}")


__all__ = sorted(_LAZY)
