"""RedisStore specifics against a real redis-server (the ``redis_url`` fixture)."""

from __future__ import annotations

import threading

import pytest

from converge.core.pool import Pool
from converge.errors import CodecError, ConfigError

redis = pytest.importorskip("redis")

from converge.extensions.storage.redis_store import RedisStore, _glob_escape  # noqa: E402


@pytest.fixture
def store(redis_url: str):
    with RedisStore(redis_url) as s:
        yield s


def test_values_are_codec_bytes_in_redis(store: RedisStore, redis_url: str) -> None:
    store.put("pool:p", Pool(id="p", agents={"a"}))
    raw = redis.Redis.from_url(redis_url).get("pool:p")
    assert raw[:3] == b"CVG"
    assert store.get("pool:p") == Pool(id="p", agents={"a"})


def test_given_client_is_used_and_not_closed(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with RedisStore(client=client) as s:
        s.put("k", 1)
        assert s.client is client
    assert client.get("k")[:3] == b"CVG"  # still usable after the store closed
    client.close()


def test_client_that_decodes_responses_is_rejected(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ConfigError, match="decode_responses=False"):
        RedisStore(client=client)
    client.close()


def test_list_scans_every_key(store: RedisStore) -> None:
    pipe = store.client.pipeline()
    for i in range(2500):
        pipe.set(f"task:{i}", b"x")
    pipe.set("pool:1", b"x")
    pipe.execute()
    keys = store.list("task:")
    assert len(keys) == 2500 and len(set(keys)) == 2500
    assert store.list("pool:") == ["pool:1"]


def test_list_skips_keys_that_are_not_utf8(store: RedisStore, caplog: pytest.LogCaptureFixture) -> None:
    store.client.set(b"k\xff\xfe", b"x")
    store.put("k1", 1)
    assert store.list("k") == ["k1"]
    assert "skipping 1 key(s) that are not UTF-8" in caplog.text


def test_close_is_idempotent(redis_url: str) -> None:
    s = RedisStore(redis_url)
    s.put("k", 1)
    s.close()
    s.close()


def test_glob_escape() -> None:
    assert _glob_escape("a*b?c[d]\\e") == "a\\*b\\?c\\[d\\]\\\\e"


def test_non_string_redis_value_names_the_key(store: RedisStore) -> None:
    store.client.rpush("a-list", b"x")
    store.put("good", 1)
    with pytest.raises(CodecError, match="non-string value") as info:
        store.get("a-list")
    assert info.value.key == "a-list"
    with pytest.raises(CodecError):
        store.compare_and_set("a-list", None, 1)
    assert store.get("good") == 1


def test_put_if_absent_is_atomic_across_clients(redis_url: str) -> None:
    stores = [RedisStore(redis_url) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    wins: list[tuple[int, int]] = []

    def worker(i: int) -> None:
        barrier.wait()
        wins.extend((k, i) for k in range(30) if stores[i].put_if_absent(f"claim:{k}", i))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(k for k, _ in wins) == list(range(30))
    for k, i in wins:
        assert stores[0].get(f"claim:{k}") == i
    for s in stores:
        s.close()


def test_compare_and_set_is_atomic_across_clients(redis_url: str) -> None:
    stores = [RedisStore(redis_url) for _ in range(4)]
    per_client = 25

    def worker(s: RedisStore) -> None:
        for _ in range(per_client):
            while True:
                cur = s.get("counter")
                if s.compare_and_set("counter", cur, (cur or 0) + 1):
                    break

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[0].get("counter") == len(stores) * per_client
    for s in stores:
        s.close()


def test_flags() -> None:
    assert RedisStore.atomic_put_if_absent is True and RedisStore.supports_locking is True
