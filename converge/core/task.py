"""Tasks and their states."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from converge.core.topic import Topic


class TaskState(Enum):
    """Lifecycle states of a task. ``RUNNING`` exists for compatibility; the library never sets it."""

    PENDING = "pending"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED})


@dataclass
class Task:
    """A unit of work. Routing: ``pool_id`` (pool members only), ``topic``, ``required_capabilities``.

    Conventional ``constraints`` keys: ``claim_ttl_sec`` (claim expiry),
    ``cpu``/``max_cpu_tokens`` and ``memory_mb``/``max_memory_mb`` (safety
    limits), ``timeout_sec``, ``deadline``, ``max_retries``. Higher
    ``priority`` is served first.
    """

    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    objective: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    constraints: dict[str, Any] = field(default_factory=dict)
    evaluator: str = "default"
    state: TaskState = TaskState.PENDING
    assigned_to: str | None = None
    result: Any = None
    claimed_at: float | None = None
    pool_id: str | None = None
    topic: Topic | None = None
    required_capabilities: list[str] = field(default_factory=list)
    priority: int = 0


__all__ = ["Task", "TaskState"]
