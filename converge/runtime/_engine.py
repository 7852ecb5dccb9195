"""The step engine of ``AgentRuntime``: one decide/execute iteration, its hooks and its accounting.

``AgentRuntime`` (``converge.runtime.loop``) owns the lifecycle, the listener and
manual mode; this mixin holds what a single ``step()`` does, so the two read apart.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import operator
import time
from collections.abc import Callable
from typing import Any

from converge.core.decisions import CreatePool, InvokeTool, JoinPool, LeavePool, SendMessage
from converge.core.message import Message
from converge.observability.tracing import trace
from converge.runtime.hooks import HookContext
from converge.runtime.records import DROPPED, DecisionOutcome, StepRecord, describe_error

logger = logging.getLogger("converge.runtime")

_POOL_DECISIONS = (JoinPool, LeavePool, CreatePool)


class StepEngine:
    """Mixin: requires the attributes ``AgentRuntime.__init__`` sets."""

    # mypy: attributes provided by AgentRuntime
    agent: Any
    async def step(self) -> StepRecord:
        """Run exactly one iteration to completion and return its record.

        Safe to call while the loop runs (iterations are serialised) and in
        manual mode. Never raises for agent, hook or handler errors — they are
        on the record; cancellation propagates.
        """
        return await self._locked_step(asyncio.current_task())

    async def _locked_step(self, task: asyncio.Task[Any] | None) -> StepRecord:
        lock = self._step_lock
        await lock.acquire()  # not "async with": two fewer coroutine frames per step
        try:
            self._step_task = task
            with trace("runtime.step", agent_id=self.agent.id):
                record = await self._step_once()
        finally:
            self._step_task = None
            lock.release()
        self.history.append(record)
        for fn in self._hooks["on_step"]:
            await self._call_hook(fn, "on_step", record)
        return record

    async def _step_once(self) -> StepRecord:
        clock = time.perf_counter
        t0 = clock()
        self.step_count += 1
        n = self.step_count
        started = time.time()
        messages = self.inbox.poll(self.batch_size)
        if len(messages) >= self.batch_size:
            self.scheduler.notify()  # more may be queued: no waiting for the next step
        tasks = self._tasks_view.visible()
        timings = {"poll": clock() - t0}
        if not messages and not tasks:
            self._housekeeping()
            timings["total"] = clock() - t0
            return StepRecord(self.agent.id, n, started, timings=timings, idle=True)
        ctx = HookContext(self, self.agent.id, n, messages=messages, tasks=tasks)
        if hasattr(self.agent, "on_tick"):
            self.agent.on_tick(messages, tasks)
        proposed: list[Any] = []
        executed: list[Any] = []
        outcomes: list[DecisionOutcome] = []
        observations: list[dict[str, Any]] = []
        usage: list[Any] = []
        rounds = max(1, self.max_tool_loop_iterations)
        error = phase = None
        decide_time = exec_time = 0.0
        hooks = self._hooks
        for round_no in range(rounds):
            ctx.tool_round = round_no
            if hooks["before_decide"] and not await self._run_phase("before_decide", ctx):
                error, phase = describe_error(ctx.error), ctx.phase
                break
            td = clock()
            try:
                with trace("agent.decide"):
                    decisions = await self._decide(messages, tasks, observations)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                decide_time += clock() - td
                error, phase = describe_error(exc), "decide"
                await self._fail(ctx, "decide", exc)
                break
            decide_time += clock() - td
            if self._drain_errors is not None:
                # errors the agent reported instead of raising (e.g. malformed LLM output): on the record too
                for reported in self._drain_errors() or ():
                    if error is None:
                        error, phase = describe_error(reported), "decide:output"
                    await self._fail(ctx, "decide:output", reported)
            if self._drain_usage is not None:
                usage.extend(self._drain_usage() or ())
                ctx.usage = usage
            decisions = list(decisions or [])
            proposed.extend(decisions)
            ctx.decisions = decisions
            if (hooks["after_decide"] and not await self._run_phase("after_decide", ctx)) or (
                hooks["before_execute"] and not await self._run_phase("before_execute", ctx)
            ):
                error, phase = describe_error(ctx.error), ctx.phase
                break
            final = ctx.decisions
            if final is not decisions:  # a hook replaced the list: record what it left out
                outcomes.extend(_dropped(decisions, final))
            if final:
                final = self._prepare_outgoing(final)
                te = clock()
                with trace("executor.execute"):
                    results = await self._execute(final)
                exec_time += clock() - te
            else:  # nothing to execute: no executor call and no executor.execute span
                results = []
            executed.extend(final)
            outcomes.extend(results)
            ctx.outcomes = results
            if hooks["after_execute"]:
                await self._run_phase("after_execute", ctx)
            for d in final:
                if isinstance(d, _POOL_DECISIONS):
                    self._tasks_view.invalidate_pools()
                    break
            if self.tool_registry is None or round_no + 1 >= rounds:
                break
            tool_results = [o for o in results if isinstance(o.decision, InvokeTool)]
            if not tool_results:
                break
            observations = observations + [_observation(o) for o in tool_results]
        self._housekeeping()
        timings.update(decide=decide_time, execute=exec_time, total=clock() - t0)
        self._account(timings["total"], usage, error)
        return StepRecord(
            agent_id=self.agent.id,
            step=n,
            started_at=started,
            messages=tuple(messages),
            tasks=tuple(tasks),
            task_ids=_task_ids(tasks),
            proposed=tuple(proposed),
            decisions=tuple(executed),
            outcomes=tuple(outcomes),
            error=error,
            error_phase=phase,
            timings=timings,
            usage=tuple(usage),
            tool_rounds=ctx.tool_round + 1,
        )

    async def _execute(self, decisions: list[Any]) -> list[DecisionOutcome]:
        if not decisions:
            return []
        results = await self.executor.execute(decisions) if self.executor is not None else None
        if isinstance(results, list) and len(results) == len(decisions):
            return results
        return [DecisionOutcome(d, "ok", "handed to custom executor") for d in decisions]

    def _prepare_outgoing(self, decisions: list[Any]) -> list[Any]:
        """Sign unsigned outgoing messages; apply fallback pre-send hooks."""
        out = []
        sign = self.sign_outgoing and getattr(getattr(self.agent, "identity", None), "private_key", None) is not None
        pre_send = self._hooks["on_fallback_pre_send"] if self.fallback_mode else ()
        for d in decisions:
            msg = d.message if isinstance(d, SendMessage) else d if isinstance(d, Message) else None
            if msg is None:
                out.append(d)
                continue
            for fn in pre_send:
                msg = fn(msg)
                if msg is None:
                    break
            if msg is None:
                continue
            if sign and not msg.signature:
                msg = self.agent.sign_message(msg) if hasattr(self.agent, "sign_message") else msg.sign(self.agent.identity)
            out.append(SendMessage(msg) if isinstance(d, SendMessage) else msg)
        return out

    # --------------------------------------------------------------- hooks
    async def _run_phase(self, phase: str, ctx: HookContext) -> bool:
        """Run the hooks of ``phase``; False when one raised (already recorded)."""
        fns = self._hooks[phase]
        if not fns:
            return True
        ctx.phase = phase
        for fn in fns:
            try:
                result = fn(ctx)
                if inspect.isawaitable(result):
                    result = await result
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._fail(ctx, f"hook:{phase}", exc)
                return False
            if result is not None and phase in ("after_decide", "before_execute"):
                ctx.decisions = list(result)
        return True

    async def _call_hook(self, fn: Callable[..., Any], phase: str, arg: Any) -> None:
        try:
            result = fn(arg)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._record_error(f"hook:{phase}", exc)

    async def _fail(self, ctx: HookContext, phase: str, exc: BaseException) -> None:
        self._record_error(phase, exc)
        ctx.error, ctx.phase = exc, phase
        for fn in self._hooks["on_error"]:
            try:
                result = fn(ctx)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception as hook_exc:
                logger.error("agent %s: on_error hook failed: %s", self.agent.id[:12], hook_exc, exc_info=True)

    def _record_error(self, phase: str, exc: BaseException) -> None:
        logger.error("agent %s: error in %s: %s", self.agent.id[:12], phase, exc, exc_info=exc)
        self.recent_errors.append((time.time(), phase, describe_error(exc)))
        self._count("runtime_errors_total", labels={"phase": phase})

    def _count(self, name: str, *, labels: dict[str, Any] | None = None) -> None:
        if self.metrics_collector is not None:
            self.metrics_collector.inc(name, labels=labels)

    def _account(self, total: float, usage: list[Any], error: str | None) -> None:
        mc = self.metrics_collector
        if mc is None:
            return
        mc.inc("runtime_steps_total")
        mc.observe("runtime_step_seconds", total)
        if error is not None:
            mc.inc("runtime_step_errors_total")
        for u in usage:
            labels = {"provider": getattr(u, "provider", "?"), "model": getattr(u, "model", "?")}
            mc.inc("llm_calls_total", labels=labels)
            mc.inc("llm_input_tokens_total", int(getattr(u, "input_tokens", 0) or 0), labels=labels)
            mc.inc("llm_output_tokens_total", int(getattr(u, "output_tokens", 0) or 0), labels=labels)
            mc.inc("llm_cost_usd_total", float(getattr(u, "cost_usd", 0.0) or 0.0), labels=labels)

    # ---------------------------------------------------------- housekeeping
    def _housekeeping(self) -> None:
        now = self.clock()
        if self.checkpoint_store is not None and now - self._last_checkpoint >= self.checkpoint_interval_sec:
            try:
                self.checkpoint_store.put(f"checkpoint:{self.agent.id}", {"last_activity_ts": time.time()})
                self._last_checkpoint = now
            except Exception as exc:  # retried next iteration; recorded so it is visible
                self._record_error("checkpoint", exc)
        if (
            self.claim_ttl_interval_sec is not None
            and self.task_manager is not None
            and now - self._last_release >= self.claim_ttl_interval_sec
        ):
            self._last_release = now
            # The manager's own clock: claimed_at is stamped with it (a shared wall clock across hosts).
            now_ts = getattr(self.task_manager, "clock", time.monotonic)()
            released = self.task_manager.release_expired_claims(now_ts)
            if released:
                self.scheduler.notify()


def _decide_caller(agent: Any) -> Callable[[list[Any], list[Any], list[dict[str, Any]]], Any]:
    """Pick how to call the agent once: adecide, async decide, or sync decide in a worker thread."""
    adecide = getattr(agent, "adecide", None)
    if adecide is not None and inspect.iscoroutinefunction(adecide):
        fn = adecide

        def call_async(messages: list[Any], tasks: list[Any], obs: list[dict[str, Any]]) -> Any:
            return fn(messages, tasks, tool_observations=obs) if obs else fn(messages, tasks)  # the coroutine

        return call_async
    decide = agent.decide
    if inspect.iscoroutinefunction(decide):
        return _decide_caller_async(decide)

    async def call_sync(messages: list[Any], tasks: list[Any], obs: list[dict[str, Any]]) -> Any:
        if obs:
            return await asyncio.to_thread(decide, messages, tasks, tool_observations=obs)
        return await asyncio.to_thread(decide, messages, tasks)

    return call_sync


def _decide_caller_async(decide: Callable[..., Any]) -> Callable[..., Any]:
    def call(messages: list[Any], tasks: list[Any], obs: list[dict[str, Any]]) -> Any:
        return decide(messages, tasks, tool_observations=obs) if obs else decide(messages, tasks)  # the coroutine

    return call


_get_id = operator.attrgetter("id")


def _task_ids(tasks: list[Any]) -> tuple[str, ...]:
    if not tasks:
        return ()
    try:
        return tuple(map(_get_id, tasks))
    except AttributeError:  # a custom task type without ids
        return tuple([getattr(t, "id", "") for t in tasks])


def _dropped(before: list[Any], after: list[Any]) -> list[DecisionOutcome]:
    kept = {id(d) for d in after}
    return [DecisionOutcome(d, DROPPED, "removed before execution by a hook") for d in before if id(d) not in kept]


def _observation(outcome: DecisionOutcome) -> dict[str, Any]:
    d = outcome.decision
    obs: dict[str, Any] = {"tool_name": d.tool_name, "params": d.params}
    if outcome.ok:
        obs["result"] = outcome.result
    else:
        obs["error"] = outcome.error or outcome.detail
    return obs
