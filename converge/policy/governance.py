"""Governance models: how a pool resolves a dispute.

``resolve_dispute(context)`` returns the outcome, or ``None`` when there is no
decision (a tie, no majority, or a malformed context). Pools carry a model in
``pool.governance_model``; the library never calls it on its own.

Contexts (all models ignore keys they do not use):

* :class:`DictatorialGovernance` — ignored; always ``"Decided by <leader_id>"``.
* :class:`DemocraticGovernance` — ``{"votes": [option, ...]}``; strict majority.
* :class:`BicameralGovernance` — ``{"chamber_a_votes": [...], "chamber_b_votes": [...],
  "tie_breaker": x}``; both chambers' majorities must agree, else ``tie_breaker``.
* :class:`VetoGovernance` — ``{"votes": [...], "veto_exercised": bool, "fallback": x,
  "vetoed_by": agent_id}``; a veto yields ``fallback``. Extension: when the model has
  a ``veto_agent_id`` and the context names ``vetoed_by``, only that agent's veto counts.
* :class:`EmpiricalGovernance` — ``{"votes": [...], "weights": [...]}``; weighted
  plurality; a tie for the top total yields ``None``.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from typing import Any

from converge.coordination.consensus import Consensus
from converge.errors import ConfigError

logger = logging.getLogger("converge.policy.governance")


class GovernanceModel(ABC):
    """Resolves disputes in a pool."""

    @abstractmethod
    def resolve_dispute(self, context: Any) -> Any:
        """The outcome for ``context``, or ``None`` for no decision."""


@dataclass
class DictatorialGovernance(GovernanceModel):
    """The leader decides; the context is ignored."""

    leader_id: str

    def resolve_dispute(self, context: Any) -> Any:
        return f"Decided by {self.leader_id}"


@dataclass
class DemocraticGovernance(GovernanceModel):
    """Strict majority of ``context["votes"]`` (more than half), else ``None``."""

    def resolve_dispute(self, context: Any) -> Any:
        votes = context.get("votes", []) if isinstance(context, dict) else []
        return Consensus.majority_vote(list(votes))


@dataclass
class BicameralGovernance(GovernanceModel):
    """Both chambers must reach the same majority; otherwise ``context["tie_breaker"]``."""

    def resolve_dispute(self, context: Any) -> Any:
        if not isinstance(context, dict):
            return None
        a = Consensus.majority_vote(list(context.get("chamber_a_votes", [])))
        b = Consensus.majority_vote(list(context.get("chamber_b_votes", [])))
        if a is not None and a == b:
            return a
        return context.get("tie_breaker")


@dataclass
class VetoGovernance(GovernanceModel):
    """Majority of ``votes`` unless a veto is exercised, in which case ``fallback``.

    Attributes:
        veto_agent_id: the agent holding the veto. When set and the context names
            ``vetoed_by``, a veto by anyone else is ignored (logged).
    """

    veto_agent_id: str | None = None

    def resolve_dispute(self, context: Any) -> Any:
        if not isinstance(context, dict):
            return None
        if context.get("veto_exercised"):
            by = context.get("vetoed_by")
            if self.veto_agent_id is None or by is None or by == self.veto_agent_id:
                return context.get("fallback")
            logger.info("veto by %s ignored: only %s holds the veto", by, self.veto_agent_id)
        return Consensus.majority_vote(list(context.get("votes", [])))


def _weight(value: Any, index: int) -> float:
    try:
        w = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"weights[{index}] must be a number, got {value!r}") from exc
    if not math.isfinite(w):
        raise ConfigError(f"weights[{index}] must be finite, got {value!r}")
    return w


@dataclass
class EmpiricalGovernance(GovernanceModel):
    """Weighted plurality: the option with the highest total weight; a tie yields ``None``.

    Without ``weights`` (or with a different number of weights than votes) it is
    a plain strict majority.

    Raises:
        ConfigError: from ``resolve_dispute`` when a weight is not a finite number.
    """

    def resolve_dispute(self, context: Any) -> Any:
        if not isinstance(context, dict):
            return None
        votes = list(context.get("votes", []))
        if not votes:
            return None
        weights = context.get("weights")
        if weights is None or len(weights) != len(votes):
            return Consensus.majority_vote(votes)
        totals: Counter[Any] = Counter()
        for i, (option, weight) in enumerate(zip(votes, weights, strict=True)):
            totals[option] += _weight(weight, i)
        best = max(totals.values())
        winners = [option for option, total in totals.items() if total == best]
        return winners[0] if len(winners) == 1 else None


__all__ = [
    "BicameralGovernance",
    "DemocraticGovernance",
    "DictatorialGovernance",
    "EmpiricalGovernance",
    "GovernanceModel",
    "VetoGovernance",
]
