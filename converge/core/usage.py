"""Usage records: what one LLM provider call cost.

Providers produce them, ``LLMAgent`` collects them, the runtime attaches them
to each ``StepRecord`` (``usage``) and counts them in metrics, and the lab's
cost ledger reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class UsageRecord:
    """One provider call.

    Attributes:
        provider: e.g. ``"openai"``, ``"anthropic"``, ``"mistral"``, ``"scripted"``, ``"replay"``.
        model: the model name.
        input_tokens / output_tokens: as the vendor reported them (0 when unknown).
        latency_sec: wall time of the call.
        cost_usd: from the configured price table; 0.0 when the model is not priced.
        request_hash: stable hash of the request (the cassette key), when known.
    """

    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    latency_sec: float = 0.0
    cost_usd: float = 0.0
    request_hash: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


__all__ = ["UsageRecord"]
