"""``AgentRuntime``: one engine, ``step()``, and a loop over it.

``await runtime.step()`` runs exactly one iteration — drain an inbox batch,
list visible tasks, decide, execute — and returns a frozen
:class:`~converge.runtime.records.StepRecord`. ``start()`` runs the transport
listener plus ``while running: wait_for_work(); step()``; with ``manual=True``
(or :meth:`AgentRuntime.pause`) the listener keeps filling the inbox but only
explicit ``step()`` calls decide.

Improvements over the reference (its section 13): an exception in ``decide``,
a hook or a handler is recorded on the step, logged, counted and passed to the
``on_error`` hooks — the runtime keeps serving and ``stop()`` never re-raises
it; a full batch schedules the next step at once (no one-second cliff);
``max_tool_loop_iterations=0`` still calls ``decide`` once; tools in the ReAct
loop go through the executor (allowlist, timeout and metrics apply); outgoing
messages are signed by default (``sign_outgoing``); ``stop()`` before
``start()`` does nothing.

This module holds construction, lifecycle, the listener and manual mode; what
one ``step()`` does lives in the :class:`~converge.runtime._engine.StepEngine` mixin.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from converge.core.message import Message
from converge.network.network import AgentNetwork, build_descriptor
from converge.runtime._engine import StepEngine, _decide_caller
from converge.runtime._tasks import TaskView
from converge.runtime.executor import StandardExecutor
from converge.runtime.hooks import PHASES, HookContext
from converge.runtime.inbox import Inbox
from converge.runtime.records import StepRecord
from converge.runtime.scheduler import Scheduler

logger = logging.getLogger("converge.runtime")



class AgentRuntime(StepEngine):
    """Runs one agent: a transport listener, an inbox, and the decide/execute step loop.

    Positional parameters follow the reference order. Keyword-only additions:
    ``manual`` (start with the step loop paused), ``batch_size`` (messages per
    step, default 10), ``max_visible_tasks`` (pending tasks shown to ``decide``
    per step, highest priority first, default 100; ``None`` shows every one as
    the reference did, which makes each step cost O(backlog)), ``sign_outgoing``
    (sign unsigned outgoing messages with the agent's identity, default True),
    ``history_size`` (StepRecords kept in :attr:`history`), ``clock`` (monotonic
    clock for intervals).

    Store calls of the task/pool managers run on the loop; keep them short
    (memory, SQLite in WAL mode, Redis) — they are single key operations.
    """

    def __init__(
        self,
        agent: Any,
        transport: Any,
        pool_manager: Any = None,
        task_manager: Any = None,
        metrics_collector: Any = None,
        discovery_service: Any = None,
        agent_descriptor: Any = None,
        identity_registry: Any = None,
        replay_log: Any = None,
        tool_registry: Any = None,
        checkpoint_store: Any = None,
        checkpoint_interval_sec: float = 60.0,
        inbox: Any = None,
        inbox_kwargs: dict[str, Any] | None = None,
        scheduler: Any = None,
        executor_factory: Callable[..., Any] | None = None,
        executor_kwargs: dict[str, Any] | None = None,
        health_check: Callable[[], bool] | None = None,
        ready_check: Callable[[], bool] | None = None,
        receive_timeout_sec: float | None = 30.0,
        claim_ttl_interval_sec: float | None = None,
        task_poll_interval_sec: float | None = None,
        max_tool_loop_iterations: int = 5,
        scheduler_timeout_sec: float = 1.0,
        task_refresh_interval_sec: float | None = 0.5,
        pool_cache_ttl_sec: float | None = 1.0,
        *,
        network: Any = None,
        ops_server: Any = None,
        runtime_hooks: list[Any] | None = None,
        allow_network_transport_mismatch: bool = False,
        manual: bool = False,
        batch_size: int = 10,
        max_visible_tasks: int | None = 100,
        sign_outgoing: bool = True,
        history_size: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if network is not None and not allow_network_transport_mismatch and network.transport is not transport:
            raise ValueError("Injected network transport does not match runtime transport")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_visible_tasks is not None and (isinstance(max_visible_tasks, bool) or max_visible_tasks < 1):
            raise ValueError(f"max_visible_tasks must be >= 1 or None, got {max_visible_tasks!r}")
        self.agent = agent
        self.transport = transport
        self.pool_manager = pool_manager
        self.task_manager = task_manager
        self.metrics_collector = metrics_collector
        self.discovery_service = discovery_service
        self.agent_descriptor = agent_descriptor
        self.identity_registry = identity_registry
        self.replay_log = replay_log
        self.tool_registry = tool_registry
        self.checkpoint_store = checkpoint_store
        self.checkpoint_interval_sec = checkpoint_interval_sec
        self.inbox = inbox if inbox is not None else Inbox(**(inbox_kwargs or {}))
        self.scheduler = scheduler if scheduler is not None else Scheduler()
        self.executor_factory = executor_factory
        self.executor_kwargs = dict(executor_kwargs or {})
        self.health_check = health_check
        self.ready_check = ready_check
        self.receive_timeout_sec = receive_timeout_sec
        self.claim_ttl_interval_sec = claim_ttl_interval_sec
        self.task_poll_interval_sec = task_poll_interval_sec
        self.max_tool_loop_iterations = max_tool_loop_iterations
        self.scheduler_timeout_sec = scheduler_timeout_sec
        self.task_refresh_interval_sec = task_refresh_interval_sec
        self.pool_cache_ttl_sec = pool_cache_ttl_sec
        self.network = network
        self.ops_server = ops_server
        self.runtime_hooks: list[Any] = list(runtime_hooks or [])
        self.allow_network_transport_mismatch = allow_network_transport_mismatch
        self.batch_size = batch_size
        self.max_visible_tasks = max_visible_tasks
        self.sign_outgoing = sign_outgoing
        self.clock = clock
        self.running = False
        self.executor: Any = None
        self.step_count = 0
        self.history: deque[StepRecord] = deque(maxlen=history_size)
        self.recent_errors: deque[tuple[float, str, str]] = deque(maxlen=50)
        self.coordination_metrics = self._wire_coordination_metrics()
        self._tasks_view = TaskView(self)
        self._manual = manual
        self._auto = asyncio.Event()
        if not manual:
            self._auto.set()
        self._step_lock = asyncio.Lock()
        self._listener_task: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._step_task: asyncio.Task[Any] | None = None
        self._started = False
        self._last_checkpoint = 0.0
        self._last_release = 0.0
        self._hooks: dict[str, list[Callable[..., Any]]] = {}
        self._rebuild_hooks()
        self._decide = _decide_caller(agent)
        self._drain_usage = getattr(agent, "drain_usage", None)
        self._drain_errors = getattr(agent, "drain_errors", None)
        if hasattr(self.inbox, "add_drop_listener"):
            self.inbox.add_drop_listener(self._on_inbox_drop)

    # ------------------------------------------------------------------ wiring
    def _wire_coordination_metrics(self) -> Any:
        if self.metrics_collector is None:
            return None
        from converge.observability.coordination_metrics import CoordinationMetrics

        cm = CoordinationMetrics(self.metrics_collector)
        for manager in (self.pool_manager, self.task_manager):
            if manager is not None and getattr(manager, "coordination_metrics", None) is None:
                manager.coordination_metrics = cm
        return cm

    def add_hook(self, hook: Any) -> None:
        """Attach a runtime hook (takes effect from the next phase)."""
        self.runtime_hooks.append(hook)
        self._rebuild_hooks()

    def remove_hook(self, hook: Any) -> None:
        if hook in self.runtime_hooks:
            self.runtime_hooks.remove(hook)
            self._rebuild_hooks()

    def _rebuild_hooks(self) -> None:
        names = (*PHASES, "on_fallback_pre_send", "on_unverified_drop")
        self._hooks = {
            name: [fn for h in self.runtime_hooks if callable(fn := getattr(h, name, None))] for name in names
        }

    @property
    def agent_id(self) -> str:
        return self.agent.id

    @property
    def fallback_mode(self) -> bool:
        """True when the runtime lacks a task or pool manager (reference "fallback" execution)."""
        return self.task_manager is None or self.pool_manager is None

    def _build_executor(self, network: Any) -> Any:
        common = {
            "metrics_collector": self.metrics_collector,
            "replay_log": self.replay_log,
            "tool_registry": self.tool_registry,
            "coordination_metrics": self.coordination_metrics,
        }
        if self.executor_factory is not None:
            return self.executor_factory(self.agent.id, network, self.task_manager, self.pool_manager, **common)
        # executor_kwargs may override the runtime-wide values (the reference raised TypeError on a repeat)
        return StandardExecutor(self.agent.id, network, self.task_manager, self.pool_manager,
                                **{**common, **self.executor_kwargs})

    # ---------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> AgentRuntime:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def start(self, *, manual: bool | None = None) -> None:
        """Start the transport, the listener and the step loop (idempotent).

        Args:
            manual: if given, start with the loop paused (True) or running (False).
        """
        if self.running:
            return
        if manual is not None:
            self.pause() if manual else self.resume()
        self.running = True
        self._started = True
        if hasattr(self.agent, "on_start"):
            self.agent.on_start()
        await self.transport.start()
        if self.metrics_collector is not None and getattr(self.transport, "metrics_collector", "absent") is None:
            self.transport.metrics_collector = self.metrics_collector
        if self.ops_server is not None:
            await _maybe_async(getattr(self.ops_server, "astart", None) or self.ops_server.start)
        if self.discovery_service is not None:
            self.discovery_service.register(self.agent_descriptor or build_descriptor(self.agent))
        if self.network is None:
            self.network = AgentNetwork(self.transport)
        self.executor = self._build_executor(self.network)
        # Without verification the transport may hand messages straight to the inbox (no listener hop);
        # the listener still serves whatever the sink declines.
        set_sink = getattr(self.transport, "set_delivery_sink", None)
        self._sink_installed = bool(
            self.identity_registry is None and set_sink is not None and type(self).deliver is AgentRuntime.deliver
            and set_sink(self._deliver_now))
        self._listener_task = asyncio.create_task(self._listen(), name=f"converge-listen-{self.agent.id[:8]}")
        self._loop_task = asyncio.create_task(self._run_loop(), name=f"converge-loop-{self.agent.id[:8]}")
        if self.task_poll_interval_sec is not None and self.task_manager is not None:
            self._poll_task = asyncio.create_task(self._task_poll(), name=f"converge-poll-{self.agent.id[:8]}")

    async def stop(self) -> None:
        """Stop everything this runtime started. Idempotent; a no-op before ``start()``.

        A phase held by a hook (e.g. a lab breakpoint) is cancelled. Errors of
        the loop were already recorded on their steps and are not re-raised.
        """
        if not self._started:
            return
        self._started = False
        self.running = False
        self.scheduler.notify()
        self._auto.set()
        tasks = [t for t in (self._listener_task, self._loop_task, self._poll_task, self._step_task) if t is not None]
        current = asyncio.current_task()
        for t in tasks:
            if t is not current:
                t.cancel()
        for t in tasks:
            if t is not current:
                try:
                    await t
                except asyncio.CancelledError:
                    if current is not None and current.cancelling():
                        raise
                except Exception as exc:  # already logged where it happened; keep stopping
                    logger.error("agent %s: background task %s ended with %s", self.agent.id[:12], t.get_name(), exc)
        self._listener_task = self._loop_task = self._poll_task = self._step_task = None
        if getattr(self, "_sink_installed", False):
            self.transport.set_delivery_sink(None)
            self._sink_installed = False
        await self.transport.stop()
        if self.ops_server is not None:
            await _maybe_async(getattr(self.ops_server, "astop", None) or self.ops_server.stop)
        if self.discovery_service is not None:
            self.discovery_service.unregister(self.agent.id)
        if hasattr(self.agent, "on_stop"):
            self.agent.on_stop()

    aclose = stop

    def is_healthy(self) -> bool:
        if self.health_check is not None:
            return bool(self.health_check())
        loop = self._loop_task
        return not (loop is not None and loop.done())

    def is_ready(self) -> bool:
        if self.ready_check is not None:
            return bool(self.ready_check())
        return self.running

    # ------------------------------------------------------------ manual mode
    @property
    def manual(self) -> bool:
        """True when the step loop is paused and only explicit ``step()`` calls decide."""
        return self._manual

    def pause(self) -> None:
        """Stop automatic stepping after the current step; the listener keeps receiving."""
        self._manual = True
        self._auto.clear()

    def resume(self) -> None:
        """Resume automatic stepping."""
        self._manual = False
        self._auto.set()
        self.scheduler.notify()

    # ---------------------------------------------------------------- listener
    async def _listen(self) -> None:
        transport, registry, timeout = self.transport, self.identity_registry, self.receive_timeout_sec
        fast = type(self).deliver is AgentRuntime.deliver  # a subclass's deliver() always runs
        while self.running:
            try:
                if registry is not None:
                    msg = await transport.receive_verified(registry, timeout=timeout)
                else:
                    msg = await transport.receive(timeout=timeout)
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken transport: record, back off briefly, keep listening
                self._record_error("receive", exc)
                await asyncio.sleep(0.05)
                continue
            if msg is None:
                self._count("messages_rejected_total", labels={"reason": "unverified"})
                for fn in self._hooks["on_unverified_drop"]:
                    await self._call_hook(fn, "on_unverified_drop", {"agent_id": self.agent.id})
                continue
            if not (fast and self._deliver_now(msg)):
                await self.deliver(msg)

    def _deliver_now(self, message: Message) -> bool:
        """:meth:`deliver` without a coroutine when nothing observes the message before the inbox.

        False (nothing done) when a replay log or an ``on_message_received`` hook
        must see it, or the inbox has no room now; :meth:`deliver` then runs.
        Also the transport's delivery sink (see :meth:`start`): it may run inside
        the sender's task, so it must never await.
        """
        if self.replay_log is not None or self._hooks["on_message_received"] or not self.running:
            return False
        try_push = getattr(self.inbox, "try_push", None)
        if try_push is None or not try_push(message):
            return False
        mc = self.metrics_collector
        if mc is not None:
            mc.inc("messages_received")
        self.scheduler.notify()
        return True

    async def deliver(self, message: Message) -> bool:
        """Accept ``message`` as if the transport had received it (counts, replay, hooks, inbox).

        Returns False when the inbox dropped it.
        """
        mc = self.metrics_collector
        if mc is not None:
            mc.inc("messages_received")
        if self.replay_log is not None:
            self.replay_log.record_inbound(message, agent_id=self.agent.id, transport=type(self.transport).__name__)
        if self._hooks["on_message_received"]:
            ctx = HookContext(self, self.agent.id, self.step_count, "on_message_received", message=message)
            for fn in self._hooks["on_message_received"]:
                await self._call_hook(fn, "on_message_received", ctx)
        accepted = await self.inbox.push(message)
        self.scheduler.notify()
        return accepted is not False

    def _on_inbox_drop(self, message: Any) -> None:
        self._count("inbox_dropped_total")

    # --------------------------------------------------------------- step loop
    async def _run_loop(self) -> None:
        scheduler, auto = self.scheduler, self._auto
        while self.running:
            if not auto.is_set():
                await auto.wait()
                continue
            await scheduler.wait_for_work(timeout=self.scheduler_timeout_sec)
            if not self.running or not auto.is_set():
                continue
            await self._locked_step(self._loop_task)

    async def _task_poll(self) -> None:
        previous: set[str] | None = None
        while self.running:
            await asyncio.sleep(self.task_poll_interval_sec)
            try:
                ids = {t.id for t in self._tasks_view.visible(force_refresh=True)}
            except Exception as exc:  # store hiccup: record and retry next interval
                self._record_error("task_poll", exc)
                continue
            if previous is not None and ids != previous:
                self.scheduler.notify()
            previous = ids


async def _maybe_async(fn: Callable[[], Any]) -> None:
    if inspect.iscoroutinefunction(fn):
        await fn()
    else:
        await asyncio.to_thread(fn)


__all__ = ["AgentRuntime", "Inbox"]
