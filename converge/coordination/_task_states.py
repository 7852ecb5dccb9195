"""The task state machine: which action may move a task from which state, and the errors.

============  =====================================  ===========
action        from                                   to
============  =====================================  ===========
``claim``     PENDING                                ASSIGNED
``report``    ASSIGNED, RUNNING (by the assignee)    COMPLETED
``fail``      PENDING, ASSIGNED, RUNNING             FAILED
``cancel``    PENDING, ASSIGNED, RUNNING             CANCELLED
``release``   ASSIGNED (claim TTL expired)           PENDING
============  =====================================  ===========

COMPLETED, FAILED and CANCELLED are terminal. ``submit`` writes a task in
whatever state it carries (re-submitting an id overwrites it).
"""

from __future__ import annotations

from converge.core.task import Task, TaskState
from converge.errors import InvalidTransition

P, A, R = TaskState.PENDING, TaskState.ASSIGNED, TaskState.RUNNING

TRANSITIONS: dict[str, tuple[frozenset[TaskState], TaskState]] = {
    "claim": (frozenset({P}), A),
    "report": (frozenset({A, R}), TaskState.COMPLETED),
    "fail": (frozenset({P, A, R}), TaskState.FAILED),
    "cancel": (frozenset({P, A, R}), TaskState.CANCELLED),
    "release": (frozenset({A}), P),
}


class TaskNotFound(InvalidTransition, LookupError):
    """``report``/``fail_task`` named a task id that is not in the store.

    A subclass of :class:`~converge.errors.InvalidTransition` (hence ``ValueError``)
    and of ``LookupError``.
    """


def illegal(task: Task, action: str, message: str, *, agent_id: str | None = None) -> InvalidTransition:
    """An :class:`InvalidTransition` carrying ``task_id``, ``state``, ``transition`` and ``agent_id`` attributes."""
    err = InvalidTransition(message)
    err.task_id = task.id  # type: ignore[attr-defined]
    err.state = task.state  # type: ignore[attr-defined]
    err.transition = action  # type: ignore[attr-defined]
    err.agent_id = agent_id  # type: ignore[attr-defined]
    return err


def not_found(task_id: str, action: str) -> TaskNotFound:
    err = TaskNotFound(f"cannot {action} task {task_id}: no such task in the store")
    err.task_id = task_id  # type: ignore[attr-defined]
    err.state = None  # type: ignore[attr-defined]
    err.transition = action  # type: ignore[attr-defined]
    err.agent_id = None  # type: ignore[attr-defined]
    return err


_NEEDS_ASSIGNEE = frozenset({"report", "fail"})


def check(task: Task, action: str, agent_id: str | None = None) -> TaskState:
    """Return the target state of ``action`` on ``task``, or raise :class:`InvalidTransition`.

    A terminal task refuses everything. ``report`` (and ``fail`` when an
    ``agent_id`` is given) must come from the task's assignee; the message then
    keeps the reference's wording "Agent <id> not authorized for task <id>".
    """
    sources, target = TRANSITIONS[action]
    state = task.state
    if state.is_terminal:
        raise illegal(
            task, action, f"cannot {action} task {task.id}: it is already {state.value} (a terminal state)",
            agent_id=agent_id,
        )
    if action in _NEEDS_ASSIGNEE and agent_id is not None and task.assigned_to != agent_id:
        holder = f"assigned to {task.assigned_to}" if task.assigned_to else "not claimed by anyone"
        raise illegal(
            task, action,
            f"Agent {agent_id} not authorized for task {task.id}: it is {state.value} and {holder}; attempted {action}",
            agent_id=agent_id,
        )
    if state not in sources:
        raise illegal(
            task, action,
            f"cannot {action} task {task.id}: it is {state.value}"
            f" ({action} is allowed from {', '.join(sorted(s.value for s in sources))})",
            agent_id=agent_id,
        )
    return target


__all__ = ["TRANSITIONS", "TaskNotFound", "check", "illegal", "not_found"]
