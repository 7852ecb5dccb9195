"""Runtime hooks: observe (and hold, or rewrite) each phase of a runtime iteration.

Every method is optional; the runtime looks hooks up once per phase. Any may be
``async``; an awaited hook holds that phase until it returns — this is how the
lab pauses, breaks, and lets a person approve, edit or drop decisions.

Phases, in order:

* ``on_message_received(ctx)`` — the listener accepted a message (``ctx.message``),
  before it enters the inbox.
* ``before_decide(ctx)`` — ``ctx.messages`` and ``ctx.tasks`` are about to be shown to decide.
* ``after_decide(ctx)`` — ``ctx.decisions`` holds what decide returned. Return a list to replace it.
* ``before_execute(ctx)`` — last chance: return a list to replace ``ctx.decisions``
  (decisions left out are recorded as ``dropped``).
* ``after_execute(ctx)`` — ``ctx.outcomes`` holds the results.
* ``on_error(ctx)`` — ``ctx.error`` / ``ctx.phase`` describe a failure in decide, execute or a hook.
* ``on_step(record)`` — the finished :class:`~converge.runtime.records.StepRecord`.

Compatibility with the reference: ``on_fallback_pre_send(message)`` (return
``None`` to drop) and ``on_unverified_drop(context)``.

An exception raised by a hook is recorded on the step (``error_phase`` is
``"hook:<name>"``), logged and counted; the runtime keeps serving.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

PHASES = (
    "on_message_received",
    "before_decide",
    "after_decide",
    "before_execute",
    "after_execute",
    "on_error",
    "on_step",
)


@dataclass
class HookContext:
    """Mutable view of the iteration in progress, passed to every hook."""

    runtime: Any
    agent_id: str
    step: int = 0
    phase: str = ""
    message: Any = None
    messages: list[Any] = field(default_factory=list)
    tasks: list[Any] = field(default_factory=list)
    decisions: list[Any] = field(default_factory=list)
    outcomes: list[Any] = field(default_factory=list)
    error: BaseException | None = None
    tool_round: int = 0
    usage: list[Any] = field(default_factory=list)


@runtime_checkable
class RuntimeHook(Protocol):
    """Marker protocol; implement any subset of the phase methods listed in the module docstring."""


__all__ = ["HookContext", "PHASES", "RuntimeHook"]
