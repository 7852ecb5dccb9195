"""The ``Agent`` base class."""

from __future__ import annotations

from enum import Enum
from typing import Any

from converge.core.identity import Identity
from converge.core.message import Message


class AgentState(Enum):
    IDLE = "idle"
    BUSY = "busy"
    OFFLINE = "offline"
    ERROR = "error"


class Agent:
    """Base class for agents. Override :meth:`decide` (or define ``async adecide``).

    The runtime needs only ``id``; ``capabilities`` and ``topics`` feed discovery
    and task visibility. Unlike the reference, agents compare by identity and are
    hashable, so two agents of one class are never "equal".
    """

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.capabilities: list[Any] = []
        self.topics: list[Any] = []
        self.pool_manager: Any = None
        self.task_manager: Any = None
        self.state = AgentState.IDLE

    @property
    def id(self) -> str:
        return self.identity.fingerprint

    def decide(self, messages: list[Any], tasks: list[Any], **kwargs: Any) -> list[Any]:
        """Return decisions for this iteration. The runtime may pass ``tool_observations=``."""
        return []

    def on_start(self) -> None:
        """Called when the runtime starts."""

    def on_stop(self) -> None:
        """Called when the runtime stops."""

    def on_tick(self, messages: list[Any], tasks: list[Any]) -> None:
        """Called before each decide that has work."""

    def sign_message(self, message: Message) -> Message:
        return message.sign(self.identity)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id[:12]}…)"


__all__ = ["Agent", "AgentState"]
