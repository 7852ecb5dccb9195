"""Loopback servers that speak the OpenAI, Anthropic and Mistral HTTP APIs.

Point the vendor's official SDK at one of them (``base_url=server.base_url``) to test
code that talks to an LLM without a key or a network::

    from converge.testing.llm_servers import OpenAIServer, Reply

    with OpenAIServer([Reply('[{"type": "JoinPool", "pool_id": "p1"}]')], api_key="sk-test") as server:
        provider = OpenAIProvider(api_key="sk-test", base_url=server.base_url)
        assert provider.chat([{"role": "user", "content": "hi"}]).startswith("[")
        assert server.requests[0].body["model"] == "gpt-4o-mini"

Each server answers plain replies, server-sent-event streams (when the request says
``"stream": true``), tool calls, usage blocks and scripted errors (``Reply.error(429,
retry_after_ms=1)`` then a success, 401, 500 ...), and records every request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

from converge.testing._loopback import (
    LoopbackServer,
    RecordedRequest,
    Reply,
    chunks,
    estimate_tokens,
    prompt_text,
    sse,
)


def _usage_counts(request: RecordedRequest, reply: Reply) -> tuple[int, int]:
    body = request.body if isinstance(request.body, dict) else {}
    prompt = prompt_text(body.get("messages")) + str(body.get("system") or "")
    n_in = reply.input_tokens if reply.input_tokens is not None else estimate_tokens(prompt)
    out_text = reply.text + (reply.arguments_json if reply.tool_name else "")
    n_out = reply.output_tokens if reply.output_tokens is not None else estimate_tokens(out_text)
    return n_in, n_out


def _model(request: RecordedRequest) -> str:
    body = request.body if isinstance(request.body, dict) else {}
    return str(body.get("model") or "unknown-model")


class _ChatCompletionsServer(LoopbackServer):
    """The OpenAI-style ``/chat/completions`` wire format (shared by OpenAI and Mistral)."""

    chat_path = "/v1/chat/completions"
    id_prefix = "chatcmpl"

    def route_ok(self, method: str, path: str) -> bool:
        return method == "POST" and path == self.chat_path

    def presented_key(self, request: RecordedRequest) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    def _message(self, reply: Reply) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_name:
            msg["tool_calls"] = [
                {"id": "call_loopback_1", "type": "function", "function": {"name": reply.tool_name, "arguments": reply.arguments_json}}
            ]
        return msg

    def completion_body(self, request: RecordedRequest, reply: Reply) -> dict[str, Any]:
        n_in, n_out = _usage_counts(request, reply)
        return {
            "id": f"{self.id_prefix}-loopback-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": _model(request),
            "choices": [{"index": 0, "message": self._message(reply), "finish_reason": "tool_calls" if reply.tool_name else "stop"}],
            "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
        }

    def _include_usage_in_stream(self, request: RecordedRequest) -> bool:
        return True

    def stream_events(self, request: RecordedRequest, reply: Reply) -> Iterator[bytes]:
        n_in, n_out = _usage_counts(request, reply)
        base = {"id": f"{self.id_prefix}-loopback-{len(self.requests)}", "object": "chat.completion.chunk", "created": int(time.time()), "model": _model(request)}

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            return sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra})

        yield chunk({"role": "assistant", "content": ""})
        for piece in chunks(reply.text, reply.chunk_size):
            yield chunk({"content": piece})
        if reply.tool_name:
            call = {"index": 0, "id": "call_loopback_1", "type": "function", "function": {"name": reply.tool_name, "arguments": ""}}
            yield chunk({"tool_calls": [call]})
            for piece in chunks(reply.arguments_json, reply.chunk_size * 4):
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        usage = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
        finish = "tool_calls" if reply.tool_name else "stop"
        if self._include_usage_in_stream(request):
            yield chunk({}, finish)
            yield sse({**base, "choices": [], "usage": usage})
        else:
            yield chunk({}, finish)
        yield sse("[DONE]")


class OpenAIServer(_ChatCompletionsServer):
    """Speaks OpenAI's ``POST /v1/chat/completions``; ``base_url`` ends in ``/v1`` like the SDK expects.

    Streams send the usage chunk only when the request asks for it
    (``stream_options.include_usage``), like the real API.
    """

    vendor = "openai"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def error_body(self, status: int, error_type: str, message: str) -> dict[str, Any]:
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
        return {"error": {"message": message, "type": error_type, "param": None, "code": code}}

    def _include_usage_in_stream(self, request: RecordedRequest) -> bool:
        opts = request.body.get("stream_options") if isinstance(request.body, dict) else None
        return isinstance(opts, dict) and bool(opts.get("include_usage"))


class MistralServer(_ChatCompletionsServer):
    """Speaks Mistral's ``POST /v1/chat/completions``; ``base_url`` is the origin (the SDK's ``server_url``)."""

    vendor = "mistral"
    id_prefix = "cmpl"

    def error_body(self, status: int, error_type: str, message: str) -> dict[str, Any]:
        return {"object": "error", "message": message, "type": error_type, "param": None, "code": str(status)}


class AnthropicServer(LoopbackServer):
    """Speaks Anthropic's ``POST /v1/messages`` (``x-api-key`` or bearer auth, content blocks, typed SSE events)."""

    vendor = "anthropic"

    def route_ok(self, method: str, path: str) -> bool:
        return method == "POST" and path == "/v1/messages"

    def presented_key(self, request: RecordedRequest) -> str | None:
        # Older SDKs send ``x-api-key``; newer ones send ``Authorization: Bearer <key>``.
        if "x-api-key" in request.headers:
            return request.headers["x-api-key"]
        auth = request.headers.get("authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    def error_body(self, status: int, error_type: str, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": error_type, "message": message}}

    def _blocks(self, reply: Reply) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if reply.text:
            blocks.append({"type": "text", "text": reply.text})
        if reply.tool_name:
            args = reply.tool_arguments
            blocks.append({"type": "tool_use", "id": "toolu_loopback_1", "name": reply.tool_name, "input": json.loads(args) if isinstance(args, str) else (args or {})})
        return blocks

    def _envelope(self, request: RecordedRequest, reply: Reply) -> dict[str, Any]:
        return {"id": f"msg_loopback_{len(self.requests)}", "type": "message", "role": "assistant", "model": _model(request), "stop_sequence": None}

    def completion_body(self, request: RecordedRequest, reply: Reply) -> dict[str, Any]:
        n_in, n_out = _usage_counts(request, reply)
        return {
            **self._envelope(request, reply),
            "content": self._blocks(reply),
            "stop_reason": "tool_use" if reply.tool_name else "end_turn",
            "usage": {"input_tokens": n_in, "output_tokens": n_out},
        }

    def stream_events(self, request: RecordedRequest, reply: Reply) -> Iterable[bytes]:
        n_in, n_out = _usage_counts(request, reply)
        start = {**self._envelope(request, reply), "content": [], "stop_reason": None, "usage": {"input_tokens": n_in, "output_tokens": 1}}
        yield sse({"type": "message_start", "message": start}, "message_start")
        index = 0
        if reply.text or not reply.tool_name:
            yield sse({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}, "content_block_start")
            yield sse({"type": "ping"}, "ping")
            for piece in chunks(reply.text, reply.chunk_size):
                delta = {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}
                yield sse(delta, "content_block_delta")
            yield sse({"type": "content_block_stop", "index": index}, "content_block_stop")
            index += 1
        if reply.tool_name:
            block = {"type": "tool_use", "id": "toolu_loopback_1", "name": reply.tool_name, "input": {}}
            yield sse({"type": "content_block_start", "index": index, "content_block": block}, "content_block_start")
            for piece in chunks(reply.arguments_json, reply.chunk_size * 4):
                delta = {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}}
                yield sse(delta, "content_block_delta")
            yield sse({"type": "content_block_stop", "index": index}, "content_block_stop")
        stop = "tool_use" if reply.tool_name else "end_turn"
        yield sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": n_out}}, "message_delta")
        yield sse({"type": "message_stop"}, "message_stop")


SERVERS: dict[str, type[LoopbackServer]] = {"openai": OpenAIServer, "anthropic": AnthropicServer, "mistral": MistralServer}

__all__ = ["SERVERS", "AnthropicServer", "LoopbackServer", "MistralServer", "OpenAIServer", "RecordedRequest", "Reply"]
