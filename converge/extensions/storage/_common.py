"""Helpers shared by the store backends: key checks and value comparison."""

from __future__ import annotations

from typing import Any

from converge.core import codec
from converge.errors import CodecError, ConfigError


def check_key(key: object, *, name: str = "key") -> str:
    """Return ``key`` if it is a str that can be stored, else raise a typed error.

    Raises:
        TypeError: ``key`` is not a str.
        ConfigError: ``key`` cannot be encoded as UTF-8 (e.g. a lone surrogate).
    """
    if not isinstance(key, str):
        raise TypeError(f"store {name} must be a str, got {type(key).__name__} {key!r}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"store {name} {key!r} is not valid Unicode text (cannot be encoded as UTF-8)") from exc
    return key


def values_equal(current: Any, expected: Any) -> bool:
    """Whether a stored value matches what a caller expects (for ``compare_and_set``).

    Values are compared with ``==`` first. Objects without value equality
    (policy objects compared by identity, say) also match when their codec
    encodings are byte-identical, i.e. they hold the same state. Sets encode
    in a canonical order, so two equal sets built in different orders (or in
    different processes) match either way.
    """
    if current is None or expected is None:
        return current is None and expected is None
    try:
        same = bool(current == expected)
    except (TypeError, ValueError):  # an odd __eq__; the encoded form below decides
        same = False
    if same:
        return True
    try:
        return codec.encode(current) == codec.encode(expected)
    except CodecError:
        return False


__all__ = ["check_key", "values_equal"]
