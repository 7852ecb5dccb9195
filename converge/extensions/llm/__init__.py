"""LLM extension: ``LLMAgent`` and providers.

* Vendor providers on the official SDKs: :class:`OpenAIProvider`, :class:`AnthropicProvider`,
  :class:`MistralProvider` (sync ``chat``, async ``achat``, streaming ``chat_stream``,
  tool-call structured output, usage and cost per call). The SDKs are imported on first
  use, so importing this package needs none of them.
* Offline providers: :class:`ScriptedProvider` (replies from a list or a function),
  :class:`RecordingProvider` (writes a JSON-lines cassette) and :class:`ReplayProvider`
  (answers from one).
* :class:`LLMAgent` turns a provider's JSON answer into decisions.
"""

from __future__ import annotations

from converge.core.usage import UsageRecord
from converge.extensions.llm.agent import EMIT_DECISIONS_TOOL, LLMAgent
from converge.extensions.llm.anthropic import AnthropicProvider
from converge.extensions.llm.base import AsyncLLMProvider, LLMProvider, StreamingLLMProvider, collect_usage, report_usage
from converge.extensions.llm.cassette import RecordingProvider, ReplayProvider, request_hash
from converge.extensions.llm.errors import (
    CassetteMissError,
    DecisionParseError,
    ProviderAuthError,
    ProviderCallError,
    ProviderConnectionError,
    ProviderHTTPError,
    ProviderRateLimitError,
    ProviderServerError,
    ProviderTimeoutError,
)
from converge.extensions.llm.mistral import MistralProvider
from converge.extensions.llm.offline import ScriptedProvider
from converge.extensions.llm.openai import OpenAIProvider
from converge.extensions.llm.pricing import DEFAULT_PRICES, ModelPrice, PriceTable

__all__ = [
    "DEFAULT_PRICES",
    "EMIT_DECISIONS_TOOL",
    "AnthropicProvider",
    "AsyncLLMProvider",
    "CassetteMissError",
    "DecisionParseError",
    "LLMAgent",
    "LLMProvider",
    "MistralProvider",
    "ModelPrice",
    "OpenAIProvider",
    "PriceTable",
    "ProviderAuthError",
    "ProviderCallError",
    "ProviderConnectionError",
    "ProviderHTTPError",
    "ProviderRateLimitError",
    "ProviderServerError",
    "ProviderTimeoutError",
    "RecordingProvider",
    "ReplayProvider",
    "ScriptedProvider",
    "StreamingLLMProvider",
    "UsageRecord",
    "collect_usage",
    "report_usage",
    "request_hash",
]
