"""``MistralProvider``: chat completions through the official ``mistralai`` SDK."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from converge._extras import require
from converge.extensions.llm._sdk import SDKProvider, UsageSink, _Call, as_int, tool_name_of
from converge.extensions.llm.base import ChatMessage
from converge.extensions.llm.pricing import PriceLike, PriceTable

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _text(content: Any) -> str:
    """Mistral content is a str or a list of chunks (text chunks have ``.text``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(getattr(c, "text", None) or (c.get("text", "") if isinstance(c, dict) else "") for c in content)
    return ""


class MistralProvider(SDKProvider):
    """LLM provider on Mistral's chat completions API (``pip install "converge[llm-mistral]"``).

    Args:
        api_key: the key; ``None`` → ``$MISTRAL_API_KEY``.
        model: default model of every call (a call may pass ``model=``).
        base_url: the server URL (the SDK's ``server_url``, without ``/v1``); ``None`` → Mistral's.
        timeout: seconds per request.
        max_retries: retries on 429/5xx and connection errors. The ``mistralai`` SDK retries
            by elapsed time only, so this provider retries itself: exponential backoff from
            ``retry_backoff`` seconds, or the server's ``retry-after-ms``/``retry-after``.
        retry_backoff: first backoff delay in seconds (doubles per retry, at most 8 s).
        price_table / usage_sink: see :class:`~converge.extensions.llm.OpenAIProvider`.
    """

    vendor = "mistral"
    default_model = "mistral-small-latest"
    env_key = "MISTRAL_API_KEY"

    def __init__(
        self,
        api_key: str | None = None,
        model: str = "mistral-small-latest",
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        retry_backoff: float = 0.5,
        price_table: PriceTable | Mapping[str, PriceLike] | None = None,
        usage_sink: UsageSink | None = None,
    ) -> None:
        super().__init__(
            api_key, model, base_url=base_url, timeout=timeout, max_retries=max_retries, price_table=price_table, usage_sink=usage_sink
        )
        self.retry_backoff = max(0.0, float(retry_backoff))

    def _sdk(self) -> Any:
        return require("mistralai", "llm-mistral", purpose="MistralProvider")

    def _new_client(self, *, asynchronous: bool) -> Any:
        module = self._sdk()
        cls = getattr(module, "Mistral", None)
        if cls is None:  # mistralai >= 2 keeps the client in mistralai.client
            cls = importlib.import_module("mistralai.client").Mistral
        kwargs: dict[str, Any] = {"api_key": self.api_key or os.environ.get(self.env_key) or None, "timeout_ms": int(self.timeout * 1000)}
        if self.base_url is not None:
            kwargs["server_url"] = self.base_url
        return cls(**kwargs)

    def _close_client(self, client: Any, *, asynchronous: bool) -> Any:
        # A Mistral object owns an httpx client and an async one; close the one that was used.
        return client.__aexit__(None, None, None) if asynchronous else client.__exit__(None, None, None)

    def _prepare(self, messages: list[ChatMessage], kwargs: dict[str, Any]) -> _Call:
        model, structured, tool = self._common_options(kwargs)
        sdk: dict[str, Any] = {"model": model, "messages": messages, **kwargs}
        name = None
        if tool is not None:
            name = tool_name_of(tool)
            fn = tool.get("function", {})
            sdk["tools"] = [{"type": "function", "function": {"name": name, "description": fn.get("description", ""), "parameters": fn.get("parameters", {})}}]
            sdk["tool_choice"] = "required"
        return _Call(model, sdk, structured, name)

    # -- retries (the SDK's own are time-bounded, not count-bounded) ------
    def _delay(self, exc: BaseException, attempt: int) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or ``None`` if ``exc`` is final."""
        if attempt >= self.max_retries:
            return None
        kind = self._classify(exc)
        if kind is None or (kind[0] == "http" and kind[1] not in _RETRY_STATUSES) or kind[0] == "timeout":
            return None
        headers = getattr(exc, "headers", None) or {}
        for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            try:
                value = float(headers.get(name))
            except (TypeError, ValueError):
                continue
            if 0 <= value * scale <= 60:
                return value * scale
        return min(self.retry_backoff * 2**attempt, 8.0) + random.uniform(0, self.retry_backoff / 4)

    def _create(self, client: Any, call: _Call) -> Any:
        return self._with_retries(lambda: client.chat.complete(**call.sdk_kwargs), time.sleep)

    def _with_retries(self, fn: Callable[[], Any], sleep: Callable[[float], Any]) -> Any:
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                delay = self._delay(exc, attempt)
                if delay is None:
                    raise
            sleep(delay)
            attempt += 1

    async def _acreate(self, client: Any, call: _Call) -> Any:
        attempt = 0
        while True:
            try:
                return await client.chat.complete_async(**call.sdk_kwargs)
            except Exception as exc:
                delay = self._delay(exc, attempt)
                if delay is None:
                    raise
            await asyncio.sleep(delay)
            attempt += 1

    def _parse(self, response: Any, call: _Call) -> tuple[str, int, int]:
        usage = getattr(response, "usage", None)
        n_in, n_out = as_int(getattr(usage, "prompt_tokens", 0)), as_int(getattr(usage, "completion_tokens", 0))
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            return "", n_in, n_out
        message = getattr(choices[0], "message", None)
        if message is None:
            return "", n_in, n_out
        if call.structured:
            calls = getattr(message, "tool_calls", None)
            for tc in calls if isinstance(calls, list) else []:
                fn = getattr(tc, "function", None)
                if fn is None or fn.name != call.tool_name:
                    continue
                args = fn.arguments
                text = json.dumps(args) if isinstance(args, dict) else str(args or "").strip()
                if text:
                    return text, n_in, n_out
        return _text(getattr(message, "content", None)), n_in, n_out

    async def _astream(self, client: Any, call: _Call, usage: list[int]) -> AsyncIterator[str]:
        events = await client.chat.stream_async(**call.sdk_kwargs)
        async with events as stream:
            async for event in stream:
                chunk = event.data
                u = getattr(chunk, "usage", None)
                if u is not None and as_int(getattr(u, "prompt_tokens", None)):
                    usage[0], usage[1] = as_int(u.prompt_tokens), as_int(getattr(u, "completion_tokens", 0))
                choices = getattr(chunk, "choices", None)
                if isinstance(choices, list) and choices:
                    text = _text(getattr(choices[0].delta, "content", None))
                    if text:
                        yield text

    def _classify(self, exc: BaseException) -> tuple[str, int | None] | None:
        names = {c.__name__ for c in type(exc).__mro__}
        status = getattr(exc, "status_code", None)
        if "MistralError" in names and isinstance(status, int):
            return "http", status
        if "NoResponseError" in names:
            return "connection", None
        if not type(exc).__module__.startswith(("httpx", "httpcore")):  # the SDK's HTTP library (httpx / httpx2)
            return None
        if "TimeoutException" in names:
            return "timeout", None
        if names & {"NetworkError", "ConnectError", "RemoteProtocolError", "TransportError"}:
            return "connection", None
        return None


__all__ = ["MistralProvider"]
