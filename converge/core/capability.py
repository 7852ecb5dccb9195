"""Capabilities an agent advertises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Capability:
    """A named, versioned skill with optional constraints, costs and latency."""

    name: str
    version: str
    description: str
    constraints: dict[str, Any] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)
    latency_ms: int = 0


@dataclass
class CapabilitySet:
    """An ordered list of capabilities with a name lookup."""

    capabilities: list[Capability] = field(default_factory=list)

    def add(self, capability: Capability) -> None:
        self.capabilities.append(capability)

    def has(self, name: str) -> bool:
        return any(c.name == name for c in self.capabilities)

    def names(self) -> list[str]:
        return [c.name for c in self.capabilities]


__all__ = ["Capability", "CapabilitySet"]
