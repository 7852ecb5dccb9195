"""In-memory index of pending tasks, so an agent's visible tasks cost O(visible), not O(all).

Tasks are grouped by pool id, then into buckets of tasks that every filter
treats alike (same required capabilities, same topic). Each bucket keeps its
tasks sorted by ``(-priority, id)``. Listing visits only the buckets of the
requested pools, tests each bucket once against the filters, and copies (or
merges) the surviving buckets.
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Any

from converge.core.task import Task

SortKey = tuple[int, str]


def sort_key(task: Task) -> SortKey:
    return (-task.priority, task.id)


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


class PendingIndex:
    """Pending tasks by id, pool and filter bucket."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._where: dict[str, tuple[Any, tuple[Any, ...], SortKey]] = {}
        self._pools: dict[Any, dict[tuple[Any, ...], _Bucket]] = {}

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

    def discard(self, task_id: str) -> Task | None:
        task = self._tasks.pop(task_id, None)
        if task is None:
            return None
        pool_id, bucket_id, key = self._where.pop(task_id)
        buckets = self._pools[pool_id]
        bucket = buckets[bucket_id]
        bucket.remove(key)
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

    def visible(
        self,
        pool_ids: Iterable[str] | None,
        capabilities: Iterable[str] | None,
        topics: list[Any] | None,
        *,
        sort_by_priority: bool,
        limit: int | None = None,
    ) -> list[Task]:
        """The pending tasks passing the reference filters (see ``list_pending_tasks_for_agent``)."""
        buckets = list(self._buckets(pool_ids, capabilities, topics))
        if not sort_by_priority:
            chained = itertools.chain.from_iterable(b.items for b in buckets)
            return list(chained if limit is None else itertools.islice(chained, limit))
        if len(buckets) == 1:
            items = buckets[0].items
            return list(items if limit is None else items[:limit])
        if limit is not None:
            merged = heapq.merge(*(zip(b.keys, b.items, strict=True) for b in buckets))
            return [task for _, task in itertools.islice(merged, limit)]
        pairs = sorted(itertools.chain.from_iterable(zip(b.keys, b.items, strict=True) for b in buckets))
        return [task for _, task in pairs]


__all__ = ["PendingIndex", "sort_key"]
