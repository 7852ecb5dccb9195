"""FileStore specifics: file names, path safety, temp files, legacy files, locking."""

from __future__ import annotations

import base64
import os
import threading
import time
from pathlib import Path

import pytest

from converge.core import codec
from converge.errors import CodecError, ConfigError
from converge.extensions.storage.file import FileStore, decode_name, encode_key

ESCAPING_KEYS = ["../x", "../../etc/passwd", "/etc/passwd", "a/b", "", "..", ".", "é/..", "~root", "C:\\x", "a\0b"]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("key", ESCAPING_KEYS)
def test_no_key_writes_outside_the_directory(tmp_path: Path, key: str) -> None:
    base = tmp_path / "store"
    store = FileStore(base)
    before = _tree(tmp_path)
    store.put(key, "v")
    created = _tree(tmp_path) - before
    assert created == {f"store/{encode_key(key)}"}
    assert store.get(key) == "v" and store.list() == [key]


def test_file_names_are_unpadded_urlsafe_base64(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("task:1", 1)
    store.put("", 2)
    store.put("??>", 3)  # bytes that standard base64 would encode with '/' or '+'
    names = sorted(n for n in os.listdir(tmp_path) if not n.startswith("."))
    assert names == sorted(["dGFzazox", "_", base64.urlsafe_b64encode(b"??>").decode().rstrip("=")])
    assert all("/" not in n and "+" not in n and "=" not in n for n in names)
    assert (tmp_path / "dGFzazox").read_bytes()[:4] == codec.MAGIC + bytes([codec.VERSION])


def test_encode_decode_name_round_trip() -> None:
    for key in ["", "a", "ab", "abc", "é☃", "../x", "x" * 100]:
        assert decode_name(encode_key(key)) == key
    assert decode_name("not base64!") is None
    assert decode_name("YQ=") is None  # padded: not how we write names
    assert decode_name("_w") is None  # valid base64 but not UTF-8


def test_temp_and_lock_files_are_never_keys(tmp_path: Path) -> None:
    store = FileStore(tmp_path, locking=True)
    store.put("k", 1)
    (tmp_path / ".tmp-abc123").write_bytes(b"half written")  # a writer that crashed
    (tmp_path / "subdir").mkdir()
    assert (tmp_path / ".store.lock").exists()
    assert store.list() == ["k"]


@pytest.mark.parametrize("locking", [False, True])
def test_opening_a_store_sweeps_stale_temp_files_only(tmp_path: Path, locking: bool) -> None:
    FileStore(tmp_path).put("k", 1)
    old = time.time() - 120
    for name in (".tmp-killed1", ".tmp-killed2", encode_key("old-key")):
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (old, old))
    (tmp_path / ".tmp-inflight").write_bytes(b"being written")  # a live writer's file: recent, kept
    (tmp_path / ".tmp-dir").mkdir()
    os.utime(tmp_path / ".tmp-dir", (old, old))  # not a file: left alone
    store = FileStore(tmp_path, locking=locking)
    names = set(os.listdir(tmp_path))
    assert ".tmp-killed1" not in names and ".tmp-killed2" not in names
    assert {".tmp-inflight", ".tmp-dir", encode_key("k"), encode_key("old-key")} <= names
    assert store.swept_temp_files == 2 and store.get("k") == 1
    assert FileStore(tmp_path).swept_temp_files == 0  # nothing left to sweep


def test_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("k", "old")
    with pytest.raises(CodecError):
        store.put("k", object())
    assert sorted(os.listdir(tmp_path)) == [encode_key("k")]
    assert store.get("k") == "old"


def test_writes_replace_atomically(tmp_path: Path) -> None:
    """Readers racing a writer only ever see complete values."""
    store = FileStore(tmp_path)
    big = {"blob": "x" * 200_000}
    store.put("k", {"blob": ""})
    stop = threading.Event()
    seen: list[object] = []

    def reader() -> None:
        while not stop.is_set():
            seen.append(store.get("k"))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(20):
            store.put("k", big if i % 2 else {"blob": ""})
    finally:
        stop.set()
        t.join()
    assert seen and all(v in ({"blob": ""}, big) for v in seen)
    assert store.list() == ["k"]


def test_legacy_raw_key_files_are_read_listed_migrated_and_deleted(tmp_path: Path) -> None:
    (tmp_path / "legacy-key").write_bytes(codec.encode({"old": True}))
    store = FileStore(tmp_path)
    assert store.get("legacy-key") == {"old": True}
    assert store.list() == ["legacy-key"]
    assert store.put_if_absent("legacy-key", 1) is False
    store.put("legacy-key", {"new": True})  # migrates to the encoded name
    assert not (tmp_path / "legacy-key").exists()
    assert store.get("legacy-key") == {"new": True} and store.list() == ["legacy-key"]
    (tmp_path / "other-legacy").write_bytes(codec.encode(1))
    store.delete("other-legacy")
    assert not (tmp_path / "other-legacy").exists()


def test_legacy_fallback_never_leaves_the_directory(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(codec.encode("top secret"))
    base = tmp_path / "store"
    store = FileStore(base)
    assert store.get("../secret") is None
    store.delete("../secret")
    assert (tmp_path / "secret").exists()
    assert store.put_if_absent("../secret", "mine") is True
    assert (tmp_path / "secret").read_bytes() == codec.encode("top secret")


def test_legacy_fallback_does_not_confuse_encoded_names(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("a", "value of a")  # stored in the file named "YQ"
    assert encode_key("a") == "YQ"
    assert store.get("YQ") is None  # "YQ" is a different key, not a legacy file
    assert store.put_if_absent("YQ", "value of YQ") is True
    assert store.get("a") == "value of a" and store.get("YQ") == "value of YQ"


def test_corrupt_file_names_the_key(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("good", 1)
    store.put("bad", 2)
    (tmp_path / encode_key("bad")).write_bytes(b"\x80\x04\x95garbage")  # e.g. an old pickle
    with pytest.raises(CodecError, match="'bad'"):
        store.get("bad")
    assert store.get("good") == 1


def test_overlong_key_is_rejected(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put("k" * 191, 1)  # 191 bytes -> 255 characters: the longest that fits
    with pytest.raises(ConfigError, match="key is too long"):
        store.put("k" * 192, 1)
    assert store.list() == ["k" * 191]


def test_base_path_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        FileStore(tmp_path / "file")
    store = FileStore(tmp_path / "a" / "b" / "c")
    assert store.base_path.is_dir()


def test_flags(tmp_path: Path) -> None:
    assert FileStore.atomic_put_if_absent is True and FileStore.supports_locking is True
    assert FileStore(tmp_path / "a").supports_locking is False
    locked = FileStore(tmp_path / "b", locking=True)
    assert locked.supports_locking is True and locked.locking is True


def test_locking_excludes_a_second_instance(tmp_path: Path) -> None:
    """Two instances (separate lock file handles) in one process also exclude each other."""
    a = FileStore(tmp_path, locking=True)
    b = FileStore(tmp_path, locking=True)
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def hold() -> None:
        with a._locked():
            inside.set()
            release.wait(5)
            order.append("a released")

    t = threading.Thread(target=hold)
    t.start()
    assert inside.wait(5)
    done = threading.Event()

    def put_b() -> None:
        b.put("k", 1)
        order.append("b wrote")
        done.set()

    t2 = threading.Thread(target=put_b)
    t2.start()
    assert not done.wait(0.2)  # b is blocked on the lock while a holds it
    release.set()
    t.join()
    t2.join()
    assert order == ["a released", "b wrote"]
