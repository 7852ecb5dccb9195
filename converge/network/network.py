"""``AgentNetwork`` (a transport plus the agents hosted locally) and ``build_descriptor``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from converge.core.capability import Capability
from converge.core.topic import Topic
from converge.network.discovery import AgentDescriptor, DiscoveryQuery, DiscoveryService

if TYPE_CHECKING:
    from converge.core.message import Message
    from converge.network.transport.base import Transport


def _as_topic(t: Any) -> Topic:
    if isinstance(t, Topic):
        return t
    if isinstance(t, dict):
        return Topic.from_dict(t)
    return Topic(namespace=str(t))


def _as_capability(c: Any) -> Capability:
    if isinstance(c, Capability):
        return c
    return Capability(name=str(c), version="1.0", description="")


def build_descriptor(agent: Any) -> AgentDescriptor:
    """The discovery descriptor of ``agent``.

    Topics: ``Topic`` kept, dicts parsed, anything else becomes ``Topic(str(x))``.
    Capabilities: ``Capability`` kept, anything else becomes ``Capability(str(x), "1.0", "")``.
    ``public_key`` comes from ``agent.identity`` when present. Missing attributes count as empty.
    """
    identity = getattr(agent, "identity", None)
    return AgentDescriptor(
        id=agent.id,
        topics=[_as_topic(t) for t in getattr(agent, "topics", None) or []],
        capabilities=[_as_capability(c) for c in getattr(agent, "capabilities", None) or []],
        public_key=getattr(identity, "public_key", None),
    )


class AgentNetwork:
    """A transport and the agents hosted on it in this process.

    Attributes:
        transport: the transport used by :meth:`send` and :meth:`broadcast`.
        local_agents: agent id → agent.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.local_agents: dict[str, Any] = {}

    def register_agent(self, agent: Any) -> None:
        """Host ``agent`` (keyed by ``agent.id``)."""
        self.local_agents[agent.id] = agent

    def unregister_agent(self, agent_id: str) -> None:
        """Stop hosting ``agent_id``; no error when absent."""
        self.local_agents.pop(agent_id, None)

    async def send(self, message: Message) -> Any:
        """Send through the transport; returns (and raises) whatever the transport's ``send`` does."""
        return await self.transport.send(message)

    async def broadcast(self, message: Message) -> Any:
        """Same as :meth:`send`; a message without recipient is a broadcast on local/WebSocket-server transports."""
        return await self.transport.send(message)

    def discover(self, query: DiscoveryQuery) -> list[AgentDescriptor]:
        """Local agents matching ``query`` (descriptors built with :func:`build_descriptor`)."""
        candidates = [build_descriptor(agent) for agent in self.local_agents.values()]
        return DiscoveryService().query(query, candidates)


__all__ = ["AgentNetwork", "build_descriptor"]
