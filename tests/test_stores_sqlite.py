"""SQLiteStore specifics: schema, WAL, persistence, lifecycle, threads, prefix bounds."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from converge.core import codec
from converge.core.task import Task, TaskState
from converge.errors import CodecError, ConfigError, ConvergeError
from converge.extensions.storage.sqlite_store import SQLiteStore, _prefix_upper_bound


def test_schema_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "s.sqlite3"
    with SQLiteStore(path) as store:
        store.put("task:1", Task(id="1"))
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            cols = [(r[1], r[2], r[5]) for r in conn.execute("PRAGMA table_info(store)")]
            assert cols == [("key", "TEXT", 1), ("value", "BLOB", 0)]
            key, value = conn.execute("SELECT key, value FROM store").fetchone()
            assert key == "task:1" and codec.decode(value) == Task(id="1")
        finally:
            conn.close()


def test_values_persist_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with SQLiteStore(path) as a:
        a.put("task:1", Task(id="1", state=TaskState.COMPLETED, result={"ok": 1}))
    with SQLiteStore(path) as b:
        got = b.get("task:1")
        assert got.state is TaskState.COMPLETED and got.result == {"ok": 1}
        assert len(b) == 1


def test_two_open_instances_see_each_others_writes(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with SQLiteStore(path) as a, SQLiteStore(path) as b:
        a.put("k", 1)
        assert b.get("k") == 1
        assert b.put_if_absent("k", 2) is False
        assert b.compare_and_set("k", 1, 3) is True
        assert a.get("k") == 3


def test_close_is_idempotent_and_later_use_raises(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    store.put("k", 1)
    store.close()
    store.close()
    assert "closed" in repr(store)
    with pytest.raises(ConvergeError, match="is closed"):
        store.get("k")


def test_in_memory_database() -> None:
    with SQLiteStore(":memory:") as store:
        store.put("a", 1)
        assert store.list() == ["a"]


def test_bad_busy_timeout(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="busy_timeout"):
        SQLiteStore(tmp_path / "s.sqlite3", busy_timeout=-1)


def test_corrupt_row_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with SQLiteStore(path) as store:
        store.put("good", 1)
        conn = sqlite3.connect(path)
        with conn:
            conn.execute("INSERT INTO store VALUES (?, ?)", ("bad", b"\x80\x04\x95\x00"))  # a pickle header
            conn.execute("INSERT INTO store VALUES (?, ?)", ("text", "not bytes"))
        conn.close()
        with pytest.raises(CodecError, match="'bad'"):
            store.get("bad")
        with pytest.raises(CodecError, match="expected bytes, got str") as info:
            store.get("text")
        assert info.value.key == "text"
        assert store.get("good") == 1
        with pytest.raises(CodecError):
            store.compare_and_set("bad", None, 2)
        assert store.compare_and_set("good", 1, 2) is True  # the failed transaction was rolled back


async def test_usable_from_worker_threads(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.sqlite3") as store:
        await asyncio.gather(*(asyncio.to_thread(store.put, f"k{i}", i) for i in range(20)))
        values = await asyncio.gather(*(asyncio.to_thread(store.get, f"k{i}") for i in range(20)))
        assert values == list(range(20))
        assert len(await asyncio.to_thread(store.list, "k")) == 20


@pytest.mark.parametrize(
    "prefix, bound",
    [
        ("", None),
        ("a", "b"),
        ("task:", "task;"),
        ("a%", "a&"),
        ("\U0010ffff", None),
        ("a\U0010ffff", "b"),
        ("\ud7ff", "\ue000"),  # skips the surrogate range, which cannot be stored
    ],
)
def test_prefix_upper_bound(prefix: str, bound: str | None) -> None:
    assert _prefix_upper_bound(prefix) == bound


def test_list_skips_rows_with_non_text_keys_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.sqlite3"
    with SQLiteStore(path) as store:
        store.put("ab", 1)
        conn = sqlite3.connect(path)
        with conn:
            conn.execute("INSERT INTO store VALUES (?, ?)", (b"ab-blob", codec.encode(2)))
        conn.close()
        assert store.list("a") == ["ab"]
        assert store.list() == ["ab"]
    assert "skipping 1 row(s) whose key is not TEXT" in caplog.text
