"""Executors carry out decisions. ``StandardExecutor`` handles every built-in decision type.

Differences from the reference (its section 13), on purpose:

* every decision gets a :class:`~converge.runtime.records.DecisionOutcome`;
  a decision whose manager or protocol is not configured is ``ignored`` with
  the reason (and counted in ``decisions_ignored_total{reason=...}``), never lost silently;
* a bare :class:`~converge.core.message.Message` is sent like ``SendMessage``;
* tools always run off the event loop (``asyncio.to_thread``; coroutine tools are awaited),
  with ``tool_timeout_sec`` enforced by ``asyncio.timeout``;
* ``custom_handlers`` match by exact type first, then by the decision's base classes;
  handlers may be sync or async.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from converge.core.decisions import (
    AcceptProposal,
    ClaimTask,
    CreatePool,
    Decision,
    Delegate,
    InvokeTool,
    JoinPool,
    LeavePool,
    Propose,
    RejectProposal,
    ReportTask,
    RevokeDelegation,
    SendMessage,
    SubmitBid,
    SubmitTask,
    Vote,
)
from converge.core.message import Message
from converge.errors import ConvergeError
from converge.network.network import AgentNetwork
from converge.runtime.records import DENIED, FAILED, IGNORED, OK, REJECTED, DecisionOutcome, describe_error

logger = logging.getLogger("converge.runtime.executor")


class Executor(Protocol):
    """Anything with ``async execute(decisions)``. Returning a list of outcomes is optional."""

    async def execute(self, decisions: list[Decision]) -> Any:
        """Carry out ``decisions`` in order."""


class StandardExecutor:
    """Executes built-in decisions against managers, protocols, tools and the network.

    All constructor arguments are kept as same-named attributes. ``task_manager``
    and ``pool_manager`` may be ``None`` (fallback mode): decisions that need them
    are reported as ignored.
    """

    def __init__(
        self,
        agent_id: str,
        network: Any,
        task_manager: Any,
        pool_manager: Any,
        metrics_collector: Any = None,
        bidding_protocols: dict[str, Any] | None = None,
        negotiation_protocol: Any = None,
        delegation_protocol: Any = None,
        votes_store: Any = None,
        safety_policy: tuple[Any, Any] | None = None,
        replay_log: Any = None,
        tool_registry: Any = None,
        custom_handlers: dict[type, Callable[[Any], Any]] | None = None,
        tool_timeout_sec: float | None = None,
        tool_allowlist: set[str] | None = None,
        reflect_result: Callable[[str, Any], Any | Awaitable[Any]] | None = None,
        rate_limiter: Any = None,
        coordination_metrics: Any = None,
    ) -> None:
        self.agent_id = agent_id
        self.network = network
        self.task_manager = task_manager
        self.pool_manager = pool_manager
        self.metrics_collector = metrics_collector
        self.bidding_protocols = bidding_protocols if bidding_protocols is not None else {}
        self.negotiation_protocol = negotiation_protocol
        self.delegation_protocol = delegation_protocol
        self.votes_store = votes_store
        self.safety_policy = safety_policy
        self.replay_log = replay_log
        self.tool_registry = tool_registry
        self.custom_handlers = custom_handlers if custom_handlers is not None else {}
        self.tool_timeout_sec = tool_timeout_sec
        self.tool_allowlist = tool_allowlist
        self.reflect_result = reflect_result
        self.rate_limiter = rate_limiter
        self.coordination_metrics = coordination_metrics
        self._transport_name = type(getattr(network, "transport", None)).__name__ if network is not None else None
        self._dispatch: dict[type, Callable[[Any], Awaitable[DecisionOutcome]]] = {
            SendMessage: self._send_message,
            Message: self._send_message,
            SubmitTask: self._submit_task,
            ClaimTask: self._claim_task,
            ReportTask: self._report_task,
            JoinPool: self._join_pool,
            LeavePool: self._leave_pool,
            CreatePool: self._create_pool,
            SubmitBid: self._submit_bid,
            Vote: self._vote,
            Propose: self._propose,
            AcceptProposal: self._accept,
            RejectProposal: self._reject,
            Delegate: self._delegate,
            RevokeDelegation: self._revoke,
            InvokeTool: self._invoke_tool,
        }

    # -- public ----------------------------------------------------------
    async def execute(self, decisions: list[Any]) -> list[DecisionOutcome]:
        """Execute ``decisions`` sequentially; one failure never stops the rest."""
        outcomes = []
        for d in decisions:  # a plain loop: an async comprehension is one more coroutine frame
            outcomes.append(await self.execute_one(d))
        return outcomes

    async def execute_one(self, decision: Any) -> DecisionOutcome:
        """Execute one decision and describe what happened. Never raises (except cancellation)."""
        start = time.perf_counter()
        try:
            denied = self._check_safety(decision) if self.safety_policy else None
            if denied is not None:
                outcome = denied
            else:
                if self.metrics_collector is not None:
                    self.metrics_collector.inc("decisions_executed")
                outcome = await self._dispatch_one(decision)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # recorded on the outcome, logged and counted: the runtime keeps serving
            expected = isinstance(exc, ConvergeError)  # our typed errors say enough; others get a traceback
            logger.error("agent %s: %s failed: %s", self.agent_id[:12], type(decision).__name__, exc, exc_info=not expected)
            self._inc("decisions_failed_total", labels={"type": type(decision).__name__})
            outcome = DecisionOutcome(decision, FAILED, f"{type(decision).__name__} raised", describe_error(exc))
        if outcome.status == IGNORED:
            logger.warning("agent %s: %s ignored: %s", self.agent_id[:12], type(decision).__name__, outcome.detail)
            self._inc("decisions_ignored_total", labels={"type": type(decision).__name__})
        return _with_duration(outcome, time.perf_counter() - start)

    # -- plumbing ----------------------------------------------------------
    def _inc(self, name: str, value: int = 1, *, labels: dict[str, Any] | None = None) -> None:
        mc = self.metrics_collector
        if mc is not None:
            if labels is None:
                mc.inc(name, value)
            else:
                mc.inc(name, value, labels=labels)

    def _dispatch_one(self, decision: Any) -> Awaitable[DecisionOutcome]:
        """The awaitable that carries out ``decision`` (a built-in handler's coroutine when one applies)."""
        handler = self._dispatch.get(type(decision))
        if handler is None:
            for base, fn in self._dispatch.items():
                if isinstance(decision, base):
                    handler = fn
                    break
        if handler is not None and type(decision) not in self.custom_handlers:
            return handler(decision)
        return self._run_custom(decision)

    async def _run_custom(self, decision: Any) -> DecisionOutcome:
        custom = self._custom_handler_for(decision)
        if custom is None:
            return DecisionOutcome(decision, IGNORED, f"unknown decision type {type(decision).__name__}: no custom handler")
        result = custom(decision)
        if inspect.isawaitable(result):
            result = await result
        return DecisionOutcome(decision, OK, "custom handler", result=result)

    def _custom_handler_for(self, decision: Any) -> Callable[[Any], Any] | None:
        handlers = self.custom_handlers
        if not handlers:
            return None
        for cls in type(decision).__mro__:
            if cls in handlers:
                return handlers[cls]
        return None

    def _check_safety(self, decision: Any) -> DecisionOutcome | None:
        if not self.safety_policy:
            return None
        limits, action_policy = self.safety_policy
        name = type(decision).__name__
        if action_policy is not None and not action_policy.is_allowed(name):
            self._inc("decisions_denied_total", labels={"reason": "action_policy"})
            return DecisionOutcome(decision, DENIED, f"action policy does not allow {name}")
        if limits is not None and isinstance(decision, (SubmitTask, ClaimTask)):
            from converge.policy.safety import validate_safety

            task = decision.task if isinstance(decision, SubmitTask) else self._get_task(decision.task_id)
            constraints = getattr(task, "constraints", None) or {}
            cpu = float(constraints.get("cpu", constraints.get("max_cpu_tokens", 0)))
            mem = int(constraints.get("memory_mb", constraints.get("max_memory_mb", 0)))
            if not validate_safety(limits, cpu, mem):
                self._inc("decisions_denied_total", labels={"reason": "resource_limits"})
                return DecisionOutcome(decision, DENIED, f"resource limits exceeded (cpu={cpu}, memory_mb={mem})")
        return None

    def _get_task(self, task_id: str) -> Any:
        return self.task_manager.get_task(task_id) if self.task_manager is not None else None

    # -- messages ----------------------------------------------------------
    async def _send_message(self, decision: Any) -> DecisionOutcome:
        message = decision.message if isinstance(decision, SendMessage) else decision
        if self.network is None:
            return DecisionOutcome(decision, IGNORED, "no network configured")
        if self.rate_limiter is not None and not self.rate_limiter.allow_message(message, direction="egress"):
            self._inc("rate_limit_egress_dropped_total")
            return DecisionOutcome(decision, DENIED, "egress rate limit")
        network = self.network
        # A plain AgentNetwork only forwards to its transport: call the transport without that frame.
        await (network.transport.send(message) if type(network) is AgentNetwork else network.send(message))
        if self.replay_log is not None:
            self.replay_log.record_outbound(message, agent_id=self.agent_id, transport=self._transport_name)
        self._inc("messages_sent")
        return DecisionOutcome(decision, OK, f"sent {message.id}")

    # -- tasks and pools -----------------------------------------------------
    async def _submit_task(self, d: SubmitTask) -> DecisionOutcome:
        if self.task_manager is None:
            return DecisionOutcome(d, IGNORED, "no task manager configured")
        return DecisionOutcome(d, OK, "submitted", result=self.task_manager.submit(d.task))

    async def _claim_task(self, d: ClaimTask) -> DecisionOutcome:
        if self.task_manager is None:
            return DecisionOutcome(d, IGNORED, "no task manager configured")
        if self.task_manager.claim(self.agent_id, d.task_id):
            return DecisionOutcome(d, OK, "claimed", result=True)
        return DecisionOutcome(d, REJECTED, f"claim refused: task {d.task_id} is missing or not pending", result=False)

    async def _report_task(self, d: ReportTask) -> DecisionOutcome:
        if self.task_manager is None:
            return DecisionOutcome(d, IGNORED, "no task manager configured")
        result = d.result
        if self.reflect_result is not None:
            try:
                out = self.reflect_result(d.task_id, result)
                result = await out if inspect.isawaitable(out) else out
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the reflector is advisory: report the original result
                logger.error("reflect_result failed for task %s: %s; reporting the original result", d.task_id, exc)
        self.task_manager.report(self.agent_id, d.task_id, result)
        return DecisionOutcome(d, OK, "reported", result=result)

    async def _join_pool(self, d: JoinPool) -> DecisionOutcome:
        if self.pool_manager is None:
            return DecisionOutcome(d, IGNORED, "no pool manager configured")
        joined = (self.pool_manager.join_pool(self.agent_id, d.pool_id, d.context) if d.context
                  else self.pool_manager.join_pool(self.agent_id, d.pool_id))
        if joined:
            return DecisionOutcome(d, OK, f"joined {d.pool_id}", result=True)
        reason = getattr(self.pool_manager, "last_denial", None) or "missing pool, admission or trust"
        return DecisionOutcome(d, REJECTED, f"join of pool {d.pool_id} refused: {reason}", result=False)

    async def _leave_pool(self, d: LeavePool) -> DecisionOutcome:
        if self.pool_manager is None:
            return DecisionOutcome(d, IGNORED, "no pool manager configured")
        self.pool_manager.leave_pool(self.agent_id, d.pool_id)
        return DecisionOutcome(d, OK, f"left {d.pool_id}")

    async def _create_pool(self, d: CreatePool) -> DecisionOutcome:
        if self.pool_manager is None:
            return DecisionOutcome(d, IGNORED, "no pool manager configured")
        pool = self.pool_manager.create_pool(d.spec)
        return DecisionOutcome(d, OK, f"created {pool.id}", result=pool.id)

    # -- coordination protocols ---------------------------------------------
    async def _submit_bid(self, d: SubmitBid) -> DecisionOutcome:
        protocol = self.bidding_protocols.get(d.auction_id)
        if protocol is None:
            return DecisionOutcome(d, IGNORED, f"no bidding protocol configured for auction {d.auction_id!r}")
        accepted = protocol.submit_bid(self.agent_id, d.amount, d.content)
        return _verdict(d, accepted, "bid accepted", f"auction {d.auction_id} refused the bid (closed)")

    async def _vote(self, d: Vote) -> DecisionOutcome:
        if self.votes_store is None:
            return DecisionOutcome(d, IGNORED, "no votes_store configured")
        votes = self.votes_store.setdefault(d.vote_id, [])
        votes.append((self.agent_id, d.option))
        if hasattr(self.votes_store, "__setitem__") and not isinstance(self.votes_store, dict):
            self.votes_store[d.vote_id] = votes  # store-backed mappings persist on assignment
        return DecisionOutcome(d, OK, f"voted {d.option!r} on {d.vote_id}")

    async def _propose(self, d: Propose) -> DecisionOutcome:
        if self.negotiation_protocol is None:
            return DecisionOutcome(d, IGNORED, "no negotiation_protocol configured")
        ok = self.negotiation_protocol.propose(d.session_id, self.agent_id, d.proposal_content)
        return _verdict(d, ok, "proposed", f"session {d.session_id} refused the proposal")

    async def _accept(self, d: AcceptProposal) -> DecisionOutcome:
        if self.negotiation_protocol is None:
            return DecisionOutcome(d, IGNORED, "no negotiation_protocol configured")
        ok = self.negotiation_protocol.accept(d.session_id, self.agent_id)
        return _verdict(d, ok, "accepted", f"session {d.session_id} refused the acceptance")

    async def _reject(self, d: RejectProposal) -> DecisionOutcome:
        if self.negotiation_protocol is None:
            return DecisionOutcome(d, IGNORED, "no negotiation_protocol configured")
        ok = self.negotiation_protocol.reject(d.session_id, self.agent_id)
        return _verdict(d, ok, "rejected the proposal", f"session {d.session_id} refused the rejection")

    async def _delegate(self, d: Delegate) -> DecisionOutcome:
        if self.delegation_protocol is None:
            return DecisionOutcome(d, IGNORED, "no delegation_protocol configured")
        delegation_id = self.delegation_protocol.delegate(self.agent_id, d.delegatee_id, d.scope)
        return DecisionOutcome(d, OK, f"delegated {delegation_id}", result=delegation_id)

    async def _revoke(self, d: RevokeDelegation) -> DecisionOutcome:
        if self.delegation_protocol is None:
            return DecisionOutcome(d, IGNORED, "no delegation_protocol configured")
        ok = self.delegation_protocol.revoke(d.delegation_id)
        return _verdict(d, ok, "revoked", f"unknown delegation {d.delegation_id}")

    # -- tools -----------------------------------------------------------------
    async def _invoke_tool(self, d: InvokeTool) -> DecisionOutcome:
        if self.tool_registry is None:
            return DecisionOutcome(d, IGNORED, "no tool_registry configured")
        if self.tool_allowlist is not None and d.tool_name not in self.tool_allowlist:
            self._inc("decisions_denied_total", labels={"reason": "tool_allowlist"})
            return DecisionOutcome(d, DENIED, f"tool {d.tool_name!r} is not in the allowlist")
        tool = self.tool_registry.get(d.tool_name)
        if tool is None:
            return DecisionOutcome(d, REJECTED, f"tool {d.tool_name!r} not found")
        try:
            async with asyncio.timeout(self.tool_timeout_sec):
                if inspect.iscoroutinefunction(tool.run):
                    result = await tool.run(d.params)
                else:
                    result = await asyncio.to_thread(tool.run, d.params)
        except TimeoutError:
            self._inc("tools_timed_out_total")
            return DecisionOutcome(d, FAILED, f"tool {d.tool_name!r} timed out after {self.tool_timeout_sec}s",
                                   f"TimeoutError: tool {d.tool_name!r} exceeded {self.tool_timeout_sec}s")
        self._inc("tools_invoked")
        return DecisionOutcome(d, OK, f"tool {d.tool_name} ran", result=result)


def _verdict(decision: Any, ok: Any, yes: str, no: str) -> DecisionOutcome:
    return DecisionOutcome(decision, OK, yes, result=True) if ok else DecisionOutcome(decision, REJECTED, no, result=False)


def _with_duration(outcome: DecisionOutcome, seconds: float) -> DecisionOutcome:
    # Every outcome reaching here was created by this execution and nobody has seen it
    # yet, so the duration is filled in place rather than by copying the frozen record.
    object.__setattr__(outcome, "duration_sec", seconds)
    return outcome


__all__ = ["Executor", "StandardExecutor"]
