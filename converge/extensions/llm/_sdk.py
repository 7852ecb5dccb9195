"""Shared machinery of the vendor providers (OpenAI, Anthropic, Mistral).

A vendor subclass supplies: how to build its sync/async SDK client, how to turn
``(messages, kwargs)`` into SDK call arguments, how to call, parse and stream, and how
to map the SDK's exceptions. This base does the rest: option validation, lazy clients
(one async client per event loop, because SDK connection pools are bound to the loop that
opened them), timing, usage records and costs, key-free error messages and repr.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from converge.core.usage import UsageRecord
from converge.errors import ConfigError, ProviderError
from converge.extensions.llm._prompts import EMIT_DECISIONS_TOOL
from converge.extensions.llm.base import ChatMessage, report_usage
from converge.extensions.llm.errors import (
    ProviderAuthError,
    ProviderCallError,
    ProviderConnectionError,
    ProviderHTTPError,
    ProviderRateLimitError,
    ProviderServerError,
    ProviderTimeoutError,
)
from converge.extensions.llm.pricing import PriceLike, PriceTable, as_price_table

UsageSink = Callable[[UsageRecord], None]

_MAX_DETAIL = 500
_KEYLIKE = re.compile(r"\b(sk)-[A-Za-z0-9_*\-]{6,}")


@dataclass
class _Call:
    """One prepared request."""

    model: str
    sdk_kwargs: dict[str, Any]
    structured: bool = False
    tool_name: str | None = None


class RedactedSDKError(Exception):
    """Stand-in for a vendor SDK exception, chained as ``__cause__`` of our ProviderError.

    The SDK's own exception is never chained: its text, body and traceback frames may hold
    the API key (vendors echo it). This one carries only its redacted message, the SDK
    exception's type name (``sdk_error_type``) and the HTTP status (``status``).
    """

    def __init__(self, message: str, *, sdk_error_type: str, status: int | None = None) -> None:
        super().__init__(message)
        self.sdk_error_type = sdk_error_type
        self.status = status


def redact(text: str, secret: str | None, *more: str | None) -> str:
    """``text`` without ``secret`` (nor ``more``) and without anything that looks like an API key."""
    for value in sorted({v for v in (secret, *more) if isinstance(v, str) and v}, key=len, reverse=True):
        text = text.replace(value, "***")
    return _KEYLIKE.sub(lambda m: f"{m.group(1)}-***", text)


def tool_name_of(tool: dict[str, Any]) -> str:
    """The function name of an OpenAI-style tool definition (``emit_decisions`` when absent)."""
    fn = tool.get("function") if isinstance(tool, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    return name if isinstance(name, str) and name else "emit_decisions"


def as_int(value: Any) -> int:
    """A token count from a vendor usage field (SDK 'unset' markers and ``None`` count as 0)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class SDKProvider:
    """Base of the vendor providers. Not public: use OpenAIProvider, AnthropicProvider, MistralProvider."""

    vendor: ClassVar[str] = ""
    default_model: ClassVar[str] = ""
    env_key: ClassVar[str] = ""

    def __init__(
        self,
        api_key: str | None = None,
        model: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        price_table: PriceTable | Mapping[str, PriceLike] | None = None,
        usage_sink: UsageSink | None = None,
    ) -> None:
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            raise ConfigError(f"api_key must be a non-empty str or None (then ${self.env_key} is used)")
        model = self.default_model if model is None else model
        if not isinstance(model, str) or not model:
            raise ConfigError(f"model must be a non-empty str, got {model!r}")
        if base_url is not None and (not isinstance(base_url, str) or not base_url.startswith(("http://", "https://"))):
            raise ConfigError(f"base_url must be an http(s) URL, got {base_url!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
            raise ConfigError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if usage_sink is not None and not callable(usage_sink):
            raise ConfigError("usage_sink must be callable (record) -> None")
        self.api_key = api_key
        self.model = model
        self.base_url = base_url
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.price_table = as_price_table(price_table)
        self.usage_sink = usage_sink
        self.last_usage: UsageRecord | None = None
        self._client: Any = None
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        key = "<set>" if self.api_key else f"<from ${self.env_key}>"
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r}, api_key={key})"

    # -- vendor hooks ----------------------------------------------------
    def _new_client(self, *, asynchronous: bool) -> Any:
        raise NotImplementedError

    def _prepare(self, messages: list[ChatMessage], kwargs: dict[str, Any]) -> _Call:
        raise NotImplementedError

    def _create(self, client: Any, call: _Call) -> Any:
        raise NotImplementedError

    async def _acreate(self, client: Any, call: _Call) -> Any:
        raise NotImplementedError

    def _parse(self, response: Any, call: _Call) -> tuple[str, int, int]:
        """``(text, input_tokens, output_tokens)`` of a response."""
        raise NotImplementedError

    def _astream(self, client: Any, call: _Call, usage: list[int]) -> AsyncIterator[str]:
        """Yield text chunks; store ``[input_tokens, output_tokens]`` into ``usage`` when known."""
        raise NotImplementedError

    def _classify(self, exc: BaseException) -> tuple[str, int | None] | None:
        """``("http", status) | ("timeout", None) | ("connection", None)`` for an SDK error, else ``None``."""
        raise NotImplementedError

    # -- shared helpers --------------------------------------------------
    def _common_options(self, kwargs: dict[str, Any]) -> tuple[str, bool, dict[str, Any] | None]:
        """Pop ``model``, ``use_structured_output`` and ``emit_decisions_tool`` from ``kwargs``."""
        model = kwargs.pop("model", None) or self.model
        structured = bool(kwargs.pop("use_structured_output", False))
        tool = kwargs.pop("emit_decisions_tool", None)
        if structured and tool is None:
            tool = EMIT_DECISIONS_TOOL
        if tool is not None and not isinstance(tool, dict):
            raise ConfigError(f"emit_decisions_tool must be an OpenAI-style tool dict, got {type(tool).__name__}")
        return model, structured, tool if structured else None

    def _sync_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._new_client(asynchronous=False)
            return self._client

    def _async_client(self) -> Any:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.get(loop)
            if client is None:
                client = self._aclients[loop] = self._new_client(asynchronous=True)
            return client

    def _report(self, model: str, n_in: int, n_out: int, started: float, **extra: Any) -> UsageRecord:
        record = UsageRecord(
            provider=self.vendor,
            model=model,
            input_tokens=n_in,
            output_tokens=n_out,
            latency_sec=time.perf_counter() - started,
            cost_usd=self.price_table.cost(model, n_in, n_out),
            extra=extra,
        )
        report_usage(self, record)
        return record

    def _secrets(self, client: Any = None) -> list[str]:
        """Every key this provider may have sent: ours, the environment's, the SDK client's."""
        found = [self.api_key, os.environ.get(self.env_key) if self.env_key else None]
        for holder in (client, self._client, *list(self._aclients.values())):
            if holder is not None:
                found += [getattr(holder, "api_key", None), getattr(holder, "auth_token", None)]
        return [v for v in found if isinstance(v, str) and v]

    def _translate(self, exc: BaseException, model: str, client: Any = None) -> BaseException:
        """The converge error for an SDK exception (or ``exc`` itself when it is not the SDK's).

        The message is redacted of every effective key (see :meth:`_secrets`). The caller
        raises it outside the ``except`` block, so ``__context__`` is empty, and its
        ``__cause__`` is a :class:`RedactedSDKError` instead of the SDK exception (whose
        text may echo the key). The SDK exception's type name is kept as
        ``sdk_error_type`` (and the HTTP status as ``status``).
        """
        kind = self._classify(exc)
        if kind is None:
            return exc
        what, status = kind
        detail = redact(str(exc), *self._secrets(client))[:_MAX_DETAIL]
        where = f"{self.vendor} model {model!r}"
        error: ProviderCallError
        if what == "timeout":
            error = ProviderTimeoutError(f"{where}: request timed out after {self.timeout:g}s: {detail}", provider=self.vendor, model=model)
        elif what == "connection":
            url = self.base_url or "the default endpoint"
            error = ProviderConnectionError(f"{where}: cannot reach {url}: {detail}", provider=self.vendor, model=model)
        else:
            cls: type[ProviderCallError] = ProviderHTTPError
            hint = ""
            if status in (401, 403):
                cls, hint = ProviderAuthError, f" (check api_key= or ${self.env_key})"
            elif status == 429:
                cls = ProviderRateLimitError
            elif status is not None and status >= 500:
                cls = ProviderServerError
            error = cls(f"{where}: HTTP {status}{hint}: {detail}", provider=self.vendor, model=model, status=status)
        sdk_type = type(exc).__name__
        error.sdk_error_type = sdk_type  # type: ignore[attr-defined]
        error.__cause__ = RedactedSDKError(f"{sdk_type}: {detail}", sdk_error_type=sdk_type, status=status)
        return error

    # -- public API ------------------------------------------------------
    def chat(self, messages: list[ChatMessage], **kwargs: Any) -> str:
        """Send ``messages`` with the synchronous SDK client and return the text.

        With ``use_structured_output=True`` (and optionally ``emit_decisions_tool=``) the
        model is made to call that tool and the tool arguments (a JSON string such as
        ``{"decisions": [...]}``) are returned. Other kwargs go to the SDK call.

        Raises:
            ProviderError: a subclass from :mod:`converge.extensions.llm.errors` naming the
                HTTP status (auth, rate limit, server error, timeout, connection).
            MissingExtraError: the vendor SDK is not installed.
        """
        call = self._prepare(list(messages), dict(kwargs))
        client = self._sync_client()
        started = time.perf_counter()
        translating = _Translating(self, call.model, client)
        with translating:
            response = self._create(client, call)
        translating.reraise()
        text, n_in, n_out = self._parse(response, call)
        self._report(call.model, n_in, n_out, started)
        return text

    async def achat(self, messages: list[ChatMessage], **kwargs: Any) -> str:
        """Like :meth:`chat`, with the SDK's async client (no thread, no blocking call on the loop)."""
        call = self._prepare(list(messages), dict(kwargs))
        client = self._async_client()
        started = time.perf_counter()
        translating = _Translating(self, call.model, client)
        with translating:
            response = await self._acreate(client, call)
        translating.reraise()
        text, n_in, n_out = self._parse(response, call)
        self._report(call.model, n_in, n_out, started)
        return text

    async def chat_stream(self, messages: list[ChatMessage], **kwargs: Any) -> AsyncIterator[str]:
        """Yield the reply text in chunks as the vendor streams it (server-sent events).

        The usage record is reported when the stream ends. Structured output is not
        available while streaming.
        """
        if kwargs.get("use_structured_output"):
            raise ConfigError("chat_stream does not support use_structured_output=True; use chat/achat for tool-call output")
        call = self._prepare(list(messages), dict(kwargs))
        client = self._async_client()
        started = time.perf_counter()
        usage = [0, 0]
        stream = self._astream(client, call, usage)
        translating = _Translating(self, call.model, client)
        with translating:
            try:
                async for piece in stream:
                    yield piece
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
        translating.reraise()
        self._report(call.model, usage[0], usage[1], started, streamed=True)

    def _close_client(self, client: Any, *, asynchronous: bool) -> Any:
        """Close one SDK client; may return an awaitable (async clients)."""
        return client.close()

    def close(self) -> None:
        """Close the synchronous SDK client (async clients are closed by :meth:`aclose`)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            self._close_client(client, asynchronous=False)

    async def aclose(self) -> None:
        """Close the SDK clients of this provider: the sync one and the one of the running loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.pop(loop, None)
        if client is not None:
            result = self._close_client(client, asynchronous=True)
            if asyncio.iscoroutine(result):
                await result
        await asyncio.to_thread(self.close)


class _Translating:
    """Turns an SDK exception inside the ``with`` block into our typed, redacted error.

    The error is raised by :meth:`reraise`, *outside* any ``except`` block, so the
    SDK exception (which may hold an echoed key) is neither its cause nor its context.
    ``ProviderError`` and non-``Exception`` exits (cancellation, generator close) pass through.
    """

    def __init__(self, provider: Any, model: str, client: Any) -> None:
        self._provider, self._model, self._client = provider, model, client
        self._error: BaseException | None = None

    def __enter__(self) -> _Translating:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, ProviderError) or not isinstance(exc, Exception):
            return False
        error = self._provider._translate(exc, self._model, self._client)
        if error is exc:
            return False
        self._error = error
        return True  # suppressed here; reraise() raises the redacted error

    def reraise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


__all__: list[str] = []
