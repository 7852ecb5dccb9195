"""LLMAgent with the offline ScriptedProvider: prompts, parsing, repair, errors, retries, memory, sync decide."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from converge.core.decisions import (
    AcceptProposal,
    ClaimTask,
    CreatePool,
    Delegate,
    InvokeTool,
    JoinPool,
    LeavePool,
    Propose,
    RejectProposal,
    ReportTask,
    RevokeDelegation,
    SendMessage,
    SubmitBid,
    SubmitTask,
    Vote,
)
from converge.core.identity import Identity
from converge.core.memory import ShortTermMemory
from converge.core.message import Message
from converge.core.task import Task
from converge.core.tools import ToolRegistry
from converge.core.topic import Topic
from converge.errors import ConfigError, ProviderError
from converge.extensions.llm import (
    EMIT_DECISIONS_TOOL,
    DecisionParseError,
    LLMAgent,
    ProviderAuthError,
    ProviderRateLimitError,
    ScriptedProvider,
)
from converge.extensions.llm.agent import _extract_json_array
from converge.observability.metrics import MetricsCollector

MSG = Message(sender="other", payload={"x": 1})
TASK = Task(id="t1", objective={"goal": "x"})
CLAIM = '[{"type": "ClaimTask", "task_id": "t1"}]'


def agent_with(replies, **kw):
    provider = ScriptedProvider(replies)
    return LLMAgent(Identity.generate(), provider, **kw), provider


class Sleeps:
    """An injected sleep that records the delays instead of waiting."""

    def __init__(self):
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def test_user_prompt_has_the_reference_format():
    agent, provider = agent_with([CLAIM])
    await agent.adecide([MSG], [TASK])
    chat = provider.calls[0].messages
    assert chat[0]["role"] == "system" and "JSON array" in chat[0]["content"] and agent.id in chat[0]["content"]
    assert chat[-1] == {
        "role": "user",
        "content": 'Messages: [{"sender": "other", "payload": {"x": 1}, "topics": []}]\nTasks: [{"id": "t1", "objective": {"goal": "x"}}]',
    }
    assert len(chat) == 2


async def test_no_work_prompt_and_custom_system_prompt():
    agent, provider = agent_with(["[]"], system_prompt="Custom.", few_shot_examples=[("u", "[]")])
    assert await agent.adecide([], []) == []
    assert provider.calls[0].messages == [{"role": "system", "content": "Custom."}, {"role": "user", "content": "No messages or tasks. Output []."}]


@pytest.mark.parametrize(
    "reply",
    [
        f"```json\n{CLAIM}\n```",
        f"Sure! Here you go:\n{CLAIM}\nGood luck.",
        CLAIM,
        '{"decisions": [{"type": "ClaimTask", "task_id": "t1"}]}',
        "```\n" + CLAIM + "\n```",
    ],
    ids=["fenced", "bare-in-prose", "plain", "structured", "fenced-no-label"],
)
async def test_parses_the_decision_array_in_every_reply_shape(reply):
    agent, _ = agent_with([reply])
    assert await agent.adecide([], [TASK]) == [ClaimTask("t1")]
    assert agent.last_decide_error is None and agent.last_raw_response == reply


def test_reference_helper_names_still_work():
    agent, _ = agent_with([])
    assert agent._parse_decisions(CLAIM) == ([ClaimTask("t1")], True)
    assert agent._parse_decisions("nope") == ([], False)
    assert agent._format_messages_and_tasks([MSG], [])[-1]["content"].startswith("Messages: ")


def test_extract_json_array_is_string_aware():
    assert _extract_json_array("") == "[]"
    assert _extract_json_array('x ["a]", "b[", \'c]\'] tail ]') == '["a]", "b[", \'c]\']'
    assert _extract_json_array('noise {"decisions": [1]} more') == "[1]"  # first [ wins, as in the reference
    assert _extract_json_array('noise {"type": "x"} more') == '{"type": "x"}'
    assert _extract_json_array("no json here") == "no json here"


async def test_structured_mode_passes_the_tool_and_parses_its_arguments():
    agent, provider = agent_with(['{"decisions": [{"type": "JoinPool", "pool_id": "p"}]}'], use_structured_output=True)
    assert await agent.adecide([MSG], []) == [JoinPool("p")]
    assert provider.calls[0].kwargs == {"use_structured_output": True, "emit_decisions_tool": EMIT_DECISIONS_TOOL}


async def test_malformed_reply_is_repaired_once():
    errors = []
    agent, provider = agent_with(["I think I should claim it.", CLAIM], on_decide_error=errors.append)
    assert await agent.adecide([], [TASK]) == [ClaimTask("t1")]
    first, second = provider.calls
    assert second.messages[: len(first.messages)] == first.messages
    assert second.messages[-2] == {"role": "assistant", "content": "I think I should claim it."}
    assert second.messages[-1]["role"] == "user" and "not a valid JSON array" in second.messages[-1]["content"]
    assert errors == [] and agent.last_decide_error is None
    assert agent.counters["repairs"] == 1


async def test_malformed_twice_yields_nothing_and_reports_a_parse_error():
    errors = []
    metrics = MetricsCollector()
    agent, provider = agent_with(["not json", "still {not json"], on_decide_error=errors.append, metrics_collector=metrics)
    assert await agent.adecide([MSG], []) == []
    assert len(provider.calls) == 2
    (err,) = errors
    assert isinstance(err, DecisionParseError) and isinstance(err, ProviderError)
    assert err.raw == "still {not json" and "repair" in str(err)
    assert agent.last_decide_error is err and agent.drain_errors() == [err] and agent.drain_errors() == []
    assert metrics.get_counter("llm_decide_errors_total", labels={"reason": "parse_error"}) == 1
    assert metrics.get_counter("llm_repairs_total") == 1


async def test_non_list_json_is_malformed():
    errors = []
    agent, _ = agent_with(['{"type": "ClaimTask"}', '"just a string"'], on_decide_error=errors.append)
    assert await agent.adecide([], [TASK]) == []
    assert isinstance(errors[0], DecisionParseError) and "JSON str" in str(errors[0])


async def test_provider_exception_yields_nothing_and_is_reported():
    errors = []
    agent, _ = agent_with([ProviderAuthError("HTTP 401", provider="x", status=401)], on_decide_error=errors.append)
    assert await agent.adecide([MSG], []) == []
    assert isinstance(errors[0], ProviderAuthError) and agent.last_decide_error is errors[0]


async def test_a_failing_error_callback_does_not_break_decide(caplog):
    def explode(err):
        raise RuntimeError("callback bug")

    agent, _ = agent_with(["nope", "nope"], on_decide_error=explode)
    assert await agent.adecide([MSG], []) == []
    assert "on_decide_error callback" in caplog.text


async def test_rate_limit_is_retried_with_injectable_backoff():
    sleeps = Sleeps()
    limited = ProviderRateLimitError("HTTP 429", provider="x", status=429)
    agent, provider = agent_with([limited, TimeoutError("read timeout"), CLAIM], sleep=sleeps)
    assert await agent.adecide([], [TASK]) == [ClaimTask("t1")]
    assert sleeps.delays == [1.0, 2.0]  # the reference's backoff, without waiting
    assert len(provider.calls) == 3 and agent.counters["retries"] == 2


async def test_retries_give_up_after_the_configured_attempts():
    sleeps = Sleeps()
    errors = []
    agent, provider = agent_with([RuntimeError("rate limited (429)")] * 3, sleep=sleeps, retry_delays=(0.5,), on_decide_error=errors.append)
    assert await agent.adecide([], [TASK]) == []
    assert sleeps.delays == [0.5] and len(provider.calls) == 2
    assert "429" in str(errors[0])


async def test_non_transient_errors_are_not_retried():
    sleeps = Sleeps()
    agent, provider = agent_with([ProviderAuthError("HTTP 401 rate", provider="x", status=401), CLAIM], sleep=sleeps)
    assert await agent.adecide([], [TASK]) == []
    assert sleeps.delays == [] and len(provider.calls) == 1


async def test_every_decision_type_is_parsed():
    items = [
        {"type": "SendMessage", "message": {"recipient": "bob", "topics": [{"namespace": "n", "attributes": {"a": 1}}, "plain"], "payload": {"hi": 1}}},
        {"type": "JoinPool", "pool_id": "p"},
        {"type": "LeavePool", "pool_id": "p"},
        {"type": "CreatePool", "spec": {"id": "p2"}},
        {"type": "SubmitTask", "task": {"objective": {"o": 1}, "inputs": {"i": 2}, "priority": 3}},
        {"type": "ClaimTask", "task_id": "t"},
        {"type": "ReportTask", "task_id": "t", "result": {"ok": True}},
        {"type": "InvokeTool", "tool_name": "calc", "params": {"x": 1}},
        {"type": "SubmitBid", "auction_id": "a", "amount": 3, "content": "c"},
        {"type": "Vote", "vote_id": "v", "option": "yes"},
        {"type": "Propose", "session_id": "s", "proposal_content": {"price": 1}},
        {"type": "AcceptProposal", "session_id": "s"},
        {"type": "RejectProposal", "session_id": "s"},
        {"type": "Delegate", "delegatee_id": "d", "scope": ["read"]},
        {"type": "RevokeDelegation", "delegation_id": "x"},
    ]
    agent, _ = agent_with([json.dumps(items)])
    before = int(time.time() * 1000)
    out = await agent.adecide([MSG], [])
    assert [type(d) for d in out] == [
        SendMessage, JoinPool, LeavePool, CreatePool, SubmitTask, ClaimTask, ReportTask, InvokeTool,
        SubmitBid, Vote, Propose, AcceptProposal, RejectProposal, Delegate, RevokeDelegation,
    ]
    msg = out[0].message
    assert msg.recipient == "bob" and msg.sender == agent.id and msg.payload == {"hi": 1}
    assert msg.topics == [Topic("n", {"a": 1}), Topic("plain")]
    assert uuid.UUID(msg.id) and msg.timestamp >= before  # fixes quirk 23: a real id and time
    task = out[4].task
    assert uuid.UUID(task.id) and task.objective == {"o": 1} and task.inputs == {"i": 2} and task.priority == 3
    assert out[6] == ReportTask("t", {"ok": True}) and out[7] == InvokeTool("calc", {"x": 1})
    assert out[8] == SubmitBid("a", 3.0, "c") and out[9] == Vote("v", "yes")
    assert out[10] == Propose("s", {"price": 1}) and out[13] == Delegate("d", ["read"])
    assert agent.last_decide_error is None


async def test_send_message_keeps_given_id_timestamp_and_top_level_recipient():
    reply = json.dumps([{"type": "SendMessage", "recipient": "carol", "message": {"id": "m-1", "timestamp": 5, "sender": "spoof", "payload": {}}}])
    agent, _ = agent_with([reply])
    (d,) = await agent.adecide([MSG], [])
    assert (d.message.id, d.message.timestamp, d.message.recipient, d.message.sender) == ("m-1", 5, "carol", agent.id)


async def test_unusable_items_are_skipped_and_reported_not_silently_dropped():
    errors = []
    reply = json.dumps([{"type": "ClaimTask", "task_id": "t"}, {"type": "Teleport"}, {"type": "JoinPool"}, 7, {"type": "SubmitBid", "auction_id": "a", "amount": "lots"}])
    agent, _ = agent_with([reply], on_decide_error=errors.append)
    assert await agent.adecide([MSG], []) == [ClaimTask("t")]
    (err,) = errors
    assert isinstance(err, DecisionParseError) and "skipped 4 of 5" in str(err)
    for hint in ("'Teleport'", "pool_id", "not an object", "amount"):
        assert hint in err.reason
    assert agent.counters["decision_items_skipped"] == 4


async def test_tool_schemas_and_observations_are_in_the_prompt():
    class Calc:
        name = "calc"
        description = "adds numbers"
        schema = {"type": "object", "properties": {"a": {"type": "number"}}}

        def run(self, params):
            return params["a"] + 1

    registry = ToolRegistry()
    registry.register(Calc())
    agent, provider = agent_with(['[{"type": "InvokeTool", "tool_name": "calc", "params": {"a": 1}}]', "[]"], tool_registry=registry)
    assert await agent.adecide([MSG], []) == [InvokeTool("calc", {"a": 1})]
    obs = [{"tool_name": "calc", "params": {"a": 1}, "result": 2}]
    assert await agent.adecide([MSG], [], tool_observations=obs) == []
    system = provider.calls[0].messages[0]["content"]
    assert "- calc: adds numbers" in system
    assert '  params schema: {"type": "object", "properties": {"a": {"type": "number"}}}' in system
    assert provider.calls[1].messages[-1]["content"].endswith(
        '\nTool observations (previous tool results): [{"tool_name": "calc", "params": {"a": 1}, "result": 2}]'
    )


async def test_memory_records_the_original_user_message_not_the_repair_prompt():
    memory = ShortTermMemory(10)
    agent, provider = agent_with(["garbage", CLAIM, "[]"], memory=memory)
    await agent.adecide([], [TASK])
    user = provider.calls[0].messages[-1]["content"]
    assert memory.get_messages() == [{"role": "user", "content": user}, {"role": "assistant", "content": CLAIM}]
    await agent.adecide([MSG], [])
    # the next prompt carries the history between the system prompt and the new user message
    assert provider.calls[2].messages[1:3] == [{"role": "user", "content": user}, {"role": "assistant", "content": CLAIM}]


async def test_all_few_shot_pairs_precede_the_request():
    shots = [("u1", "[]"), ("u2", CLAIM), ("u3", "[]")]
    agent, provider = agent_with(["[]"], few_shot_examples=shots)
    await agent.adecide([MSG], [])
    chat = provider.calls[0].messages
    assert [m["content"] for m in chat[1:7]] == ["u1", "[]", "u2", CLAIM, "u3", "[]"]
    assert [m["role"] for m in chat[1:7]] == ["user", "assistant"] * 3
    with pytest.raises(ConfigError, match="few_shot_examples"):
        LLMAgent(Identity.generate(), ScriptedProvider([]), few_shot_examples=[("only one",)])


async def test_usage_of_every_call_is_drained_once():
    agent, _ = agent_with(["garbage", CLAIM])
    await agent.adecide([], [TASK])
    usage = agent.drain_usage()
    assert [u.provider for u in usage] == ["scripted", "scripted"]  # the call and its repair
    assert all(u.input_tokens > 0 and u.cost_usd == 0.0 for u in usage)
    assert agent.drain_usage() == []


async def test_custom_provider_with_only_last_usage_and_sync_chat():
    from converge.core.usage import UsageRecord

    class Plain:
        def __init__(self):
            self.last_usage = None
            self.threads = []

        def chat(self, messages, **kwargs):
            import threading

            self.threads.append(threading.current_thread().name)
            self.last_usage = UsageRecord("plain", "m", 3, 4)
            return CLAIM

    provider = Plain()
    agent = LLMAgent(Identity.generate(), provider)
    assert await agent.adecide([], [TASK]) == [ClaimTask("t1")]
    assert agent.drain_usage() == [UsageRecord("plain", "m", 3, 4)]
    assert provider.threads and provider.threads[0] != "MainThread"  # sync chat ran in a worker thread


async def test_provider_returning_a_non_string_is_reported():
    class Bad:
        def chat(self, messages, **kwargs):
            return None

    errors = []
    agent = LLMAgent(Identity.generate(), Bad(), on_decide_error=errors.append)
    assert await agent.adecide([MSG], []) == []
    assert isinstance(errors[0], ProviderError) and "NoneType" in str(errors[0])


def test_sync_decide_outside_an_event_loop():
    agent, _ = agent_with([CLAIM])
    assert agent.decide([], [TASK]) == [ClaimTask("t1")]


class ThreadNoting:
    """A provider that notes which thread and event loop each call ran on."""

    def __init__(self, *, async_only: bool = False):
        self.seen: list[tuple[str, object]] = []
        if async_only:
            self.chat = None  # type: ignore[assignment]

    def _note(self):
        import threading

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self.seen.append((threading.current_thread().name, loop))

    def chat(self, messages, **kwargs):
        self._note()
        return CLAIM

    async def achat(self, messages, **kwargs):
        self._note()
        return CLAIM


@pytest.mark.parametrize("async_only", [False, True], ids=["sync-chat", "achat-only"])
async def test_sync_decide_inside_a_running_loop_does_not_deadlock(async_only):
    import threading

    provider = ThreadNoting(async_only=async_only)
    agent = LLMAgent(Identity.generate(), provider)
    caller_loop = asyncio.get_running_loop()
    # like a notebook cell calling the sync API while the kernel's loop runs
    assert agent.decide([], [TASK]) == [ClaimTask("t1")]
    ((thread, loop),) = provider.seen
    assert thread != threading.current_thread().name  # not on the caller's thread ...
    assert loop is not caller_loop  # ... and never on the caller's loop
    if async_only:
        assert loop is not None  # achat ran on the worker's own loop
