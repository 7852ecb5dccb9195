"""Topic, Task/TaskState, Pool, Capability/CapabilitySet, decisions, Agent, the Store ABC."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from converge.core import decisions as d
from converge.core.agent import Agent, AgentState
from converge.core.capability import Capability, CapabilitySet
from converge.core.identity import Identity
from converge.core.message import Message
from converge.core.pool import Pool
from converge.core.store import Store
from converge.core.task import Task, TaskState
from converge.core.topic import Topic


# -- Topic -----------------------------------------------------------------


@pytest.mark.parametrize(
    "topic, text",
    [
        (Topic("ns", {"b": 2, "a": 1}), "ns[a=1,b=2]v1.0"),
        (Topic("x"), "x[]v1.0"),
        (Topic("market.fx", {"pair": "EURUSD"}, "2"), "market.fx[pair=EURUSD]v2"),
        (Topic("t", {"flag": True, "n": None}), "t[flag=True,n=None]v1.0"),
    ],
)
def test_topic_string_form(topic: Topic, text: str) -> None:
    assert str(topic) == text


def test_topic_dict_round_trip_and_equality() -> None:
    t = Topic("ns", {"a": 1}, "2.0")
    assert t.to_dict() == {"namespace": "ns", "attributes": {"a": 1}, "version": "2.0"}
    assert Topic.from_dict(t.to_dict()) == t
    assert Topic("a") != Topic("a", version="2.0")
    with pytest.raises(TypeError):
        Topic.from_dict({"namespace": "x", "unknown": 1})
    assert Topic("a").attributes is not Topic("a").attributes


def test_topic_is_frozen_and_unhashable_like_the_reference() -> None:
    t = Topic("a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.namespace = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(t)
    assert t in [Topic("b"), Topic("a")]


# -- Task ------------------------------------------------------------------


def test_task_defaults() -> None:
    a, b = Task(), Task()
    assert a.priority == 0 and a.state is TaskState.PENDING and a.evaluator == "default"
    assert a.id != b.id and len(a.id) == 36
    assert a.objective == {} and a.objective is not b.objective and a.required_capabilities == []
    assert (a.outputs, a.assigned_to, a.result, a.claimed_at, a.pool_id, a.topic) == (None,) * 6


def test_task_state_values() -> None:
    assert {s.name: s.value for s in TaskState} == {
        "PENDING": "pending", "ASSIGNED": "assigned", "RUNNING": "running",
        "COMPLETED": "completed", "FAILED": "failed", "CANCELLED": "cancelled",
    }
    assert {s for s in TaskState if s.is_terminal} == {TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED}


def test_tasks_sort_by_priority() -> None:
    tasks = [Task(id="low"), Task(id="high", priority=5), Task(id="mid", priority=2)]
    assert [t.id for t in sorted(tasks, key=lambda t: -t.priority)] == ["high", "mid", "low"]


# -- Pool ------------------------------------------------------------------


def test_pool_membership_and_repr() -> None:
    pool = Pool(id="p", admission_policy_instance="SECRET-POLICY", trust_model="SECRET-TRUST")
    pool.add_agent("a")
    pool.add_agent("a")
    pool.remove_agent("missing")  # no error
    assert pool.agents == {"a"}
    pool.remove_agent("a")
    assert pool.agents == set()
    assert "SECRET" not in repr(pool) and "id='p'" in repr(pool)
    assert Pool().id != Pool().id and Pool().trust_threshold == 0.0


# -- Capability ------------------------------------------------------------


def test_capabilities() -> None:
    cap = Capability("summarise", "1.0", "makes summaries")
    assert cap.constraints == {} and cap.costs == {} and cap.latency_ms == 0
    caps = CapabilitySet()
    assert not caps.has("summarise")
    caps.add(cap)
    assert caps.has("summarise") and not caps.has("translate") and caps.names() == ["summarise"]
    assert CapabilitySet().capabilities is not CapabilitySet().capabilities


# -- Decisions -------------------------------------------------------------

DECISION_FIELDS = {
    "SendMessage": ["message"],
    "JoinPool": ["pool_id", "context"],  # context: optional addition (admission token), positional order kept
    "LeavePool": ["pool_id"],
    "CreatePool": ["spec"],
    "SubmitTask": ["task"],
    "ClaimTask": ["task_id"],
    "ReportTask": ["task_id", "result"],
    "SubmitBid": ["auction_id", "amount", "content"],
    "Vote": ["vote_id", "option"],
    "Propose": ["session_id", "proposal_content"],
    "AcceptProposal": ["session_id"],
    "RejectProposal": ["session_id"],
    "Delegate": ["delegatee_id", "scope"],
    "RevokeDelegation": ["delegation_id"],
    "InvokeTool": ["tool_name", "params"],
}


def test_the_fifteen_decisions_and_their_positional_fields() -> None:
    assert [c.__name__ for c in d.BUILTIN_DECISIONS] == list(DECISION_FIELDS)
    for cls in d.BUILTIN_DECISIONS:
        assert issubclass(cls, d.Decision)
        assert [f.name for f in dataclasses.fields(cls)] == DECISION_FIELDS[cls.__name__]
    assert d.SubmitBid("a1", 2.5).content is None
    report = d.ReportTask("t1", {"ok": True})
    report.result = "mutable"  # decisions are plain mutable dataclasses
    assert report == d.ReportTask("t1", "mutable")
    assert isinstance(d.SendMessage(Message()).message, Message)


# -- Agent -----------------------------------------------------------------


def test_agent_defaults_and_signing() -> None:
    ident = Identity.generate()
    agent = Agent(ident)
    assert agent.id == ident.fingerprint and agent.state is AgentState.IDLE
    assert agent.capabilities == [] and agent.topics == [] and agent.pool_manager is None and agent.task_manager is None
    assert agent.decide([], [], tool_observations=[]) == []
    agent.on_start(), agent.on_tick([], []), agent.on_stop()
    signed = agent.sign_message(Message(payload={"a": 1}))
    assert signed.sender == agent.id and signed.verify(ident.public_key)
    assert [s.value for s in AgentState] == ["idle", "busy", "offline", "error"]


def test_agents_are_distinct_and_hashable() -> None:
    a, b = Agent(Identity.generate()), Agent(Identity.generate())
    assert a != b and len({a, b}) == 2
    assert a.id[:12] in repr(a)


# -- Store ABC -------------------------------------------------------------


class _DictStore(Store):
    def __init__(self) -> None:
        self.d: dict[str, Any] = {}

    def put(self, key: str, value: Any) -> None:
        self.d[key] = value

    def get(self, key: str) -> Any | None:
        return self.d.get(key)

    def delete(self, key: str) -> None:
        self.d.pop(key, None)

    def list(self, prefix: str = "") -> list[str]:
        return [k for k in self.d if k.startswith(prefix)]


def test_store_abc_defaults() -> None:
    with pytest.raises(TypeError):
        Store()  # type: ignore[abstract]
    assert Store.atomic_put_if_absent is False and Store.supports_locking is False
    s = _DictStore()
    assert s.put_if_absent("k", 1) is True and s.put_if_absent("k", 2) is False and s.get("k") == 1
    assert s.compare_and_set("k", 2, 3) is False and s.compare_and_set("k", 1, 3) is True and s.get("k") == 3
    assert s.compare_and_set("new", None, 1) is True
