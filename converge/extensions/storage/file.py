"""A store that keeps one file per key in a directory.

File names are the URL-safe base64 of the UTF-8 key without ``=`` padding
(the empty key is ``_``), so no key can name a path outside the directory.
Values go through the store codec (:mod:`converge.core.codec`); nothing is
unpickled. Writes go to a ``.tmp-*`` file in the same directory that is then
renamed over the target, so readers never see a half-written value.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from converge.core import codec
from converge.core.store import Store
from converge.errors import ConfigError
from converge.extensions.storage._common import check_key, values_equal

try:  # POSIX only; FileStore(locking=True) needs it
    import fcntl
except ImportError:  # pragma: no cover - exercised on Windows only
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

_LOCK_NAME = ".store.lock"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_SEC = 60.0  # a temp file this old was left by a writer that died (writes take milliseconds)
_MAX_NAME = 255  # bytes in one file name on common file systems
_NO_LINK_ERRNOS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV}


def encode_key(key: str) -> str:
    """The file name that holds ``key``."""
    if key == "":
        return "_"
    return base64.urlsafe_b64encode(key.encode("utf-8")).rstrip(b"=").decode("ascii")


def decode_name(name: str) -> str | None:
    """The key a file name holds, or ``None`` when the name is not a canonical encoding."""
    if name == "_":
        return ""
    try:
        raw = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4))
        key = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return key if encode_key(key) == name else None


class FileStore(Store):
    """One file per key under ``base_path``.

    Args:
        base_path: the directory; created (with parents) if missing.
        locking: hold an exclusive ``fcntl.flock`` on ``<base_path>/.store.lock``
            around every operation, which makes :meth:`compare_and_set` atomic
            across processes. Needs a POSIX platform.

    ``put_if_absent`` is atomic across processes with or without ``locking``
    (the complete value is hard-linked to its name, which fails if the name
    exists). Without ``locking``, ``compare_and_set`` is atomic only among the
    threads of this instance. The class advertises ``supports_locking``; an
    instance's ``supports_locking`` says whether it actually locks.

    Files written by older versions under the raw key name are still read
    (and deleted) when the name stays inside the directory and is not itself
    the encoded name of another key.

    Opening a store deletes ``.tmp-*`` files older than a minute: a writer that
    was killed between writing and renaming leaves one behind (they are never
    read). ``swept_temp_files`` counts the files this instance removed.

    Raises:
        ConfigError: ``base_path`` is not a directory, or ``locking=True`` on a
            platform without ``fcntl``.
    """

    atomic_put_if_absent = True
    supports_locking = True

    def __init__(self, base_path: str | os.PathLike[str], *, locking: bool = False) -> None:
        if locking and fcntl is None:
            raise ConfigError("FileStore(locking=True) needs fcntl, which this platform does not have")
        self.base_path = Path(base_path)
        if self.base_path.exists() and not self.base_path.is_dir():
            raise ConfigError(f"FileStore base_path {str(self.base_path)!r} exists and is not a directory")
        self.base_path.mkdir(parents=True, exist_ok=True)
        self.locking = locking
        self.supports_locking = locking
        self._thread_lock = threading.RLock()
        self.swept_temp_files = 0
        self._sweep_temp_files()

    def __repr__(self) -> str:
        return f"FileStore({str(self.base_path)!r}, locking={self.locking})"

    # -- paths -----------------------------------------------------------
    def _path(self, key: str) -> Path:
        name = encode_key(key)
        if len(name) > _MAX_NAME:
            raise ConfigError(
                f"FileStore key is too long: {len(key.encode('utf-8'))} UTF-8 bytes encode to a "
                f"{len(name)}-character file name (limit {_MAX_NAME}); use a shorter key (key {key[:40]!r}...)"
            )
        return self.base_path / name

    def _legacy_path(self, key: str) -> Path | None:
        """The pre-encoding file name of ``key``, only when it is safe and unambiguous."""
        if not key or key.startswith(".") or "/" in key or "\0" in key:
            return None
        if os.sep in key or (os.altsep and os.altsep in key):
            return None
        if decode_name(key) is not None:  # that name belongs to an encoded key
            return None
        if len(key.encode("utf-8")) > _MAX_NAME:
            return None
        path = self.base_path / key
        return path if path.parent == self.base_path else None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            if not self.locking:
                yield
                return
            # A fresh open file description per operation, so flock also
            # excludes other instances in this process, not only other processes.
            fd = os.open(self.base_path / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the lock

    def _sweep_temp_files(self) -> None:
        """Delete temp files older than a minute left by killed writers; log what was removed."""
        cutoff = time.time() - _STALE_TMP_SEC
        with self._locked():
            for entry in os.scandir(self.base_path):
                if not entry.name.startswith(_TMP_PREFIX):
                    continue
                try:
                    if not entry.is_file(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_mtime > cutoff:
                        continue
                    os.unlink(entry.path)
                except FileNotFoundError:  # another process swept it first
                    continue
                except OSError as exc:
                    logger.warning("FileStore %s: cannot remove stale temp file %s: %s", self.base_path, entry.name, exc)
                    continue
                self.swept_temp_files += 1
        if self.swept_temp_files:
            logger.info("FileStore %s: removed %d stale temp file(s) left by interrupted writes",
                        self.base_path, self.swept_temp_files)

    def _write_temp(self, data: bytes) -> str:
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=self.base_path)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return tmp

    # -- Store API -------------------------------------------------------
    def put(self, key: str, value: Any) -> None:
        """Create or overwrite ``key`` atomically.

        Raises:
            CodecError: the value holds a type the codec does not know.
        """
        check_key(key)
        data = codec.encode(value, key=key)
        path = self._path(key)
        with self._locked():
            self._replace(path, data)
            legacy = self._legacy_path(key)
            if legacy is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(legacy)

    def _replace(self, path: Path, data: bytes) -> None:
        tmp = self._write_temp(data)
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def get(self, key: str) -> Any | None:
        """The value of ``key``, or ``None`` when absent.

        Raises:
            CodecError: the file is corrupt or not in the store format (names the key).
        """
        check_key(key)
        with self._locked():
            return self._read(key)

    def _read(self, key: str) -> Any | None:
        for path in (self._path(key), self._legacy_path(key)):
            if path is None:
                continue
            try:
                data = path.read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                continue
            return codec.decode(data, key=key)
        return None

    def delete(self, key: str) -> None:
        """Remove ``key`` (its encoded and legacy files); no error when absent."""
        check_key(key)
        with self._locked():
            for path in (self._path(key), self._legacy_path(key)):
                if path is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, sorted. Lock and temp files are never keys."""
        check_key(prefix, name="prefix")
        with self._locked():
            try:
                entries = list(os.scandir(self.base_path))
            except FileNotFoundError:
                return []
        keys: set[str] = set()
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            key = decode_name(entry.name)
            keys.add(entry.name if key is None else key)
        return sorted(k for k in keys if k.startswith(prefix))

    def put_if_absent(self, key: str, value: Any) -> bool:
        """Store ``value`` only if ``key`` is absent; atomic across processes."""
        check_key(key)
        data = codec.encode(value, key=key)
        path = self._path(key)
        with self._locked():
            legacy = self._legacy_path(key)
            if path.exists() or (legacy is not None and legacy.exists()):
                return False
            return self._create_exclusive(path, data)

    def _create_exclusive(self, path: Path, data: bytes) -> bool:
        tmp = self._write_temp(data)
        try:
            os.link(tmp, path)  # fails if the name exists; readers only ever see the whole value
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in _NO_LINK_ERRNOS:
                raise
            # A file system without hard links: exclusive create, then write.
            return self._create_exclusive_no_link(path, data)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    @staticmethod
    def _create_exclusive_no_link(path: Path, data: bytes) -> bool:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            raise
        return True

    def compare_and_set(self, key: str, expected: Any, value: Any) -> bool:
        """Replace ``key`` with ``value`` if its current value equals ``expected``.

        ``expected=None`` means "absent". Atomic across processes when the
        store was made with ``locking=True``; otherwise only within this instance.
        """
        check_key(key)
        data = codec.encode(value, key=key)
        path = self._path(key)
        with self._locked():
            if not values_equal(self._read(key), expected):
                return False
            self._replace(path, data)
            legacy = self._legacy_path(key)
            if legacy is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(legacy)
            return True

    def compare_and_delete(self, key: str, expected: Any) -> bool:
        """Delete ``key`` if its current value equals ``expected`` (atomic like :meth:`compare_and_set`)."""
        check_key(key)
        with self._locked():
            current = self._read(key)
            if current is None or not values_equal(current, expected):
                return False
            for path in (self._path(key), self._legacy_path(key)):
                if path is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
            return True


__all__ = ["FileStore"]
