"""A task manager's local view of the store: cached tasks, pending index, leases, waiters.

The view is kept fresh through the store's change log (see
:mod:`converge.coordination._changelog`): an incremental refresh re-reads only
the tasks other managers changed. A first refresh, or one that finds the log
pruned past its position, re-synchronises from the ``taskidx:pending:`` and
``taskidx:leased:`` indexes (the latter holds the tasks with a claim TTL that
were claimed and are not yet terminal, so a manager started after a claim
holder died still finds its claims); :meth:`LocalView.full_scan` reads every
``task:`` key and repairs both indexes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

from converge.coordination._changelog import ChangeLog
from converge.coordination._pending import PendingIndex
from converge.coordination._waiters import Waiters
from converge.core.store import Store
from converge.core.task import Task, TaskState
from converge.errors import ConvergeError

logger = logging.getLogger("converge.coordination.task_manager")

TASK_PREFIX = "task:"
PENDING_INDEX_PREFIX = "taskidx:pending:"
LEASED_INDEX_PREFIX = "taskidx:leased:"
_FIELDS = tuple(f.name for f in dataclasses.fields(Task))


def claim_ttl(task: Task) -> float | None:
    """``constraints["claim_ttl_sec"]`` as a float, or ``None`` when absent or not a number."""
    raw = task.constraints.get("claim_ttl_sec") if isinstance(task.constraints, dict) else None
    if raw is None:
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


def clone(task: Task, **changes: Any) -> Task:
    """A shallow copy with ``changes`` applied (much cheaper than ``dataclasses.replace``)."""
    new = object.__new__(type(task))
    new.__dict__.update(task.__dict__)
    new.__dict__.update(changes)
    return new


def _copy_into(target: Task, source: Task) -> None:
    target.__dict__.update({name: source.__dict__[name] for name in _FIELDS})


class LocalView:
    """Cached tasks (live objects), the pending index, ASSIGNED tasks with a claim TTL, and waiters."""

    def __init__(self, store: Store, log: ChangeLog) -> None:
        self.store = store
        self.log = log
        self.tasks: dict[str, Task] = {}
        self.pending = PendingIndex()
        self.leased: dict[str, Task] = {}
        self.waiters = Waiters()
        self.synced = False
        self.changed: list[Task] = []  # tasks whose state a refresh changed (drained by the manager)

    def read(self, task_id: str) -> Task | None:
        """The stored task (a fresh read), or ``None``."""
        value = self.store.get(TASK_PREFIX + task_id)
        if value is None or isinstance(value, Task):
            return value
        raise ConvergeError(f"store key {TASK_PREFIX + task_id!r} holds a {type(value).__name__}, not a Task")

    def apply(self, stored: Task) -> Task:
        """Make the local view of one task match ``stored``; returns the cached (live) object."""
        if not isinstance(stored.priority, int) or isinstance(stored.priority, bool):
            try:
                stored = clone(stored, priority=int(stored.priority))
            except (TypeError, ValueError):
                logger.warning("task %s has a non-integer priority %r; treating it as 0", stored.id, stored.priority)
                stored = clone(stored, priority=0)
        cached = self.tasks.get(stored.id)
        if cached is None:
            cached = self.tasks[stored.id] = clone(stored)
        elif cached is not stored:
            _copy_into(cached, stored)
        if cached.state is TaskState.PENDING:
            self.pending.add(cached)
        else:
            self.pending.discard(cached.id)
        if cached.state is TaskState.ASSIGNED and claim_ttl(cached) is not None:
            self.leased[cached.id] = cached
        else:
            self.leased.pop(cached.id, None)
        if cached.state.is_terminal:
            self.waiters.signal(cached.id)
        return cached

    def forget(self, task_id: str) -> None:
        """The store no longer has the task: drop it from the indexes (the cached object stays)."""
        self.pending.discard(task_id)
        self.leased.pop(task_id, None)

    def reload(self, ids: Iterable[str]) -> None:
        for task_id in ids:
            stored = self.read(task_id)
            if stored is None:
                self.forget(task_id)
                continue
            before = self.tasks.get(task_id)
            state = None if before is None else before.state
            cached = self.apply(stored)
            if cached.state is not state:
                self.changed.append(cached)

    def refresh(self) -> None:
        """Re-read the tasks changed by other managers since the last refresh."""
        if not self.synced:
            self.resync_from_index()
            return
        entries, gap = self.log.read_new()
        if gap:
            logger.info("task change log was pruned past this manager's position; re-synchronising")
            self.resync_from_index()
            return
        self.reload(dict.fromkeys(i for e in entries if isinstance(i := e.get("id"), str)))

    def resync_from_index(self) -> None:
        self.log.skip_to_tip()
        indexed = [k[len(PENDING_INDEX_PREFIX):] for k in self.store.list(PENDING_INDEX_PREFIX)]
        leased = [k[len(LEASED_INDEX_PREFIX):] for k in self.store.list(LEASED_INDEX_PREFIX)]
        known = [*self.pending.ids(), *self.leased]
        self.reload(dict.fromkeys([*indexed, *leased, *known]))
        self.synced = True

    def full_scan(self) -> None:
        """Read every ``task:`` key and repair the pending and leased indexes."""
        self.log.skip_to_tip()
        ids = [k[len(TASK_PREFIX):] for k in self.store.list(TASK_PREFIX)]
        for task_id in set(self.tasks) - set(ids):
            self.forget(task_id)
        self.reload(ids)
        indexed = {k[len(PENDING_INDEX_PREFIX):] for k in self.store.list(PENDING_INDEX_PREFIX)}
        for task_id in set(self.pending.ids()) - indexed:
            self.store.put(PENDING_INDEX_PREFIX + task_id, {"pool_id": self.tasks[task_id].pool_id})
        leased = {k[len(LEASED_INDEX_PREFIX):] for k in self.store.list(LEASED_INDEX_PREFIX)}
        present = set(ids)
        for task_id in set(self.leased) - leased:
            self.store.put(LEASED_INDEX_PREFIX + task_id, {"pool_id": self.tasks[task_id].pool_id})
        for task_id in leased:
            # Left by a claim that lost to a concurrent cancel, or by a process killed before it
            # could delete the entry: the task is gone or terminal (a task can be claimed again only
            # after a re-submit, which races with this delete exactly as with the pending index).
            task = self.tasks.get(task_id)
            if task_id not in present or (task is not None and task.state.is_terminal):
                self.store.delete(LEASED_INDEX_PREFIX + task_id)
        self.synced = True


__all__ = ["LEASED_INDEX_PREFIX", "PENDING_INDEX_PREFIX", "TASK_PREFIX", "LocalView", "claim_ttl", "clone"]
