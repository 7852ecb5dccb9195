"""``Lab``: the in-notebook controller of a network of agents.

A lab owns a network with embedded defaults — an isolated local transport
registry, a store (``MemoryStore`` unless one is passed, e.g. ``SQLiteStore``),
``PoolManager``, ``TaskManager``, ``DiscoveryService``, an identity registry,
a ``MetricsCollector`` and a span exporter — and spawns every agent's
``AgentRuntime`` as a task on the running loop (the kernel's loop in Jupyter),
so cells return at once and runtimes keep running between cells.

Use it as ``async with Lab() as lab:`` or call ``await lab.aclose()``; no task
outlives the lab.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from converge.coordination.pool_manager import PoolManager
from converge.coordination.task_manager import TaskManager
from converge.core.identity import Identity
from converge.core.message import Message
from converge.core.topic import Topic
from converge.extensions.storage.memory import MemoryStore
from converge.network.discovery import DiscoveryService
from converge.network.identity_registry import IdentityRegistry
from converge.network.transport.local import LocalTransport, LocalTransportRegistry
from converge.observability.metrics import MetricsCollector
from converge.observability.tracing import InMemorySpanExporter, add_span_exporter, remove_span_exporter
from converge.runtime import AgentRuntime, StepRecord
from converge_lab._control import BreakpointControl
from converge_lab._gate import ArrivalWatch, LabGate
from converge_lab._journal import SPAN, STATE, Journal
from converge_lab._sync import run_sync
from converge_lab.breakpoints import Breakpoint, LabError

logger = logging.getLogger("converge_lab")

LAB_SENDER = "lab"


class AgentHandle:
    """A lab's view of one agent: its runtime, transport, name, state and spend."""

    def __init__(self, lab: Lab, agent: Any, runtime: AgentRuntime, name: str) -> None:
        self.lab = lab
        self.agent = agent
        self.runtime = runtime
        self.name = name
        self.gate = LabGate(lab, self)
        self.arrival_watch = ArrivalWatch(self.gate)
        self.cost_usd = 0.0
        self.tokens = 0
        self.errors = 0
        self.last_step_at: float | None = None
        self.stopped = False

    @property
    def id(self) -> str:
        return self.agent.id

    @property
    def state(self) -> str:
        """``"held"`` (at a breakpoint), ``"paused"``, ``"running"`` or ``"stopped"``."""
        if self.stopped:
            return "stopped"
        if self.gate.hold is not None:
            return "held"
        return "paused" if self.runtime.manual else "running"

    def _account(self, record: StepRecord) -> None:
        self.cost_usd += record.cost_usd
        self.tokens += record.tokens
        self.last_step_at = record.started_at
        if record.error is not None:
            self.errors += 1

    def __repr__(self) -> str:
        return f"<AgentHandle {self.name} {self.id[:12]}… {self.state}>"


class _SpanSink(InMemorySpanExporter):
    """Keeps spans in the lab journal (bounded) and tells views."""

    def __init__(self, journal: Journal) -> None:
        super().__init__(maxlen=journal.retention)
        self._journal = journal

    def export(self, span: Any, duration_sec: float) -> None:
        self._journal.spans.append(span)
        self._journal.emit(SPAN, span)


class Lab(BreakpointControl):
    """The workbench controller.

    Args:
        store: shared store for pools, tasks and discovery (default ``MemoryStore()``).
        retention: how many messages, steps, spans and hits the lab keeps (ring buffers).
        metrics: a ``MetricsCollector`` to use (default: a new one).
        runtime_defaults: keyword options applied to every ``AgentRuntime`` the lab creates.
    """

    def __init__(self, store: Any = None, *, retention: int = 2000, metrics: MetricsCollector | None = None,
                 runtime_defaults: dict[str, Any] | None = None) -> None:
        self.store = store if store is not None else MemoryStore()
        self.metrics = metrics if metrics is not None else MetricsCollector()
        self.registry = LocalTransportRegistry.isolated()
        self.identities = IdentityRegistry()
        self.pool_manager = PoolManager(self.store)
        self.task_manager = TaskManager(self.store)
        self.discovery = DiscoveryService(store=self.store)
        self.runtime_defaults = {"receive_timeout_sec": 5.0, **(runtime_defaults or {})}
        self._journal = Journal(retention)
        self._spans = _SpanSink(self._journal)
        self._handles: dict[str, AgentHandle] = {}
        self._breakpoints: list[Breakpoint] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open = False
        self._closed = False
        self._frames: Any = None
        self._views: Any = None

    # ----------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> Lab:
        await self.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def open(self) -> Lab:
        """Bind to the running loop and start observing (idempotent; ``add`` calls it)."""
        if self._closed:
            raise LabError("this lab is closed; create a new Lab()")
        if self._open:
            return self
        self._loop = asyncio.get_running_loop()
        self.registry.add_tap(self._on_delivered)
        self.registry.add_drop_listener(self._on_drop)
        add_span_exporter(self._spans)
        self._open = True
        return self

    async def aclose(self) -> None:
        """Stop every runtime, release held phases and detach. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for h in self._handles.values():
            h.runtime.pause()  # nobody starts a new step while the others stop
            h.gate.cancel()
        for h in list(self._handles.values()):
            await h.runtime.stop()
            h.stopped = True
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            try:
                await t
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # already shown in the dashboard's output area
                logger.debug("lab task ended with %s", exc)
        self._tasks.clear()
        if self._open:
            self.registry.remove_tap(self._on_delivered)
            self.registry.remove_drop_listener(self._on_drop)
            remove_span_exporter(self._spans)
        if self._views is not None:
            self._views.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _spawn(self, coro: Any, *, on_error: Callable[[BaseException], None] | None = None) -> asyncio.Task[Any]:
        """Run ``coro`` as a task owned by the lab (cancelled on close); errors go to ``on_error``."""
        if self._loop is None:
            raise LabError("the lab is not open: use `async with Lab() as lab` or `await lab.open()`")
        task = self._loop.create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                self._journal.add_error("task", f"{type(exc).__name__}: {exc}")
                if on_error is not None:
                    on_error(exc)

        task.add_done_callback(done)
        return task

    # ------------------------------------------------------------------- agents
    async def add(self, agent: Any, *, paused: bool = False, name: str | None = None,
                  topics: Iterable[Any] = (), **runtime_options: Any) -> AgentHandle:
        """Spawn ``agent``'s runtime on the running loop and return at once.

        Args:
            agent: an ``Agent`` (anything with ``id`` and ``decide``/``adecide``).
            paused: start with the step loop paused (only ``lab.step`` decides).
            name: a short display name (default: the agent's ``name`` attribute or its id prefix).
            topics: topic namespaces to subscribe this agent to on the lab's transport
                (the agent's own ``topics`` are subscribed too).
            **runtime_options: ``AgentRuntime`` options (``executor_kwargs``, ``tool_registry``...).
                ``transport=`` replaces the lab's local transport (e.g. a ``TcpTransport`` to reach
                agents in other processes); the lab then sees that agent's steps, but not the
                traffic on that transport.
        """
        await self.open()
        if agent.id in self._handles:
            raise LabError(f"agent {agent.id[:12]}… is already in this lab")
        options = {**self.runtime_defaults, **runtime_options}
        transport = options.pop("transport", None) or LocalTransport(
            agent.id, registry=self.registry, metrics_collector=self.metrics)
        hooks = list(options.pop("runtime_hooks", []) or [])
        runtime = AgentRuntime(
            agent, transport,
            pool_manager=options.pop("pool_manager", self.pool_manager),
            task_manager=options.pop("task_manager", self.task_manager),
            metrics_collector=options.pop("metrics_collector", self.metrics),
            discovery_service=options.pop("discovery_service", self.discovery),
            manual=paused, **options,
        )
        handle = AgentHandle(self, agent, runtime, name or getattr(agent, "name", None) or agent.id[:8])
        if any(h.name == handle.name for h in self._handles.values()):
            handle.name = f"{handle.name}-{agent.id[:4]}"
        runtime.add_hook(handle.gate)
        if any(b.phase == "message_received" for b in self._breakpoints):
            runtime.add_hook(handle.arrival_watch)
        for h in hooks:
            runtime.add_hook(h)
        identity = getattr(agent, "identity", None)
        if identity is not None:
            self.identities.register(agent.id, identity.public_key)
        self._handles[agent.id] = handle
        await runtime.start()
        wanted = [*topics, *(getattr(agent, "topics", None) or [])]
        if wanted and isinstance(transport, LocalTransport):
            transport.subscribe(*[t for t in wanted if isinstance(t, (str, Topic, dict))])
        self._journal.emit(STATE, handle)
        return handle

    async def remove(self, agent: Any) -> None:
        """Stop one agent's runtime and forget it."""
        handle = self.handle(agent)
        handle.gate.cancel()
        await handle.runtime.stop()
        handle.stopped = True
        del self._handles[handle.id]
        self._journal.emit(STATE, handle)

    @property
    def agents(self) -> list[AgentHandle]:
        return list(self._handles.values())

    def handle(self, agent: Any) -> AgentHandle:
        """Find an agent by handle, agent object, id, id prefix or name."""
        if isinstance(agent, AgentHandle):
            return agent
        key = getattr(agent, "id", agent)
        if key in self._handles:
            return self._handles[key]
        if isinstance(key, str):
            found = [h for h in self._handles.values() if h.name == key] or [
                h for h in self._handles.values() if h.id.startswith(key)]
            if len(found) == 1:
                return found[0]
        raise LabError(f"no agent {key!r} in this lab (agents: {', '.join(h.name for h in self._handles.values()) or 'none'})")

    def _select(self, agent: Any) -> list[AgentHandle]:
        return list(self._handles.values()) if agent is None else [self.handle(agent)]

    def _name_of(self, agent_id: str) -> str:
        h = self._handles.get(agent_id)
        return h.name if h is not None else (agent_id[:8] if agent_id else "")

    # ------------------------------------------------------------------ control
    def pause(self, agent: Any = None) -> None:
        """Pause automatic stepping (all agents when ``agent`` is None). Messages keep arriving."""
        for h in self._select(agent):
            h.runtime.pause()
            self._journal.emit(STATE, h)

    def resume(self, agent: Any = None) -> None:
        """Resume automatic stepping."""
        for h in self._select(agent):
            h.runtime.resume()
            self._journal.emit(STATE, h)

    async def step(self, agent: Any = None, n: int = 1) -> list[StepRecord]:
        """Run ``n`` decide/execute iterations of one agent (or of every agent, in turn).

        A running agent is paused first: stepping means manual control.

        Raises:
            LabError: the agent is held at a breakpoint (approve or drop first).
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        records = []
        handles = self._select(agent)
        for h in handles:
            if h.gate.hold is not None:
                raise LabError(f"agent {h.name} is held at a breakpoint ({h.gate.hold.hit.reason}); "
                               "call lab.approve() or lab.drop() first")
            if not h.runtime.manual:
                h.runtime.pause()
                self._journal.emit(STATE, h)
        for _ in range(n):
            for h in handles:
                records.append(await h.runtime.step())
        return records

    def busy(self) -> bool:
        """True while any unpaused agent has queued messages or is mid-step."""
        for h in self._handles.values():
            if h.stopped or h.gate.hold is not None:
                continue
            if len(h.runtime.inbox) and not h.runtime.manual:
                return True
            if h.runtime._step_lock.locked():
                return True
        return any(q.qsize() for q in self.registry.queues.values())

    async def run_until_idle(self, timeout: float = 10.0, *, settle: float = 0.05) -> bool:
        """Wait until no running agent has work for ``settle`` seconds.

        Returns:
            True when idle, False when ``timeout`` passed first.
        """
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if self.busy():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                return True
            await asyncio.sleep(0.005)
        return False

    async def send(self, message: Message | None = None, *, to: Any = None, payload: dict[str, Any] | None = None,
                   topics: Iterable[Any] = (), sender: Any = None, sign: bool = True) -> Message:
        """Inject a message from outside the network.

        Either pass a ready ``message``, or ``to=`` (agent, id or name; omit to
        broadcast) with ``payload=`` and ``topics=``. With ``sender=`` (an agent
        in the lab) the message is signed with that agent's identity; otherwise
        it comes from ``"lab"`` unsigned.
        """
        await self.open()
        if message is None:
            recipient = self.handle(to).id if to is not None else None
            message = Message(sender=LAB_SENDER, recipient=recipient, payload=dict(payload or {}),
                              topics=[t if isinstance(t, Topic) else Topic(str(t)) for t in topics])
        if sender is not None:
            h = self.handle(sender)
            if sign and getattr(h.agent, "identity", None) is not None:
                message = message.sign(h.agent.identity)
        targets = [message.recipient] if message.recipient else [
            a for a in self.registry.queues if a != message.sender]
        delivered = []
        for agent_id in targets:
            queue = self.registry.get_queue(agent_id)
            if queue is None:
                self._journal.add_message(message, (), "undeliverable", f"recipient {agent_id[:12]} is not in the lab")
                raise LabError(f"cannot deliver: no agent {agent_id!r} in this lab")
            queue.put_nowait(message)
            delivered.append(agent_id)
        self._journal.add_message(message, tuple(delivered), "injected")
        return message

    # ------------------------------------------------------------- sync forms
    def step_sync(self, agent: Any = None, n: int = 1) -> list[StepRecord]:
        """``lab.step`` for cells without ``await`` (applies nest-asyncio on first use in a kernel)."""
        return run_sync(self.step(agent, n), self._loop)

    def run_until_idle_sync(self, timeout: float = 10.0) -> bool:
        return run_sync(self.run_until_idle(timeout), self._loop)

    def send_sync(self, message: Message | None = None, **kwargs: Any) -> Message:
        return run_sync(self.send(message, **kwargs), self._loop)

    def add_sync(self, agent: Any, **kwargs: Any) -> AgentHandle:
        return run_sync(self.add(agent, **kwargs), self._loop)

    # ------------------------------------------------------------ observation
    def _on_delivered(self, message: Message, delivered_to: list[str]) -> None:
        self._journal.add_message(message, tuple(delivered_to), "delivered")

    def _on_drop(self, message: Message | None, reason: str, detail: str) -> None:
        # "rejected": the message itself was refused: signature_rejected, unverified and the
        # guards' replay_rejected / timestamp_rejected / payload_size_rejected /
        # payload_depth_rejected; "undeliverable": it could not be routed, encoded or sent;
        # "dropped": anything else (a hook dropped it or raised).
        if "rejected" in reason or "unverified" in reason:
            status = "rejected"
        elif reason in ("unknown_recipient", "no_route", "send_failed", "encode_failed"):
            status = "undeliverable"
        else:
            status = "dropped"
        if message is not None:
            self._journal.add_message(message, (), status, f"{reason}: {detail}")
        else:
            self._journal.add_error(f"transport:{reason}", detail)

    @property
    def journal(self) -> Journal:
        return self._journal

    @property
    def frames(self) -> Any:
        """pandas DataFrame snapshots: ``lab.frames.agents()``, ``.messages()``, ``.steps()``..."""
        if self._frames is None:
            from converge_lab.frames import Frames

            self._frames = Frames(self)
        return self._frames

    @property
    def views(self) -> Any:
        """Individual widgets: ``lab.views.messages()``, ``.tasks()``, ``.trace()``..."""
        if self._views is None:
            from converge_lab.views import Views

            self._views = Views(self)
        return self._views

    def dashboard(self) -> Any:
        """One widget with controls and a tab per view."""
        return self.views.dashboard()

    def new_identity(self) -> Identity:
        return Identity.generate()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._open else "new"
        return f"<Lab {state}: {len(self._handles)} agents, {len(self._breakpoints)} breakpoints>"
