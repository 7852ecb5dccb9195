"""The store codec: explicit, versioned, msgpack-based, with a registry of types.

Every persistent store (file, SQLite, Redis) writes values through
:func:`encode` and reads them through :func:`decode`. Nothing is ever
unpickled. The format is ``b"CVG" + version byte + msgpack``, where msgpack
extension types carry tuples, sets, enums and registered objects:

* ext 1: a registered object, ``[type name, {attribute: value}]``;
* ext 2: a tuple; ext 3: a set (items in a canonical order);
* ext 4: a registered enum, ``[type name, value]``; ext 5: a frozenset.

Extension values may nest at most :data:`MAX_DEPTH` levels deep (each level
is a separate msgpack unpack on the C stack; unbounded nesting in corrupt or
hostile data would overflow it and crash the process).

The project's own types (Task, Pool, Topic, Message, AgentDescriptor, the
policy and governance models, ...) are known by stable short names and
imported lazily on first use. Register your own with :func:`register_type`.
Data naming an unregistered type, or bytes that are not this format, raise
:class:`~converge.errors.CodecError` naming the store key.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from collections.abc import Callable
from enum import Enum
from typing import Any

import msgpack

from converge.errors import CodecError

MAGIC = b"CVG"
VERSION = 1
_HEADER = MAGIC + bytes([VERSION])

_EXT_OBJECT, _EXT_TUPLE, _EXT_SET, _EXT_ENUM, _EXT_FROZENSET = 1, 2, 3, 4, 5
MAX_DEPTH = 32
_INT_RANGE = range(-(2**63), 2**64)

# Stable names of the project's own types -> "module:qualname". Imported lazily.
_BUILTIN_PATHS: dict[str, str] = {
    "converge.Task": "converge.core.task:Task",
    "converge.TaskState": "converge.core.task:TaskState",
    "converge.Pool": "converge.core.pool:Pool",
    "converge.Topic": "converge.core.topic:Topic",
    "converge.Message": "converge.core.message:Message",
    "converge.Capability": "converge.core.capability:Capability",
    "converge.CapabilitySet": "converge.core.capability:CapabilitySet",
    "converge.AgentDescriptor": "converge.network.discovery:AgentDescriptor",
    "converge.OpenAdmission": "converge.policy.admission:OpenAdmission",
    "converge.WhitelistAdmission": "converge.policy.admission:WhitelistAdmission",
    "converge.TokenAdmission": "converge.policy.admission:TokenAdmission",
    "converge.TrustModel": "converge.policy.trust:TrustModel",
    "converge.DictatorialGovernance": "converge.policy.governance:DictatorialGovernance",
    "converge.DemocraticGovernance": "converge.policy.governance:DemocraticGovernance",
    "converge.BicameralGovernance": "converge.policy.governance:BicameralGovernance",
    "converge.VetoGovernance": "converge.policy.governance:VetoGovernance",
    "converge.EmpiricalGovernance": "converge.policy.governance:EmpiricalGovernance",
    "converge.ResourceLimits": "converge.policy.safety:ResourceLimits",
    "converge.ActionPolicy": "converge.policy.safety:ActionPolicy",
    "converge.NegotiationState": "converge.coordination.negotiation:NegotiationState",
    "converge.Proposal": "converge.coordination.negotiation:Proposal",
    "converge.NegotiationSession": "converge.coordination.negotiation:NegotiationSession",
}


@dataclasses.dataclass(frozen=True)
class _Entry:
    name: str
    cls: type
    to_state: Callable[[Any], dict[str, Any]]
    from_state: Callable[[type, dict[str, Any]], Any]


_lock = threading.Lock()
_by_name: dict[str, _Entry] = {}
_by_class: dict[type, _Entry] = {}
_paths_by_path = {v: k for k, v in _BUILTIN_PATHS.items()}


def _default_to_state(obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return {k: v for k, v in vars(obj).items()}


def _default_from_state(cls: type, state: dict[str, Any]) -> Any:
    obj = cls.__new__(cls)
    if dataclasses.is_dataclass(cls):
        for f in dataclasses.fields(cls):
            if f.name in state:
                continue
            if f.default is not dataclasses.MISSING:
                state[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                state[f.name] = f.default_factory()
    for k, v in state.items():
        object.__setattr__(obj, k, v)
    return obj


def register_type(
    cls: type,
    name: str | None = None,
    *,
    to_state: Callable[[Any], dict[str, Any]] | None = None,
    from_state: Callable[[type, dict[str, Any]], Any] | None = None,
) -> None:
    """Allow instances of ``cls`` in stored values.

    Args:
        cls: the class (a dataclass, an Enum, or a plain class whose ``__dict__`` is its state).
        name: stable name written into the data; defaults to ``module.qualname``.
        to_state / from_state: custom conversion; defaults use dataclass fields or ``__dict__``.
    """
    entry = _Entry(
        name or f"{cls.__module__}.{cls.__qualname__}",
        cls,
        to_state or _default_to_state,
        from_state or _default_from_state,
    )
    with _lock:
        _by_name[entry.name] = entry
        _by_class[cls] = entry


def _entry_for_class(cls: type) -> _Entry | None:
    entry = _by_class.get(cls)
    if entry is None:
        name = _paths_by_path.get(f"{cls.__module__}:{cls.__qualname__}")
        if name is not None:
            register_type(cls, name)
            entry = _by_class[cls]
    return entry


def _entry_for_name(name: str) -> _Entry:
    entry = _by_name.get(name)
    if entry is None:
        path = _BUILTIN_PATHS.get(name)
        if path is None:
            raise CodecError(f"stored value names an unregistered type {name!r}; register it with register_type()")
        module, _, qual = path.partition(":")
        try:
            cls = getattr(importlib.import_module(module), qual)
        except (ImportError, AttributeError) as exc:
            raise CodecError(f"stored value names type {name!r}, but {path} cannot be imported: {exc}") from exc
        register_type(cls, name)
        entry = _by_name[name]
    return entry


def _sort_key(item: Any) -> tuple[str, str]:
    return (type(item).__name__, repr(item))


_nesting = threading.local()


def _nested(fn: Callable[[Any], Any], arg: Any) -> Any:
    """Run one level of extension packing/unpacking, refusing more than MAX_DEPTH levels."""
    depth = getattr(_nesting, "depth", 0)
    if depth >= MAX_DEPTH:
        raise CodecError(f"value nests tuples/sets/objects more than {MAX_DEPTH} levels deep")
    _nesting.depth = depth + 1
    try:
        return fn(arg)
    finally:
        _nesting.depth = depth


def _default(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return msgpack.ExtType(_EXT_TUPLE, _nested(_pack, list(obj)))
    if isinstance(obj, frozenset):
        return msgpack.ExtType(_EXT_FROZENSET, _nested(_pack, sorted(obj, key=_sort_key)))
    if isinstance(obj, set):
        return msgpack.ExtType(_EXT_SET, _nested(_pack, sorted(obj, key=_sort_key)))
    if type(obj) is int and obj not in _INT_RANGE:
        raise OverflowError(f"integer {obj} does not fit in 64 bits")
    entry = _entry_for_class(type(obj))
    if entry is None:
        raise TypeError(
            f"cannot store a value of type {type(obj).__module__}.{type(obj).__qualname__}; "
            "register it with converge.core.codec.register_type()"
        )
    if isinstance(obj, Enum):
        return msgpack.ExtType(_EXT_ENUM, _nested(_pack, [entry.name, obj.value]))
    return msgpack.ExtType(_EXT_OBJECT, _nested(_pack, [entry.name, entry.to_state(obj)]))


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True, default=_default, strict_types=True)


def _ext_hook(code: int, data: bytes) -> Any:
    if code not in (_EXT_OBJECT, _EXT_TUPLE, _EXT_SET, _EXT_ENUM, _EXT_FROZENSET):
        raise CodecError(f"unknown extension code {code}")
    inner = _nested(_unpack, data)
    if code == _EXT_TUPLE:
        return tuple(inner)
    if code == _EXT_SET:
        return set(inner)
    if code == _EXT_FROZENSET:
        return frozenset(inner)
    if code in (_EXT_OBJECT, _EXT_ENUM):
        if not (isinstance(inner, list) and len(inner) == 2 and isinstance(inner[0], str)):
            raise CodecError("malformed object record")
        entry = _entry_for_name(inner[0])
        if code == _EXT_ENUM:
            return entry.cls(inner[1])
        if not isinstance(inner[1], dict):
            raise CodecError(f"malformed state for {inner[0]!r}")
        return entry.from_state(entry.cls, dict(inner[1]))
    raise CodecError(f"unknown extension code {code}")


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, ext_hook=_ext_hook, strict_map_key=False, use_list=True)


def encode(value: Any, *, key: str | None = None) -> bytes:
    """Serialise ``value`` for a store.

    Raises:
        CodecError: the value holds a type that is not registered, an integer
            outside 64 bits, or nests deeper than the limits.
    """
    try:
        return _HEADER + _pack(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise CodecError(f"cannot encode value: {exc}", key=key) from exc


def decode(data: bytes, *, key: str | None = None) -> Any:
    """Deserialise :func:`encode` output.

    Raises:
        CodecError: the bytes are not this codec's format (wrong header,
            unknown version, corrupt msgpack, unregistered type).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"expected bytes, got {type(data).__name__}", key=key)
    data = bytes(data)
    if data[:3] != MAGIC:
        raise CodecError("data is not in the converge store format (missing 'CVG' header)", key=key)
    if len(data) < 4 or data[3] != VERSION:
        version = data[3] if len(data) > 3 else None
        raise CodecError(f"unsupported store format version {version!r} (this library reads {VERSION})", key=key)
    try:
        return _unpack(data[4:])
    except CodecError as exc:
        raise CodecError(str(exc), key=key) from exc
    except Exception as exc:  # msgpack signals corruption with many exception types
        raise CodecError(f"corrupt stored value: {type(exc).__name__}: {exc}", key=key) from exc


__all__ = ["MAGIC", "MAX_DEPTH", "VERSION", "decode", "encode", "register_type"]
