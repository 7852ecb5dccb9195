"""Offline providers (scripted, recording, replay), usage collection and the price table."""

from __future__ import annotations

import asyncio
import json

import pytest

from converge.core.decisions import SendMessage
from converge.core.identity import Identity
from converge.core.message import Message
from converge.core.task import Task
from converge.core.usage import UsageRecord
from converge.errors import ConfigError, DecodeError, ProviderError
from converge.extensions.llm import (
    DEFAULT_PRICES,
    AnthropicProvider,
    CassetteMissError,
    LLMAgent,
    LLMProvider,
    ModelPrice,
    OpenAIProvider,
    PriceTable,
    RecordingProvider,
    ReplayProvider,
    ScriptedProvider,
    collect_usage,
    request_hash,
)
from converge.testing.llm_servers import AnthropicServer, OpenAIServer, Reply

KEY = "sk-cassette-secret-0123456789"
HI = [{"role": "user", "content": "hi"}]


# -- ScriptedProvider -----------------------------------------------------
def test_scripted_replies_in_order_then_a_clear_error():
    p = ScriptedProvider(["a", "b"])
    assert isinstance(p, LLMProvider)
    assert [p.chat(HI), p.chat(HI)] == ["a", "b"]
    with pytest.raises(ProviderError, match="ran out of replies after 2 calls"):
        p.chat(HI)
    assert [c.reply for c in p.calls] == ["a", "b", None]


def test_scripted_loop_function_and_exceptions():
    looped = ScriptedProvider(["x", "y"], loop=True)
    assert [looped.chat(HI) for _ in range(5)] == ["x", "y", "x", "y", "x"]
    echo = ScriptedProvider(lambda messages: messages[-1]["content"].upper())
    assert echo.chat(HI) == "HI" and echo.calls[0].messages == HI
    failing = ScriptedProvider([TimeoutError("slow"), "ok"])
    with pytest.raises(TimeoutError):
        failing.chat(HI)
    assert failing.chat(HI) == "ok"
    with pytest.raises(ConfigError):
        ScriptedProvider([1, 2])  # type: ignore[list-item]


async def test_scripted_usage_stream_and_async():
    seen: list[UsageRecord] = []
    p = ScriptedProvider(["one two three", "four"], model="demo", usage_sink=seen.append)
    assert [piece async for piece in p.chat_stream(HI)] == ["one ", "two ", "three"]
    assert await p.achat([{"role": "user", "content": "x" * 40}]) == "four"
    assert [(u.provider, u.model, u.input_tokens, u.output_tokens, u.cost_usd) for u in seen] == [
        ("scripted", "demo", 1, 3, 0.0),
        ("scripted", "demo", 10, 1, 0.0),
    ]
    assert p.last_usage is seen[-1]


def test_collect_usage_nests_and_sink_errors_are_logged(caplog):
    def broken_sink(record):
        raise RuntimeError("sink bug")

    p = ScriptedProvider(["a", "b"], usage_sink=broken_sink)
    with collect_usage() as outer:
        p.chat(HI)
        with collect_usage() as inner:
            p.chat(HI)
    assert len(outer) == 2 and len(inner) == 1 and inner[0] is outer[1]
    assert "usage_sink" in caplog.text and p.last_usage is outer[1]


# -- pricing ----------------------------------------------------------------
def test_price_table_lookup_cost_and_validation():
    assert DEFAULT_PRICES.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert DEFAULT_PRICES.lookup("gpt-4o-mini-2024-07-18") == DEFAULT_PRICES["gpt-4o-mini"]  # dated snapshot
    assert DEFAULT_PRICES.lookup("gpt-4o-2024-08-06") == DEFAULT_PRICES["gpt-4o"]
    assert DEFAULT_PRICES.cost("some-unknown-model", 10**6, 10**6) == 0.0
    table = DEFAULT_PRICES.extended({"mine": (1.0, 2.0)})
    assert table.cost("mine", 500_000, 250_000) == pytest.approx(1.0) and "mine" not in DEFAULT_PRICES
    with pytest.raises(ConfigError, match="input_per_mtok"):
        ModelPrice(-1, 0)
    with pytest.raises(ConfigError, match="pair"):
        PriceTable({"m": (1.0,)})  # type: ignore[dict-item]


def test_provider_uses_a_custom_price_table():
    with OpenAIServer([Reply("ok", input_tokens=2_000_000, output_tokens=0)]) as server:
        p = OpenAIProvider(api_key=KEY, base_url=server.base_url, model="house-model", price_table={"house-model": (0.5, 1.0)})
        p.chat(HI)
        p.close()
    assert p.last_usage.cost_usd == pytest.approx(1.0)


# -- cassettes --------------------------------------------------------------
def test_request_hash_is_stable_and_ignores_secrets():
    h = request_hash(HI, {"model": "m", "temperature": 0})
    assert h == request_hash([dict(HI[0])], {"temperature": 0, "model": "m"})  # key order does not matter
    assert h == request_hash(HI, {"model": "m", "temperature": 0, "api_key": "sk-x", "extra_headers": {"Authorization": "x"}})
    assert h != request_hash(HI, {"model": "other", "temperature": 0})
    assert h != request_hash(HI, {"model": "m", "temperature": 0, "use_structured_output": True})
    assert request_hash(HI, {"max_tokens": 5}) != request_hash(HI, {"max_tokens": 6})
    assert len(h) == 64


def test_recording_a_live_provider_writes_a_key_free_cassette(tmp_path):
    path = tmp_path / "run.jsonl"
    with AnthropicServer([Reply("hello", input_tokens=7, output_tokens=2)], api_key=KEY) as server:
        live = AnthropicProvider(api_key=KEY, base_url=server.base_url, model="claude-haiku-4-5")
        rec = RecordingProvider(live, path)
        with collect_usage() as usage:
            assert rec.chat([{"role": "system", "content": "sys"}, *HI], max_tokens=64) == "hello"
        live.close()
    text = path.read_text()
    assert KEY not in text
    (entry,) = [json.loads(line) for line in text.splitlines()]
    assert entry["hash"] == request_hash([{"role": "system", "content": "sys"}, *HI], {"max_tokens": 64})
    assert entry["response"] == "hello" and entry["provider"] == "anthropic" and entry["model"] == "claude-haiku-4-5"
    assert entry["usage"]["input_tokens"] == 7 and entry["usage"]["output_tokens"] == 2
    assert entry["request"]["options"] == {"max_tokens": 64}
    assert server.requests[0].body["max_tokens"] == 64
    # the inner provider's record is reported once, carrying the cassette key
    (u,) = usage
    assert u.provider == "anthropic" and u.request_hash == entry["hash"]


def test_recorder_redacts_a_key_that_leaks_into_a_reply(tmp_path):
    class Leaky:
        api_key = KEY

        def chat(self, messages, **kwargs):
            return f"my key is {KEY}"

    path = tmp_path / "leak.jsonl"
    assert RecordingProvider(Leaky(), path).chat(HI) == f"my key is {KEY}"
    assert KEY not in path.read_text() and "***REDACTED***" in path.read_text()


async def test_replay_answers_in_recorded_order_and_misses_name_hash_and_cassette(tmp_path):
    path = tmp_path / "c.jsonl"
    rec = RecordingProvider(ScriptedProvider(["first", "second"]), path)
    rec.chat(HI)
    await rec.achat(HI)
    replay = ReplayProvider(path)
    assert replay.chat(HI) == "first"
    assert await replay.achat(HI) == "second"
    assert replay.chat(HI) == "second"  # exhausted: the last recording again
    assert replay.last_usage.provider == "replay" and replay.last_usage.cost_usd == 0.0
    other = [{"role": "user", "content": "never recorded"}]
    with pytest.raises(CassetteMissError) as info:
        replay.chat(other)
    assert info.value.request_hash == request_hash(other) and info.value.path == str(path)
    assert request_hash(other) in str(info.value) and str(path) in str(info.value)
    assert (replay.hits, replay.misses) == (3, 1)


async def test_replay_falls_through_to_a_live_provider_when_not_strict(tmp_path):
    path = tmp_path / "c.jsonl"
    RecordingProvider(ScriptedProvider(["recorded"]), path).chat(HI)
    live = ScriptedProvider(["live answer"])
    replay = ReplayProvider(path, strict=False, fallback=live)
    assert replay.chat(HI) == "recorded"
    assert await replay.achat([{"role": "user", "content": "new"}]) == "live answer"
    with pytest.raises(CassetteMissError):
        ReplayProvider(path, strict=False).chat([{"role": "user", "content": "new"}])  # no fallback


def test_bad_cassettes_give_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ReplayProvider(tmp_path / "missing.jsonl").chat(HI)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"hash": "h", "response": "ok"}\nnot json\n')
    with pytest.raises(DecodeError, match="line 2"):
        ReplayProvider(bad).chat(HI)


async def test_record_a_run_against_the_loopback_server_then_replay_it_without_any_server(tmp_path):
    """An LLMAgent recorded with the real OpenAI SDK replays the same decisions with no server at all."""
    path = tmp_path / "agent-run.jsonl"
    identity = Identity.generate()
    inbox = [Message(sender="alice", payload={"ask": "ping"}), Message(sender="bob", payload={"ask": "pong"})]
    tasks = [Task(id="t1", objective={"goal": "answer"})]
    replies = [
        '[{"type": "SendMessage", "message": {"recipient": "alice", "payload": {"answer": "pong"}}}, {"type": "ClaimTask", "task_id": "t1"}]',
        '```json\n[{"type": "ReportTask", "task_id": "t1", "result": {"done": true}}]\n```',
    ]

    def normalise(decisions):  # generated message ids/timestamps differ between runs
        out = []
        for d in decisions:
            if isinstance(d, SendMessage):
                out.append(("SendMessage", d.message.sender, d.message.recipient, d.message.payload))
            else:
                out.append(d)
        return out

    with OpenAIServer([Reply(r) for r in replies], api_key=KEY) as server:
        live = OpenAIProvider(api_key=KEY, base_url=server.base_url)
        agent = LLMAgent(identity, RecordingProvider(live, path))
        recorded = [await agent.adecide(inbox[:1], tasks), await agent.adecide(inbox[1:], tasks)]
        await live.aclose()
        assert len(server.requests) == 2
    recorded_usage = agent.drain_usage()
    assert [u.provider for u in recorded_usage] == ["openai", "openai"] and all(u.request_hash for u in recorded_usage)
    # the server is gone: replay needs nothing but the cassette
    replay_agent = LLMAgent(identity, ReplayProvider(path))
    replayed = [await replay_agent.adecide(inbox[:1], tasks), await replay_agent.adecide(inbox[1:], tasks)]
    assert [normalise(d) for d in replayed] == [normalise(d) for d in recorded]
    assert normalise(replayed[0])[0] == ("SendMessage", identity.fingerprint, "alice", {"answer": "pong"})
    assert [u.request_hash for u in replay_agent.drain_usage()] == [u.request_hash for u in recorded_usage]
    # a changed conversation is a miss, reported like any provider failure
    errors = []
    strict_agent = LLMAgent(identity, ReplayProvider(path), on_decide_error=errors.append)
    assert await strict_agent.adecide([Message(sender="eve", payload={})], tasks) == []
    assert isinstance(errors[0], CassetteMissError)


async def test_recording_a_stream(tmp_path):
    path = tmp_path / "s.jsonl"
    rec = RecordingProvider(ScriptedProvider(["a streamed reply"]), path)
    assert "".join([p async for p in rec.chat_stream(HI)]) == "a streamed reply"
    assert [p async for p in ReplayProvider(path).chat_stream(HI)] == ["a ", "streamed ", "reply"]
    await asyncio.sleep(0)
