"""Breakpoints and held phases of a lab: ``break_on``, ``pending``, ``edit``, ``drop``, ``approve``.

A mixin of :class:`~converge_lab.controller.Lab`; it relies on the lab's
``_handles``, ``_breakpoints``, ``_journal``, ``handle`` and ``_select``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from converge_lab._journal import STATE
from converge_lab.breakpoints import Breakpoint, LabError

if TYPE_CHECKING:
    from converge_lab.controller import AgentHandle


class BreakpointControl:
    """Mixin holding the breakpoint API of :class:`~converge_lab.controller.Lab`."""

    _breakpoints: list[Breakpoint]
    _handles: dict[str, Any]
    _journal: Any
    handle: Callable[[Any], Any]
    _select: Callable[[Any], list[Any]]

    def break_on(self, predicate: Callable[[Any], bool] | None = None, *, phase: str = "before_execute",
                 agent: Any = None, **filters: Any) -> Breakpoint:
        """Add a breakpoint. See :class:`~converge_lab.breakpoints.Breakpoint` for the filters.

        Example: ``lab.break_on(decision_type="SendMessage", recipient="bob")``,
        ``lab.break_on(cost_above=0.01)``, ``lab.break_on(phase="message_received", payload_key="offer")``.
        """
        agent_key = self.handle(agent).id if agent is not None else None
        bp = Breakpoint(phase=phase, agent=agent_key, predicate=predicate, **filters)
        self._breakpoints.append(bp)
        self._sync_arrival_watch()
        self._journal.emit(STATE, bp)
        return bp

    def _sync_arrival_watch(self) -> None:
        """Attach each agent's arrival hook while a message_received breakpoint exists, detach it otherwise."""
        wanted = any(b.phase == "message_received" for b in self._breakpoints)
        for h in self._handles.values():
            attached = h.arrival_watch in h.runtime.runtime_hooks
            if wanted and not attached:
                h.runtime.add_hook(h.arrival_watch)
            elif attached and not wanted:
                h.runtime.remove_hook(h.arrival_watch)

    @property
    def breakpoints(self) -> list[Breakpoint]:
        return list(self._breakpoints)

    def remove_breakpoint(self, bp: Breakpoint | int) -> None:
        bp_id = bp.id if isinstance(bp, Breakpoint) else bp
        self._breakpoints = [b for b in self._breakpoints if b.id != bp_id]
        self._sync_arrival_watch()
        self._journal.emit(STATE, bp)

    def clear_breakpoints(self) -> None:
        self._breakpoints = []
        self._sync_arrival_watch()
        self._journal.emit(STATE, None)

    def held(self) -> list[AgentHandle]:
        """Agents currently held at a breakpoint."""
        return [h for h in self._handles.values() if h.gate.hold is not None]

    def _hold_of(self, agent: Any) -> Any:
        handles = self._select(agent) if agent is not None else self.held()
        for h in handles:
            if h.gate.hold is not None:
                return h
        name = self.handle(agent).name if agent is not None else "no agent"
        raise LabError(f"{name} is not held at a breakpoint")

    def pending(self, agent: Any = None) -> list[Any]:
        """The decisions a held agent is about to execute (a copy; change them with edit/drop)."""
        h = self._hold_of(agent)
        return list(h.gate.hold.decisions)

    def hold_info(self, agent: Any = None) -> dict[str, Any]:
        """Phase, step, reason, messages, tasks and pending decisions of a held agent."""
        h = self._hold_of(agent)
        hold = h.gate.hold
        return {"agent": h.name, "phase": hold.phase, "step": hold.step, "reason": hold.hit.reason,
                "breakpoint": hold.hit.breakpoint_id, "messages": list(hold.messages), "tasks": list(hold.tasks),
                "decisions": list(hold.decisions)}

    def edit(self, agent: Any, index: int, decision: Any) -> None:
        """Replace pending decision ``index`` of a held agent."""
        hold = self._hold_of(agent).gate.hold
        if not 0 <= index < len(hold.decisions):
            raise IndexError(f"pending decision index {index} out of range 0..{len(hold.decisions) - 1}")
        hold.decisions[index] = decision

    def drop(self, agent: Any, index: int | None = None) -> None:
        """Drop pending decision ``index`` (all of them when ``index`` is None)."""
        hold = self._hold_of(agent).gate.hold
        if index is None:
            hold.decisions.clear()
        elif not 0 <= index < len(hold.decisions):
            raise IndexError(f"pending decision index {index} out of range 0..{len(hold.decisions) - 1}")
        else:
            del hold.decisions[index]

    def approve(self, agent: Any = None) -> None:
        """Continue a held agent with its (possibly edited) pending decisions.

        The agent stays paused afterwards; ``lab.resume(agent)`` lets it run on.
        """
        h = self._hold_of(agent)
        hold = h.gate.hold
        h.gate.release(list(hold.decisions) if hold.phase == "before_execute" else None)
