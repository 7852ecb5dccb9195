"""Trust scores per agent, in ``[0, 1]``, with a neutral default of 0.5.

Pools use a trust model with a threshold: :meth:`PoolManager.join_pool
<converge.coordination.pool_manager.PoolManager.join_pool>` refuses an agent
whose trust is below ``pool.trust_threshold``. A trust model stored on a pool
is persisted with it; use :meth:`PoolManager.update_trust
<converge.coordination.pool_manager.PoolManager.update_trust>` to change a
pool's model so the change reaches the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from converge.errors import ConfigError

NEUTRAL_TRUST = 0.5


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


@dataclass
class TrustModel:
    """Per-agent trust scores.

    Attributes:
        scores: agent id -> score in ``[0, 1]``; unknown agents have the neutral 0.5.
    """

    scores: dict[str, float] = field(default_factory=dict)

    def get_trust(self, agent_id: str) -> float:
        """The agent's score, or the neutral 0.5 when it has none."""
        return self.scores.get(agent_id, NEUTRAL_TRUST)

    def update_trust(self, agent_id: str, score_delta: float) -> float:
        """Add ``score_delta`` to the agent's score, clamp to ``[0, 1]``, store and return it.

        Raises:
            ConfigError: ``score_delta`` is not a finite number.
        """
        if isinstance(score_delta, bool) or not isinstance(score_delta, (int, float)) or not math.isfinite(score_delta):
            raise ConfigError(f"score_delta must be a finite number, got {score_delta!r}")
        score = _clamp(self.get_trust(agent_id) + float(score_delta))
        self.scores[agent_id] = score
        return score


__all__ = ["NEUTRAL_TRUST", "TrustModel"]
