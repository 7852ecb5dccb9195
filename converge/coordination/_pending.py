"""In-memory index of pending tasks, so an agent's visible tasks cost O(visible), not O(all).

Tasks are grouped by pool id, then into buckets of tasks that every filter
treats alike (same required capabilities, same topic). Each bucket keeps its
tasks sorted (by descending priority, then id — stored reversed, see
:func:`sort_key`).

A listing is served from a *view*: the sorted list of tasks passing one
filter (pool ids, capabilities, topics). A view is built once from the
buckets that pass the filter (O(visible)), then kept up to date as tasks
come and go (O(log n) per change and view), so the runtime's per-step
listing is a list copy — or a slice with ``limit``. The most recently used
``MAX_VIEWS`` views are kept.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

from converge.core.task import Task

SortKey = tuple[int, bytes]
MAX_VIEWS = 32
_INVERT = bytes(range(255, -1, -1))


def sort_key(task: Task) -> SortKey:
    """Lists are kept in *ascending* ``sort_key`` order, which is the display order reversed.

    Display order is descending priority, then ascending id. Storing it reversed
    puts the tasks taken first at the end of each list, where removing them
    costs O(1) instead of shifting the whole list. The id part inverts the
    UTF-8 bytes (and ends with 0xff so that a longer id sorts before its prefix).
    """
    return (task.priority, task.id.encode("utf-8", "surrogatepass").translate(_INVERT) + b"\xff")


def _topic_key(topic: Any) -> Any:
    if topic is None:
        return None
    attributes = getattr(topic, "attributes", None)
    if isinstance(attributes, dict):
        items = sorted(attributes.items(), key=lambda kv: repr(kv[0]))
        return (getattr(topic, "namespace", None), getattr(topic, "version", None), repr(items))
    return repr(topic)


class _Bucket:
    __slots__ = ("caps", "items", "keys", "topic")

    def __init__(self, caps: frozenset[str], topic: Any) -> None:
        self.caps = caps
        self.topic = topic
        self.keys: list[SortKey] = []
        self.items: list[Task] = []

    def insert(self, key: SortKey, task: Task) -> None:
        i = bisect_left(self.keys, key)
        self.keys.insert(i, key)
        self.items.insert(i, task)

    def remove(self, key: SortKey) -> None:
        i = bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i]
            del self.items[i]


class _View:
    """The sorted pending tasks passing one filter, maintained incrementally."""

    __slots__ = ("caps", "items", "keys", "pools", "topics")

    def __init__(self, pools: frozenset[str] | None, caps: frozenset[str] | None, topics: list[Any]) -> None:
        self.pools = pools
        self.caps = caps
        self.topics = topics
        self.keys: list[SortKey] = []
        self.items: list[Task] = []

    def passes(self, task: Task) -> bool:
        if task.pool_id is not None and self.pools is not None and task.pool_id not in self.pools:
            return False
        required = task.required_capabilities
        if required and self.caps is not None and not self.caps.issuperset(required):
            return False
        return not (self.topics and task.topic is not None and task.topic not in self.topics)

    def insert(self, key: SortKey, task: Task) -> None:
        i = bisect_left(self.keys, key)
        self.keys.insert(i, key)
        self.items.insert(i, task)

    def remove(self, key: SortKey) -> None:
        i = bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i]
            del self.items[i]


def _view_key(pool_ids: Iterable[str] | None, capabilities: Iterable[str] | None, topics: list[Any] | None) -> Any:
    return (
        None if pool_ids is None else frozenset(pool_ids),
        None if capabilities is None else frozenset(capabilities),
        frozenset(_topic_key(t) for t in topics) if topics else None,
    )


class PendingIndex:
    """Pending tasks by id, pool and filter bucket, plus maintained views."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._where: dict[str, tuple[Any, tuple[Any, ...], SortKey]] = {}
        self._pools: dict[Any, dict[tuple[Any, ...], _Bucket]] = {}
        self._views: OrderedDict[Any, _View] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def ids(self) -> list[str]:
        return list(self._tasks)

    def tasks(self) -> list[Task]:
        return list(self._tasks.values())

    def add(self, task: Task) -> None:
        """Insert ``task`` (or move it, if its pool, routing or priority changed)."""
        self.discard(task.id)
        caps = frozenset(task.required_capabilities or ())
        bucket_id = (caps, _topic_key(task.topic))
        buckets = self._pools.setdefault(task.pool_id, {})
        bucket = buckets.get(bucket_id)
        if bucket is None:
            bucket = buckets[bucket_id] = _Bucket(caps, task.topic)
        key = sort_key(task)
        bucket.insert(key, task)
        self._tasks[task.id] = task
        self._where[task.id] = (task.pool_id, bucket_id, key)
        for view in self._views.values():
            if view.passes(task):
                view.insert(key, task)

    def discard(self, task_id: str) -> Task | None:
        task = self._tasks.pop(task_id, None)
        if task is None:
            return None
        pool_id, bucket_id, key = self._where.pop(task_id)
        buckets = self._pools[pool_id]
        bucket = buckets[bucket_id]
        bucket.remove(key)
        for view in self._views.values():
            view.remove(key)
        if not bucket.keys:
            del buckets[bucket_id]
            if not buckets:
                del self._pools[pool_id]
        return task

    def _buckets(
        self, pool_ids: Iterable[str] | None, capabilities: Iterable[str] | None, topics: list[Any] | None
    ) -> Iterator[_Bucket]:
        if pool_ids is None:
            pools: Iterable[Any] = list(self._pools)
        else:
            pools = [None, *dict.fromkeys(p for p in pool_ids if p is not None)]
        caps = None if capabilities is None else set(capabilities)
        for pool_id in pools:
            for bucket in self._pools.get(pool_id, {}).values():
                if bucket.caps and caps is not None and not bucket.caps <= caps:
                    continue
                if topics and bucket.topic is not None and bucket.topic not in topics:
                    continue
                yield bucket

    def _view(
        self, pool_ids: Iterable[str] | None, capabilities: Iterable[str] | None, topics: list[Any] | None
    ) -> _View:
        pool_ids = None if pool_ids is None else [p for p in pool_ids if p is not None]
        capabilities = None if capabilities is None else list(capabilities)
        key = _view_key(pool_ids, capabilities, topics)
        view = self._views.get(key)
        if view is not None:
            self._views.move_to_end(key)
            return view
        view = _View(key[0], key[1], list(topics or ()))
        pairs = sorted(
            itertools.chain.from_iterable(
                zip(b.keys, b.items, strict=True) for b in self._buckets(pool_ids, capabilities, topics)
            )
        )
        view.keys = [k for k, _ in pairs]
        view.items = [t for _, t in pairs]
        self._views[key] = view
        while len(self._views) > MAX_VIEWS:
            self._views.popitem(last=False)
        return view

    def visible(
        self,
        pool_ids: Iterable[str] | None,
        capabilities: Iterable[str] | None,
        topics: list[Any] | None,
        *,
        limit: int | None = None,
    ) -> list[Task]:
        """The pending tasks passing the reference filters, by descending priority then id.

        See ``TaskManager.list_pending_tasks_for_agent`` for the filter semantics.
        """
        items = self._view(pool_ids, capabilities, topics).items
        if limit is None:
            return items[::-1]
        return items[max(0, len(items) - limit):][::-1] if limit else []


__all__ = ["PendingIndex", "sort_key"]
