"""Behaviour every store backend shares: Memory, File (with and without locking), SQLite, Redis, Versioned."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest

from converge.core import codec
from converge.core.message import Message
from converge.core.pool import Pool
from converge.core.store import Store
from converge.core.task import Task, TaskState
from converge.core.topic import Topic
from converge.errors import CodecError, ConfigError
from converge.extensions.storage.file import FileStore, encode_key
from converge.extensions.storage.memory import MemoryStore
from converge.extensions.storage.sqlite_store import SQLiteStore
from converge.extensions.storage.versioned import VersionedStore

BACKENDS = ["memory", "file", "file-locking", "sqlite", "redis", "versioned-sqlite"]
CODEC_BACKENDS = [b for b in BACKENDS if b != "memory"]

# Keys that must each map to exactly their own value, whatever the backend.
ODD_KEYS = ["", "../x", "/etc/passwd", "a/b", "..", ".", "a\\b", "é☃ 漢字", "a\0b", "task:%_*?[]", "x" * 150]


class Backend:
    """A store plus a way to plant raw bytes under a key (to simulate corrupt data)."""

    def __init__(self, store: Store, write_raw: Callable[[str, bytes], None] | None) -> None:
        self.store = store
        self.write_raw = write_raw


def _make(kind: str, tmp_path, request) -> Iterator[Backend]:
    if kind == "memory":
        yield Backend(MemoryStore(), None)
    elif kind in ("file", "file-locking"):
        store = FileStore(tmp_path / "files", locking=kind == "file-locking")
        yield Backend(store, lambda k, b: (store.base_path / encode_key(k)).write_bytes(b))
    elif kind in ("sqlite", "versioned-sqlite"):
        path = tmp_path / "db" / "store.sqlite3"
        inner = SQLiteStore(path)

        def write_raw(k: str, b: bytes) -> None:
            with sqlite3.connect(path) as conn:
                conn.execute("INSERT OR REPLACE INTO store (key, value) VALUES (?, ?)", (k, b))
            conn.close()

        try:
            yield Backend(inner if kind == "sqlite" else VersionedStore(inner), write_raw)
        finally:
            inner.close()
    elif kind == "redis":
        from converge.extensions.storage.redis_store import RedisStore

        url = request.getfixturevalue("redis_url")
        store = RedisStore(url)
        try:
            yield Backend(store, lambda k, b: store.client.set(k, b))
        finally:
            store.close()
    else:  # pragma: no cover - a typo in the parametrisation
        raise AssertionError(kind)


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path) -> Iterator[Backend]:
    yield from _make(request.param, tmp_path, request)


@pytest.fixture(params=CODEC_BACKENDS)
def codec_backend(request, tmp_path) -> Iterator[Backend]:
    yield from _make(request.param, tmp_path, request)


# -- basic operations ------------------------------------------------------


def test_put_get_overwrite_delete(backend: Backend) -> None:
    s = backend.store
    assert s.get("k") is None
    s.put("k", {"a": 1})
    assert s.get("k") == {"a": 1}
    s.put("k", [1, 2])
    assert s.get("k") == [1, 2]
    s.delete("k")
    assert s.get("k") is None
    s.delete("k")  # absent: no error
    assert s.list() == []


def test_values_of_project_types_round_trip(backend: Backend) -> None:
    s = backend.store
    task = Task(id="t1", objective={"goal": "x"}, state=TaskState.ASSIGNED, topic=Topic("ns", {"a": 1}), priority=3)
    pool = Pool(id="p1", topics=[Topic("ns")], agents={"b", "a"}, trust_threshold=0.5)
    msg = Message(id="m1", sender="s", topics=[Topic("t")], payload={"x": [1, 2]}, timestamp=5, signature=b"\x01")
    value = {"task": task, "pool": pool, "msg": msg, "tuple": (1, "a"), "bytes": b"\x00\xff", "set": {1, 2}, "none": None}
    s.put("mixed", value)
    got = s.get("mixed")
    assert got == value
    assert isinstance(got["tuple"], tuple) and got["task"].state is TaskState.ASSIGNED


def test_memory_store_keeps_references() -> None:
    s = MemoryStore()
    pool = Pool(id="p")
    s.put("pool:p", pool)
    pool.add_agent("a")
    assert s.get("pool:p") is pool and s.get("pool:p").agents == {"a"}


@pytest.mark.parametrize("key", ODD_KEYS)
def test_odd_keys_are_distinct_and_listed(backend: Backend, key: str) -> None:
    s = backend.store
    s.put(key, f"value of {key!r}")
    s.put("other", "other")
    assert s.get(key) == f"value of {key!r}"
    assert sorted(s.list()) == sorted({key, "other"})
    assert key in s.list(key)
    s.delete(key)
    assert s.get(key) is None and s.list() == ["other"]


def test_list_prefix_is_literal(backend: Backend) -> None:
    s = backend.store
    keys = ["task:1", "task:2", "Task:3", "taskX1", "pool:1", "a%b", "aXb", "a_c", "abc", "a*b", "a?b", "a[b]", "a\\b"]
    for k in keys:
        s.put(k, k)
    assert sorted(s.list("task:")) == ["task:1", "task:2"]  # case-sensitive, ':' literal
    assert s.list("a%") == ["a%b"]  # LIKE '%' is not a wildcard
    assert s.list("a_") == ["a_c"]  # LIKE '_' is not a wildcard
    assert s.list("a*") == ["a*b"]  # glob '*' is not a wildcard
    assert s.list("a?") == ["a?b"]
    assert s.list("a[") == ["a[b]"]
    assert s.list("a\\") == ["a\\b"]
    assert sorted(s.list("")) == sorted(keys)
    assert s.list("zzz") == []


def test_list_prefix_with_high_code_points(backend: Backend) -> None:
    s = backend.store
    keys = ["\U0010ffff", "\U0010ffffa", "\ud7ffx", "\ue000", "z"]
    for k in keys:
        s.put(k, 1)
    assert sorted(s.list("\U0010ffff")) == ["\U0010ffff", "\U0010ffffa"]
    assert s.list("\ud7ff") == ["\ud7ffx"]
    assert sorted(s.list()) == sorted(keys)


# -- atomic helpers --------------------------------------------------------


def test_put_if_absent(backend: Backend) -> None:
    s = backend.store
    assert s.put_if_absent("k", 1) is True
    assert s.put_if_absent("k", 2) is False
    assert s.get("k") == 1
    s.put("n", None)  # a stored None counts as present
    assert s.put_if_absent("n", 3) is False
    assert s.atomic_put_if_absent is True


def test_compare_and_set(backend: Backend) -> None:
    s = backend.store
    assert s.compare_and_set("k", 1, 2) is False  # absent is not 1
    assert s.get("k") is None
    assert s.compare_and_set("k", None, 1) is True  # None means absent
    assert s.compare_and_set("k", None, 5) is False
    assert s.compare_and_set("k", 2, 3) is False
    assert s.get("k") == 1
    assert s.compare_and_set("k", 1, 2) is True
    assert s.get("k") == 2


def test_compare_and_set_compares_values_not_encodings(backend: Backend) -> None:
    s = backend.store
    s.put("pool", Pool(id="p", agents={"a", "b", "c"}))
    expected = Pool(id="p", agents={"c", "b", "a"})
    assert s.compare_and_set("pool", expected, Pool(id="p", agents={"a"})) is True
    assert s.get("pool").agents == {"a"}
    s.put("d", {"x": 1, "y": 2})
    assert s.compare_and_set("d", {"y": 2, "x": 1}, "done") is True


def test_compare_and_set_accepts_stored_set_in_any_order(codec_backend: Backend) -> None:
    # Another process (or implementation) may have written the set's items in another order.
    items = ["zeta", "alpha", "mid"]
    raw = codec.MAGIC + bytes([codec.VERSION]) + msgpack.packb(
        msgpack.ExtType(3, msgpack.packb(items, use_bin_type=True)), use_bin_type=True
    )
    codec_backend.write_raw("s", raw)
    assert codec_backend.store.get("s") == set(items)
    assert codec_backend.store.compare_and_set("s", {"alpha", "mid", "zeta"}, "next") is True
    assert codec_backend.store.get("s") == "next"


def test_concurrent_compare_and_set_loses_no_update(backend: Backend) -> None:
    s = backend.store
    threads, per_thread = 4, 15
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(per_thread):
                while True:
                    cur = s.get("counter")
                    if s.compare_and_set("counter", cur, (cur or 0) + 1):
                        break
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    assert s.get("counter") == threads * per_thread


def test_concurrent_put_if_absent_has_one_winner(backend: Backend) -> None:
    s = backend.store
    wins: list[int] = []
    barrier = threading.Barrier(6)

    def worker(me: int) -> None:
        barrier.wait()
        for k in range(10):
            if s.put_if_absent(f"race:{k}", me):
                wins.append(k)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(wins) == list(range(10))


# -- bad input -------------------------------------------------------------


@pytest.mark.parametrize("bad", [5, None, b"k", ("a",)])
def test_non_str_keys_are_rejected(backend: Backend, bad: Any) -> None:
    s = backend.store
    for call in (
        lambda: s.put(bad, 1),
        lambda: s.get(bad),
        lambda: s.delete(bad),
        lambda: s.put_if_absent(bad, 1),
        lambda: s.compare_and_set(bad, None, 1),
    ):
        with pytest.raises(TypeError, match="key must be a str, got"):
            call()
    with pytest.raises(TypeError, match="prefix must be a str"):
        s.list(bad)
    assert s.list() == []


def test_keys_that_are_not_unicode_text_are_rejected(backend: Backend) -> None:
    with pytest.raises(ConfigError, match="not valid Unicode"):
        backend.store.put("bad\udc80", 1)
    assert backend.store.list() == []


def test_unencodable_value_raises_and_keeps_the_old_value(codec_backend: Backend) -> None:
    s = codec_backend.store
    s.put("k", "old")
    for call in (lambda: s.put("k", object()), lambda: s.compare_and_set("k", "old", object())):
        with pytest.raises(CodecError, match="cannot store a value of type builtins.object") as info:
            call()
        assert info.value.key == "k"
    with pytest.raises(CodecError):
        s.put_if_absent("new", {"x": object()})
    assert s.get("k") == "old" and s.get("new") is None and sorted(s.list()) == ["k"]


@pytest.mark.parametrize(
    "raw, why",
    [
        (b"\x80\x04pickle-ish", "missing 'CVG' header"),
        (codec.MAGIC + b"\x09" + msgpack.packb(1), "unsupported store format version 9"),
        (codec.MAGIC + b"\x01" + b"\xc1", "corrupt stored value"),
        (codec.MAGIC + b"\x01" + msgpack.packb({"a": "long string"})[:-3], "corrupt stored value"),
        (
            codec.MAGIC + b"\x01" + msgpack.packb(msgpack.ExtType(1, msgpack.packb(["evil.Type", {}]))),
            "unregistered type 'evil.Type'",
        ),
    ],
)
def test_corrupt_value_names_the_key_and_spares_the_rest(codec_backend: Backend, raw: bytes, why: str) -> None:
    s = codec_backend.store
    s.put("good", {"ok": True})
    codec_backend.write_raw("bad", raw)
    with pytest.raises(CodecError, match=why) as info:
        s.get("bad")
    assert info.value.key == "bad" and "'bad'" in str(info.value)
    with pytest.raises(CodecError):
        s.compare_and_set("bad", None, 1)
    assert s.get("good") == {"ok": True}
    assert sorted(s.list()) == ["bad", "good"]
    s.put("bad", "repaired")
    assert s.get("bad") == "repaired"
    codec_backend.write_raw("bad", raw)
    s.delete("bad")
    assert s.get("bad") is None


def test_compare_and_delete(backend: Backend) -> None:
    s = backend.store
    assert s.compare_and_delete("k", 1) is False  # absent
    s.put("k", {"seen_at": 1.0})
    assert s.compare_and_delete("k", {"seen_at": 2.0}) is False
    assert s.get("k") == {"seen_at": 1.0}
    assert s.compare_and_delete("k", {"seen_at": 1.0}) is True
    assert s.get("k") is None and "k" not in s.list("")


def test_concurrent_compare_and_delete_has_one_winner(backend: Backend) -> None:
    import threading

    s = backend.store
    for round_no in range(5):
        s.put("once", {"round": round_no})
        wins: list[bool] = []
        barrier = threading.Barrier(4)

        def contend() -> None:
            barrier.wait()
            wins.append(s.compare_and_delete("once", {"round": round_no}))

        threads = [threading.Thread(target=contend) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(wins) == [False, False, False, True]
