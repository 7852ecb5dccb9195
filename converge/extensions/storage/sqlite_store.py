"""A store in one SQLite file (stdlib ``sqlite3``), safe across threads and processes."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from converge.core import codec
from converge.core.store import Store
from converge.errors import ConfigError, ConvergeError
from converge.extensions.storage._common import check_key, values_equal

_log = logging.getLogger(__name__)
_SCHEMA = "CREATE TABLE IF NOT EXISTS store (key TEXT PRIMARY KEY, value BLOB)"
_MAX_CODEPOINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def _prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix``.

    SQLite compares TEXT with memcmp over UTF-8, which orders like Python's
    code-point comparison, so ``prefix <= key < bound`` selects exactly the
    keys with that prefix (and uses the primary-key index). ``None`` means
    "no upper bound".
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code in _SURROGATES:
            code = _SURROGATES.stop
        if code <= _MAX_CODEPOINT:
            return "".join(chars) + chr(code)
    return None


def _set_up(conn: sqlite3.Connection, busy_timeout: float) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    # Switching a fresh file to WAL needs an exclusive lock and may report
    # "locked" without consulting the busy handler while another process does
    # the same; retry until the busy timeout has passed.
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(_SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class SQLiteStore(Store):
    """Key/value pairs in the table ``store(key TEXT PRIMARY KEY, value BLOB)``.

    The database runs in WAL mode with a busy timeout, so several processes
    can share one file. :meth:`put_if_absent` (``INSERT OR IGNORE``) and
    :meth:`compare_and_set` (a ``BEGIN IMMEDIATE`` transaction) are atomic
    across processes. One connection is shared by the threads of this
    instance behind a lock, so the store may be used from worker threads
    (``asyncio.to_thread``). Values go through :mod:`converge.core.codec`.

    Use it as a context manager, or call :meth:`close` when done.

    Args:
        path: the database file (parent directories are created), or ``":memory:"``.
        busy_timeout: seconds to wait for another process's write lock.
    """

    atomic_put_if_absent = True
    supports_locking = True

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        if not busy_timeout >= 0:
            raise ConfigError(f"busy_timeout must be >= 0 seconds, got {busy_timeout!r}")
        self.path = str(path)
        if self.path != ":memory:" and not self.path.startswith("file:"):
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        conn = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False, uri=self.path.startswith("file:")
        )
        try:
            _set_up(conn, busy_timeout)
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"SQLiteStore({self.path!r}, {state})"

    # -- lifecycle -------------------------------------------------------
    def close(self) -> None:
        """Close the connection; idempotent. Later operations raise."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ConvergeError(f"SQLiteStore({self.path!r}) is closed")
        return self._conn

    # -- Store API -------------------------------------------------------
    def put(self, key: str, value: Any) -> None:
        """Create or overwrite ``key``.

        Raises:
            CodecError: the value holds a type the codec does not know.
        """
        check_key(key)
        data = codec.encode(value, key=key)
        with self._lock:
            self._db().execute(
                "INSERT INTO store (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, data),
            )

    def get(self, key: str) -> Any | None:
        """The value of ``key``, or ``None`` when absent.

        Raises:
            CodecError: the stored row is corrupt or not in the store format (names the key).
        """
        check_key(key)
        with self._lock:
            row = self._db().execute("SELECT value FROM store WHERE key = ?", (key,)).fetchone()
        return None if row is None else codec.decode(row[0], key=key)

    def delete(self, key: str) -> None:
        """Remove ``key``; no error when absent."""
        check_key(key)
        with self._lock:
            self._db().execute("DELETE FROM store WHERE key = ?", (key,))

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, sorted. ``%`` and ``_`` in the prefix are literal."""
        check_key(prefix, name="prefix")
        upper = _prefix_upper_bound(prefix)
        with self._lock:
            if upper is None:
                rows = self._db().execute("SELECT key FROM store WHERE key >= ? ORDER BY key", (prefix,))
            else:
                rows = self._db().execute(
                    "SELECT key FROM store WHERE key >= ? AND key < ? ORDER BY key", (prefix, upper)
                )
            keys = [r[0] for r in rows.fetchall()]
        foreign = [k for k in keys if not isinstance(k, str)]
        if foreign:  # written by another program: not addressable through this API
            _log.warning("SQLiteStore %s: skipping %d row(s) whose key is not TEXT: %r", self.path, len(foreign), foreign[:5])
        return [k for k in keys if isinstance(k, str) and k.startswith(prefix)]

    def put_if_absent(self, key: str, value: Any) -> bool:
        """Store ``value`` only if ``key`` is absent; atomic across processes."""
        check_key(key)
        data = codec.encode(value, key=key)
        with self._lock:
            cur = self._db().execute("INSERT OR IGNORE INTO store (key, value) VALUES (?, ?)", (key, data))
            return cur.rowcount == 1

    def compare_and_set(self, key: str, expected: Any, value: Any) -> bool:
        """Replace ``key`` with ``value`` if its current value equals ``expected``.

        ``expected=None`` means "absent". The read, the comparison (on decoded
        values) and the write happen in one ``BEGIN IMMEDIATE`` transaction,
        so the operation is atomic across processes.

        Raises:
            CodecError: the current value cannot be decoded (nothing is written).
        """
        check_key(key)
        data = codec.encode(value, key=key)
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT value FROM store WHERE key = ?", (key,)).fetchone()
                current = None if row is None else codec.decode(row[0], key=key)
                if not values_equal(current, expected):
                    db.execute("ROLLBACK")
                    return False
                db.execute(
                    "INSERT INTO store (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, data),
                )
                db.execute("COMMIT")
                return True
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def compare_and_delete(self, key: str, expected: Any) -> bool:
        """Delete ``key`` if its current value equals ``expected``, in one ``BEGIN IMMEDIATE`` transaction."""
        check_key(key)
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT value FROM store WHERE key = ?", (key,)).fetchone()
                if row is None or not values_equal(codec.decode(row[0], key=key), expected):
                    db.execute("ROLLBACK")
                    return False
                db.execute("DELETE FROM store WHERE key = ?", (key,))
                db.execute("COMMIT")
                return True
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return int(self._db().execute("SELECT COUNT(*) FROM store").fetchone()[0])


__all__ = ["SQLiteStore"]
