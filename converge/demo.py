"""A small agent network that prints what happened: ``python -m converge.demo``.

Two echo agents exchange signed messages over the local transport, a worker
claims and completes tasks by priority, and the run ends with a summary. No
API key, no network, in-memory store.
"""

from __future__ import annotations

import asyncio

from converge.coordination.pool_manager import PoolManager
from converge.coordination.task_manager import TaskManager
from converge.core.decisions import ClaimTask, ReportTask
from converge.core.message import Message
from converge.core.task import Task, TaskState
from converge.extensions.storage.memory import MemoryStore
from converge.network.transport.local import LocalTransport, LocalTransportRegistry
from converge.runtime import AgentRuntime
from converge.testing.agents import EchoAgent, FunctionAgent


def _worker(agent, messages, tasks):
    mine = [t for t in agent.task_manager.tasks.values() if t.assigned_to == agent.id and t.state == TaskState.ASSIGNED]
    if mine:
        return [ReportTask(t.id, {"sum": sum(t.inputs["numbers"])}) for t in mine]
    return [ClaimTask(tasks[0].id)] if tasks else []


async def main() -> int:
    registry = LocalTransportRegistry.isolated()
    store = MemoryStore()
    pools, tasks = PoolManager(store), TaskManager(store)
    alice, bob = EchoAgent(name="alice", limit=3), EchoAgent(name="bob", limit=3)
    worker = FunctionAgent(_worker, name="worker")
    worker.task_manager = tasks
    runtimes = [AgentRuntime(a, LocalTransport(a.id, registry=registry), pools, tasks, scheduler_timeout_sec=0.05)
                for a in (alice, bob, worker)]
    for i, prio in enumerate((1, 5, 3)):
        tasks.submit(Task(objective={"add": i}, inputs={"numbers": list(range(i + 3))}, priority=prio))
    for rt in runtimes:
        await rt.start()
    first = Message(sender=bob.id, recipient=alice.id, payload={"hello": "alice"}).sign(bob.identity)
    await runtimes[1].transport.send(first)
    for _ in range(200):
        if all(t.state == TaskState.COMPLETED for t in tasks.tasks.values()) and alice.replies == 3:
            break
        await asyncio.sleep(0.01)
    for rt in runtimes:
        await rt.stop()
    names = {alice.id: "alice", bob.id: "bob", worker.id: "worker"}
    print("converge demo: 3 agents on the local transport, in-memory store\n")
    for rt in runtimes:
        for rec in rt.history:
            if rec.idle:
                continue
            got = ", ".join(f"{names.get(m.sender, m.sender[:8])}:{m.payload}" for m in rec.messages) or "-"
            did = ", ".join(f"{type(o.decision).__name__}={o.status}" for o in rec.outcomes) or "-"
            print(f"  {names[rec.agent_id]:>6} step {rec.step:>2}: received [{got}] -> {did}")
    print("\ntasks (completed in priority order):")
    for t in sorted(tasks.tasks.values(), key=lambda t: -t.priority):
        print(f"  priority {t.priority}: {t.state.value:<9} by {names.get(t.assigned_to, '?')} result={t.result}")
    verified = first.verify(bob.identity.public_key)
    print(f"\nfirst message signature verified: {verified}")
    ok = verified and all(t.state == TaskState.COMPLETED for t in tasks.tasks.values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
