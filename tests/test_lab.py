"""converge_lab driven headlessly from pytest: a real running loop, real runtimes, scripted agents."""

from __future__ import annotations

import asyncio

import pytest

from converge.core.decisions import ClaimTask, ReportTask, SendMessage, SubmitTask
from converge.core.message import Message
from converge.core.task import Task
from converge.core.topic import Topic
from converge.core.usage import UsageRecord
from converge.testing.agents import EchoAgent, FunctionAgent
from converge_lab import Lab, LabError
from converge_lab.frames import (AGENT_COLUMNS, COST_COLUMNS, INBOX_COLUMNS, MESSAGE_COLUMNS, POOL_COLUMNS,
                                 STEP_COLUMNS, TASK_COLUMNS, TRACE_COLUMNS)

from conftest import eventually




@pytest.fixture
async def lab():
    async with Lab() as lab:
        yield lab
    assert lab.closed


async def test_add_returns_at_once_and_runtime_keeps_running(lab):
    a = EchoAgent(name="alice")
    h = await lab.add(a)
    assert h.state == "running" and h.runtime.running
    await lab.send(to="alice", payload={"hi": 1})
    await eventually(lambda: len(a.calls) == 1 and len(lab.journal.messages) == 2)  # reply to "lab" is undeliverable
    df = lab.frames.messages()
    assert list(df.columns) == MESSAGE_COLUMNS
    assert "injected" in set(df["status"]) and "undeliverable" in set(df["status"])


async def test_pause_step_exactly_one_iteration(lab):
    bob = FunctionAgent(lambda ag, m, t: [], name="bob")
    await lab.add(bob, paused=True)
    for i in range(3):
        await lab.send(to="bob", payload={"i": i})
    await eventually(lambda: len(lab.handle("bob").runtime.inbox) == 3)
    await asyncio.sleep(0.05)
    assert bob.calls == []
    (rec,) = await lab.step("bob")
    assert [m.payload["i"] for m in rec.messages] == [0, 1, 2]
    assert len(bob.calls) == 1
    steps = lab.frames.steps()
    assert list(steps.columns) == STEP_COLUMNS
    assert steps[~steps["idle"]]["messages"].tolist() == [3]


async def test_step_pauses_a_running_agent_and_resume_runs_it(lab):
    a = FunctionAgent(lambda ag, m, t: [], name="a")
    await lab.add(a)
    await lab.step("a")
    assert lab.handle("a").state == "paused"
    await lab.send(to="a", payload={})
    await asyncio.sleep(0.05)
    assert a.calls == []
    lab.resume("a")
    await eventually(lambda: len(a.calls) == 1)


async def _held(lab, name):
    await eventually(lambda: lab.handle(name).state == "held")


async def test_breakpoint_on_decision_type_then_approve(lab):
    alice = EchoAgent(name="alice")
    bob = FunctionAgent(lambda ag, m, t: [], name="bob")
    await lab.add(alice)
    await lab.add(bob, paused=True)
    bp = lab.break_on(decision_type="SendMessage", agent="alice")
    await lab.send(to="alice", payload={"x": 1}, sender="bob")
    await _held(lab, "alice")
    pending = lab.pending("alice")
    assert [type(d).__name__ for d in pending] == ["SendMessage"]
    assert lab.hold_info("alice")["phase"] == "before_execute"
    assert bp.hits == 1
    assert len(lab.handle("bob").runtime.inbox) == 0
    lab.approve("alice")
    await eventually(lambda: len(lab.handle("bob").runtime.inbox) == 1)
    assert lab.handle("alice").state == "paused"  # a hit pauses the agent


async def test_edit_and_drop_change_what_executes(lab):
    bob = FunctionAgent(lambda ag, m, t: [], name="bob")
    await lab.add(bob, paused=True)

    def two_messages(agent, messages, tasks):
        to = lab.handle("bob").id
        return [SendMessage(Message(recipient=to, payload={"k": 1})), SendMessage(Message(recipient=to, payload={"k": 2}))] if messages else []

    alice = FunctionAgent(two_messages, name="alice")
    await lab.add(alice)
    lab.break_on(decision_type=SendMessage)
    await lab.send(to="alice", payload={})
    await _held(lab, "alice")
    edited = SendMessage(Message(recipient=lab.handle("bob").id, payload={"k": "edited"}))
    lab.edit("alice", 0, edited)
    lab.drop("alice", 1)
    with pytest.raises(IndexError):
        lab.drop("alice", 5)
    lab.approve("alice")
    await eventually(lambda: len(lab.handle("bob").runtime.inbox) == 1)
    got = lab.handle("bob").runtime.inbox.peek()[0]
    assert got.payload == {"k": "edited"}
    assert got.verify(alice.identity.public_key)  # edited messages are signed on the way out
    rec = [r for r in lab.handle("alice").runtime.history if not r.idle][-1]
    assert sorted(o.status for o in rec.outcomes) == ["dropped", "dropped", "ok"]


@pytest.mark.parametrize("kind", ["sender", "recipient", "topic", "payload_key"])
async def test_breakpoint_field_kinds_on_messages(lab, kind):
    watcher = FunctionAgent(lambda ag, m, t: [], name="watcher")
    other = FunctionAgent(lambda ag, m, t: [], name="other")
    await lab.add(watcher)
    await lab.add(other, paused=True)
    filters = {"sender": {"sender": "other"}, "recipient": {"recipient": "watcher"},
               "topic": {"topic": "alerts"}, "payload_key": {"payload_key": "urgent"}}[kind]
    lab.break_on(phase="before_decide", **filters)
    msg = Message(recipient=watcher.id, topics=[Topic("alerts")], payload={"urgent": True})
    await lab.send(msg, sender="other")
    await _held(lab, "watcher")
    info = lab.hold_info("watcher")
    assert info["phase"] == "before_decide" and info["messages"][0].payload == {"urgent": True}
    assert watcher.calls == []
    lab.approve("watcher")
    await eventually(lambda: len(watcher.calls) == 1)


async def test_breakpoint_non_matching_does_not_hold(lab):
    a = FunctionAgent(lambda ag, m, t: [], name="a")
    await lab.add(a)
    lab.break_on(phase="before_decide", payload_key="nope")
    await lab.send(to="a", payload={"other": 1})
    await eventually(lambda: len(a.calls) == 1)
    assert lab.held() == []


async def test_breakpoint_on_message_received_pauses_without_holding(lab):
    a = FunctionAgent(lambda ag, m, t: [], name="a")
    await lab.add(a)
    lab.break_on(phase="message_received", payload_key="stop")
    await lab.send(to="a", payload={"stop": 1})
    await eventually(lambda: lab.handle("a").state == "paused")
    assert len(lab.handle("a").runtime.inbox) == 1 and a.calls == []
    assert list(lab.journal.hits)[-1].phase == "message_received"


async def test_breakpoint_on_task_state(lab):
    seen = []
    worker = FunctionAgent(lambda ag, m, t: seen.append(len(t)) or [], name="worker")
    await lab.add(worker)
    lab.break_on(phase="before_decide", task_state="pending")
    lab.task_manager.submit(Task(objective={"do": "x"}))
    await _held(lab, "worker")
    assert len(lab.hold_info("worker")["tasks"]) == 1
    lab.approve("worker")
    await eventually(lambda: seen == [1])


async def test_breakpoint_on_cost_budget(lab):
    class Spender(FunctionAgent):
        def drain_usage(self):
            return [UsageRecord("scripted", "m", 100, 50, 0.01, cost_usd=0.004)]

    spender = Spender(lambda ag, m, t: [SendMessage(Message(recipient=ag.id, payload={}))] if m else [], name="spender")
    await lab.add(spender)
    lab.break_on(cost_above=0.01)
    for _ in range(4):
        await lab.send(to="spender", payload={})
        await asyncio.sleep(0.02)
    await _held(lab, "spender")
    assert lab.handle("spender").cost_usd == pytest.approx(0.008)  # the third call would cross the budget
    costs = lab.frames.costs()
    assert list(costs.columns) == COST_COLUMNS and costs["cost_usd"].sum() == pytest.approx(0.008)
    lab.drop("spender")
    lab.approve("spender")


async def test_breakpoints_can_be_listed_disabled_removed(lab):
    a = FunctionAgent(lambda ag, m, t: [], name="a")
    await lab.add(a)
    bp = lab.break_on(phase="before_decide")
    assert lab.breakpoints == [bp]
    bp.disable()
    await lab.send(to="a", payload={})
    await eventually(lambda: len(a.calls) == 1)
    lab.remove_breakpoint(bp)
    assert lab.breakpoints == []


async def test_step_while_held_raises_named_error(lab):
    a = FunctionAgent(lambda ag, m, t: [], name="a")
    await lab.add(a)
    lab.break_on(phase="before_decide")
    await lab.send(to="a", payload={})
    await _held(lab, "a")
    with pytest.raises(LabError, match="held at a breakpoint"):
        await lab.step("a")
    with pytest.raises(LabError, match="no agent"):
        lab.handle("zed")


async def test_frames_have_documented_columns_and_rows(lab):
    lab.pool_manager.create_pool({"id": "workers"})
    worker = FunctionAgent(
        lambda ag, m, t: [ClaimTask(t[0].id)] if t else [], name="worker")
    await lab.add(worker)
    lab.pool_manager.join_pool(worker.id, "workers")
    task = Task(objective={"sum": [1, 2]}, pool_id="workers", priority=5)
    lab.task_manager.submit(task)
    await eventually(lambda: lab.task_manager.get_task(task.id).state.value == "assigned")
    agents, pools, tasks = lab.frames.agents(), lab.frames.pools(), lab.frames.tasks()
    assert list(agents.columns) == AGENT_COLUMNS and agents["agent"].tolist() == ["worker"]
    assert agents["pools"].tolist() == [["workers"]]
    assert list(pools.columns) == POOL_COLUMNS and pools["pool_id"].tolist() == ["workers"]
    assert list(tasks.columns) == TASK_COLUMNS
    assert tasks[["state", "priority", "assigned_to"]].values.tolist() == [["assigned", 5, "worker"]]
    trace = lab.frames.trace()
    assert list(trace.columns) == TRACE_COLUMNS
    steps = trace[trace["name"] == "runtime.step"]
    decide = trace[trace["name"] == "agent.decide"]
    assert len(steps) and len(decide)
    assert set(decide["parent_id"]) <= set(steps["span_id"])
    assert list(lab.frames.inbox().columns) == INBOX_COLUMNS


async def test_messages_frame_marks_verification(lab):
    a = FunctionAgent(lambda ag, m, t: [], name="a")
    b = FunctionAgent(lambda ag, m, t: [], name="b")
    await lab.add(a, paused=True)
    await lab.add(b, paused=True)
    await lab.send(to="a", payload={"signed": True}, sender="b")
    await lab.send(to="a", payload={"signed": False})
    df = lab.frames.messages()
    assert df[["payload", "signed", "verified"]].values.tolist() == [
        ['{"signed": true}', True, True], ['{"signed": false}', False, False]]


async def test_run_until_idle_and_ping_pong(lab):
    a, b = EchoAgent(name="a", limit=20), EchoAgent(name="b", limit=20)
    await lab.add(a)
    await lab.add(b)
    await lab.send(to="a", payload={"n": 0}, sender="b")
    assert await lab.run_until_idle(timeout=5)
    assert a.replies == 20 and b.replies == 20
    delivered = lab.frames.messages().query("status == 'delivered'")
    assert len(delivered) == 40 and delivered["verified"].all()


async def test_retention_bounds_memory():
    async with Lab(retention=10) as lab:
        a, b = EchoAgent(name="a", limit=50), EchoAgent(name="b", limit=50)
        await lab.add(a)
        await lab.add(b)
        await lab.send(to="a", payload={}, sender="b")
        assert await lab.run_until_idle(timeout=5)
        assert len(lab.journal.messages) == 10 and len(lab.journal.steps) == 10
        assert len(lab.frames.messages()) == 10


async def test_close_leaves_no_task_behind():
    before = asyncio.all_tasks()
    lab = Lab()
    for name in ("a", "b", "c"):
        await lab.add(EchoAgent(name=name))
    lab.break_on(phase="before_decide", agent="a")
    await lab.send(to="a", payload={})
    await eventually(lambda: lab.handle("a").state == "held")
    lab.dashboard()
    await lab.aclose()
    await lab.aclose()
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()
    assert all(h.state == "stopped" for h in lab.agents)


def test_sync_forms_inside_a_running_loop_and_in_a_plain_script(tmp_path):
    """Run in a subprocess: nest-asyncio patches asyncio process-wide, which must not leak into this suite."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "sync_forms.py"
    script.write_text(textwrap.dedent("""
        import asyncio
        from converge.testing.agents import FunctionAgent
        from converge_lab import Lab

        async def main():
            lab = Lab()
            a = FunctionAgent(lambda ag, m, t: [], name="a")
            await lab.add(a, paused=True)
            lab.send_sync(to="a", payload={"sync": 1})   # inside the running loop: nest-asyncio on first use
            await asyncio.sleep(0.05)
            (rec,) = lab.step_sync("a")
            print("payload", rec.messages[0].payload)
            await lab.aclose()

        asyncio.run(main())
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "payload {'sync': 1}" in out.stdout


async def test_add_with_a_tcp_transport_talks_to_a_peer_outside_the_lab(lab):
    from converge.network.transport.tcp import TcpTransport, tcp_topic

    outside = TcpTransport("127.0.0.1", 0, "outside")
    await outside.start()
    try:
        tcp = TcpTransport("127.0.0.1", 0, "x")
        agent = FunctionAgent(lambda ag, m, t: [
            SendMessage(Message(topics=[tcp_topic("127.0.0.1", outside.port)], payload={"via": "tcp"}))] if m else [],
            name="bridge")
        h = await lab.add(agent, transport=tcp, paused=True)
        back = Message(topics=[tcp_topic("127.0.0.1", tcp.port)], payload={"go": 1}).sign(lab.new_identity())
        await outside.send(back)
        await eventually(lambda: len(h.runtime.inbox) == 1)
        (rec,) = await lab.step("bridge")
        assert [o.status for o in rec.outcomes] == ["ok"]
        got = await outside.receive(timeout=2)
        assert got.payload == {"via": "tcp"} and got.verify(agent.identity.public_key)
        assert lab.frames.steps().query("not idle")["agent"].tolist() == ["bridge"]
    finally:
        await outside.stop()


def test_breakpoint_description_uses_names():
    from converge_lab.breakpoints import Breakpoint

    bp = Breakpoint(agent="ab" * 32, decision_type="SendMessage", cost_above=0.00025)
    assert "agent='alice'" in bp.describe(lambda i: "alice")
    assert "ab" * 32 in bp.describe()


async def test_arrival_hook_is_attached_only_while_a_message_received_breakpoint_exists(lab):
    a = FunctionAgent(lambda ag, m, t: [], name="a")
    h = await lab.add(a)
    assert h.arrival_watch not in h.runtime.runtime_hooks  # messages may go straight to the inbox
    bp = lab.break_on(phase="message_received", payload_key="stop")
    assert h.arrival_watch in h.runtime.runtime_hooks
    late = await lab.add(FunctionAgent(lambda ag, m, t: [], name="late"))
    assert late.arrival_watch in late.runtime.runtime_hooks
    lab.remove_breakpoint(bp)
    assert h.arrival_watch not in h.runtime.runtime_hooks and late.arrival_watch not in late.runtime.runtime_hooks
    await lab.send(to="a", payload={"stop": 1})
    await eventually(lambda: len(a.calls) == 1)  # no breakpoint any more: it runs on
