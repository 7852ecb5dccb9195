"""In-process transport: agents in one process exchange messages through asyncio queues.

A :class:`LocalTransportRegistry` maps agent ids to queues and topic
namespaces to subscribers. ``LocalTransportRegistry()`` returns the process
default registry (the reference's singleton); :meth:`LocalTransportRegistry.isolated`
returns a fresh, independent one, so two labs or two tests in one process never
see each other's agents. Pass it as ``LocalTransport(agent_id, registry=...)``.

Routing (:meth:`LocalTransport.send`):

1. ``message.recipient`` set → exactly that agent (sending to yourself is
   allowed). An unknown recipient raises :class:`~converge.errors.UndeliverableError`
   and is counted as ``unknown_recipient`` (the reference dropped it silently).
2. else ``message.topics`` non-empty → every agent subscribed to one of the
   topics' namespaces; when **nobody** is subscribed the message is broadcast
   to every registered agent (kept from the reference).
3. else → broadcast to every registered agent.

Without a recipient the sender never receives its own message. The same
``Message`` object is delivered to every receiver (no copy: treat received
messages as read-only). A broadcast that reaches nobody is counted as
``no_route`` and logged; ``send`` then returns an empty list instead of raising.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from converge.core.topic import Topic
from converge.errors import UndeliverableError
from converge.network.transport._queue import ReceiveQueue, install_sink, receive_from
from converge.network.transport.base import DropListener, DropReason, Transport, _NotStartedError, notify_all

if TYPE_CHECKING:
    from converge.core.message import Message

logger = logging.getLogger(__name__)

Tap = Callable[["Message", list[str]], Any]
"""``tap(message, delivered_to)`` — called after every successful local send."""


def _namespace_of(topic: Topic | dict[str, Any] | str) -> str:
    """The namespace of a :class:`Topic`, a topic dict or a bare namespace string."""
    if isinstance(topic, Topic):
        return topic.namespace
    if isinstance(topic, str):
        return topic
    if isinstance(topic, dict) and isinstance(topic.get("namespace"), str):
        return topic["namespace"]
    raise TypeError(f"expected a Topic, a topic dict or a namespace string, got {type(topic).__name__}: {topic!r}")


class LocalTransportRegistry:
    """Agent id → queue, and topic namespace → subscribers, for one group of local agents.

    ``LocalTransportRegistry()`` always returns the process default instance
    (compatible with the reference singleton); use :meth:`isolated` for a
    private registry and :meth:`reset_default` to start the default afresh.

    Attributes:
        queues: registered agent id → its inbox queue.
        topic_subscriptions: agent id → the namespaces it subscribed to.
            Read it freely; change it only through :meth:`subscribe`/:meth:`unsubscribe`.
    """

    _instance: ClassVar[LocalTransportRegistry | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    queues: dict[str, asyncio.Queue[Message]]
    topic_subscriptions: dict[str, set[str]]

    def __new__(cls) -> LocalTransportRegistry:
        instance = cls.__dict__.get("_instance")
        if instance is None:
            with LocalTransportRegistry._instance_lock:
                instance = cls.__dict__.get("_instance")
                if instance is None:
                    instance = cls._fresh()
                    cls._instance = instance
        return instance

    def __init__(self) -> None:
        """State is set up by ``__new__``; constructing never resets the default registry."""

    @classmethod
    def _fresh(cls) -> LocalTransportRegistry:
        self = object.__new__(cls)
        self.queues = {}
        self.topic_subscriptions = {}
        self._by_namespace: dict[str, set[str]] = {}
        self._taps: tuple[Tap, ...] = ()
        self._drop_listeners: tuple[DropListener, ...] = ()
        return self

    @classmethod
    def isolated(cls) -> LocalTransportRegistry:
        """A new registry that shares nothing with the default or any other registry."""
        return cls._fresh()

    @classmethod
    def default(cls) -> LocalTransportRegistry:
        """The process default registry (same as ``LocalTransportRegistry()``)."""
        return cls()

    @classmethod
    def reset_default(cls) -> None:
        """Clear the process default registry and replace it with a fresh one (for tests).

        Transports that still hold the old default keep working among themselves
        but are no longer reachable through the new default.
        """
        with LocalTransportRegistry._instance_lock:
            old = cls.__dict__.get("_instance")
            cls._instance = None
        if old is not None:
            old.clear()

    # -- registration ----------------------------------------------------
    def register(self, agent_id: str, queue: asyncio.Queue[Message]) -> None:
        """Deliver messages for ``agent_id`` into ``queue`` (replaces an earlier registration)."""
        self.queues[agent_id] = queue

    def unregister(self, agent_id: str) -> None:
        """Remove the agent's queue and all its subscriptions; unknown ids are ignored."""
        self.queues.pop(agent_id, None)
        for namespace in self.topic_subscriptions.pop(agent_id, ()):
            self._discard_subscriber(namespace, agent_id)

    def get_queue(self, agent_id: str) -> asyncio.Queue[Message] | None:
        """The queue registered for ``agent_id``, or ``None``."""
        return self.queues.get(agent_id)

    def agents(self) -> list[str]:
        """Ids of the registered agents, in registration order."""
        return list(self.queues)

    # -- subscriptions ---------------------------------------------------
    def subscribe(self, agent_id: str, topic_namespace: Topic | str) -> None:
        """Subscribe ``agent_id`` to a topic namespace (a ``Topic`` counts by its namespace)."""
        namespace = _namespace_of(topic_namespace)
        self.topic_subscriptions.setdefault(agent_id, set()).add(namespace)
        self._by_namespace.setdefault(namespace, set()).add(agent_id)

    def unsubscribe(self, agent_id: str, topic_namespace: Topic | str) -> None:
        """Remove one subscription; unknown agents or namespaces are ignored."""
        namespace = _namespace_of(topic_namespace)
        subs = self.topic_subscriptions.get(agent_id)
        if subs is not None:
            subs.discard(namespace)
            if not subs:
                del self.topic_subscriptions[agent_id]
        self._discard_subscriber(namespace, agent_id)

    def auto_subscribe(self, agent_id: str, topics: Iterable[Topic | dict[str, Any] | str]) -> list[str]:
        """Subscribe ``agent_id`` to the namespace of each topic (e.g. an agent's ``topics``).

        Returns:
            The namespaces subscribed.
        """
        namespaces = [_namespace_of(t) for t in topics]
        for namespace in namespaces:
            self.subscribe(agent_id, namespace)
        return namespaces

    def get_subscribers_for_topics(self, topic_namespaces: Iterable[str]) -> set[str]:
        """Agents subscribed to any of ``topic_namespaces``."""
        result: set[str] = set()
        for namespace in topic_namespaces:
            subs = self._by_namespace.get(namespace)
            if subs:
                result |= subs
        return result

    def _discard_subscriber(self, namespace: str, agent_id: str) -> None:
        subs = self._by_namespace.get(namespace)
        if subs is not None:
            subs.discard(agent_id)
            if not subs:
                del self._by_namespace[namespace]

    def clear(self) -> None:
        """Forget every queue and subscription (taps and drop listeners stay)."""
        self.queues.clear()
        self.topic_subscriptions.clear()
        self._by_namespace.clear()

    # -- observation -----------------------------------------------------
    def add_tap(self, tap: Tap) -> None:
        """Call ``tap(message, delivered_to)`` after every successful send on this registry."""
        self._taps = (*self._taps, tap)

    def remove_tap(self, tap: Tap) -> None:
        """Stop calling ``tap``; no error if it was not registered."""
        self._taps = tuple(t for t in self._taps if t is not tap)

    def add_drop_listener(self, listener: DropListener) -> None:
        """Call ``listener(message, reason, detail)`` for drops by any transport on this registry."""
        self._drop_listeners = (*self._drop_listeners, listener)

    def remove_drop_listener(self, listener: DropListener) -> None:
        """Stop calling ``listener``; no error if it was not registered."""
        self._drop_listeners = tuple(fn for fn in self._drop_listeners if fn is not listener)

    def __repr__(self) -> str:
        return f"<LocalTransportRegistry agents={len(self.queues)} at {id(self):#x}>"


class LocalTransport(Transport):
    """A transport for agents in the same process (see the module docstring for routing).

    Args:
        agent_id: the id messages are addressed to (normally the agent's fingerprint).
        registry: the registry to join; ``None`` means the process default.
        metrics_collector: optional metrics collector for drop counters.
        subscriptions: topic namespaces (or ``Topic`` objects) to subscribe to
            on every :meth:`start`; see also :meth:`for_agent`.

    Attributes:
        agent_id, queue (this agent's unbounded inbox), registry.
    """

    def __init__(
        self,
        agent_id: str,
        *,
        registry: LocalTransportRegistry | None = None,
        metrics_collector: Any = None,
        subscriptions: Iterable[Topic | dict[str, Any] | str] = (),
    ) -> None:
        super().__init__(metrics_collector=metrics_collector)
        self.agent_id = agent_id
        self.registry = registry if registry is not None else LocalTransportRegistry()
        self.queue: asyncio.Queue[Message] = ReceiveQueue()
        self._subscriptions = [_namespace_of(t) for t in subscriptions]
        self._started = False

    @classmethod
    def for_agent(
        cls,
        agent: Any,
        *,
        registry: LocalTransportRegistry | None = None,
        metrics_collector: Any = None,
        auto_subscribe: bool = True,
    ) -> LocalTransport:
        """A transport for ``agent`` (id = ``agent.id``), subscribed to its ``topics`` namespaces."""
        topics = (getattr(agent, "topics", None) or ()) if auto_subscribe else ()
        return cls(agent.id, registry=registry, metrics_collector=metrics_collector, subscriptions=topics)

    @property
    def started(self) -> bool:
        return self._started

    async def start(self) -> None:
        """Register this agent's queue (and its subscriptions). Idempotent."""
        if self._started:
            return
        self.registry.register(self.agent_id, self.queue)
        for namespace in self._subscriptions:
            self.registry.subscribe(self.agent_id, namespace)
        self._started = True

    async def stop(self) -> None:
        """Unregister (dropping subscriptions). Idempotent; safe before ``start``.

        Messages already queued stay in :attr:`queue`.
        """
        if not self._started:
            return
        self._started = False
        if self.registry.get_queue(self.agent_id) is self.queue:
            self.registry.unregister(self.agent_id)

    def subscribe(self, *topics: Topic | dict[str, Any] | str) -> None:
        """Subscribe to topic namespaces now and on every later :meth:`start`."""
        for t in topics:
            namespace = _namespace_of(t)
            if namespace not in self._subscriptions:
                self._subscriptions.append(namespace)
            self.registry.subscribe(self.agent_id, namespace)

    def unsubscribe(self, *topics: Topic | dict[str, Any] | str) -> None:
        """Undo :meth:`subscribe` for these namespaces."""
        for t in topics:
            namespace = _namespace_of(t)
            if namespace in self._subscriptions:
                self._subscriptions.remove(namespace)
            self.registry.unsubscribe(self.agent_id, namespace)

    async def send(self, message: Message) -> list[str]:
        """Deliver ``message`` into the queues of its targets.

        Returns:
            The ids of the agents it was delivered to (empty when a broadcast or
            topic message reached nobody; that case is also counted as ``no_route``).

        Raises:
            UndeliverableError: ``message.recipient`` is not registered on this
                registry (counted as ``unknown_recipient``).
            RuntimeError: the transport is not started.
        """
        if not self._started:
            raise _NotStartedError(f"Transport not started: call start() on LocalTransport {self.agent_id!r} before send()")
        registry = self.registry
        queues = registry.queues
        recipient = message.recipient
        if recipient:
            queue = queues.get(recipient)
            if queue is None:
                detail = f"recipient {recipient!r} is not registered on {registry!r}"
                self._record_drop(message, DropReason.UNKNOWN_RECIPIENT, detail)
                raise UndeliverableError(f"cannot deliver message {message.id}: {detail}")
            queue.put_nowait(message)
            delivered = [recipient]
        else:
            targets: Iterable[str] = queues
            if message.topics:
                subscribers = registry.get_subscribers_for_topics([t.namespace for t in message.topics])
                if subscribers:
                    targets = subscribers
            me = self.agent_id
            delivered = []
            for agent_id in targets:
                if agent_id != me:
                    queue = queues.get(agent_id)
                    if queue is not None:
                        queue.put_nowait(message)
                        delivered.append(agent_id)
            if not delivered:
                self._record_drop(message, DropReason.NO_ROUTE, "no other agent is registered or subscribed")
                return delivered
        if registry._taps:
            notify_all(registry._taps, message, delivered)
        return delivered

    def set_delivery_sink(self, sink: Callable[[Message], bool] | None) -> bool:
        """Hand received messages to ``sink(message) -> bool`` directly while nothing is queued.

        Messages the sink declines (it returns False) are queued for :meth:`receive` as
        usual, so nothing is lost and order is kept. Returns True when installed.
        """
        return install_sink(self.queue, sink)

    async def receive(self, timeout: float | None = None) -> Message:
        """The next message for this agent.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
            RuntimeError: the transport is not started.
        """
        if not self._started:
            raise _NotStartedError(f"Transport not started: call start() on LocalTransport {self.agent_id!r} before receive()")
        return await receive_from(self.queue, timeout)

    def _notify_external(self, message: Message | None, reason: str, detail: str) -> None:
        listeners = self.registry._drop_listeners
        if listeners:
            notify_all(listeners, message, reason, detail)

    def __repr__(self) -> str:
        state = "started" if self._started else "stopped"
        return f"<LocalTransport {self.agent_id[:16]!r} {state}>"


__all__ = ["LocalTransport", "LocalTransportRegistry"]
