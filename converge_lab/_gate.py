"""The runtime hook the lab attaches to each agent: journal, breakpoints, held decisions."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from converge_lab._journal import HIT, PENDING, STEP
from converge_lab.breakpoints import BreakEvent, Hit, matches

if TYPE_CHECKING:
    from converge_lab.controller import AgentHandle, Lab


@dataclass
class Hold:
    """A phase held at a breakpoint, waiting for a person."""

    phase: str
    step: int
    hit: Hit
    messages: list[Any]
    tasks: list[Any]
    decisions: list[Any]
    future: asyncio.Future[list[Any] | None] = field(repr=False, default=None)  # type: ignore[assignment]


class LabGate:
    """One per agent. Records steps and checks breakpoints at the three phases."""

    def __init__(self, lab: Lab, handle: AgentHandle) -> None:
        self.lab = lab
        self.handle = handle
        self.hold: Hold | None = None

    # -- runtime hook phases ----------------------------------------------------
    def on_arrival(self, ctx: Any) -> None:
        """Checks ``message_received`` breakpoints; attached through :class:`ArrivalWatch` only while one exists."""
        if not self.lab._breakpoints:
            return
        event = self._event("message_received", ctx.step, [ctx.message], [], [], 0.0)
        hit = self._first_hit(event)
        if hit is not None:
            # The message still enters the inbox; the agent stops stepping so a person can look.
            self.handle.runtime.pause()
            self.lab._journal.emit(HIT, hit)

    async def before_decide(self, ctx: Any) -> None:
        if not self.lab._breakpoints:
            return
        event = self._event("before_decide", ctx.step, ctx.messages, ctx.tasks, [], self.handle.cost_usd)
        hit = self._first_hit(event)
        if hit is not None:
            await self._hold(hit, ctx.step, ctx.messages, ctx.tasks, [])

    async def before_execute(self, ctx: Any) -> list[Any] | None:
        step_cost = sum(getattr(u, "cost_usd", 0.0) or 0.0 for u in getattr(ctx, "usage", ()) or ())
        if not self.lab._breakpoints:
            return None
        event = self._event("before_execute", ctx.step, ctx.messages, ctx.tasks, ctx.decisions,
                            self.handle.cost_usd + step_cost)
        hit = self._first_hit(event)
        if hit is None:
            return None
        return await self._hold(hit, ctx.step, ctx.messages, ctx.tasks, list(ctx.decisions))

    def on_step(self, record: Any) -> None:
        self.handle._account(record)
        self.lab._journal.steps.append(record)
        self.lab._journal.emit(STEP, record)

    # -- internals -------------------------------------------------------------------
    def _event(self, phase: str, step: int, messages: list[Any], tasks: list[Any], decisions: list[Any],
               cost: float) -> BreakEvent:
        return BreakEvent(self.handle.id, self.handle.name, phase, step, list(messages), list(tasks), list(decisions), cost)

    def _first_hit(self, event: BreakEvent) -> Hit | None:
        for bp in list(self.lab._breakpoints):
            reason = matches(bp, event, self.lab._name_of)
            if reason is not None:
                bp.hits += 1
                hit = Hit(bp.id, event.agent_id, event.phase, event.step, reason, time.time())
                self.lab._journal.hits.append(hit)
                return hit
        return None

    async def _hold(self, hit: Hit, step: int, messages: list[Any], tasks: list[Any], decisions: list[Any]) -> list[Any] | None:
        runtime = self.handle.runtime
        runtime.pause()  # after the person continues, the agent stays paused until resumed or stepped
        hold = Hold(hit.phase, step, hit, list(messages), list(tasks), decisions)
        hold.future = asyncio.get_running_loop().create_future()
        self.hold = hold
        self.lab._journal.emit(HIT, hit)
        self.lab._journal.emit(PENDING, self.handle)
        try:
            return await hold.future
        finally:
            self.hold = None
            self.lab._journal.emit(PENDING, self.handle)

    def release(self, decisions: list[Any] | None) -> None:
        hold = self.hold
        if hold is not None and not hold.future.done():
            hold.future.set_result(decisions)

    def cancel(self) -> None:
        hold = self.hold
        if hold is not None and not hold.future.done():
            hold.future.cancel()


class ArrivalWatch:
    """The ``on_message_received`` hook of one agent, attached only while a
    ``message_received`` breakpoint exists: without it the runtime may hand
    messages straight to the inbox (no listener hop)."""

    def __init__(self, gate: LabGate) -> None:
        self.gate = gate

    def on_message_received(self, ctx: Any) -> None:
        self.gate.on_arrival(ctx)
