"""Every built-in decision type through StandardExecutor, inside a real runtime step."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from converge.coordination.bidding import BiddingProtocol
from converge.coordination.delegation import DelegationProtocol
from converge.coordination.negotiation import NegotiationProtocol
from converge.coordination.pool_manager import PoolManager
from converge.coordination.task_manager import TaskManager
from converge.core.decisions import (AcceptProposal, ClaimTask, CreatePool, Decision, Delegate, InvokeTool, JoinPool,
                                     LeavePool, Propose, RejectProposal, ReportTask, RevokeDelegation, SendMessage,
                                     SubmitBid, SubmitTask, Vote)
from converge.core.message import Message
from converge.core.task import Task, TaskState
from converge.core.tools import ToolRegistry
from converge.extensions.storage.memory import MemoryStore
from converge.network.transport.local import LocalTransport, LocalTransportRegistry
from converge.observability.metrics import MetricsCollector
from converge.policy.safety import ActionPolicy, ResourceLimits
from converge.runtime import AgentRuntime
from converge.testing.agents import FunctionAgent


class Adder:
    name = "add"
    description = "add two numbers"
    schema = {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}

    def run(self, params):
        return params["a"] + params["b"]


class Sleeper:
    name = "sleep"

    def run(self, params):
        import time

        time.sleep(params["s"])
        return "done"


@dataclass
class Custom(Decision):
    value: int


@pytest.fixture
def world():
    store = MemoryStore()
    return {
        "registry": LocalTransportRegistry.isolated(),
        "pools": PoolManager(store),
        "tasks": TaskManager(store),
        "metrics": MetricsCollector(),
    }


async def run_decisions(world, decisions, *, agent=None, **executor_kwargs):
    """One manual step of an agent that returns ``decisions``; returns the StepRecord."""
    batches = [list(decisions)]
    agent = agent or FunctionAgent(lambda ag, m, t: batches.pop(0) if batches else [])
    rt = AgentRuntime(agent, LocalTransport(agent.id, registry=world["registry"]), world["pools"], world["tasks"],
                      world["metrics"], manual=True, executor_kwargs=executor_kwargs,
                      tool_registry=executor_kwargs.pop("tool_registry_rt", None))
    async with rt:
        rt.inbox._items.append(Message(payload={"go": 1}))  # give the step something to decide on
        return await rt.step()


def statuses(rec):
    return [(type(o.decision).__name__, o.status) for o in rec.outcomes]


async def test_task_and_pool_decisions(world):
    task = Task(objective={"x": 1})
    agent = FunctionAgent(lambda ag, m, t: [])
    batches = [[CreatePool({"id": "p"}), JoinPool("p"), SubmitTask(task), ClaimTask(task.id),
                ReportTask(task.id, {"ok": True}), LeavePool("p"), ClaimTask("missing")]]
    agent.fn = lambda ag, m, t: batches.pop(0) if batches else []
    rec = await run_decisions(world, [], agent=agent)
    assert statuses(rec) == [("CreatePool", "ok"), ("JoinPool", "ok"), ("SubmitTask", "ok"), ("ClaimTask", "ok"),
                             ("ReportTask", "ok"), ("LeavePool", "ok"), ("ClaimTask", "rejected")]
    done = world["tasks"].get_task(task.id)
    assert done.state is TaskState.COMPLETED and done.assigned_to == agent.id and done.result == {"ok": True}
    assert agent.id not in world["pools"].get_pool("p").agents
    assert world["metrics"].get_counter("decisions_executed") == 7


async def test_report_by_non_assignee_fails_visibly(world):
    task = Task()
    world["tasks"].submit(task)
    rec = await run_decisions(world, [ReportTask(task.id, 1)])
    (outcome,) = rec.outcomes
    assert outcome.status == "failed" and "InvalidTransition" in outcome.error and task.id in outcome.error


async def test_send_message_and_bare_message(world):
    peer = FunctionAgent(lambda ag, m, t: [])
    rp = AgentRuntime(peer, LocalTransport(peer.id, registry=world["registry"]), manual=True)
    async with rp:
        rec = await run_decisions(world, [SendMessage(Message(recipient=peer.id, payload={"a": 1})),
                                          Message(recipient=peer.id, payload={"b": 2}),
                                          SendMessage(Message(recipient="ghost"))])
        await asyncio.sleep(0.02)
        got = [m.payload for m in rp.inbox.peek()]
    assert statuses(rec) == [("SendMessage", "ok"), ("Message", "ok"), ("SendMessage", "failed")]
    assert "UndeliverableError" in rec.outcomes[2].error
    assert got == [{"a": 1}, {"b": 2}]


async def test_coordination_protocols(world):
    auction = BiddingProtocol()
    negotiation = NegotiationProtocol()
    delegation = DelegationProtocol()
    votes: dict = {}
    agent = FunctionAgent(lambda ag, m, t: [])
    session = negotiation.create_session("other", [agent.id], {"price": 10})
    other_session = negotiation.create_session("other", [agent.id], {"price": 12})
    batches = [[SubmitBid("main", 5.0, "x"), Vote("v1", "yes"), Propose(session, {"price": 8}),
                AcceptProposal(session), RejectProposal(other_session), Delegate("bob", ["read"]),
                SubmitBid("unknown-auction", 1.0)]]
    agent.fn = lambda ag, m, t: batches.pop(0) if batches else []
    rec = await run_decisions(world, [], agent=agent, bidding_protocols={"main": auction},
                              negotiation_protocol=negotiation, delegation_protocol=delegation, votes_store=votes)
    assert statuses(rec) == [("SubmitBid", "ok"), ("Vote", "ok"), ("Propose", "ok"), ("AcceptProposal", "ok"),
                             ("RejectProposal", "ok"), ("Delegate", "ok"), ("SubmitBid", "ignored")]
    assert auction.resolve() == agent.id
    assert [tuple(v) for v in votes["v1"]] == [(agent.id, "yes")]
    assert negotiation.get_session(session).state.value == "accepted"
    assert negotiation.get_session(other_session).state.value == "rejected"
    delegation_id = rec.outcomes[5].result
    rec2 = await run_decisions(world, [RevokeDelegation(delegation_id)], delegation_protocol=delegation)
    assert statuses(rec2) == [("RevokeDelegation", "ok")] and not delegation.is_active(delegation_id)


async def test_unconfigured_protocols_are_ignored_with_reason(world):
    rec = await run_decisions(world, [Vote("v", 1), Propose("s", 1), AcceptProposal("s"), RejectProposal("s"),
                                      Delegate("b", []), RevokeDelegation("d"), InvokeTool("add", {})])
    assert {o.status for o in rec.outcomes} == {"ignored"}
    assert [o.detail for o in rec.outcomes][:2] == ["no votes_store configured", "no negotiation_protocol configured"]
    assert world["metrics"].counter_total("decisions_ignored_total") == 7


async def test_tools_allowlist_timeout_and_custom_handlers(world):
    registry = ToolRegistry()
    registry.register(Adder())
    registry.register(Sleeper())
    seen = []

    async def handle(decision):
        seen.append(decision.value)
        return decision.value * 2

    rec = await run_decisions(world, [InvokeTool("add", {"a": 2, "b": 3}), InvokeTool("sleep", {"s": 0.5}),
                                      InvokeTool("nope", {}), Custom(21)],
                              tool_registry=registry, tool_timeout_sec=0.05, tool_allowlist={"add", "sleep"},
                              custom_handlers={Custom: handle})
    assert statuses(rec) == [("InvokeTool", "ok"), ("InvokeTool", "failed"), ("InvokeTool", "denied"), ("Custom", "ok")]
    assert rec.outcomes[0].result == 5 and "timed out" in rec.outcomes[1].detail and rec.outcomes[3].result == 42
    assert seen == [21]


async def test_safety_policy_denies(world):
    big = Task(constraints={"cpu": 4})
    rec = await run_decisions(world, [SubmitTask(big), JoinPool("p")],
                              safety_policy=(ResourceLimits(max_cpu_tokens=1.0), ActionPolicy(["SubmitTask"])))
    assert statuses(rec) == [("SubmitTask", "denied"), ("JoinPool", "denied")]
    assert world["tasks"].get_task(big.id) is None


async def test_react_tool_loop_feeds_observations_through_the_executor(world):
    registry = ToolRegistry()
    registry.register(Adder())
    observed = []

    def fn(agent, messages, tasks, **kw):
        obs = kw.get("tool_observations")
        if obs is None:
            return [InvokeTool("add", {"a": 1, "b": 2})]
        observed.extend(obs)
        return []

    agent = FunctionAgent(fn)
    rt = AgentRuntime(agent, LocalTransport(agent.id, registry=world["registry"]), world["pools"], world["tasks"],
                      manual=True, tool_registry=registry, executor_kwargs={"tool_allowlist": {"add"}})
    async with rt:
        rt.inbox._items.append(Message())
        rec = await rt.step()
    assert observed == [{"tool_name": "add", "params": {"a": 1, "b": 2}, "result": 3}]
    assert rec.tool_rounds == 2


async def test_visible_tasks_sorted_by_priority_and_filtered_by_pool(world):
    world["pools"].create_pool({"id": "mine"})
    world["pools"].create_pool({"id": "theirs"})
    agent = FunctionAgent(lambda ag, m, t: [])
    world["pools"].join_pool(agent.id, "mine")
    for prio, pool in ((1, "mine"), (9, "mine"), (5, None), (7, "theirs")):
        world["tasks"].submit(Task(objective={"p": prio}, priority=prio, pool_id=pool))
    rt = AgentRuntime(agent, LocalTransport(agent.id, registry=world["registry"]), world["pools"], world["tasks"],
                      manual=True)
    async with rt:
        rec = await rt.step()
    assert [t.priority for t in rec.tasks] == [9, 5, 1]


async def test_join_pool_carries_an_admission_token(world):
    from converge.policy.admission import TokenAdmission

    world["pools"].create_pool({"id": "vip", "admission_policy": TokenAdmission("s3cret")})
    rec = await run_decisions(world, [JoinPool("vip"), JoinPool("vip", {"token": "wrong"}),
                                      JoinPool("vip", {"token": "s3cret"})])
    assert [o.status for o in rec.outcomes] == ["rejected", "rejected", "ok"]
    assert "refused" in rec.outcomes[0].detail
