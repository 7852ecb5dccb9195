"""Pools: groups of agents with admission, trust and governance."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from converge.core.topic import Topic


@dataclass
class Pool:
    """A group of agents. Policy objects are duck-typed (``can_admit``, ``get_trust``, ``resolve_dispute``)."""

    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    topics: list[Topic] = field(default_factory=list)
    admission_policy: dict[str, Any] = field(default_factory=dict)
    admission_policy_instance: Any = field(default=None, repr=False)
    governance: dict[str, Any] = field(default_factory=dict)
    governance_model: Any = field(default=None, repr=False)
    agents: set[str] = field(default_factory=set)
    trust_model: Any = field(default=None, repr=False)
    trust_threshold: float = 0.0

    def add_agent(self, agent_id: str) -> None:
        self.agents.add(agent_id)

    def remove_agent(self, agent_id: str) -> None:
        self.agents.discard(agent_id)


__all__ = ["Pool"]
