"""JSON encoding of replay events: bytes survive a round trip.

Message dicts hold ``bytes`` (the signature, binary payload values), which JSON
cannot carry. They are written as ``{"$bytes": "<base64>"}``; a user dict that
happens to look like a marker is wrapped as ``{"$dict": {...}}``; values JSON
cannot represent at all are written as ``{"$repr": "<repr>"}`` (and logged).
"""

from __future__ import annotations

import ast
import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

from converge.errors import DecodeError

_log = logging.getLogger("converge.observability.replay")
_MARKERS = frozenset({"$bytes", "$dict", "$repr"})


def to_jsonable(value: Any) -> Any:
    """``value`` with bytes, tuples and marker-like dicts encoded for JSON."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        out = {str(k): to_jsonable(v) for k, v in value.items()}
        if len(out) == 1 and next(iter(out)) in _MARKERS:
            return {"$dict": out}
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    _log.warning("replay: value of type %s is not JSON-serialisable; recorded as its repr", type(value).__name__)
    return {"$repr": repr(value)}


def from_jsonable(value: Any) -> Any:
    """Inverse of :func:`to_jsonable` (``$repr`` markers stay as they are)."""
    if isinstance(value, list):
        return [from_jsonable(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (key, inner), = value.items()
            if key == "$bytes" and isinstance(inner, str):
                return base64.b64decode(inner, validate=True)
            if key == "$dict" and isinstance(inner, dict):
                return {k: from_jsonable(v) for k, v in inner.items()}
        return {k: from_jsonable(v) for k, v in value.items()}
    return value


def dumps_event(event: dict[str, Any]) -> str:
    return json.dumps(to_jsonable(event), separators=(",", ":"), ensure_ascii=False)


def iter_events(text: str, source: str) -> Iterator[dict[str, Any]]:
    """Events from JSON-lines text, or from the reference's single JSON array.

    Raises:
        DecodeError: names ``source`` and the 1-based line of the first bad line.
    """
    if text.lstrip().startswith("["):
        yield from _iter_array(text, source)
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            event = from_jsonable(obj)
        except (json.JSONDecodeError, ValueError) as exc:
            raise DecodeError(f"{source}: line {lineno}: not a valid replay event ({exc})") from exc
        if not isinstance(event, dict):
            raise DecodeError(f"{source}: line {lineno}: expected a JSON object, got {type(event).__name__}")
        yield event


def _iter_array(text: str, source: str) -> Iterator[dict[str, Any]]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"{source}: line {exc.lineno}: invalid JSON array ({exc.msg})") from exc
    if not isinstance(items, list):
        raise DecodeError(f"{source}: expected a JSON array of events")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise DecodeError(f"{source}: event {index}: expected a JSON object, got {type(item).__name__}")
        try:
            event = from_jsonable(item)
        except ValueError as exc:
            raise DecodeError(f"{source}: event {index}: bad $bytes marker ({exc})") from exc
        _restore_reference_signature(event)
        yield event


def _restore_reference_signature(event: dict[str, Any]) -> None:
    """The reference exports bytes with ``default=str`` (``"b'\\x01...'"``); turn that back into bytes."""
    data = event.get("data")
    if not isinstance(data, dict):
        return
    sig = data.get("signature")
    if isinstance(sig, str) and sig[:2] in ("b'", 'b"'):
        try:
            value = ast.literal_eval(sig)
        except (ValueError, SyntaxError) as exc:
            raise DecodeError(f"unreadable signature literal in event {event.get('data', {}).get('id')!r}") from exc
        if isinstance(value, bytes):
            data["signature"] = value


__all__ = ["dumps_event", "from_jsonable", "iter_events", "to_jsonable"]
