"""A store in Redis, shared by processes on several machines.

Needs the optional ``redis`` package (``pip install "converge[redis]"``,
also installed by the ``store-backends`` extra); it is imported when a
store is created, not when this module is imported.
"""

from __future__ import annotations

import logging
from typing import Any

from converge._extras import require
from converge.core import codec
from converge.core.store import Store
from converge.errors import CodecError, ConfigError, ConvergeError
from converge.extensions.storage._common import check_key, values_equal

_log = logging.getLogger(__name__)
_GLOB_SPECIAL = frozenset("*?[]\\")
_MAX_CAS_ATTEMPTS = 1000


def _glob_escape(prefix: str) -> str:
    """Escape Redis glob characters so ``prefix`` matches literally in ``SCAN MATCH``."""
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in prefix)


class RedisStore(Store):
    """Key/value pairs in a Redis database; values go through :mod:`converge.core.codec`.

    ``put_if_absent`` is ``SET key value NX``; ``compare_and_set`` is a
    ``WATCH``/``MULTI``/``EXEC`` transaction retried on conflict, comparing
    *decoded* values (two processes may encode an equal set in a different
    order). Both are atomic across processes and machines.

    Args:
        redis_url: used to build a client when ``client`` is not given.
        client: an existing ``redis.Redis`` client (``decode_responses`` must be off).
            A client passed in is not closed by :meth:`close`.

    Raises:
        MissingExtraError: the ``redis`` package is not installed.
        ConfigError: the client decodes responses to str.
    """

    atomic_put_if_absent = True
    supports_locking = True

    def __init__(self, redis_url: str = "redis://localhost:6379/0", *, client: Any = None) -> None:
        redis = require("redis", "redis", purpose='RedisStore (the "store-backends" extra installs it too)')
        self._watch_error: type[BaseException] = redis.WatchError
        self._response_error: type[BaseException] = redis.ResponseError
        self.redis_url = redis_url
        self._owns_client = client is None
        if client is None:
            client = redis.Redis.from_url(redis_url, decode_responses=False)
        kwargs = getattr(client, "get_connection_kwargs", lambda: {})()
        if kwargs.get("decode_responses"):
            raise ConfigError("RedisStore needs a redis client with decode_responses=False (values are bytes)")
        self._client = client

    def __repr__(self) -> str:
        return f"RedisStore({self.redis_url!r})" if self._owns_client else f"RedisStore(client={self._client!r})"

    @property
    def client(self) -> Any:
        """The underlying ``redis.Redis`` client."""
        return self._client

    def close(self) -> None:
        """Close the client if this store created it; idempotent."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> RedisStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- Store API -------------------------------------------------------
    def put(self, key: str, value: Any) -> None:
        """Create or overwrite ``key``.

        Raises:
            CodecError: the value holds a type the codec does not know.
        """
        check_key(key)
        self._client.set(key, codec.encode(value, key=key))

    def get(self, key: str) -> Any | None:
        """The value of ``key``, or ``None`` when absent.

        Raises:
            CodecError: the stored bytes are corrupt, not in the store format,
                or the key holds a non-string Redis type (names the key).
        """
        check_key(key)
        return self._read(self._client, key)

    def _read(self, conn: Any, key: str) -> Any | None:
        try:
            raw = conn.get(key)
        except self._response_error as exc:
            if "WRONGTYPE" not in str(exc):
                raise
            raise CodecError("the Redis key holds a non-string value (not written by a converge store)", key=key) from exc
        return None if raw is None else codec.decode(raw, key=key)

    def delete(self, key: str) -> None:
        """Remove ``key``; no error when absent."""
        check_key(key)
        self._client.delete(key)

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix`` (via ``SCAN``), sorted. Glob characters are literal.

        Keys that are not UTF-8 (written by other programs) are skipped with a warning.
        """
        check_key(prefix, name="prefix")
        keys: set[str] = set()
        foreign: list[bytes] = []
        for raw in self._client.scan_iter(match=_glob_escape(prefix) + "*", count=1000):
            try:
                key = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
            except UnicodeDecodeError:  # written by another program: not addressable through this API
                foreign.append(raw)
                continue
            if key.startswith(prefix):
                keys.add(key)
        if foreign:
            _log.warning("RedisStore: skipping %d key(s) that are not UTF-8: %r", len(foreign), foreign[:5])
        return sorted(keys)

    def put_if_absent(self, key: str, value: Any) -> bool:
        """Store ``value`` only if ``key`` is absent (``SET NX``); atomic."""
        check_key(key)
        return self._client.set(key, codec.encode(value, key=key), nx=True) is True

    def compare_and_set(self, key: str, expected: Any, value: Any) -> bool:
        """Replace ``key`` with ``value`` if its current value equals ``expected``.

        ``expected=None`` means "absent". Atomic: the write commits only if the
        key did not change since it was read (``WATCH``); a conflict retries.

        Raises:
            CodecError: the current value cannot be decoded (nothing is written).
            ConvergeError: the key kept changing for 1000 attempts.
        """
        check_key(key)
        data = codec.encode(value, key=key)
        with self._client.pipeline(transaction=True) as pipe:
            for _ in range(_MAX_CAS_ATTEMPTS):
                try:
                    pipe.watch(key)
                    current = self._read(pipe, key)
                    if not values_equal(current, expected):
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    pipe.set(key, data)
                    pipe.execute()
                    return True
                except self._watch_error:  # another writer got in between: read again
                    continue
        raise ConvergeError(f"compare_and_set on {key!r} lost {_MAX_CAS_ATTEMPTS} races in a row; giving up")

    def compare_and_delete(self, key: str, expected: Any) -> bool:
        """Delete ``key`` if its current value equals ``expected``; atomic through ``WATCH``/``MULTI``."""
        check_key(key)
        with self._client.pipeline(transaction=True) as pipe:
            for _ in range(_MAX_CAS_ATTEMPTS):
                try:
                    pipe.watch(key)
                    current = self._read(pipe, key)
                    if current is None or not values_equal(current, expected):
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    pipe.delete(key)
                    pipe.execute()
                    return True
                except self._watch_error:  # another writer got in between: read again
                    continue
        raise ConvergeError(f"compare_and_delete on {key!r} lost {_MAX_CAS_ATTEMPTS} races in a row; giving up")


__all__ = ["RedisStore"]
