"""Record provider calls to a cassette and replay them without a network or a key.

A cassette is a JSON-lines file; each line is one call::

    {"version": 1, "hash": "<sha256>", "request": {"messages": [...], "options": {...}},
     "response": "<text>", "provider": "openai", "model": "gpt-4o-mini",
     "usage": {"input_tokens": 12, "output_tokens": 7, "cost_usd": 1.2e-06, "latency_sec": 0.4},
     "recorded_at": 1700000000.0}

The key (:func:`request_hash`) is the sha256 of the canonical JSON (sorted keys, compact
separators) of the messages and the call options, without secrets (``api_key`` and any
option whose name mentions a key, token, secret or authorization, and ``extra_headers``).
The provider's own default model is not part of the key, so a cassette recorded with
``OpenAIProvider(model=...)`` replays with a bare ``ReplayProvider(path)``.

Cassettes never contain an API key: the recorder writes only the fields above, and it
redacts the wrapped provider's key should it appear anywhere in a line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from converge.core.usage import UsageRecord
from converge.errors import ConfigError, DecodeError
from converge.extensions.llm.base import ChatMessage, _isolated_usage, report_usage
from converge.extensions.llm.errors import CassetteMissError

CASSETTE_VERSION = 1
_SECRET_WORDS = ("key", "token", "secret", "authorization", "password")
_SECRET_OPTIONS = frozenset({"extra_headers", "default_headers", "headers", "http_headers"})


def _is_secret_option(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_OPTIONS or (lowered != "max_tokens" and any(w in lowered for w in _SECRET_WORDS))


def request_options(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The call options that identify a request (secrets removed)."""
    return {k: v for k, v in kwargs.items() if not _is_secret_option(k)}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def request_hash(messages: list[ChatMessage], kwargs: Mapping[str, Any] | None = None) -> str:
    """The stable cassette key of a request: sha256 hex of canonical JSON of messages + options."""
    body = {"messages": messages, "options": request_options(kwargs or {})}
    return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()


class RecordingProvider:
    """Wrap a provider and append every call (request, response, usage) to a cassette.

    Args:
        provider: the provider to call (typically a live one).
        path: the JSON-lines cassette; created if missing, appended to otherwise.

    The wrapped provider's usage records are re-reported once by this provider, with
    ``request_hash`` set. ``chat``, ``achat`` (the inner ``achat`` when it has one, else
    ``chat`` in a worker thread) and ``chat_stream`` (recorded when the stream completes)
    are supported.
    """

    def __init__(self, provider: Any, path: str | Path, *, usage_sink: Any = None) -> None:
        if not callable(getattr(provider, "chat", None)):
            raise ConfigError(f"RecordingProvider needs a provider with chat(), got {type(provider).__name__}")
        self.provider = provider
        self.path = Path(path)
        self.model = getattr(provider, "model", None)
        self.usage_sink = usage_sink
        self.last_usage: UsageRecord | None = None
        self.recorded = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RecordingProvider({self.provider!r}, path={str(self.path)!r}, recorded={self.recorded})"

    def _entry(self, key: str, messages: list[ChatMessage], kwargs: Mapping[str, Any], response: str, usage: UsageRecord | None) -> str:
        entry = {
            "version": CASSETTE_VERSION,
            "hash": key,
            "request": {"messages": messages, "options": request_options(kwargs)},
            "response": response,
            "provider": usage.provider if usage else getattr(self.provider, "vendor", type(self.provider).__name__),
            "model": usage.model if usage else (kwargs.get("model") or self.model),
            "usage": None
            if usage is None
            else {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens, "cost_usd": usage.cost_usd, "latency_sec": usage.latency_sec},
            "recorded_at": time.time(),
        }
        line = json.dumps(entry, ensure_ascii=False, default=str)
        secret = getattr(self.provider, "api_key", None)
        if isinstance(secret, str) and secret and secret in line:
            line = line.replace(secret, "***REDACTED***")
        return line

    def _write(self, line: str) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
            self.recorded += 1

    def _finish(self, key: str, records: list[UsageRecord], started: float) -> UsageRecord | None:
        usage = records[-1] if records else None
        if usage is None:
            inner = getattr(self.provider, "last_usage", None)
            usage = inner if isinstance(inner, UsageRecord) else None
        if usage is not None:
            usage = dataclasses.replace(usage, request_hash=key)
        else:
            usage = UsageRecord(provider="recording", model=str(self.model or "unknown"), latency_sec=time.perf_counter() - started, request_hash=key)
        report_usage(self, usage)
        return usage

    def chat(self, messages: list[ChatMessage], **kwargs: Any) -> str:
        """Call the wrapped provider and record the call."""
        messages = list(messages)
        key, started = request_hash(messages, kwargs), time.perf_counter()
        with _isolated_usage() as records:
            response = self.provider.chat(messages, **kwargs)
        usage = self._finish(key, records, started)
        self._write(self._entry(key, messages, kwargs, response, usage))
        return response

    async def achat(self, messages: list[ChatMessage], **kwargs: Any) -> str:
        """Async variant of :meth:`chat`; the file write runs in a worker thread."""
        messages = list(messages)
        key, started = request_hash(messages, kwargs), time.perf_counter()
        with _isolated_usage() as records:
            inner = getattr(self.provider, "achat", None)
            if inner is not None and asyncio.iscoroutinefunction(inner):
                response = await inner(messages, **kwargs)
            else:
                response = await asyncio.to_thread(self.provider.chat, messages, **kwargs)
        usage = self._finish(key, records, started)
        await asyncio.to_thread(self._write, self._entry(key, messages, kwargs, response, usage))
        return response

    async def chat_stream(self, messages: list[ChatMessage], **kwargs: Any) -> Any:
        """Stream from the wrapped provider (its ``chat_stream``), recording the whole text at the end."""
        stream_fn = getattr(self.provider, "chat_stream", None)
        if stream_fn is None:
            raise ConfigError(f"{type(self.provider).__name__} has no chat_stream")
        messages = list(messages)
        key, started = request_hash(messages, kwargs), time.perf_counter()
        pieces: list[str] = []
        with _isolated_usage() as records:
            async for piece in stream_fn(messages, **kwargs):
                pieces.append(piece)
                yield piece
        usage = self._finish(key, records, started)
        await asyncio.to_thread(self._write, self._entry(key, messages, kwargs, "".join(pieces), usage))


def load_cassette(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Entries of a cassette by request hash, in recording order.

    Raises:
        ConfigError: the file does not exist.
        DecodeError: a line is not a cassette entry (names the file and line).
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"cassette {str(path)!r} does not exist; record one with RecordingProvider(provider, path)")
    entries: dict[str, list[dict[str, Any]]] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DecodeError(f"cassette {str(path)!r} line {lineno} is not JSON: {exc}") from exc
            if not isinstance(entry, dict) or not isinstance(entry.get("hash"), str) or not isinstance(entry.get("response"), str):
                raise DecodeError(f"cassette {str(path)!r} line {lineno} is not a cassette entry (needs 'hash' and 'response')")
            if entry.get("version", CASSETTE_VERSION) != CASSETTE_VERSION:
                raise DecodeError(f"cassette {str(path)!r} line {lineno} has version {entry.get('version')!r}; this converge reads {CASSETTE_VERSION}")
            entries.setdefault(entry["hash"], []).append(entry)
    return entries


class ReplayProvider:
    """Answer from a cassette recorded by :class:`RecordingProvider`; no network, no key.

    Args:
        path: the cassette (read on first use).
        strict: a request that is not in the cassette raises :class:`CassetteMissError`
            (naming the request hash and the cassette). With ``strict=False`` it goes to
            ``fallback`` instead (a live provider; wrap it in ``RecordingProvider`` to grow
            the cassette), and raises the same error when there is no fallback.
        fallback: the provider for misses when ``strict=False``.
        usage_sink: called with each :class:`~converge.core.usage.UsageRecord`.

    A request recorded several times is answered with its recordings in order, then
    with the last one again. Usage records have ``provider="replay"``, the recorded model
    and token counts, ``cost_usd=0.0`` (nothing was paid for this call) and the recorded
    cost in ``extra["recorded_cost_usd"]``.
    """

    vendor = "replay"

    def __init__(self, path: str | Path, strict: bool = True, fallback: Any = None, *, usage_sink: Any = None) -> None:
        if fallback is not None and not callable(getattr(fallback, "chat", None)):
            raise ConfigError(f"fallback must be a provider with chat(), got {type(fallback).__name__}")
        self.path = Path(path)
        self.strict = strict
        self.fallback = fallback
        self.usage_sink = usage_sink
        self.last_usage: UsageRecord | None = None
        self.hits = 0
        self.misses = 0
        self._entries: dict[str, list[dict[str, Any]]] | None = None
        self._cursor: dict[str, int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ReplayProvider(path={str(self.path)!r}, strict={self.strict}, hits={self.hits}, misses={self.misses})"

    @property
    def model(self) -> str:
        return "replay"

    def _load(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            if self._entries is None:
                self._entries = load_cassette(self.path)
            return self._entries

    def _lookup(self, key: str) -> dict[str, Any] | None:
        entries = self._load()
        with self._lock:
            recorded = entries.get(key)
            if not recorded:
                self.misses += 1
                return None
            i = self._cursor.get(key, 0)
            self._cursor[key] = i + 1
            self.hits += 1
            return recorded[min(i, len(recorded) - 1)]

    def _miss(self, key: str) -> CassetteMissError:
        n = sum(len(v) for v in (self._entries or {}).values())
        how = "pass strict=False with a fallback provider" if self.strict else "pass fallback=<a live provider>"
        return CassetteMissError(
            f"request {key} is not in cassette {str(self.path)!r} ({n} recorded calls); "
            f"record it with RecordingProvider(provider, path) or {how}",
            request_hash=key,
            path=str(self.path),
        )

    def _answer(self, key: str, entry: dict[str, Any], started: float) -> str:
        usage = entry.get("usage") or {}
        record = UsageRecord(
            provider=self.vendor,
            model=str(entry.get("model") or "unknown"),
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
            latency_sec=time.perf_counter() - started,
            cost_usd=0.0,
            request_hash=key,
            extra={"recorded_provider": entry.get("provider"), "recorded_cost_usd": float(usage.get("cost_usd") or 0.0)},
        )
        report_usage(self, record)
        return str(entry["response"])

    def chat(self, messages: list[ChatMessage], **kwargs: Any) -> str:
        """The recorded response to this request (or the fallback's, see ``strict``)."""
        started, key = time.perf_counter(), request_hash(list(messages), kwargs)
        entry = self._lookup(key)
        if entry is not None:
            return self._answer(key, entry, started)
        if self.strict or self.fallback is None:
            raise self._miss(key)
        return str(self.fallback.chat(messages, **kwargs))

    async def achat(self, messages: list[ChatMessage], **kwargs: Any) -> str:
        """Async variant of :meth:`chat` (the cassette is read in a worker thread)."""
        if self._entries is None:
            await asyncio.to_thread(self._load)
        started, key = time.perf_counter(), request_hash(list(messages), kwargs)
        entry = self._lookup(key)
        if entry is not None:
            return self._answer(key, entry, started)
        if self.strict or self.fallback is None:
            raise self._miss(key)
        inner = getattr(self.fallback, "achat", None)
        if inner is not None and asyncio.iscoroutinefunction(inner):
            return str(await inner(messages, **kwargs))
        return str(await asyncio.to_thread(self.fallback.chat, messages, **kwargs))

    async def chat_stream(self, messages: list[ChatMessage], **kwargs: Any) -> Any:
        """The recorded response, yielded word by word."""
        text = await self.achat(messages, **kwargs)
        words = text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == len(words) - 1 else word + " "
            if piece:
                yield piece


__all__ = ["CASSETTE_VERSION", "RecordingProvider", "ReplayProvider", "load_cassette", "request_hash"]
