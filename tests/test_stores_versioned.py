"""VersionedStore: schema version key, check_version callback semantics, delegation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from converge.core.store import Store
from converge.extensions.storage.file import FileStore
from converge.extensions.storage.memory import MemoryStore
from converge.extensions.storage.sqlite_store import SQLiteStore
from converge.extensions.storage.versioned import SCHEMA_VERSION_KEY, VersionedStore


def test_schema_version_key() -> None:
    assert SCHEMA_VERSION_KEY == "__meta__:schema_version"


def test_check_version_reports_changes_once() -> None:
    calls: list[tuple[Any, Any]] = []
    vs = VersionedStore(MemoryStore(), on_version_change=lambda old, new: calls.append((old, new)))
    assert vs.get_version() is None
    assert vs.check_version() is None
    assert calls == []  # unset equals the initial last-seen value
    vs.set_version(1)
    assert vs.check_version() == 1
    assert vs.check_version() == 1
    vs.set_version(2)
    assert vs.check_version() == 2
    assert calls == [(None, 1), (1, 2)]


def test_check_version_without_callback_just_returns() -> None:
    inner = MemoryStore()
    vs = VersionedStore(inner)
    vs.set_version("v3")
    assert vs.check_version() == "v3"
    assert inner.get(SCHEMA_VERSION_KEY) == "v3"


def test_failing_callback_is_reported_again_next_time() -> None:
    calls: list[tuple[Any, Any]] = []

    def callback(old: Any, new: Any) -> None:
        calls.append((old, new))
        if len(calls) == 1:
            raise RuntimeError("migration failed")

    vs = VersionedStore(MemoryStore(), on_version_change=callback)
    vs.set_version(1)
    with pytest.raises(RuntimeError, match="migration failed"):
        vs.check_version()
    assert vs.check_version() == 1
    assert calls == [(None, 1), (None, 1)]


def test_delegates_and_mirrors_flags(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.sqlite3") as inner:
        vs = VersionedStore(inner)
        vs.set_version(1)
        vs.put("a", 1)
        assert vs.put_if_absent("a", 2) is False and vs.put_if_absent("b", 2) is True
        assert vs.compare_and_set("a", 1, 5) is True
        vs.delete("b")
        assert vs.get("a") == 5 and inner.get("a") == 5
        assert sorted(vs.list()) == ["__meta__:schema_version", "a"]
        assert vs.list("a") == ["a"]
        assert vs.atomic_put_if_absent is True and vs.supports_locking is True
        # The version survives a new wrapper on the same file.
        with SQLiteStore(tmp_path / "s.sqlite3") as again:
            assert VersionedStore(again).get_version() == 1
    plain = VersionedStore(FileStore(tmp_path / "f"))
    assert plain.supports_locking is False and plain.atomic_put_if_absent is True
    assert VersionedStore(MemoryStore()).supports_locking is False


def test_wraps_only_stores() -> None:
    with pytest.raises(TypeError, match="lacks put, get, delete, list"):
        VersionedStore(object())  # type: ignore[arg-type]

    class Minimal(Store):  # the abstract defaults are enough for the wrapper
        def __init__(self) -> None:
            self.d: dict[str, Any] = {}

        def put(self, key: str, value: Any) -> None:
            self.d[key] = value

        def get(self, key: str) -> Any | None:
            return self.d.get(key)

        def delete(self, key: str) -> None:
            self.d.pop(key, None)

        def list(self, prefix: str = "") -> list[str]:
            return [k for k in self.d if k.startswith(prefix)]

    vs = VersionedStore(Minimal())
    assert vs.put_if_absent("k", 1) is True and vs.compare_and_set("k", 1, 2) is True and vs.get("k") == 2
    assert vs.atomic_put_if_absent is False
