"""Tasks: submit, claim, report, fail, cancel, claim TTL, and who sees which pending task.

Differences from the reference (its §5.3 and quirks 13/16), on purpose:

* **An explicit state machine** (see :mod:`converge.coordination._task_states`).
  ``claim`` keeps its contract (``False`` when the task is missing or not
  PENDING). ``report`` by anyone but the assignee, and ``report``/``fail_task``
  of a terminal task, raise :class:`~converge.errors.InvalidTransition` (a
  ``ValueError``) naming the task, its state and the attempted transition (also
  as attributes ``task_id``, ``state``, ``transition``, ``agent_id``).
  ``report``/``fail_task`` of an unknown id raise :class:`TaskNotFound`
  (an ``InvalidTransition`` and a ``LookupError``) instead of doing nothing.
  ``cancel_task`` keeps returning ``False`` for unknown or terminal tasks.
* **Atomic across processes**: every transition reads the task from the store
  and writes it with ``compare_and_set``, so two processes (or threads)
  claiming one task get exactly one winner, and a report never overwrites a
  concurrent cancel.
* **Indexed, incremental refresh**: pending tasks are indexed in memory by pool
  and routing, so listing an agent's tasks costs O(visible tasks); the store
  keeps ``taskidx:pending:<id>`` and a change log (``tasklog:<seq>``,
  ``meta:tasks:seq``), so ``refresh_from_store()`` reads only the tasks that
  changed since the last refresh. ``refresh_from_store(full=True)`` scans every
  ``task:`` key (for stores written by programs that keep no index).
* **Leases survive their holder**: a task with ``constraints["claim_ttl_sec"]``
  gets ``taskidx:leased:<id>`` when it is claimed (written *before* the claim,
  so a holder killed right after claiming is still indexed); the entry stays,
  also across a release, until the task reaches a terminal state. A manager that starts (or
  re-synchronises) after a claim holder died loads it with the pending index,
  so ``release_expired_claims`` finds the abandoned claim without scanning
  every ``task:`` key. Tasks without a claim TTL cost no extra store writes.
* **Claim clocks**: ``claimed_at`` comes from the claiming manager's ``clock``
  and is compared with the releasing manager's ``clock``, so all managers on a
  store must share one time base. ``time.monotonic`` (the default) is
  system-wide, so processes on one host agree; managers on *several hosts*
  must all be given a shared wall clock (e.g. ``clock=time.time``).
* The task objects you submit stay live: the manager updates them in place on
  every transition, but the store gets its own copy (``MemoryStore`` holds
  values by reference), so a stored value only changes through the store API.
* Time comes from the injected ``clock`` (``claimed_at``), so claim-TTL tests do
  not sleep. ``wait_until_done`` also notices completions made by other
  processes (it re-reads the task every ``poll_interval`` seconds).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from converge.coordination._changelog import ChangeLog
from converge.coordination._local_view import (
    LEASED_INDEX_PREFIX,
    PENDING_INDEX_PREFIX,
    TASK_PREFIX,
    LocalView,
    claim_ttl,
    clone,
)
from converge.coordination._task_states import TRANSITIONS, TaskNotFound, check, not_found
from converge.core.store import Store
from converge.core.task import Task, TaskState
from converge.core.topic import Topic
from converge.errors import ConfigError, ConvergeError, InvalidTransition

logger = logging.getLogger("converge.coordination.task_manager")

_MAX_ATTEMPTS = 1000


class TaskManager:
    """Tasks in a store, with a local cache and indexes.

    Args:
        store: where tasks live (a new :class:`MemoryStore` when ``None``).
        coordination_metrics: an object with ``task_submitted()``, ``task_claimed()``,
            ``task_completed()``, ``task_failed()``, ``task_cancelled()``,
            ``task_released()`` and ``pending_tasks(n)`` (duck-typed, missing
            methods are skipped; may be assigned later).
        clock: the time source of ``claimed_at`` (monotonic by default; pass a
            shared wall clock if claims must expire across hosts).
        change_log_retention: change-log entries kept in the store.

    Attributes:
        tasks: task id -> task, every task this manager has seen.
        claim_refusals: reason (``missing``, ``not_pending``) -> count of refused claims.
        cas_conflicts: compare-and-set attempts lost to a concurrent writer (then retried).
    """

    def __init__(
        self,
        store: Store | None = None,
        coordination_metrics: Any = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        change_log_retention: int = 16384,
    ) -> None:
        if store is None:
            # The reference's default; imported here so coordination does not import extensions at load time.
            from converge.extensions.storage.memory import MemoryStore

            store = MemoryStore()
        self.store: Store = store
        self.coordination_metrics = coordination_metrics
        self.clock = clock
        self.claim_refusals: Counter[str] = Counter()
        self.cas_conflicts = 0
        self._log = ChangeLog(self.store, uuid.uuid4().hex, retention=change_log_retention)
        self._view = LocalView(self.store, self._log)
        self._lock = threading.RLock()
        self._listeners: list[Callable[[str, Task], Any]] = []
        self.listener_errors = 0

    # ------------------------------------------------------------------ listeners
    def add_listener(self, listener: Callable[[str, Task], Any]) -> Callable[[], None]:
        """Call ``listener(event, task)`` after every change this manager makes or sees.

        Events: ``submitted``, ``claimed``, ``completed``, ``failed``, ``cancelled``,
        ``released`` (claim TTL), and ``changed`` (a state change by another manager,
        noticed on a refresh). Listeners run in the caller's thread, outside the
        manager's lock; one that raises is logged and counted in ``listener_errors``.
        Returns a function that removes the listener.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _notify(self, event: str, task: Task) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, task)
            except Exception as exc:  # a broken observer must not break task handling; recorded
                self.listener_errors += 1
                logger.error("task listener %r failed on %s of %s: %s", listener, event, task.id, exc, exc_info=True)

    def _drain_changes(self) -> None:
        if not self._view.changed:
            return
        with self._lock:
            changed, self._view.changed = self._view.changed, []
        for task in changed:
            self._notify("changed", task)

    # ------------------------------------------------------------------ helpers
    @property
    def pending_task_ids(self) -> set[str]:
        """Ids of the tasks this manager currently knows as PENDING (a copy)."""
        with self._lock:
            return set(self._view.pending.ids())

    def _emit(self, name: str, *args: Any) -> None:
        fn = getattr(self.coordination_metrics, name, None)
        if callable(fn):
            fn(*args)

    def _gauge(self) -> None:
        self._emit("pending_tasks", len(self._view.pending))

    @property
    def tasks(self) -> dict[str, Task]:
        """Task id -> task: every task this manager has seen (live objects)."""
        return self._view.tasks

    def _transition(self, task_id: str, action: str, agent_id: str | None, **changes: Any) -> tuple[Task, Task]:
        """Read, check and compare-and-set one transition; returns ``(before, after)`` as stored."""
        leased_indexed = False
        for _ in range(_MAX_ATTEMPTS):
            current = self._view.read(task_id)
            if current is None:
                self._view.forget(task_id)
                raise not_found(task_id, action)
            try:
                target = check(current, action, agent_id)
            except InvalidTransition:
                self._view.apply(current)
                raise
            if action == "claim" and not leased_indexed and claim_ttl(current) is not None:
                # Index first, so the lease is findable even if this process dies right after the claim.
                # A claim that then loses the race leaves the entry: it is the winner's lease (same key).
                self.store.put(LEASED_INDEX_PREFIX + task_id, {"pool_id": current.pool_id})
                leased_indexed = True
            new = clone(current, state=target, **changes)
            if self.store.compare_and_set(TASK_PREFIX + task_id, current, new):
                return current, new
            self.cas_conflicts += 1
        raise ConvergeError(f"task {task_id} kept changing during {_MAX_ATTEMPTS} attempts to {action} it")

    def _after_write(self, before: TaskState | None, after: Task) -> Task:
        """Local bookkeeping after a successful write: cache, indexes, change log, waiters."""
        cached = self._view.apply(after)
        if before is TaskState.PENDING and after.state is not TaskState.PENDING:
            self.store.delete(PENDING_INDEX_PREFIX + after.id)
        if after.state.is_terminal and claim_ttl(after) is not None:
            self.store.delete(LEASED_INDEX_PREFIX + after.id)
        self._log.append(after.id, after.state.value)
        return cached

    # ------------------------------------------------------------------ writes
    def submit(self, task: Task) -> str:
        """Store ``task`` (overwriting a task with the same id) and return its id.

        Raises:
            ConfigError: ``task`` is not a Task, or has an empty id or a non-integer priority.
        """
        if not isinstance(task, Task):
            raise ConfigError(f"submit expects a Task, got {type(task).__name__}")
        if not isinstance(task.id, str) or not task.id:
            raise ConfigError(f"task id must be a non-empty string, got {task.id!r}")
        if not isinstance(task.priority, int) or isinstance(task.priority, bool):
            raise ConfigError(f"task priority must be an int, got {task.priority!r}")
        if not isinstance(task.state, TaskState):
            raise ConfigError(f"task state must be a TaskState, got {task.state!r}")
        if isinstance(task.topic, dict):
            task.topic = Topic.from_dict(task.topic)
        with self._lock:
            pending = task.state is TaskState.PENDING
            index_key = PENDING_INDEX_PREFIX + task.id
            if pending:
                self.store.put(index_key, {"pool_id": task.pool_id})
            elif task.state is TaskState.ASSIGNED and claim_ttl(task) is not None:
                self.store.put(LEASED_INDEX_PREFIX + task.id, {"pool_id": task.pool_id})
            self.store.put(TASK_PREFIX + task.id, clone(task))
            if not pending:
                self.store.delete(index_key)
            old = self.tasks.get(task.id)
            if old is not None and old is not task:
                self._view.forget(task.id)
            self.tasks[task.id] = task
            self._view.apply(task)
            self._log.append(task.id, task.state.value)
            self._emit("task_submitted")
            if pending:
                self._gauge()
        self._notify("submitted", task)
        return task.id

    def claim(self, agent_id: str, task_id: str) -> bool:
        """Assign a PENDING task to ``agent_id``; ``False`` when it is missing or not PENDING.

        Atomic: of several managers/processes sharing the store, exactly one claim wins.
        """
        with self._lock:
            try:
                before, after = self._transition(task_id, "claim", None, assigned_to=agent_id, claimed_at=self.clock())
            except TaskNotFound:
                return self._refuse_claim(agent_id, task_id, "missing")
            except InvalidTransition as exc:
                return self._refuse_claim(agent_id, task_id, "not_pending", str(exc))
            cached = self._after_write(before.state, after)
            self._emit("task_claimed")
            self._gauge()
        self._notify("claimed", cached)
        return True

    def _refuse_claim(self, agent_id: str, task_id: str, reason: str, detail: str = "") -> bool:
        self.claim_refusals[reason] += 1
        logger.debug("claim of task %s by %s refused (%s) %s", task_id, agent_id, reason, detail)
        return False

    def report(self, agent_id: str, task_id: str, result: Any) -> None:
        """Complete a task claimed by ``agent_id`` with ``result``.

        Raises:
            TaskNotFound: no such task.
            InvalidTransition: ``agent_id`` is not the assignee, or the task is not
                ASSIGNED/RUNNING (e.g. already completed, failed or cancelled).
        """
        with self._lock:
            before, after = self._transition(task_id, "report", agent_id, result=result)
            cached = self._after_write(before.state, after)
            self._emit("task_completed")
            self._gauge()
        self._notify("completed", cached)

    def fail_task(self, task_id: str, reason: Any, *, agent_id: str | None = None) -> None:
        """Mark a non-terminal task FAILED with ``reason`` as its result (``assigned_to`` is kept).

        Raises:
            TaskNotFound: no such task.
            InvalidTransition: the task is terminal, or ``agent_id`` is given and is not the assignee.
        """
        with self._lock:
            before, after = self._transition(task_id, "fail", agent_id, result=reason, claimed_at=None)
            cached = self._after_write(before.state, after)
            self._emit("task_failed")
            self._gauge()
        self._notify("failed", cached)

    def cancel_task(self, task_id: str) -> bool:
        """Cancel a non-terminal task; ``False`` when it is unknown or already terminal."""
        with self._lock:
            try:
                before, after = self._transition(task_id, "cancel", None, assigned_to=None, claimed_at=None)
            except InvalidTransition as exc:
                logger.info("cancel of task %s refused: %s", task_id, exc)
                return False
            cached = self._after_write(before.state, after)
            self._emit("task_cancelled")
            self._gauge()
        self._notify("cancelled", cached)
        return True

    def release_expired_claims(self, now_ts: float) -> list[str]:
        """Return ASSIGNED tasks whose ``constraints["claim_ttl_sec"]`` has passed to PENDING.

        ``now_ts`` must be on the manager's ``clock`` (monotonic by default), the
        clock every manager on the store stamps ``claimed_at`` with. A TTL of 0
        releases at once; tasks without the constraint are never released.
        Claims made by other managers are seen after a refresh (this method
        refreshes incrementally first); claims made before this manager started,
        by a process that has since died, through the ``taskidx:leased:`` index
        read on the first refresh. Returns the released ids.
        """
        released: list[str] = []
        with self._lock:
            self._view.refresh()
            for task_id, cached in list(self._view.leased.items()):
                ttl = claim_ttl(cached)
                if ttl is None or cached.claimed_at is None or now_ts - cached.claimed_at < ttl:
                    continue
                if self._release(task_id, now_ts):
                    released.append(task_id)
                    self._emit("task_released")
            if released:
                self._gauge()
        self._drain_changes()
        for task_id in released:
            self._notify("released", self.tasks[task_id])
        return released

    def _release(self, task_id: str, now_ts: float) -> bool:
        index_key = PENDING_INDEX_PREFIX + task_id
        self.store.put(index_key, {"pool_id": self.tasks[task_id].pool_id})  # index first: it stays a superset
        for _ in range(_MAX_ATTEMPTS):
            current = self._view.read(task_id)
            ttl = None if current is None else claim_ttl(current)
            if (
                current is None
                or current.state is not TaskState.ASSIGNED
                or ttl is None
                or current.claimed_at is None
                or now_ts - current.claimed_at < ttl
            ):
                if current is None:
                    self._view.forget(task_id)
                else:
                    self._view.apply(current)
                if current is None or current.state is not TaskState.PENDING:
                    self.store.delete(index_key)
                return False
            new = clone(current, state=TaskState.PENDING, assigned_to=None, claimed_at=None)
            if self.store.compare_and_set(TASK_PREFIX + task_id, current, new):
                self._view.apply(new)
                self._log.append(task_id, new.state.value)
                logger.info("claim of task %s by %s expired; the task is pending again", task_id, current.assigned_to)
                return True
            self.cas_conflicts += 1
        raise ConvergeError(f"task {task_id} kept changing during {_MAX_ATTEMPTS} attempts to release it")

    # ------------------------------------------------------------------ reads
    def get_task(self, task_id: str) -> Task | None:
        """The task, read from the store (and cached); the cached copy if the store lost it."""
        with self._lock:
            stored = self._view.read(task_id)
            if stored is None:
                return self.tasks.get(task_id)
            return self._view.apply(stored)

    async def wait_until_done(self, task_id: str, timeout: float, *, poll_interval: float = 0.1) -> Task | None:
        """Wait until the task is COMPLETED, FAILED or CANCELLED.

        Returns ``None`` for an unknown task, the finished task, or — on timeout —
        the still unfinished task (reference behaviour; check ``task.state``).
        Completions by other processes sharing the store are noticed within
        ``poll_interval`` seconds; local ones at once.
        """
        task = self.get_task(task_id)
        if task is None or task.state.is_terminal:
            return task
        event = self._view.waiters.register(task_id)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        async with asyncio.timeout(poll_interval):
                            await event.wait()
                    except TimeoutError:
                        pass
                    task = self.get_task(task_id)
                    if task is None or task.state.is_terminal:
                        return task
        except TimeoutError:
            pass
        finally:
            self._view.waiters.unregister(task_id, event)
        return self.get_task(task_id)

    def list_pending_tasks(self, *, refresh_from_store: bool = False) -> list[Task]:
        """The PENDING tasks this manager knows (after an incremental refresh when asked)."""
        with self._lock:
            if refresh_from_store:
                self._view.refresh()
            tasks = self._view.pending.tasks()
        self._drain_changes()
        return tasks

    def list_pending_tasks_for_agent(
        self,
        agent_id: str,
        pool_ids: list[str] | None = None,
        capabilities: list[str] | None = None,
        topics: list[Topic] | None = None,
        *,
        sort_by_priority: bool = False,
        refresh_from_store: bool = False,
        limit: int | None = None,
    ) -> list[Task]:
        """Pending tasks an agent may take (reference filter semantics).

        A task is hidden when it has a ``pool_id`` not in ``pool_ids``; when it has
        ``required_capabilities`` that are not a subset of ``capabilities``; or when
        ``topics`` is non-empty and the task's ``topic`` is not in it. ``None``
        disables a filter; an empty ``pool_ids``/``capabilities`` list is an active
        filter, an empty ``topics`` list is not. ``agent_id`` is not used.

        Args:
            sort_by_priority: accepted for compatibility; results are always ordered
                by descending priority, then ascending id (the reference gave no
                order without it, so this order satisfies both).
            refresh_from_store: first read the changes other managers made.
            limit: return at most this many tasks (cheaper for large backlogs).
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ConfigError(f"limit must be a non-negative int or None, got {limit!r}")
        with self._lock:
            if refresh_from_store:
                self._view.refresh()
            # Always in priority order (served from a maintained view); the reference
            # promised no order without sort_by_priority, so this order is valid either way.
            tasks = self._view.pending.visible(pool_ids, capabilities, topics, limit=limit)
        self._drain_changes()
        return tasks

    # ------------------------------------------------------------------ refresh
    def refresh_from_store(self, *, full: bool = False) -> None:
        """Bring the local view up to date with the store.

        Incremental by default: reads only tasks changed since the last refresh
        (through the change log). ``full=True`` reads every ``task:`` key, as the
        reference did, and repairs the pending index.
        """
        with self._lock:
            if full:
                self._view.full_scan()
            else:
                self._view.refresh()
        self._drain_changes()


__all__ = ["LEASED_INDEX_PREFIX", "PENDING_INDEX_PREFIX", "TASK_PREFIX", "TRANSITIONS", "TaskManager", "TaskNotFound"]
