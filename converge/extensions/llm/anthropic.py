"""``AnthropicProvider``: the Messages API through the official ``anthropic`` SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from converge._extras import require
from converge.errors import ConfigError
from converge.extensions.llm._sdk import SDKProvider, UsageSink, _Call, as_int, tool_name_of
from converge.extensions.llm.base import ChatMessage
from converge.extensions.llm.pricing import PriceLike, PriceTable


def anthropic_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-style function definition in Anthropic's ``{name, description, input_schema}`` form.

    A definition already in Anthropic's form (it has ``input_schema``) is returned unchanged.
    """
    if "input_schema" in tool:
        return tool
    fn = tool.get("function")
    if not isinstance(fn, dict):
        raise ConfigError("emit_decisions_tool must look like {'type': 'function', 'function': {'name', 'description', 'parameters'}}")
    schema = fn.get("parameters") or {"type": "object", "properties": {}}
    return {"name": tool_name_of(tool), "description": fn.get("description", ""), "input_schema": schema}


def split_system(messages: list[ChatMessage]) -> tuple[str, list[dict[str, Any]]]:
    """``(system text, other messages)``: Anthropic takes the system prompt as a separate ``system=``."""
    system: list[str] = []
    rest: list[dict[str, Any]] = []
    for m in messages:
        if m.get("role") == "system":
            content = m.get("content")
            system.append(content if isinstance(content, str) else json.dumps(content, default=str))
        else:
            rest.append({"role": m.get("role"), "content": m.get("content")})
    return "\n".join(s for s in system if s), rest


class AnthropicProvider(SDKProvider):
    """LLM provider on Anthropic's Messages API (``pip install "converge[llm-anthropic]"``).

    Args:
        api_key: the key; ``None`` → the SDK reads ``$ANTHROPIC_API_KEY`` (and its other
            credential sources).
        model: default model of every call (a call may pass ``model=``).
        base_url: API root; ``None`` → ``$ANTHROPIC_BASE_URL`` or Anthropic's.
        timeout: seconds per request.
        max_retries: the SDK's retries on 408/409/429/5xx and connection errors.
        max_tokens: default ``max_tokens`` of every call (required by the API).
        price_table / usage_sink: see :class:`~converge.extensions.llm.OpenAIProvider`.

    System messages are sent as ``system=``. With ``use_structured_output=True`` the
    OpenAI-style ``emit_decisions_tool`` is converted to an Anthropic tool, forced with
    ``tool_choice``, and its ``input`` is returned as JSON text.
    """

    vendor = "anthropic"
    default_model = "claude-sonnet-4-20250514"
    env_key = "ANTHROPIC_API_KEY"

    def __init__(
        self,
        api_key: str | None = None,
        model: str = "claude-sonnet-4-20250514",
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        max_tokens: int = 1024,
        price_table: PriceTable | Mapping[str, PriceLike] | None = None,
        usage_sink: UsageSink | None = None,
    ) -> None:
        super().__init__(
            api_key, model, base_url=base_url, timeout=timeout, max_retries=max_retries, price_table=price_table, usage_sink=usage_sink
        )
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ConfigError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
        self.max_tokens = max_tokens

    def _sdk(self) -> Any:
        return require("anthropic", "llm-anthropic", purpose="AnthropicProvider")

    def _new_client(self, *, asynchronous: bool) -> Any:
        anthropic = self._sdk()
        cls = anthropic.AsyncAnthropic if asynchronous else anthropic.Anthropic
        kwargs: dict[str, Any] = {"timeout": self.timeout, "max_retries": self.max_retries}
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key
        if self.base_url is not None:
            kwargs["base_url"] = self.base_url
        return cls(**kwargs)

    def _prepare(self, messages: list[ChatMessage], kwargs: dict[str, Any]) -> _Call:
        model, structured, tool = self._common_options(kwargs)
        system, rest = split_system(messages)
        extra_system = kwargs.pop("system", None)
        if extra_system:
            system = f"{system}\n{extra_system}" if system else str(extra_system)
        sdk: dict[str, Any] = {"model": model, "max_tokens": kwargs.pop("max_tokens", self.max_tokens), "messages": rest, **kwargs}
        if system:
            sdk["system"] = system
        name = None
        if tool is not None:
            converted = anthropic_tool(tool)
            name = converted["name"]
            sdk["tools"] = [converted]
            sdk["tool_choice"] = {"type": "tool", "name": name}
        return _Call(model, sdk, structured, name)

    def _create(self, client: Any, call: _Call) -> Any:
        return client.messages.create(**call.sdk_kwargs)

    async def _acreate(self, client: Any, call: _Call) -> Any:
        return await client.messages.create(**call.sdk_kwargs)

    def _parse(self, response: Any, call: _Call) -> tuple[str, int, int]:
        usage = getattr(response, "usage", None)
        n_in, n_out = as_int(getattr(usage, "input_tokens", 0)), as_int(getattr(usage, "output_tokens", 0))
        blocks = getattr(response, "content", None) or []
        if call.structured:
            for block in blocks:
                if getattr(block, "type", None) == "tool_use" and getattr(block, "name", None) == call.tool_name:
                    data = block.input
                    return (json.dumps(data) if isinstance(data, (dict, list)) else str(data)), n_in, n_out
        text = "".join(getattr(b, "text", "") or "" for b in blocks if getattr(b, "type", None) == "text")
        return text, n_in, n_out

    async def _astream(self, client: Any, call: _Call, usage: list[int]) -> AsyncIterator[str]:
        async with client.messages.stream(**call.sdk_kwargs) as stream:
            async for text in stream.text_stream:
                if text:
                    yield text
            final = await stream.get_final_message()
        u = getattr(final, "usage", None)
        usage[0], usage[1] = as_int(getattr(u, "input_tokens", 0)), as_int(getattr(u, "output_tokens", 0))

    def _classify(self, exc: BaseException) -> tuple[str, int | None] | None:
        anthropic = self._sdk()
        if isinstance(exc, anthropic.APITimeoutError):
            return "timeout", None
        if isinstance(exc, anthropic.APIConnectionError):
            return "connection", None
        if isinstance(exc, anthropic.APIStatusError):
            return "http", exc.status_code
        return None


__all__ = ["AnthropicProvider"]
