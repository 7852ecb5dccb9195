"""Worker processes share a store; one is killed with SIGKILL while it holds claimed tasks.

Every worker runs a real ``AgentRuntime`` whose agent claims a pending task,
works on it and reports it (``ClaimTask``, a custom ``Work`` decision, ``ReportTask``).
The victim claims three tasks and then works "forever". After ``kill -9`` its
claims stay ASSIGNED in the store until their ``claim_ttl_sec`` passes; the
survivors' runtimes release them (``claim_ttl_interval_sec``) and complete them.
Over all tasks: each one is completed exactly once, none is lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from converge.coordination.task_manager import TaskManager
from converge.core.task import Task, TaskState
from converge.extensions.storage.sqlite_store import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
N_TASKS = 60
TTL = 1.0

WORKER = textwrap.dedent(
    """
    import asyncio, json, os, random, sys, time
    from dataclasses import dataclass
    from converge.coordination.task_manager import TaskManager
    from converge.coordination.pool_manager import PoolManager
    from converge.core.decisions import ClaimTask, ReportTask
    from converge.network.transport.local import LocalTransport, LocalTransportRegistry
    from converge.runtime import AgentRuntime
    from converge.testing.agents import FunctionAgent

    kind, location, name, role, go, stop, log_path = sys.argv[1:8]
    if kind == "sqlite":
        from converge.extensions.storage.sqlite_store import SQLiteStore
        store = SQLiteStore(location)
    else:
        from converge.extensions.storage.redis_store import RedisStore
        store = RedisStore(location)
    log = open(log_path, "a", buffering=1)

    @dataclass(frozen=True)
    class Work:
        task_id: str
        seconds: float

    def decide(agent, messages, tasks):
        if not tasks or (role == "worker" and not os.path.exists(go)):
            return []
        if role == "victim":  # claim three tasks, then never finish
            return [ClaimTask(t.id) for t in tasks[:3]] + [Work("", 3600.0)]
        t = random.choice(tasks[:5])
        return [ClaimTask(t.id), Work(t.id, 0.005), ReportTask(t.id, {"by": name})]

    async def work(d):
        await asyncio.sleep(d.seconds)

    class Log:
        ready = False

        def on_step(self, record):
            if not self.ready:  # the task view has synchronised with the store
                self.ready = True
                log.write(json.dumps({"ready": True}) + "\\n")

        def after_execute(self, ctx):
            for o in ctx.outcomes:
                if o.ok and isinstance(o.decision, ReportTask):
                    log.write(json.dumps({"completed": o.decision.task_id}) + "\\n")

    async def main():
        agent = FunctionAgent(decide, name=name)
        runtime = AgentRuntime(
            agent, LocalTransport(agent.id, registry=LocalTransportRegistry.isolated()),
            pool_manager=PoolManager(store), task_manager=TaskManager(store),
            receive_timeout_sec=0.2, scheduler_timeout_sec=0.02, task_refresh_interval_sec=0.02,
            claim_ttl_interval_sec=0.1, max_tool_loop_iterations=1,
            executor_kwargs={"custom_handlers": {Work: work}}, runtime_hooks=[Log()],
        )
        log.write(json.dumps({"agent_id": agent.id, "pid": os.getpid()}) + "\\n")
        await runtime.start()
        while not os.path.exists(stop):
            await asyncio.sleep(0.02)
        await runtime.stop()
        log.write(json.dumps({"stopped": True, "steps": runtime.step_count}) + "\\n")

    asyncio.run(main())
    """
)


class Workers:
    """Starts worker processes and kills any that are left at teardown."""

    def __init__(self, tmp_path: Path, kind: str, location: str) -> None:
        self.tmp, self.kind, self.location = tmp_path, kind, location
        self.script = tmp_path / "worker.py"
        self.script.write_text(WORKER)
        self.go, self.stop_file = tmp_path / "go", tmp_path / "stop"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, role: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out = open(self.tmp / f"{name}.out", "wb")  # noqa: SIM115 - the child owns it
        self.procs[name] = subprocess.Popen(
            [sys.executable, str(self.script), self.kind, self.location, name, role, str(self.go), str(self.stop_file),
             str(self.tmp / f"{name}.log")],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
        out.close()

    def log(self, name: str) -> list[dict]:
        path = self.tmp / f"{name}.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def agent_id(self, name: str) -> str | None:
        return next((e["agent_id"] for e in self.log(name) if "agent_id" in e), None)

    def output(self, name: str) -> str:
        return (self.tmp / f"{name}.out").read_text(errors="replace")[-3000:]

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def wait_for(pred, timeout: float, what: str, workers: Workers) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        for name, proc in workers.procs.items():
            if proc.poll() not in (None, -signal.SIGKILL):
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{workers.output(name)}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _submit_tasks(open_store) -> None:
    with open_store() as store:
        tm = TaskManager(store)
        for i in range(N_TASKS):
            tm.submit(Task(id=f"t{i:03d}", priority=i % 5, constraints={"claim_ttl_sec": TTL}))


def _ready(workers: Workers, name: str) -> bool:
    return any(e.get("ready") for e in workers.log(name))


def run_kill_scenario(tmp_path: Path, kind: str, location: str, open_store, *, survivors_first: bool) -> None:
    """Kill -9 a claim holder; ``survivors_first``: the others were running before (else: started after the crash)."""
    _submit_tasks(open_store)
    workers = Workers(tmp_path, kind, location)
    names = ("w1", "w2", "w3")
    all_ids = {f"t{i:03d}" for i in range(N_TASKS)}
    try:
        if survivors_first:
            for name in names:
                workers.start(name, "worker")
            wait_for(lambda: all(_ready(workers, n) for n in names), 60, "the workers to sync", workers)
        workers.start("victim", "victim")
        with open_store() as store:
            tm = TaskManager(store)

            def states() -> list[Task]:
                return [tm.get_task(task_id) for task_id in sorted(all_ids)]

            def held_by_victim() -> set[str]:
                victim = workers.agent_id("victim")
                return {t.id for t in states() if t.state is TaskState.ASSIGNED and t.assigned_to == victim} if victim else set()

            wait_for(lambda: len(held_by_victim()) >= 1, 60, "the victim to hold claims", workers)
            held = held_by_victim()
            workers.procs["victim"].send_signal(signal.SIGKILL)
            assert workers.procs["victim"].wait(10) == -signal.SIGKILL
            victim_id = workers.agent_id("victim")
            if not survivors_first:
                for name in names:
                    workers.start(name, "worker")
            workers.go.write_text("go")
            wait_for(lambda: all(t.state is TaskState.COMPLETED for t in states()), 60, "every task to complete", workers)
            final = states()
        workers.stop_file.write_text("stop")
        for name in names:
            assert workers.procs[name].wait(30) == 0, workers.output(name)
    finally:
        workers.close()

    survivors = {workers.agent_id(n): n for n in names}
    completions = [e["completed"] for n in ("victim", *names) for e in workers.log(n) if "completed" in e]
    assert sorted(completions) == sorted(all_ids)  # each exactly once, none lost
    assert held and all(t.assigned_to in survivors for t in final)  # the killed worker's claims went to others
    assert all(t.result == {"by": survivors[t.assigned_to]} for t in final)
    assert victim_id not in {t.assigned_to for t in final}
    assert all(any(e.get("stopped") for e in workers.log(n)) for n in names)


@pytest.mark.parametrize("survivors_first", [True, False], ids=["crash-while-running", "restart-after-crash"])
def test_sqlite_workers_survive_a_killed_claim_holder(tmp_path, survivors_first):
    db = tmp_path / "shared.db"
    run_kill_scenario(tmp_path, "sqlite", str(db), lambda: SQLiteStore(db), survivors_first=survivors_first)


@pytest.mark.parametrize("survivors_first", [True, False], ids=["crash-while-running", "restart-after-crash"])
def test_redis_workers_survive_a_killed_claim_holder(tmp_path, redis_url, survivors_first):
    from converge.extensions.storage.redis_store import RedisStore

    run_kill_scenario(tmp_path, "redis", redis_url, lambda: RedisStore(redis_url), survivors_first=survivors_first)
