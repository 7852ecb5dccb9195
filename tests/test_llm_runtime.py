"""LLMAgent inside an AgentRuntime, driven by each real vendor SDK against its loopback server.

The runtime executes the decisions the scripted server returned, and the StepRecord (and the
metrics) carry the usage of the provider calls.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from converge.coordination.pool_manager import PoolManager
from converge.coordination.task_manager import TaskManager
from converge.core.decisions import ClaimTask, SendMessage
from converge.core.identity import Identity
from converge.core.message import Message
from converge.core.task import Task
from converge.extensions.llm import (
    AnthropicProvider,
    DecisionParseError,
    LLMAgent,
    MistralProvider,
    OpenAIProvider,
)
from converge.extensions.storage.memory import MemoryStore
from converge.network.transport.local import LocalTransport, LocalTransportRegistry
from converge.observability.metrics import MetricsCollector
from converge.runtime import AgentRuntime
from converge.testing.agents import FunctionAgent
from converge.testing.llm_servers import AnthropicServer, MistralServer, OpenAIServer, Reply
from conftest import eventually as wait_for

KEY = "sk-runtime-test-key-000111"
VENDORS = {
    "openai": (OpenAIServer, OpenAIProvider, "gpt-4o-mini", (0.15, 0.60)),
    "anthropic": (AnthropicServer, AnthropicProvider, "claude-haiku-4-5", (1.0, 5.0)),
    "mistral": (MistralServer, MistralProvider, "mistral-small-latest", (0.10, 0.30)),
}




def runtime_for(agent, registry, store, **kw):
    return AgentRuntime(
        agent, LocalTransport(agent.id, registry=registry), PoolManager(store), TaskManager(store), manual=True, receive_timeout_sec=0.5, **kw
    )


@pytest.mark.parametrize("structured", [False, True], ids=["json-text", "tool-call"])
@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_llm_agent_in_a_runtime_executes_the_scripted_decisions(vendor, structured):
    server_cls, provider_cls, model, (p_in, p_out) = VENDORS[vendor]
    registry, store, metrics = LocalTransportRegistry.isolated(), MemoryStore(), MetricsCollector()
    peer = FunctionAgent(lambda a, m, t: [])
    identity = Identity.generate()
    decisions = [
        {"type": "SendMessage", "message": {"recipient": peer.id, "payload": {"answer": 42}}},
        {"type": "ClaimTask", "task_id": "t1"},
    ]
    reply = (
        Reply.tool("emit_decisions", {"decisions": decisions}, input_tokens=900, output_tokens=60)
        if structured
        else Reply("```json\n" + json.dumps(decisions) + "\n```", input_tokens=900, output_tokens=60)
    )
    with server_cls([reply], api_key=KEY) as server:
        provider = provider_cls(api_key=KEY, model=model, base_url=server.base_url, max_retries=0)
        agent = LLMAgent(identity, provider, use_structured_output=structured)
        rt = runtime_for(agent, registry, store, metrics_collector=metrics)
        rt_peer = runtime_for(peer, registry, store)
        rt.task_manager.submit(Task(id="t1", objective={"goal": "answer"}))
        async with rt, rt_peer:
            question = Message(recipient=agent.id, payload={"question": "?"}).sign(Identity.generate())
            registry.get_queue(agent.id).put_nowait(question)
            await wait_for(lambda: len(rt.inbox) == 1)
            rec = await rt.step()
            await wait_for(lambda: len(rt_peer.inbox) == 1)
            delivered = rt_peer.inbox.peek()[0]
        await provider.aclose()
        (req,) = server.requests
    # the runtime executed exactly what the server scripted
    assert [type(d) for d in rec.decisions] == [SendMessage, ClaimTask]
    assert [o.status for o in rec.outcomes] == ["ok", "ok"], rec.outcomes
    assert rec.decisions[1] == ClaimTask("t1") and rt.task_manager.get_task("t1").assigned_to == agent.id
    assert delivered.payload == {"answer": 42} and delivered.verify(identity.public_key)
    # the prompt the SDK sent holds the inbox message and the visible task
    user_turn = req.body["messages"][-1]["content"]
    assert user_turn.startswith("Messages: [{") and '"question": "?"' in user_turn
    assert '\nTasks: [{"id": "t1", "objective": {"goal": "answer"}}]' in user_turn
    assert ("tools" in req.body) is structured
    # usage: on the step and in the metrics
    (usage,) = rec.usage
    assert (usage.provider, usage.model, usage.input_tokens, usage.output_tokens) == (vendor, model, 900, 60)
    assert rec.cost_usd == pytest.approx((900 * p_in + 60 * p_out) / 1e6) and rec.tokens == 960
    labels = {"model": model, "provider": vendor}
    assert metrics.get_counter("llm_calls_total", labels=labels) == 1
    assert metrics.get_counter("llm_input_tokens_total", labels=labels) == 900


@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_malformed_output_in_a_runtime_yields_no_decisions_and_keeps_serving(vendor):
    server_cls, provider_cls, model, _ = VENDORS[vendor]
    registry, store = LocalTransportRegistry.isolated(), MemoryStore()
    errors = []
    with server_cls([Reply("I would rather chat."), Reply("Still no JSON, sorry."), Reply("[]")]) as server:
        provider = provider_cls(api_key=KEY, model=model, base_url=server.base_url, max_retries=0)
        agent = LLMAgent(Identity.generate(), provider, on_decide_error=errors.append)
        rt = runtime_for(agent, registry, store)
        async with rt:
            for n in (1, 2):
                registry.get_queue(agent.id).put_nowait(Message(recipient=agent.id, payload={"n": n}).sign(Identity.generate()))
                await wait_for(lambda: len(rt.inbox) == 1)
                rec = await rt.step()
                if n == 1:
                    first = rec
        await provider.aclose()
        assert len(server.requests) == 3  # the call, its repair, then the next step
    assert first.decisions == () and len(first.usage) == 2  # both calls are accounted for
    assert isinstance(errors[0], DecisionParseError) and errors[0].raw == "Still no JSON, sorry."
    assert rec.decisions == () and len(rec.usage) == 1 and len(errors) == 1
