"""Configuration of ``converge run``: keys, environment, files, validation and store selection.

Precedence (reference Appendix A.9): built-in defaults < ``CONVERGE_<KEY>``
environment variables < the config file (YAML needs the ``cli`` extra, TOML
uses ``tomllib``). Unlike the reference, nothing questionable is ignored:
an unknown key, a bad value, a missing or unparsable file raises
:class:`~converge.errors.ConfigError` whose one-line message names the key,
the value, where it came from and what is accepted.
"""

from __future__ import annotations

import os
import reprlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converge._extras import require
from converge.core.store import Store
from converge.errors import ConfigError

ENV_PREFIX = "CONVERGE_"
TRANSPORTS = ("local", "tcp", "websocket")
STORE_BACKENDS = ("memory", "file", "sqlite", "redis")
MAX_AGENTS = 1024

# key -> (meaning, default shown in --help)
KEYS: dict[str, tuple[str, str]] = {
    "transport": (f"transport of every agent: {', '.join(TRANSPORTS)}", "local"),
    "host": ("host the network transports bind to", "127.0.0.1"),
    "port": ("first port of the tcp/websocket transports (agent i uses port+i); 0 = OS-assigned", "8888"),
    "agents": (f"number of agents in this process (1..{MAX_AGENTS})", "1"),
    "pool_id": ("create this pool and make every agent join it", "unset"),
    "discovery_store": ("legacy store: 'memory' or a FileStore directory; enables discovery", "unset"),
    "store_backend": (f"store backend: {', '.join(STORE_BACKENDS)}; enables discovery", "unset"),
    "store_path": ("file directory, SQLite file or Redis URL of the store backend", "backend default"),
}
CONFIG_ENV = ENV_PREFIX + "CONFIG"
STORE_DEFAULT_PATHS = {"file": ".converge-store", "sqlite": ".converge-store.sqlite3", "redis": "redis://localhost:6379/0"}
FILE_SUFFIXES = (".toml", ".yaml", ".yml")

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 200, 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 5
_SCALARS = (str, int, float, bool, type(None))


def short_repr(value: Any) -> str:
    """A bounded ``repr`` for error messages: YAML aliases can make a value exponentially large."""
    shown = _REPR.repr(value)
    return shown if isinstance(value, _SCALARS) else f"a {type(value).__name__} {shown}"


@dataclass(frozen=True)
class RunConfig:
    """The validated settings of ``converge run``."""

    transport: str = "local"
    host: str = "127.0.0.1"
    port: int = 8888
    agents: int = 1
    pool_id: str | None = None
    discovery_store: str | None = None
    store_backend: str | None = None
    store_path: str | None = None

    @property
    def discovery_enabled(self) -> bool:
        """Discovery runs when a store was asked for (``store_backend`` or ``discovery_store``)."""
        return self.store_backend is not None or self.discovery_store is not None

    @property
    def shared_managers(self) -> bool:
        """Pool and task managers are created when there are several agents or a pool."""
        return self.agents > 1 or self.pool_id is not None


def _accepted_keys() -> str:
    return ", ".join(KEYS)


def read_env(environ: Mapping[str, str] | None = None) -> dict[str, tuple[Any, str]]:
    """``CONVERGE_<KEY>`` variables as ``{key: (value, source)}``; empty values count as unset."""
    environ = os.environ if environ is None else environ
    found: dict[str, tuple[Any, str]] = {}
    for key in KEYS:
        name = ENV_PREFIX + key.upper()
        value = environ.get(name)
        if value is not None and value.strip() != "":
            found[key] = (value.strip(), f"environment variable {name}")
    return found


def unknown_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """``CONVERGE_*`` variables that are not configuration keys (likely typos), sorted."""
    environ = os.environ if environ is None else environ
    known = {ENV_PREFIX + key.upper() for key in KEYS} | {CONFIG_ENV}
    return sorted(name for name in environ if name.startswith(ENV_PREFIX) and name not in known)


def read_file(path: str | os.PathLike[str]) -> dict[str, tuple[Any, str]]:
    """Keys of a TOML or YAML config file as ``{key: (value, source)}``.

    Raises:
        ConfigError: the file is missing, has another suffix, does not parse,
            is not a mapping, or holds a key that is not a configuration key.
    """
    file = Path(path)
    where = f"config file {str(file)!r}"
    suffix = file.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise ConfigError(f"{where}: unsupported file type {suffix or '(none)'!r}; accepted: {', '.join(FILE_SUFFIXES)}")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} cannot be read: {exc}") from exc
    data = _parse(text, suffix, where)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must contain a mapping of keys to values, got {type(data).__name__}")
    found: dict[str, tuple[Any, str]] = {}
    for key, value in data.items():
        if key not in KEYS:
            raise ConfigError(f"unknown key {short_repr(key)} (value {short_repr(value)}) in {where}; accepted keys: {_accepted_keys()}")
        found[key] = (value, where)
    return found


def _parse(text: str, suffix: str, where: str) -> Any:
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where} is not valid TOML: {_one_line(exc)}") from exc
        except RecursionError:
            raise ConfigError(f"{where} nests too deeply") from None
    yaml = require("yaml", "cli", purpose="YAML config files")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {_one_line(exc)}") from exc
    except RecursionError:
        raise ConfigError(f"{where} nests too deeply") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def load_run_config(path: str | None, environ: Mapping[str, str] | None = None) -> RunConfig:
    """Merge environment and file (file wins), validate, and return a :class:`RunConfig`.

    Args:
        path: the config file, or ``None`` for the environment only.
        environ: the environment (default ``os.environ``).
    """
    merged = read_env(environ)
    if path is not None:
        merged.update(read_file(path))
    return validate(merged)


def validate(raw: Mapping[str, tuple[Any, str]]) -> RunConfig:
    """Check every ``(value, source)`` and build the config; raises :class:`ConfigError` at the first bad one."""
    values: dict[str, Any] = {}
    for key, (value, source) in raw.items():
        if key not in KEYS:
            raise ConfigError(f"unknown key {short_repr(key)} (value {short_repr(value)}) from {source}; accepted keys: {_accepted_keys()}")
        values[key] = _check(key, value, source)
    config = RunConfig(**values)
    if config.port == 0 and config.transport == "local" and "port" in values:
        source = raw["port"][1]
        raise ConfigError(
            f"port = 0 (from {source}) means OS-assigned, which only applies to the network transports "
            "(tcp, websocket), not 'local'; accepted: 1..65535"
        )
    if config.transport != "local" and config.port and config.port + config.agents - 1 > 65535:
        source = raw["port"][1] if "port" in raw else "the default"
        raise ConfigError(
            f"port {config.port} (from {source}) with {config.agents} agents needs ports up to "
            f"{config.port + config.agents - 1}; accepted: port + agents - 1 <= 65535"
        )
    return config


def _check(key: str, value: Any, source: str) -> Any:
    where = f"{key} = {short_repr(value)} (from {source})"
    if not isinstance(value, _SCALARS):
        accepted = "an integer" if key in ("port", "agents") else "a non-empty string"
        raise ConfigError(f"invalid {where}; accepted: {accepted}, not a {type(value).__name__}")
    if key in ("port", "agents"):
        number = _as_int(value)
        low, high = (0, 65535) if key == "port" else (1, MAX_AGENTS)
        if number is None or not low <= number <= high:
            accepted = "an integer 1..65535 (0 = OS-assigned, tcp/websocket only)" if key == "port" else f"an integer {low}..{high}"
            raise ConfigError(f"invalid {where}; accepted: {accepted}")
        return number
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"invalid {where}; accepted: a non-empty string")
    text = value.strip()
    if key == "transport":
        text = text.lower()
        if text not in TRANSPORTS:
            raise ConfigError(f"invalid {where}; accepted: {', '.join(TRANSPORTS)}")
    elif key == "store_backend":
        text = text.lower()
        if text not in STORE_BACKENDS:
            raise ConfigError(f"invalid {where}; accepted: {', '.join(STORE_BACKENDS)}")
    return text


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        digits = value.strip().lstrip("+-")
        # ASCII decimal digits only: isdigit() accepts superscripts int() refuses, and int() accepts "٣"
        if digits.isascii() and digits.isdecimal():
            return int(value.strip())
    return None


def create_store(backend: str | None, location: str | None = None, *, legacy_discovery_store: str | None = None) -> Store | None:
    """The store of a configuration (reference section 10.3).

    ``backend`` unset: ``legacy_discovery_store`` unset -> ``None``; ``"memory"``
    -> MemoryStore; anything else is a FileStore directory. ``backend`` set:
    ``memory``, ``file`` (directory), ``sqlite`` (database file) or ``redis``
    (URL); the location is ``location``, else the legacy value, else the
    backend's default (``STORE_DEFAULT_PATHS``).
    """
    if backend is None:
        if legacy_discovery_store is None:
            return None
        if legacy_discovery_store.strip().lower() == "memory":
            backend = "memory"
        else:
            backend, location = "file", legacy_discovery_store
    backend = backend.strip().lower()
    where = location or legacy_discovery_store or STORE_DEFAULT_PATHS.get(backend)
    if backend == "memory":
        from converge.extensions.storage.memory import MemoryStore

        return MemoryStore()
    if backend == "file":
        from converge.extensions.storage.file import FileStore

        return FileStore(str(where))
    if backend == "sqlite":
        from converge.extensions.storage.sqlite_store import SQLiteStore

        return SQLiteStore(str(where))
    if backend == "redis":
        from converge.extensions.storage.redis_store import RedisStore

        return RedisStore(redis_url=str(where))
    raise ConfigError(f"invalid store_backend = {backend!r}; accepted: {', '.join(STORE_BACKENDS)}")


def close_store(store: Store | None) -> None:
    """Close a store that has a ``close()`` (SQLite, Redis)."""
    close = getattr(store, "close", None)
    if callable(close):
        close()


__all__ = [
    "CONFIG_ENV",
    "KEYS",
    "STORE_BACKENDS",
    "TRANSPORTS",
    "RunConfig",
    "close_store",
    "create_store",
    "load_run_config",
    "read_env",
    "read_file",
    "unknown_env",
    "validate",
]
