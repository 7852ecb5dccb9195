"""The provider seam: :class:`LLMProvider`, and how providers report token usage.

A provider is any object with ``chat(messages, **kwargs) -> str``. Optional:
``async achat(messages, **kwargs) -> str`` (used by ``LLMAgent`` when present, so no
worker thread is needed) and ``chat_stream(messages, **kwargs)`` (an async iterator of
text chunks, for streaming UIs).

Usage: after every vendor call a provider builds a :class:`~converge.core.usage.UsageRecord`
and hands it to :func:`report_usage`, which sets ``provider.last_usage``, calls the
provider's optional ``usage_sink(record)`` and appends the record to every
:func:`collect_usage` block active in the calling context. ``LLMAgent`` wraps each
provider call in ``collect_usage()``; because the collector lives in a context variable,
concurrent agents sharing one provider each get their own records (also when the call runs
in a worker thread through ``asyncio.to_thread``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, runtime_checkable

from converge.core.usage import UsageRecord

logger = logging.getLogger(__name__)

ChatMessage = dict[str, Any]

_COLLECTORS: ContextVar[tuple[list[UsageRecord], ...]] = ContextVar("converge_llm_usage_collectors", default=())


@runtime_checkable
class LLMProvider(Protocol):
    """Anything that turns chat messages into a completion.

    ``messages`` are ``{"role": "system" | "user" | "assistant", "content": ...}`` dicts.
    Provider-specific keyword options (``model``, ``temperature``, ``max_tokens``, and
    ``use_structured_output=True`` with ``emit_decisions_tool=<OpenAI-style function
    definition>`` for tool-call structured output) go in ``**kwargs``.

    Optional methods (not part of the runtime check): ``async achat(messages, **kwargs)
    -> str`` and ``chat_stream(messages, **kwargs) -> AsyncIterator[str]``; see
    :class:`AsyncLLMProvider` and :class:`StreamingLLMProvider`.
    """

    def chat(self, messages: list[ChatMessage], **kwargs: Any) -> str:
        """Send ``messages`` and return the completion text."""
        ...


@runtime_checkable
class AsyncLLMProvider(Protocol):
    """A provider with a native coroutine ``achat`` (preferred by ``LLMAgent``)."""

    async def achat(self, messages: list[ChatMessage], **kwargs: Any) -> str:
        """Async variant of ``chat``."""
        ...


@runtime_checkable
class StreamingLLMProvider(Protocol):
    """A provider that can stream text chunks."""

    def chat_stream(self, messages: list[ChatMessage], **kwargs: Any) -> AsyncIterator[str]:
        """Yield the completion text in chunks as the vendor produces them."""
        ...


@contextmanager
def collect_usage() -> Iterator[list[UsageRecord]]:
    """Collect the usage records of every provider call made inside the ``with`` block.

    Blocks nest: a record reaches every active collector of the current context.

    Example::

        with collect_usage() as records:
            provider.chat([{"role": "user", "content": "hi"}])
        print(sum(r.cost_usd for r in records))
    """
    records: list[UsageRecord] = []
    token = _COLLECTORS.set((*_COLLECTORS.get(), records))
    try:
        yield records
    finally:
        _COLLECTORS.reset(token)


@contextmanager
def _isolated_usage() -> Iterator[list[UsageRecord]]:
    """Capture records *without* passing them to outer collectors (wrapping providers re-report them)."""
    records: list[UsageRecord] = []
    token = _COLLECTORS.set((records,))
    try:
        yield records
    finally:
        _COLLECTORS.reset(token)


def report_usage(provider: Any, record: UsageRecord) -> None:
    """Publish one usage record: ``provider.last_usage``, ``provider.usage_sink`` and active collectors.

    Custom providers may call this too. A failing ``usage_sink`` is logged (with its
    traceback) and does not fail the call; the record still reaches ``last_usage`` and
    the collectors.
    """
    try:
        provider.last_usage = record
    except AttributeError:  # a provider with __slots__ or a read-only attribute
        logger.debug("provider %r does not accept last_usage", type(provider).__name__)
    for records in _COLLECTORS.get():
        records.append(record)
    sink = getattr(provider, "usage_sink", None)
    if sink is not None:
        try:
            sink(record)
        except Exception:  # a user callback must not turn a successful call into a failure
            logger.exception("usage_sink of %s raised; the usage record was still recorded", type(provider).__name__)


__all__ = ["AsyncLLMProvider", "ChatMessage", "LLMProvider", "StreamingLLMProvider", "collect_usage", "report_usage"]
