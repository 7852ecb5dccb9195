"""Safety limits for decisions: resource limits for tasks and an allow-list of decision types.

The executor takes ``safety_policy=(ResourceLimits | None, ActionPolicy | None)``.

``ActionPolicy([])`` allows every action, as in the reference (an empty list
is read as "no list"). To allow nothing, use :meth:`ActionPolicy.deny_all`
(or ``ActionPolicy([], empty_means_deny=True)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from converge.errors import ConfigError


@dataclass
class ResourceLimits:
    """Upper bounds a task's constraints may request (``max_network_requests`` is advisory)."""

    max_cpu_tokens: float = 1.0
    max_memory_mb: int = 512
    max_network_requests: int = 100


@dataclass(init=False)
class ActionPolicy:
    """Which decision types (class names such as ``"SendMessage"``) may be executed.

    Args:
        allowed_actions: the allowed names. ``None`` allows everything; so does an
            empty list unless ``empty_means_deny`` is true (reference behaviour).
        empty_means_deny: read an empty ``allowed_actions`` as "allow nothing".

    Attributes:
        allowed_actions: a set of names, or ``None`` for "everything".
    """

    allowed_actions: set[str] | None = field(default=None)

    def __init__(self, allowed_actions: Iterable[str] | None = None, *, empty_means_deny: bool = False) -> None:
        if isinstance(allowed_actions, str):
            raise ConfigError(f"allowed_actions must be a collection of names, got the single string {allowed_actions!r}")
        names = None if allowed_actions is None else set(allowed_actions)
        if names is not None and not names and not empty_means_deny:
            names = None
        self.allowed_actions = names

    @classmethod
    def deny_all(cls) -> ActionPolicy:
        """A policy that allows no action at all."""
        return cls([], empty_means_deny=True)

    @classmethod
    def allow_all(cls) -> ActionPolicy:
        """A policy that allows every action."""
        return cls(None)

    def is_allowed(self, action_name: str) -> bool:
        """True when ``action_name`` may run."""
        return self.allowed_actions is None or action_name in self.allowed_actions


def validate_safety(limits: ResourceLimits, requested_cpu: float, requested_mem: int) -> bool:
    """True when the request fits the limits (equality allowed).

    A request that is not a finite number (NaN, infinity) never fits.
    """
    try:
        cpu, mem = float(requested_cpu), float(requested_mem)
    except (TypeError, ValueError):
        return False
    if not (math.isfinite(cpu) and math.isfinite(mem)):
        return False
    return cpu <= limits.max_cpu_tokens and mem <= limits.max_memory_mb


__all__ = ["ActionPolicy", "ResourceLimits", "validate_safety"]
