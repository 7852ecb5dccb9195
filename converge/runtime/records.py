"""Frozen records of what one runtime iteration did."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OK = "ok"
IGNORED = "ignored"
REJECTED = "rejected"
DENIED = "denied"
FAILED = "failed"
DROPPED = "dropped"


@dataclass(frozen=True)
class DecisionOutcome:
    """What happened to one decision.

    Attributes:
        decision: the decision as executed.
        status: ``"ok"``; ``"ignored"`` (nothing configured to carry it out — the
            detail says what is missing); ``"rejected"`` (a manager or protocol said
            no, e.g. a claim on a task that is not pending); ``"denied"`` (safety or
            rate-limit policy); ``"failed"`` (an exception; ``error`` holds it);
            ``"dropped"`` (removed by a hook or a person before execution).
        detail: a human-readable reason.
        error: ``"<ExceptionType>: <message>"`` when the status is ``failed``.
        result: a value the execution produced (a tool result, a claim's bool, ...).
        duration_sec: execution time.
    """

    decision: Any
    status: str
    detail: str = ""
    error: str | None = None
    result: Any = None
    duration_sec: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass(frozen=True)
class StepRecord:
    """One decide/execute iteration of an :class:`~converge.runtime.AgentRuntime`.

    ``tasks`` holds the live task objects the agent was shown (their state may
    have moved on since); ``task_ids`` is the list of ids at the time.

    Attributes:
        agent_id: the agent's id.
        step: 1-based iteration number of this runtime.
        started_at: wall-clock start (``time.time()``).
        messages: messages consumed from the inbox.
        tasks / task_ids: visible pending tasks shown to ``decide``.
        proposed: decisions as ``decide`` returned them (all tool rounds).
        decisions: decisions after hooks (approve/edit/drop), as executed.
        outcomes: one :class:`DecisionOutcome` per executed or dropped decision.
        error: ``"<Type>: <message>"`` when decide or a hook raised.
        error_phase: where ``error`` happened (``"decide"``, ``"hook:before_decide"``, ...).
        timings: seconds per phase (``poll``, ``decide``, ``execute``, ``total``).
        usage: token/cost records the agent reported for this step.
        tool_rounds: number of decide calls (ReAct rounds).
        idle: True when there was no message and no task, so decide was not called.
    """

    agent_id: str
    step: int
    started_at: float
    messages: tuple[Any, ...] = ()
    tasks: tuple[Any, ...] = ()
    task_ids: tuple[str, ...] = ()
    proposed: tuple[Any, ...] = ()
    decisions: tuple[Any, ...] = ()
    outcomes: tuple[DecisionOutcome, ...] = ()
    error: str | None = None
    error_phase: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    usage: tuple[Any, ...] = ()
    tool_rounds: int = 0
    idle: bool = False

    @property
    def duration_sec(self) -> float:
        return self.timings.get("total", 0.0)

    @property
    def ok(self) -> bool:
        return self.error is None and all(o.status not in (FAILED,) for o in self.outcomes)

    @property
    def cost_usd(self) -> float:
        return float(sum(getattr(u, "cost_usd", 0.0) or 0.0 for u in self.usage))

    @property
    def tokens(self) -> int:
        return int(sum((getattr(u, "input_tokens", 0) or 0) + (getattr(u, "output_tokens", 0) or 0) for u in self.usage))


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


__all__ = ["DecisionOutcome", "StepRecord"]
