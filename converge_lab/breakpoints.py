"""Breakpoints: conditions on messages, decisions, tasks and cost that pause an agent."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from converge.core.decisions import SendMessage
from converge.core.message import Message

PHASES = ("message_received", "before_decide", "before_execute")

_ids = itertools.count(1)


class LabError(RuntimeError):
    """A lab operation that cannot be done in the current state (names the agent and the state)."""


@dataclass
class Hit:
    """One time a breakpoint matched."""

    breakpoint_id: int
    agent_id: str
    phase: str
    step: int
    reason: str
    at: float


@dataclass
class Breakpoint:
    """A condition checked at one phase of every (or one) agent's iteration.

    Field filters (all given filters must match; each is checked against the
    objects of the phase: the received message, the messages and tasks about to
    be decided, or the decisions about to be executed):

    * ``decision_type`` — class or class name of a decision (before_execute);
    * ``sender`` / ``recipient`` — agent id, agent name or id prefix of a message
      (or of a SendMessage decision's message);
    * ``topic`` — a topic namespace on the message;
    * ``payload_key`` — a key present in the message payload;
    * ``task_state`` — a task state name (``"pending"``...) among visible tasks;
    * ``cost_above`` — the agent's cumulative cost in USD (including this step) exceeds it;
    * ``predicate`` — ``fn(event) -> bool`` with the :class:`BreakEvent`.
    """

    phase: str = "before_execute"
    agent: str | None = None
    decision_type: Any = None
    sender: str | None = None
    recipient: str | None = None
    topic: str | None = None
    payload_key: str | None = None
    task_state: str | None = None
    cost_above: float | None = None
    predicate: Callable[[Any], bool] | None = None
    enabled: bool = True
    id: int = field(default_factory=lambda: next(_ids))
    hits: int = 0

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}; got {self.phase!r}")
        if self.decision_type is not None and self.phase != "before_execute":
            raise ValueError("decision_type filters apply at phase 'before_execute'")

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def describe(self, names: Callable[[str], str] | None = None) -> str:
        """One line, e.g. ``#3 @before_execute: agent='alice', decision_type=SendMessage``.

        Args:
            names: maps an agent id to a display name (the lab passes its own).
        """
        shown = {"agent": names(self.agent) if (names and self.agent) else self.agent}
        parts = [f"{k}={shown.get(k, v)!r}" for k in ("agent", "decision_type", "sender", "recipient", "topic", "payload_key",
                                         "task_state", "cost_above") if (v := getattr(self, k)) is not None]
        if isinstance(self.decision_type, type):
            parts = [p if not p.startswith("decision_type=") else f"decision_type={self.decision_type.__name__}" for p in parts]
        if self.predicate is not None:
            parts.append(f"predicate={getattr(self.predicate, '__name__', 'fn')}")
        return f"#{self.id} @{self.phase}: " + (", ".join(parts) or "always")


@dataclass
class BreakEvent:
    """What a breakpoint sees: the phase's messages, tasks, decisions and the agent's cost."""

    agent_id: str
    agent_name: str
    phase: str
    step: int
    messages: list[Any]
    tasks: list[Any]
    decisions: list[Any]
    cost_usd: float


def _messages_of(event: BreakEvent) -> list[Message]:
    out = list(event.messages)
    for d in event.decisions:
        if isinstance(d, SendMessage):
            out.append(d.message)
        elif isinstance(d, Message):
            out.append(d)
    return out


def _who(value: str, names: Callable[[str], str]) -> Callable[[str | None], bool]:
    return lambda agent_id: bool(agent_id) and (agent_id == value or names(agent_id) == value or agent_id.startswith(value))


def matches(bp: Breakpoint, event: BreakEvent, names: Callable[[str], str]) -> str | None:
    """The reason ``bp`` matches ``event``, or None."""
    if not bp.enabled or bp.phase != event.phase:
        return None
    if bp.agent is not None and not _who(bp.agent, names)(event.agent_id):
        return None
    reasons = []
    if bp.decision_type is not None:
        want = bp.decision_type
        hit = [d for d in event.decisions if (type(d).__name__ == want if isinstance(want, str) else isinstance(d, want))]
        if not hit:
            return None
        reasons.append(f"decision {type(hit[0]).__name__}")
    msgs = _messages_of(event)
    for attr in ("sender", "recipient"):
        want = getattr(bp, attr)
        if want is not None:
            pred = _who(want, names)
            if not any(pred(getattr(m, attr)) for m in msgs):
                return None
            reasons.append(f"{attr} {want}")
    if bp.topic is not None:
        if not any(getattr(t, "namespace", None) == bp.topic for m in msgs for t in m.topics):
            return None
        reasons.append(f"topic {bp.topic}")
    if bp.payload_key is not None:
        if not any(isinstance(m.payload, dict) and bp.payload_key in m.payload for m in msgs):
            return None
        reasons.append(f"payload key {bp.payload_key}")
    if bp.task_state is not None:
        if not any(getattr(getattr(t, "state", None), "value", None) == bp.task_state for t in event.tasks):
            return None
        reasons.append(f"task state {bp.task_state}")
    if bp.cost_above is not None:
        if not event.cost_usd > bp.cost_above:
            return None
        reasons.append(f"cost ${event.cost_usd:.6g} > ${bp.cost_above:.6g}")
    if bp.predicate is not None:
        if not bp.predicate(event):
            return None
        reasons.append("predicate")
    return ", ".join(reasons) or "always"
