"""TaskManager: the state machine (every legal and illegal transition), claim TTL, recovery, filters."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from converge.coordination._task_states import TRANSITIONS
from converge.coordination.task_manager import PENDING_INDEX_PREFIX, TaskManager, TaskNotFound
from converge.core.task import Task, TaskState
from converge.core.topic import Topic
from converge.errors import ConfigError, InvalidTransition
from converge.extensions.storage.memory import MemoryStore
from converge.extensions.storage.sqlite_store import SQLiteStore
from converge.observability.coordination_metrics import CoordinationMetrics
from converge.observability.metrics import MetricsCollector

S = TaskState


class Clock:
    """A settable clock injected into the manager (no sleeping in tests)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        yield MemoryStore()
    else:
        with SQLiteStore(tmp_path / "tasks.db") as s:
            yield s


def put_in_state(tm: TaskManager, state: TaskState, *, ttl: float | None = None) -> Task:
    """Submit a task already in ``state`` (held by agent "a" when it is claimed or running)."""
    held = state in (S.ASSIGNED, S.RUNNING)
    task = Task(
        state=state,
        assigned_to="a" if held else None,
        claimed_at=tm.clock() if held else None,
        constraints={} if ttl is None else {"claim_ttl_sec": ttl},
    )
    tm.submit(task)
    return task


def do(tm: TaskManager, action: str, task_id: str, clock: Clock) -> object:
    if action == "claim":
        return tm.claim("a", task_id)
    if action == "report":
        return tm.report("a", task_id, "done")
    if action == "fail":
        return tm.fail_task(task_id, "broken")
    if action == "cancel":
        return tm.cancel_task(task_id)
    if action == "release":
        clock.now += 10
        return tm.release_expired_claims(clock.now)
    raise AssertionError(action)


LEGAL = [(action, src) for action, (sources, _) in TRANSITIONS.items() for src in sorted(sources, key=lambda s: s.value)]
ILLEGAL = [(action, src) for action, (sources, _) in TRANSITIONS.items() for src in S if src not in sources]


@pytest.mark.parametrize(("action", "source"), LEGAL, ids=[f"{a}-{s.value}" for a, s in LEGAL])
def test_every_legal_transition(store, action, source):
    clock = Clock()
    tm = TaskManager(store, clock=clock)
    task = put_in_state(tm, source, ttl=1.0)
    out = do(tm, action, task.id, clock)
    target = TRANSITIONS[action][1]
    assert task.state is target  # the submitted object is live
    assert tm.get_task(task.id).state is target
    assert TaskManager(store).get_task(task.id).state is target  # and the store agrees
    if action == "claim":
        assert out is True and task.assigned_to == "a" and task.claimed_at == clock.now
    if action == "release":
        assert out == [task.id] and task.assigned_to is None and task.claimed_at is None
    if action == "cancel":
        assert out is True and task.assigned_to is None
    if action in ("report", "fail"):
        assert task.result == ("done" if action == "report" else "broken")
    assert (task.id in tm.pending_task_ids) is (target is S.PENDING)
    assert (store.get(PENDING_INDEX_PREFIX + task.id) is not None) is (target is S.PENDING)


@pytest.mark.parametrize(("action", "source"), ILLEGAL, ids=[f"{a}-{s.value}" for a, s in ILLEGAL])
def test_every_illegal_transition_is_refused(store, action, source):
    clock = Clock()
    tm = TaskManager(store, clock=clock)
    task = put_in_state(tm, source, ttl=1.0)
    if action in ("report", "fail"):
        with pytest.raises(InvalidTransition) as info:
            do(tm, action, task.id, clock)
        err = info.value
        assert isinstance(err, ValueError)
        assert task.id in str(err) and source.value in str(err) and action in str(err)
        assert (err.task_id, err.state, err.transition) == (task.id, source, action)
    elif action == "release":
        assert do(tm, action, task.id, clock) == []
    else:
        assert do(tm, action, task.id, clock) is False
    assert tm.get_task(task.id).state is source
    assert TaskManager(store).get_task(task.id).state is source


def test_report_by_someone_else_is_refused_with_the_reference_wording(store):
    tm = TaskManager(store)
    task = Task()
    tm.submit(task)
    with pytest.raises(ValueError, match=f"Agent b not authorized for task {task.id}"):
        tm.report("b", task.id, 1)  # not claimed at all
    assert tm.claim("a", task.id)
    with pytest.raises(InvalidTransition, match="assigned to a") as info:
        tm.report("b", task.id, 1)
    assert info.value.agent_id == "b" and info.value.state is S.ASSIGNED
    with pytest.raises(InvalidTransition, match="not authorized"):
        tm.fail_task(task.id, "x", agent_id="b")
    assert task.state is S.ASSIGNED and task.result is None
    tm.fail_task(task.id, "gave up", agent_id="a")
    assert task.state is S.FAILED and task.assigned_to == "a" and task.claimed_at is None


def test_unknown_ids(store):
    tm = TaskManager(store)
    assert tm.claim("a", "nope") is False and tm.claim_refusals["missing"] == 1
    assert tm.cancel_task("nope") is False
    assert tm.get_task("nope") is None
    for call in (lambda: tm.report("a", "nope", 1), lambda: tm.fail_task("nope", "x")):
        with pytest.raises(TaskNotFound, match="nope") as info:
            call()
        assert isinstance(info.value, LookupError) and isinstance(info.value, InvalidTransition)


def test_claim_is_refused_twice_and_counted(store):
    tm = TaskManager(store)
    task = Task()
    tm.submit(task)
    assert tm.claim("a", task.id) is True
    assert tm.claim("b", task.id) is False
    assert task.assigned_to == "a" and tm.claim_refusals["not_pending"] == 1


def test_store_keeps_its_own_copy():
    store = MemoryStore()
    tm = TaskManager(store)
    task = Task(objective={"x": 1})
    tm.submit(task)
    stored = store.get(f"task:{task.id}")
    assert stored is not task and stored == task
    task.priority = 99  # a local edit does not leak into the store
    assert store.get(f"task:{task.id}").priority == 0


def test_submit_validation():
    tm = TaskManager()
    for bad, match in [
        ({"id": "x"}, "expects a Task"),
        (Task(id=""), "non-empty"),
        (Task(priority="high"), "priority must be an int"),  # type: ignore[arg-type]
        (Task(state="pending"), "TaskState"),  # type: ignore[arg-type]
    ]:
        with pytest.raises(ConfigError, match=match):
            tm.submit(bad)  # type: ignore[arg-type]
    assert tm.list_pending_tasks() == []


def test_resubmitting_overwrites(store):
    tm = TaskManager(store)
    tm.submit(Task(id="t", priority=1))
    assert tm.claim("a", "t")
    tm.submit(Task(id="t", priority=7))
    assert [t.priority for t in tm.list_pending_tasks()] == [7]
    assert TaskManager(store).get_task("t").state is S.PENDING


# -- claim TTL ---------------------------------------------------------------


def test_claim_ttl_returns_the_task_to_pending(store):
    clock = Clock(500.0)
    tm = TaskManager(store, clock=clock)
    leased = Task(id="leased", constraints={"claim_ttl_sec": 5})
    forever = Task(id="forever")
    instant = Task(id="instant", constraints={"claim_ttl_sec": 0})
    for t in (leased, forever, instant):
        tm.submit(t)
        assert tm.claim("a", t.id)
    assert tm.release_expired_claims(clock.now) == ["instant"]  # TTL 0 releases at once
    clock.now = 504.9
    assert tm.release_expired_claims(clock.now) == []
    clock.now = 505.0
    assert tm.release_expired_claims(clock.now) == ["leased"]
    assert leased.state is S.PENDING and leased.assigned_to is None and leased.claimed_at is None
    assert forever.state is S.ASSIGNED
    assert {t.id for t in tm.list_pending_tasks()} == {"leased", "instant"}
    assert tm.claim("b", "leased") and leased.assigned_to == "b" and leased.claimed_at == 505.0
    with pytest.raises(InvalidTransition, match="assigned to b"):
        tm.report("a", "leased", "late")  # the expired holder can no longer report
    clock.now = 1e6
    assert tm.release_expired_claims(clock.now) == ["leased"]  # "instant" is still pending


def test_claim_ttl_release_of_a_claim_made_by_another_manager(store):
    clock = Clock(0.0)
    owner, janitor = TaskManager(store, clock=clock), TaskManager(store, clock=clock)
    janitor.refresh_from_store()
    owner.submit(Task(id="t", constraints={"claim_ttl_sec": 2}))
    assert owner.claim("a", "t")
    assert janitor.release_expired_claims(1.0) == []
    assert janitor.release_expired_claims(2.0) == ["t"]
    assert owner.get_task("t").state is S.PENDING
    assert [t.id for t in owner.list_pending_tasks(refresh_from_store=True)] == ["t"]


def test_release_skips_a_task_reported_meanwhile(store):
    clock = Clock(0.0)
    a, b = TaskManager(store, clock=clock), TaskManager(store, clock=clock)
    a.submit(Task(id="t", constraints={"claim_ttl_sec": 1}))
    assert a.claim("a", "t")
    b.refresh_from_store()
    a.report("a", "t", "ok")  # b has not refreshed since: its view says ASSIGNED
    b._log.head = b._log.tip()  # b misses the change-log entry: the store must still win
    assert b.release_expired_claims(5.0) == []
    assert b.get_task("t").state is S.COMPLETED
    assert store.get(PENDING_INDEX_PREFIX + "t") is None


# -- recovery and cross-manager visibility -------------------------------------


def test_recovery_on_the_same_store(tmp_path):
    path = tmp_path / "recover.db"
    with SQLiteStore(path) as s:
        tm = TaskManager(s)
        done = Task(id="done", objective={"q": "x"})
        tm.submit(done)
        tm.claim("a", "done")
        tm.report("a", "done", {"answer": 42})
        tm.submit(Task(id="todo", priority=3, topic=Topic("work", {"k": 1}), required_capabilities=["c"]))
    with SQLiteStore(path) as s:
        fresh = TaskManager(s)
        assert fresh.list_pending_tasks() == []  # the constructor does not preload (reference)
        todo = fresh.list_pending_tasks(refresh_from_store=True)
        assert [t.id for t in todo] == ["todo"]
        assert todo[0].topic == Topic("work", {"k": 1}) and todo[0].required_capabilities == ["c"]
        got = fresh.get_task("done")
        assert got.state is S.COMPLETED and got.result == {"answer": 42} and got.assigned_to == "a"
        assert fresh.claim("b", "todo") and not fresh.claim("c", "todo")


class CountingStore(MemoryStore):
    """A MemoryStore that counts reads per key prefix (to check what a refresh reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[str, int] = {}

    def get(self, key):
        prefix = key.split(":", 1)[0]
        self.reads[prefix] = self.reads.get(prefix, 0) + 1
        return super().get(key)


def test_refresh_reads_only_changed_tasks():
    store = CountingStore()
    writer, reader = TaskManager(store), TaskManager(store)
    for i in range(300):
        writer.submit(Task(id=f"t{i:03d}", pool_id=f"p{i % 3}"))
    assert len(reader.list_pending_tasks(refresh_from_store=True)) == 300
    store.reads.clear()
    reader.refresh_from_store()
    assert store.reads.get("task", 0) == 0  # nothing changed: no task is read
    writer.claim("a", "t000")
    writer.claim("a", "t001")
    writer.report("a", "t001", 1)
    writer.submit(Task(id="new"))
    store.reads.clear()
    visible = reader.list_pending_tasks_for_agent("b", pool_ids=["p0", "p1", "p2"], refresh_from_store=True)
    assert store.reads["task"] == 3  # t000, t001 (once, deduplicated) and new
    assert {t.id for t in visible} == {f"t{i:03d}" for i in range(2, 300)} | {"new"}
    assert reader.claim("b", "t000") is False


def test_reader_behind_a_pruned_change_log_resynchronises():
    store = MemoryStore()
    writer = TaskManager(store, change_log_retention=64)
    reader = TaskManager(store, change_log_retention=64)
    writer.submit(Task(id="keep"))
    reader.refresh_from_store()
    for i in range(200):  # > retention + prune batch: the reader's next slot is pruned
        writer.submit(Task(id=f"x{i}"))
        writer.claim("a", f"x{i}")
    assert store.get("tasklog:0000000000000002") is None
    writer.claim("a", "keep")
    writer.submit(Task(id="late"))
    assert [t.id for t in reader.list_pending_tasks(refresh_from_store=True)] == ["late"]
    assert reader.claim("b", "late")


def test_full_refresh_sees_tasks_written_without_the_index():
    store = MemoryStore()
    store.put("task:foreign", Task(id="foreign"))  # e.g. another implementation of the reference
    tm = TaskManager(store)
    assert tm.list_pending_tasks(refresh_from_store=True) == []
    tm.refresh_from_store(full=True)
    assert [t.id for t in tm.list_pending_tasks()] == ["foreign"]
    assert store.get(PENDING_INDEX_PREFIX + "foreign") is not None  # the index is repaired
    assert [t.id for t in TaskManager(store).list_pending_tasks(refresh_from_store=True)] == ["foreign"]


# -- visibility filters ----------------------------------------------------------


def make_routed(tm: TaskManager) -> None:
    tm.submit(Task(id="free"))
    tm.submit(Task(id="pool1", pool_id="p1"))
    tm.submit(Task(id="pool2", pool_id="p2"))
    tm.submit(Task(id="cap-ab", required_capabilities=["a", "b"]))
    tm.submit(Task(id="topic-x", topic=Topic("x")))
    tm.submit(Task(id="topic-y", topic=Topic("y", {"n": 1})))


@pytest.mark.parametrize(
    ("pools", "caps", "topics", "expected"),
    [
        (None, None, None, {"free", "pool1", "pool2", "cap-ab", "topic-x", "topic-y"}),
        (["p1"], None, None, {"free", "pool1", "cap-ab", "topic-x", "topic-y"}),
        ([], None, None, {"free", "cap-ab", "topic-x", "topic-y"}),  # empty list: an active filter
        (None, ["a"], None, {"free", "pool1", "pool2", "topic-x", "topic-y"}),
        (None, ["b", "a", "z"], None, {"free", "pool1", "pool2", "cap-ab", "topic-x", "topic-y"}),
        (None, [], None, {"free", "pool1", "pool2", "topic-x", "topic-y"}),
        (None, None, [Topic("x")], {"free", "pool1", "pool2", "cap-ab", "topic-x"}),
        (None, None, [Topic("y", {"n": 1})], {"free", "pool1", "pool2", "cap-ab", "topic-y"}),
        (None, None, [Topic("y", {"n": "1"})], {"free", "pool1", "pool2", "cap-ab"}),  # equality, not str()
        (None, None, [], {"free", "pool1", "pool2", "cap-ab", "topic-x", "topic-y"}),  # empty: no filter
        (["p2"], [], [Topic("x")], {"free", "pool2", "topic-x"}),
    ],
)
def test_list_pending_tasks_for_agent_filters(pools, caps, topics, expected):
    tm = TaskManager()
    make_routed(tm)
    got = tm.list_pending_tasks_for_agent("agent", pool_ids=pools, capabilities=caps, topics=topics)
    assert {t.id for t in got} == expected


def test_priority_order_ties_by_id_and_limit():
    tm = TaskManager()
    specs = [("b", 1, None), ("a", 1, "p"), ("c", 5, None), ("d", -2, "p"), ("e", 5, "q"), ("f", 1, None)]
    for task_id, prio, pool in specs:
        tm.submit(Task(id=task_id, priority=prio, pool_id=pool))
    ordered = tm.list_pending_tasks_for_agent("x", pool_ids=["p", "q"], sort_by_priority=True)
    assert [t.id for t in ordered] == ["c", "e", "a", "b", "f", "d"]
    assert [t.id for t in tm.list_pending_tasks_for_agent("x", pool_ids=["p", "q"], sort_by_priority=True, limit=3)] == [
        "c", "e", "a"
    ]
    assert [t.id for t in tm.list_pending_tasks_for_agent("x", pool_ids=[], sort_by_priority=True, limit=2)] == ["c", "b"]
    assert len(tm.list_pending_tasks_for_agent("x", limit=4)) == 4
    assert [t.id for t in tm.list_pending_tasks_for_agent("x", pool_ids=[], limit=10)] == ["c", "b", "f"]
    assert tm.list_pending_tasks_for_agent("x", limit=0) == []
    with pytest.raises(ConfigError, match="limit"):
        tm.list_pending_tasks_for_agent("x", limit=-1)
    tm.claim("z", "c")
    assert [t.id for t in tm.list_pending_tasks_for_agent("x", pool_ids=["p", "q"], sort_by_priority=True)][:2] == [
        "e", "a"
    ]


def test_ids_that_are_prefixes_of_each_other_sort_by_id():
    tm = TaskManager()
    for task_id in ["ab", "abc", "a", "b", "aa", "\u00e9", "z"]:
        tm.submit(Task(id=task_id, priority=1))
    tm.submit(Task(id="top", priority=2))
    assert [t.id for t in tm.list_pending_tasks_for_agent("x", sort_by_priority=True)] == [
        "top", "a", "aa", "ab", "abc", "b", "z", "\u00e9"
    ]


def test_many_pools_and_routes_stay_consistent():
    tm = TaskManager()
    tasks = []
    for i, (pool, caps, prio) in enumerate(itertools.product([None, "p0", "p1", "p2"], [[], ["x"], ["x", "y"]], [0, 3])):
        t = Task(id=f"t{i:02d}", pool_id=pool, required_capabilities=caps, priority=prio)
        tasks.append(t)
        tm.submit(t)
    for t in tasks[::3]:
        assert tm.claim("w", t.id)
    remaining = [t for t in tasks if t.state is S.PENDING]
    got = tm.list_pending_tasks_for_agent("w", pool_ids=["p1"], capabilities=["x"], sort_by_priority=True)
    want = sorted(
        (t for t in remaining if t.pool_id in (None, "p1") and set(t.required_capabilities) <= {"x"}),
        key=lambda t: (-t.priority, t.id),
    )
    assert got == want


# -- waiting ------------------------------------------------------------------------


async def test_wait_until_done_wakes_on_report():
    tm = TaskManager()
    task = Task()
    tm.submit(task)
    tm.claim("a", task.id)

    async def finish():
        await asyncio.sleep(0)
        tm.report("a", task.id, "r")

    finisher = asyncio.create_task(finish())
    got = await tm.wait_until_done(task.id, timeout=5)
    await finisher
    assert got is task and got.state is S.COMPLETED and got.result == "r"
    assert await tm.wait_until_done(task.id, timeout=0) is task  # already terminal
    assert await tm.wait_until_done("unknown", timeout=1) is None
    assert len(tm._view.waiters) == 0


async def test_wait_until_done_timeout_returns_the_unfinished_task():
    tm = TaskManager()
    task = Task()
    tm.submit(task)
    got = await tm.wait_until_done(task.id, timeout=0.01)
    assert got is task and got.state is S.PENDING
    assert len(tm._view.waiters) == 0


async def test_wait_until_done_sees_a_completion_by_another_manager(tmp_path):
    with SQLiteStore(tmp_path / "w.db") as s1, SQLiteStore(tmp_path / "w.db") as s2:
        waiter, worker = TaskManager(s1), TaskManager(s2)
        waiter.submit(Task(id="t"))

        async def work():
            await asyncio.sleep(0.02)
            assert worker.claim("a", "t")
            worker.cancel_task("t")

        job = asyncio.create_task(work())
        got = await waiter.wait_until_done("t", timeout=10, poll_interval=0.01)
        await job
        assert got.state is S.CANCELLED


# -- metrics -------------------------------------------------------------------------


def test_coordination_metrics_are_emitted():
    collector = MetricsCollector()
    clock = Clock()
    tm = TaskManager(coordination_metrics=CoordinationMetrics(collector), clock=clock)
    ids = [tm.submit(Task(constraints={"claim_ttl_sec": 1})) for _ in range(4)]
    assert collector.get_gauge("pending_tasks") == 4
    tm.claim("a", ids[0])
    tm.report("a", ids[0], 1)
    tm.claim("a", ids[1])
    tm.fail_task(ids[1], "x")
    tm.cancel_task(ids[2])
    tm.claim("a", ids[3])
    clock.now += 5
    tm.release_expired_claims(clock.now)
    counts = {n: collector.get_counter(f"task_{n}_total") for n in ("submitted", "claimed", "completed", "failed", "cancelled", "released")}
    assert counts == {"submitted": 4, "claimed": 3, "completed": 1, "failed": 1, "cancelled": 1, "released": 1}
    assert collector.get_gauge("pending_tasks") == 1


# -- listeners ----------------------------------------------------------------------


def test_listeners_see_local_changes_and_changes_by_others(caplog):
    clock = Clock(0.0)
    store = MemoryStore()
    tm, other = TaskManager(store, clock=clock), TaskManager(store, clock=clock)
    tm.refresh_from_store()
    events: list[tuple[str, str, TaskState]] = []
    remove = tm.add_listener(lambda event, task: events.append((event, task.id, task.state)))
    tm.submit(Task(id="a", constraints={"claim_ttl_sec": 1}))
    tm.claim("w", "a")
    clock.now = 5
    tm.release_expired_claims(clock.now)
    tm.claim("w", "a")
    tm.report("w", "a", 1)
    tm.submit(Task(id="b"))
    tm.fail_task("b", "no")
    tm.submit(Task(id="c"))
    tm.cancel_task("c")
    other.submit(Task(id="d"))
    tm.list_pending_tasks(refresh_from_store=True)
    assert events == [
        ("submitted", "a", S.PENDING), ("claimed", "a", S.ASSIGNED), ("released", "a", S.PENDING),
        ("claimed", "a", S.ASSIGNED), ("completed", "a", S.COMPLETED), ("submitted", "b", S.PENDING),
        ("failed", "b", S.FAILED), ("submitted", "c", S.PENDING), ("cancelled", "c", S.CANCELLED),
        ("changed", "d", S.PENDING),
    ]

    def broken(event, task):
        raise RuntimeError("observer bug")

    tm.add_listener(broken)
    remove()
    assert tm.claim("w", "d")  # the broken listener does not break the claim
    assert tm.listener_errors == 1 and "observer bug" in caplog.text
    assert len(events) == 10


def test_a_manager_started_after_a_claim_holder_died_releases_its_claim(store):
    clock = Clock()
    dead = TaskManager(store, clock=clock)
    task = Task(constraints={"claim_ttl_sec": 5})
    dead.submit(task)
    assert dead.claim("worker-that-dies", task.id)
    del dead  # the claim holder is gone; its claim stays in the store
    fresh = TaskManager(store, clock=clock)
    fresh.refresh_from_store()
    assert fresh.release_expired_claims(clock()) == []  # not expired yet
    clock.now += 5
    assert fresh.release_expired_claims(clock()) == [task.id]
    assert fresh.get_task(task.id).state is S.PENDING
    assert fresh.claim("survivor", task.id)
    fresh.report("survivor", task.id, "done")
    assert store.list("taskidx:leased:") == []  # the lease index forgets finished tasks
