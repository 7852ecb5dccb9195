"""``ScriptedProvider``: a deterministic provider for notebooks, tests and users without a key.

It answers from a list of replies (in order) or from a function of the request, and
reports usage like a real provider (tokens estimated as ``len(text) // 4``, cost 0).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from converge.core.usage import UsageRecord
from converge.errors import ConfigError, ProviderError
from converge.extensions.llm.base import ChatMessage, report_usage

ScriptItem = str | BaseException
Responder = Callable[[list[ChatMessage]], str]


def estimate_tokens(text: str) -> int:
    """A rough token count: ``len(text) // 4``, at least 1 for non-empty text."""
    return max(1, len(text) // 4) if text else 0


def messages_text(messages: Sequence[ChatMessage]) -> str:
    """The text content of chat messages, for token estimates."""
    out = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        out.append(content if isinstance(content, str) else json.dumps(content, default=str))
    return "\n".join(out)


@dataclass(frozen=True)
class ScriptedCall:
    """One request a :class:`ScriptedProvider` answered (or failed)."""

    messages: list[ChatMessage]
    kwargs: dict[str, Any]
    reply: str | None = None
    error: BaseException | None = field(default=None, compare=False)


class ScriptedProvider:
    """A provider that answers from a script; no network, fully deterministic.

    Args:
        replies: a list of replies used in order — each a ``str``, or an exception
            instance to raise on that call (to script failures) — or a function
            ``(messages) -> str`` called for every request.
        model: the model name in usage records.
        loop: with a list, start over at the first reply when the script is used up
            (otherwise the next call raises :class:`~converge.errors.ProviderError`).
        usage_sink: called with each :class:`~converge.core.usage.UsageRecord`.

    ``calls`` lists every request (messages, kwargs, reply). ``chat``, ``achat`` and
    ``chat_stream`` share one script and are safe to use from several threads.
    """

    vendor = "scripted"

    def __init__(
        self,
        replies: Sequence[ScriptItem] | Responder,
        *,
        model: str = "scripted",
        loop: bool = False,
        usage_sink: Callable[[UsageRecord], None] | None = None,
    ) -> None:
        if callable(replies):
            self._responder: Responder | None = replies
            self._replies: list[ScriptItem] = []
        elif isinstance(replies, (list, tuple)):
            bad = [r for r in replies if not isinstance(r, (str, BaseException))]
            if bad:
                raise ConfigError(f"ScriptedProvider replies must be str or exception instances, got {type(bad[0]).__name__}")
            self._responder, self._replies = None, list(replies)
        else:
            raise ConfigError(f"replies must be a list of str or a function (messages) -> str, got {type(replies).__name__}")
        if loop and not self._replies and self._responder is None:
            raise ConfigError("loop=True needs at least one reply")
        self.model = model
        self.loop = loop
        self.usage_sink = usage_sink
        self.last_usage: UsageRecord | None = None
        self.calls: list[ScriptedCall] = []
        self._index = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        source = "function" if self._responder is not None else f"{len(self._replies)} replies"
        return f"ScriptedProvider({source}, model={self.model!r}, used={self._index})"

    @property
    def remaining(self) -> int:
        """Replies left in a list script (``loop=True`` never runs out)."""
        return max(0, len(self._replies) - self._index)

    def _next(self, messages: list[ChatMessage], kwargs: dict[str, Any]) -> str:
        snapshot = copy.deepcopy(messages)
        if self._responder is not None:
            reply = self._responder(snapshot)
            if not isinstance(reply, str):
                raise ProviderError(f"ScriptedProvider's function returned {type(reply).__name__}, expected str")
            with self._lock:
                self.calls.append(ScriptedCall(snapshot, dict(kwargs), reply))
            return reply
        with self._lock:
            if self._index >= len(self._replies):
                if not self.loop or not self._replies:
                    self.calls.append(ScriptedCall(snapshot, dict(kwargs)))
                    raise ProviderError(
                        f"ScriptedProvider ran out of replies after {self._index} calls; add replies or pass loop=True"
                    )
                self._index = 0
            item = self._replies[self._index]
            self._index += 1
            if isinstance(item, BaseException):
                self.calls.append(ScriptedCall(snapshot, dict(kwargs), error=item))
                raise item
            self.calls.append(ScriptedCall(snapshot, dict(kwargs), item))
        return item

    def _usage(self, messages: list[ChatMessage], reply: str, started: float, **extra: Any) -> None:
        record = UsageRecord(
            provider=self.vendor,
            model=self.model,
            input_tokens=estimate_tokens(messages_text(messages)),
            output_tokens=estimate_tokens(reply),
            latency_sec=time.perf_counter() - started,
            cost_usd=0.0,
            extra={"estimated": True, **extra},
        )
        report_usage(self, record)

    def chat(self, messages: list[ChatMessage], **kwargs: Any) -> str:
        """The next scripted reply (or the function's answer)."""
        started = time.perf_counter()
        reply = self._next(list(messages), kwargs)
        self._usage(messages, reply, started)
        return reply

    async def achat(self, messages: list[ChatMessage], **kwargs: Any) -> str:
        """Same as :meth:`chat` (the script is in memory; nothing blocks)."""
        return self.chat(messages, **kwargs)

    async def chat_stream(self, messages: list[ChatMessage], **kwargs: Any) -> AsyncIterator[str]:
        """The next reply, yielded word by word (whitespace kept)."""
        started = time.perf_counter()
        reply = self._next(list(messages), kwargs)
        start = 0
        for i, ch in enumerate(reply):
            if ch == " " and i > start:
                yield reply[start : i + 1]
                start = i + 1
        if start < len(reply):
            yield reply[start:]
        self._usage(messages, reply, started, streamed=True)


__all__ = ["ScriptedCall", "ScriptedProvider", "estimate_tokens"]
