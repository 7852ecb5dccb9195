"""The OpenAI, Anthropic and Mistral providers, driving the REAL vendor SDKs against loopback servers.

Each server (converge.testing.llm_servers) speaks the vendor's HTTP API on 127.0.0.1 with an
OS-assigned port and records what the SDK sent; nothing of the SDKs is mocked.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from converge.errors import ConfigError, MissingExtraError
from converge.extensions.llm import (
    EMIT_DECISIONS_TOOL,
    AnthropicProvider,
    MistralProvider,
    OpenAIProvider,
    ProviderAuthError,
    ProviderConnectionError,
    ProviderRateLimitError,
    ProviderServerError,
    ProviderTimeoutError,
    UsageRecord,
    collect_usage,
)
from converge.testing.llm_servers import AnthropicServer, MistralServer, OpenAIServer, RecordedRequest, Reply

KEY = "sk-test-0123456789abcdef"
WRONG_KEY = "sk-wrong-9876543210fedcba"
CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]


@dataclass
class Vendor:
    name: str
    server_cls: type
    provider_cls: type
    model: str
    path: str
    price: tuple[float, float]  # USD per million tokens (input, output) in DEFAULT_PRICES
    extra: str  # the pip extra named in MissingExtraError
    sdk_module: str

    def provider(self, server: Any, **kw: Any) -> Any:
        kw.setdefault("api_key", KEY)
        kw.setdefault("max_retries", 0)
        return self.provider_cls(model=self.model, base_url=server.base_url, **kw)

    def auth(self, req: RecordedRequest) -> str | None:
        if "x-api-key" in req.headers:
            return req.headers["x-api-key"]
        auth = req.headers.get("authorization", "")
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None


VENDORS = [
    Vendor("openai", OpenAIServer, OpenAIProvider, "gpt-4o-mini", "/v1/chat/completions", (0.15, 0.60), "llm", "openai"),
    # claude-haiku-4-5: the SDK warns (DeprecationWarning) for the reference default claude-sonnet-4-20250514.
    Vendor("anthropic", AnthropicServer, AnthropicProvider, "claude-haiku-4-5", "/v1/messages", (1.0, 5.0), "llm-anthropic", "anthropic"),
    Vendor("mistral", MistralServer, MistralProvider, "mistral-small-latest", "/v1/chat/completions", (0.10, 0.30), "llm-mistral", "mistralai"),
]


@pytest.fixture(params=VENDORS, ids=lambda v: v.name)
def vendor(request) -> Vendor:
    return request.param


def sent_messages(vendor: Vendor, req: RecordedRequest) -> tuple[Any, Any]:
    """(system, messages) as the SDK put them on the wire."""
    body = req.body
    if vendor.name == "anthropic":
        return body.get("system"), body["messages"]
    return None, body["messages"]


def test_plain_reply_and_what_the_sdk_sent(vendor):
    with vendor.server_cls([Reply("Hello!", input_tokens=1200, output_tokens=300)], api_key=KEY) as server:
        provider = vendor.provider(server)
        records: list[UsageRecord] = []
        provider.usage_sink = records.append
        assert provider.chat(CHAT) == "Hello!"
        (req,) = server.requests
        provider.close()
    assert req.method == "POST" and req.path == vendor.path
    assert vendor.auth(req) == KEY
    assert req.headers["content-type"].startswith("application/json")
    assert req.body["model"] == vendor.model
    system, messages = sent_messages(vendor, req)
    if vendor.name == "anthropic":
        assert system == "You are terse."  # Anthropic takes the system prompt separately
        assert messages == [{"role": "user", "content": "Say hello."}]
        assert req.body["max_tokens"] == 1024
    else:
        assert messages == CHAT
    assert "tools" not in req.body
    # usage block -> UsageRecord with the vendor's token counts and the table's cost
    usage = provider.last_usage
    assert usage is records[0]
    assert (usage.provider, usage.model, usage.input_tokens, usage.output_tokens) == (vendor.name, vendor.model, 1200, 300)
    assert usage.cost_usd == pytest.approx((1200 * vendor.price[0] + 300 * vendor.price[1]) / 1e6)
    assert usage.latency_sec > 0


def test_structured_output_sends_the_tool_and_returns_its_arguments(vendor):
    decisions = {"decisions": [{"type": "ClaimTask", "task_id": "t1"}]}
    with vendor.server_cls([Reply.tool("emit_decisions", decisions)]) as server:
        provider = vendor.provider(server)
        out = provider.chat(CHAT, use_structured_output=True, emit_decisions_tool=EMIT_DECISIONS_TOOL)
        (req,) = server.requests
        provider.close()
    assert json.loads(out) == decisions
    fn = EMIT_DECISIONS_TOOL["function"]
    (tool,) = req.body["tools"]
    if vendor.name == "openai":
        assert tool == EMIT_DECISIONS_TOOL
        assert req.body["tool_choice"] == {"type": "function", "function": {"name": "emit_decisions"}}
    elif vendor.name == "anthropic":
        assert tool == {"name": "emit_decisions", "description": fn["description"], "input_schema": fn["parameters"]}
        assert req.body["tool_choice"] == {"type": "tool", "name": "emit_decisions"}
    else:
        assert tool["type"] == "function"
        assert tool["function"]["name"] == "emit_decisions" and tool["function"]["parameters"] == fn["parameters"]
        assert req.body["tool_choice"] == "required"


async def test_achat_uses_the_async_client(vendor):
    with vendor.server_cls([Reply("async hello")], api_key=KEY) as server:
        provider = vendor.provider(server)
        with collect_usage() as records:
            assert await provider.achat(CHAT) == "async hello"
        await provider.aclose()
        (req,) = server.requests
    assert req.path == vendor.path and vendor.auth(req) == KEY
    assert [r.provider for r in records] == [vendor.name]
    assert records[0].output_tokens >= 1
    # Both the OpenAI and Anthropic SDKs say which client sent the request.
    if "x-stainless-async" in req.headers:
        assert req.headers["x-stainless-async"].startswith("async")


async def test_chat_stream_yields_server_sent_event_chunks(vendor):
    text = "streamed answer in several small pieces"
    with vendor.server_cls([Reply(text, input_tokens=40, output_tokens=9, chunk_size=5)]) as server:
        provider = vendor.provider(server)
        pieces = [piece async for piece in provider.chat_stream(CHAT)]
        await provider.aclose()
        (req,) = server.requests
    assert req.body["stream"] is True
    assert "".join(pieces) == text
    assert len(pieces) >= len(text) // 5  # really streamed, not one block
    usage = provider.last_usage
    assert (usage.input_tokens, usage.output_tokens) == (40, 9)
    assert usage.extra.get("streamed") is True


def test_rate_limit_then_success_is_retried(vendor):
    with vendor.server_cls([Reply.error(429, "slow down", retry_after_ms=1), Reply("made it")]) as server:
        provider = vendor.provider(server, max_retries=2)
        assert provider.chat(CHAT) == "made it"
        assert len(server.requests) == 2
        provider.close()


def test_rate_limit_without_retries_raises_typed_error(vendor):
    with vendor.server_cls([Reply.error(429, "slow down", retry_after_ms=1)]) as server:
        provider = vendor.provider(server, max_retries=0)
        with pytest.raises(ProviderRateLimitError) as info:
            provider.chat(CHAT)
        provider.close()
    assert info.value.status == 429 and "429" in str(info.value)


def test_wrong_key_gives_auth_error_naming_the_status_and_never_the_key(vendor):
    with vendor.server_cls(api_key=KEY) as server:
        provider = vendor.provider(server, api_key=WRONG_KEY)
        with pytest.raises(ProviderAuthError) as info:
            provider.chat(CHAT)
        provider.close()
        assert vendor.auth(server.requests[0]) == WRONG_KEY
    err = info.value
    assert err.status == 401 and err.provider == vendor.name and err.model == vendor.model
    assert "HTTP 401" in str(err) and vendor.name in str(err)
    assert WRONG_KEY not in str(err) and WRONG_KEY not in repr(err)
    assert WRONG_KEY not in repr(provider) and "<set>" in repr(provider)
    assert err.__cause__ is not None  # the SDK's exception is chained


def test_a_key_echoed_by_the_vendor_is_redacted(vendor):
    with vendor.server_cls([Reply.error(401, f"Incorrect API key provided: {WRONG_KEY}")]) as server:
        provider = vendor.provider(server, api_key=WRONG_KEY)
        with pytest.raises(ProviderAuthError) as info:
            provider.chat(CHAT)
        provider.close()
    assert WRONG_KEY not in str(info.value) and "Incorrect API key provided: ***" in str(info.value)


def test_an_echoed_key_stays_out_of_the_formatted_traceback_and_chain(vendor):
    import traceback

    with vendor.server_cls([Reply.error(401, f"Incorrect API key provided: {WRONG_KEY}")]) as server:
        provider = vendor.provider(server, api_key=WRONG_KEY)
        with pytest.raises(ProviderAuthError) as info:
            provider.chat(CHAT)
        provider.close()
    err = info.value
    text = "".join(traceback.format_exception(err))
    assert WRONG_KEY not in text and "Incorrect API key provided: ***" in text
    assert err.__context__ is None and type(err.__cause__).__name__ == "RedactedSDKError"
    assert err.sdk_error_type == err.__cause__.sdk_error_type and err.sdk_error_type.endswith("Error")
    assert err.__cause__.status == 401 and err.__cause__.__cause__ is None and err.__cause__.__context__ is None


def test_structured_request_answered_with_text_returns_the_text(vendor):
    with vendor.server_cls([Reply('[{"type": "JoinPool", "pool_id": "p"}]')]) as server:
        provider = vendor.provider(server)
        assert provider.chat(CHAT, use_structured_output=True) == '[{"type": "JoinPool", "pool_id": "p"}]'
        assert server.requests[0].body["tools"]  # the default EMIT_DECISIONS_TOOL was offered
        provider.close()


def test_server_error_gives_provider_server_error(vendor):
    with vendor.server_cls([Reply.error(500, "internal kaboom", retry_after_ms=1)]) as server:
        provider = vendor.provider(server, max_retries=0)
        with pytest.raises(ProviderServerError) as info:
            provider.chat(CHAT)
        provider.close()
        assert len(server.requests) == 1
    assert info.value.status == 500 and "HTTP 500" in str(info.value)
    assert "internal kaboom" in str(info.value)


def test_timeout_gives_provider_timeout_error(vendor):
    with vendor.server_cls([Reply("too late", delay=1.0)]) as server:
        provider = vendor.provider(server, timeout=0.2)
        with pytest.raises(ProviderTimeoutError) as info:
            provider.chat(CHAT)
        provider.close()
    assert isinstance(info.value, TimeoutError)


def test_unreachable_endpoint_gives_connection_error(vendor):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connection refused
        provider = vendor.provider_cls(api_key=KEY, model=vendor.model, base_url=f"http://127.0.0.1:{port}", max_retries=0)
        with pytest.raises(ProviderConnectionError):
            provider.chat(CHAT)
    provider.close()


def test_environment_variables_of_the_sdk_are_honoured(vendor, monkeypatch):
    with vendor.server_cls([Reply("from env")], api_key=KEY) as server:
        if vendor.name == "openai":
            monkeypatch.setenv("OPENAI_API_KEY", KEY)
            monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
            provider = OpenAIProvider()
        elif vendor.name == "anthropic":
            monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
            monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
            provider = AnthropicProvider(model=vendor.model)
        else:
            monkeypatch.setenv("MISTRAL_API_KEY", KEY)
            provider = MistralProvider(base_url=server.base_url)
        assert provider.chat(CHAT, model=vendor.model) == "from env"
        assert vendor.auth(server.requests[0]) == KEY
        assert repr(provider).endswith("api_key=<from $" + provider.env_key + ">)")
        provider.close()


def test_reference_defaults_and_bad_options():
    assert OpenAIProvider().model == "gpt-4o-mini"
    assert AnthropicProvider().model == "claude-sonnet-4-20250514"
    assert MistralProvider().model == "mistral-small-latest"
    with pytest.raises(ConfigError, match="timeout"):
        OpenAIProvider(timeout=0)
    with pytest.raises(ConfigError, match="max_retries"):
        MistralProvider(max_retries=-1)
    with pytest.raises(ConfigError, match="base_url"):
        AnthropicProvider(base_url="127.0.0.1:80")
    with pytest.raises(ConfigError, match="max_tokens"):
        AnthropicProvider(max_tokens=0)


def test_missing_sdk_names_the_extra(vendor, monkeypatch):
    monkeypatch.setitem(sys.modules, vendor.sdk_module, None)  # makes `import <sdk>` fail
    provider = vendor.provider_cls(api_key=KEY, base_url="http://127.0.0.1:9")
    with pytest.raises(MissingExtraError, match=rf'pip install "converge\[{vendor.extra}\]"'):
        provider.chat(CHAT)


def test_importing_the_llm_extension_imports_no_vendor_sdk():
    code = (
        "import sys, converge.extensions.llm as m; "
        "m.OpenAIProvider(); m.AnthropicProvider(); m.MistralProvider(); "
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('openai', 'anthropic', 'mistralai')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=str(Path(__file__).parents[1]))
    assert out.stdout.strip() == "[]"


def test_server_records_unknown_routes_and_exhausted_scripts():
    import httpx

    with OpenAIServer([Reply("only one")]) as server:
        r = httpx.post(server.origin + "/v1/nope", json={})
        assert r.status_code == 404 and "no route" in r.json()["error"]["message"]
        ok = httpx.post(server.base_url + "/chat/completions", json={"model": "m", "messages": []})
        assert ok.json()["choices"][0]["message"]["content"] == "only one"
        empty = httpx.post(server.base_url + "/chat/completions", json={"model": "m", "messages": []})
        assert empty.status_code == 418 and "no scripted reply" in empty.json()["error"]["message"]
        assert [q.path for q in server.requests] == ["/v1/nope", "/v1/chat/completions", "/v1/chat/completions"]
