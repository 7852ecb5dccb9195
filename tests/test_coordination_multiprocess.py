"""Two processes sharing one SQLite store claim the same tasks: every task is completed exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from converge.coordination.pool_manager import PoolManager
from converge.coordination.task_manager import TaskManager
from converge.core.task import Task, TaskState
from converge.extensions.storage.sqlite_store import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from converge.coordination.task_manager import TaskManager
    from converge.coordination.pool_manager import PoolManager
    from converge.extensions.storage.sqlite_store import SQLiteStore

    path, name, go, out = sys.argv[1:5]
    with SQLiteStore(path) as store:
        tm = TaskManager(store)
        pm = PoolManager(store)
        deadline = time.monotonic() + 60
        while not os.path.exists(go):  # start together to maximise contention
            if time.monotonic() > deadline:
                sys.exit("no go signal")
            time.sleep(0.001)
        assert pm.join_pool(name, "shared")
        claimed = []
        while True:
            pending = tm.list_pending_tasks_for_agent(
                name, pool_ids=pm.get_pools_for_agent(name), sort_by_priority=True, refresh_from_store=True
            )
            if not pending:
                break
            for task in pending:  # both processes walk the same order: they collide often
                if tm.claim(name, task.id):
                    tm.report(name, task.id, {"by": name})
                    claimed.append(task.id)
        with open(out, "w") as fh:
            json.dump({"claimed": claimed, "refusals": dict(tm.claim_refusals), "conflicts": tm.cas_conflicts}, fh)
    """
)


def run_workers(tmp_path: Path, db: Path, names: list[str]) -> dict[str, dict]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(script), str(db), name, str(go), str(tmp_path / f"{name}.json")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        for name in names
    }
    go.write_text("go")
    results = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out.decode()
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())
    return results


def test_two_processes_complete_every_task_exactly_once(tmp_path):
    db = tmp_path / "shared.db"
    n = 300
    with SQLiteStore(db) as store:
        PoolManager(store).create_pool({"id": "shared"})
        tm = TaskManager(store)
        for i in range(n):
            tm.submit(Task(id=f"t{i:04d}", priority=i % 7, pool_id="shared" if i % 2 else None))
    results = run_workers(tmp_path, db, ["alpha", "beta"])
    alpha, beta = (set(results[k]["claimed"]) for k in ("alpha", "beta"))
    assert len(results["alpha"]["claimed"]) == len(alpha) and len(results["beta"]["claimed"]) == len(beta)
    assert not alpha & beta
    assert alpha | beta == {f"t{i:04d}" for i in range(n)}
    with SQLiteStore(db) as store:
        check = TaskManager(store)
        for task_id in alpha | beta:
            task = check.get_task(task_id)
            owner = "alpha" if task_id in alpha else "beta"
            assert task.state is TaskState.COMPLETED and task.assigned_to == owner and task.result == {"by": owner}
        assert check.list_pending_tasks(refresh_from_store=True) == []
        assert PoolManager(store).get_pool("shared").agents == {"alpha", "beta"}  # concurrent joins both kept


def test_threads_on_separate_managers_claim_each_task_once(tmp_path):
    db = tmp_path / "threads.db"
    with SQLiteStore(db) as store:
        seeded = TaskManager(store)
        for i in range(120):
            seeded.submit(Task(id=f"t{i}"))
    claimed: dict[str, list[str]] = {}
    barrier = threading.Barrier(3)

    def worker(name: str) -> None:
        with SQLiteStore(db) as store:
            tm = TaskManager(store)
            mine = claimed.setdefault(name, [])
            barrier.wait()
            for task in tm.list_pending_tasks(refresh_from_store=True):
                if tm.claim(name, task.id):
                    tm.report(name, task.id, name)
                    mine.append(task.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    all_claims = [tid for ids in claimed.values() for tid in ids]
    assert sorted(all_claims) == sorted(f"t{i}" for i in range(120))


def test_managers_on_a_real_redis_share_tasks_and_pools(redis_url):
    from converge.extensions.storage.redis_store import RedisStore

    with RedisStore(redis_url) as seed:
        PoolManager(seed).create_pool({"id": "grid"})
        tm = TaskManager(seed)
        for i in range(60):
            tm.submit(Task(id=f"r{i}", pool_id="grid" if i % 2 else None))
    claimed: dict[str, list[str]] = {}
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        with RedisStore(redis_url) as store:
            tm, pm = TaskManager(store), PoolManager(store)
            assert pm.join_pool(name, "grid")
            mine = claimed.setdefault(name, [])
            barrier.wait()
            while pending := tm.list_pending_tasks_for_agent(
                name, pool_ids=pm.get_pools_for_agent(name), refresh_from_store=True
            ):
                for task in pending:
                    if tm.claim(name, task.id):
                        tm.report(name, task.id, name)
                        mine.append(task.id)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("east", "west")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(claimed["east"] + claimed["west"]) == sorted(f"r{i}" for i in range(60))
    with RedisStore(redis_url) as store:
        assert PoolManager(store).get_pool("grid").agents == {"east", "west"}
        assert all(TaskManager(store).get_task(f"r{i}").state is TaskState.COMPLETED for i in range(60))
