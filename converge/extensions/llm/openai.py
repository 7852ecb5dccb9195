"""``OpenAIProvider``: chat completions through the official ``openai`` SDK.

Works with any OpenAI-compatible endpoint (``base_url=`` or ``$OPENAI_BASE_URL``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from converge._extras import require
from converge.errors import ConfigError
from converge.extensions.llm._sdk import SDKProvider, UsageSink, _Call, as_int, tool_name_of
from converge.extensions.llm.base import ChatMessage
from converge.extensions.llm.pricing import PriceLike, PriceTable


class OpenAIProvider(SDKProvider):
    """LLM provider on the OpenAI chat completions API (``pip install "converge[llm]"``).

    Args:
        api_key: the key; ``None`` → the SDK reads ``$OPENAI_API_KEY``.
        model: default model of every call (a call may pass ``model=``).
        base_url: API root including ``/v1``; ``None`` → ``$OPENAI_BASE_URL`` or OpenAI's.
        timeout: seconds per request.
        max_retries: the SDK's retries on 408/409/429/5xx and connection errors (it honours
            ``retry-after`` headers).
        price_table: prices for ``cost_usd`` (default :data:`~converge.extensions.llm.pricing.DEFAULT_PRICES`).
        usage_sink: called with each :class:`~converge.core.usage.UsageRecord`.

    ``last_usage`` holds the record of the latest call. Streams ask for the usage chunk
    (``stream_options={"include_usage": True}``).
    """

    vendor = "openai"
    default_model = "gpt-4o-mini"
    env_key = "OPENAI_API_KEY"

    def __init__(
        self,
        api_key: str | None = None,
        model: str = "gpt-4o-mini",
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        price_table: PriceTable | Mapping[str, PriceLike] | None = None,
        usage_sink: UsageSink | None = None,
    ) -> None:
        super().__init__(
            api_key, model, base_url=base_url, timeout=timeout, max_retries=max_retries, price_table=price_table, usage_sink=usage_sink
        )

    def _sdk(self) -> Any:
        return require("openai", "llm", purpose="OpenAIProvider")

    def _new_client(self, *, asynchronous: bool) -> Any:
        openai = self._sdk()
        cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
        kwargs: dict[str, Any] = {"api_key": self.api_key, "timeout": self.timeout, "max_retries": self.max_retries}
        if self.base_url is not None:
            kwargs["base_url"] = self.base_url
        try:
            return cls(**kwargs)
        except openai.OpenAIError as exc:  # no key given and none in the environment
            raise ConfigError(f"OpenAIProvider cannot create a client: {exc} (pass api_key= or set ${self.env_key})") from exc

    def _prepare(self, messages: list[ChatMessage], kwargs: dict[str, Any]) -> _Call:
        model, structured, tool = self._common_options(kwargs)
        sdk = {"model": model, "messages": messages, **kwargs}
        name = None
        if tool is not None:
            name = tool_name_of(tool)
            sdk["tools"] = [tool]
            sdk["tool_choice"] = {"type": "function", "function": {"name": name}}
        return _Call(model, sdk, structured, name)

    def _create(self, client: Any, call: _Call) -> Any:
        return client.chat.completions.create(**call.sdk_kwargs)

    async def _acreate(self, client: Any, call: _Call) -> Any:
        return await client.chat.completions.create(**call.sdk_kwargs)

    def _parse(self, response: Any, call: _Call) -> tuple[str, int, int]:
        usage = getattr(response, "usage", None)
        n_in, n_out = as_int(getattr(usage, "prompt_tokens", 0)), as_int(getattr(usage, "completion_tokens", 0))
        choices = getattr(response, "choices", None) or []
        if not choices:
            return "", n_in, n_out
        message = choices[0].message
        if call.structured:
            for tc in getattr(message, "tool_calls", None) or []:
                fn = getattr(tc, "function", None)
                if fn is not None and fn.name == call.tool_name and (fn.arguments or "").strip():
                    return fn.arguments.strip(), n_in, n_out
        return message.content or "", n_in, n_out

    async def _astream(self, client: Any, call: _Call, usage: list[int]) -> AsyncIterator[str]:
        kwargs = {**call.sdk_kwargs, "stream": True}
        kwargs.setdefault("stream_options", {"include_usage": True})
        stream = await client.chat.completions.create(**kwargs)
        try:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage[0], usage[1] = as_int(chunk.usage.prompt_tokens), as_int(chunk.usage.completion_tokens)
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        finally:
            await stream.close()

    def _classify(self, exc: BaseException) -> tuple[str, int | None] | None:
        openai = self._sdk()
        if isinstance(exc, openai.APITimeoutError):
            return "timeout", None
        if isinstance(exc, openai.APIConnectionError):
            return "connection", None
        if isinstance(exc, openai.APIStatusError):
            return "http", exc.status_code
        return None


__all__ = ["OpenAIProvider"]
