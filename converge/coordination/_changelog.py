"""An append-only change log of task writes kept in the store, so managers refresh incrementally.

Every task write by a :class:`~converge.coordination.task_manager.TaskManager`
appends ``tasklog:<seq>`` = ``{"id": task_id, "state": state, "w": writer}``
with ``put_if_absent`` (atomic in every backend), probing upward from
``meta:tasks:seq`` (a hint: the highest sequence number written). Slots are
therefore filled contiguously, and a reader that remembers the last slot it
read only fetches the slots after it: a refresh costs O(changes), not
O(tasks).

Old slots are pruned (``retention`` slots are kept). A reader that fell
behind the pruned region notices a gap (the hint is past its head but the
next slot is missing) and the manager re-synchronises from the pending index.
"""

from __future__ import annotations

from typing import Any

from converge.core.store import Store

LOG_PREFIX = "tasklog:"
SEQ_KEY = "meta:tasks:seq"
PRUNE_BATCH = 64


def slot_key(seq: int) -> str:
    return f"{LOG_PREFIX}{seq:016d}"


class ChangeLog:
    """One manager's cursor into the shared log.

    Args:
        store: the shared store.
        writer: this manager's token (its own entries are skipped on read).
        retention: how many recent slots survive pruning.
    """

    def __init__(self, store: Store, writer: str, *, retention: int = 16384) -> None:
        self.store = store
        self.writer = writer
        self.retention = max(PRUNE_BATCH, int(retention))
        self.head = 0  # last slot read

    def _hint(self) -> int:
        value = self.store.get(SEQ_KEY)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def tip(self) -> int:
        """The highest filled slot (probing forward from the hint)."""
        seq = self._hint()
        while self.store.get(slot_key(seq + 1)) is not None:
            seq += 1
        return seq

    def append(self, task_id: str, state: str) -> int:
        """Write one entry in the next free slot; returns its sequence number."""
        entry = {"id": task_id, "state": state, "w": self.writer}
        # Start past the hint: slots at or below it are filled (or pruned, and must stay empty).
        seq = max(self.head, self._hint()) + 1
        while not self.store.put_if_absent(slot_key(seq), entry):
            seq += 1
        self.store.put(SEQ_KEY, seq)
        if seq % PRUNE_BATCH == 0 and seq > self.retention:
            for old in range(max(1, seq - self.retention - PRUNE_BATCH), seq - self.retention):
                self.store.delete(slot_key(old))
        return seq

    def read_new(self) -> tuple[list[dict[str, Any]], bool]:
        """Entries written by others since the last read, and whether a gap (pruned slots) was found.

        After a gap the head is left where it was; the caller re-synchronises
        and calls :meth:`skip_to_tip`.
        """
        out: list[dict[str, Any]] = []
        seq = self.head + 1
        while True:
            entry = self.store.get(slot_key(seq))
            if entry is None:
                if self._hint() < seq:
                    return out, False
                entry = self.store.get(slot_key(seq))  # written between our two reads?
                if entry is None:
                    return out, True
            self.head = seq
            if isinstance(entry, dict) and entry.get("w") != self.writer:
                out.append(entry)
            seq += 1

    def skip_to_tip(self) -> int:
        """Move the head to the current tip (before a full re-synchronisation)."""
        self.head = max(self.head, self.tip())
        return self.head


__all__ = ["LOG_PREFIX", "SEQ_KEY", "ChangeLog", "slot_key"]
