"""Read-modify-write of one store key with ``compare_and_set``, retried on conflicts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from converge.core.store import Store
from converge.errors import ConvergeError

T = TypeVar("T")

MAX_ATTEMPTS = 1000


def cas_update(store: Store, key: str, modify: Callable[[Any], tuple[Any, T]]) -> tuple[Any, T]:
    """Apply ``modify(current) -> (new_value, outcome)`` atomically to ``key``.

    ``current`` is ``None`` when the key is absent. ``modify`` must not mutate
    ``current``; it may raise to abort (nothing is written). Returns the value
    written and the outcome.

    Raises:
        ConvergeError: the key kept changing for ``MAX_ATTEMPTS`` attempts.
    """
    for _ in range(MAX_ATTEMPTS):
        current = store.get(key)
        new, outcome = modify(current)
        written = store.put_if_absent(key, new) if current is None else store.compare_and_set(key, current, new)
        if written:
            return new, outcome
    raise ConvergeError(f"store key {key!r} kept changing during {MAX_ATTEMPTS} compare-and-set attempts")


__all__ = ["MAX_ATTEMPTS", "cas_update"]
