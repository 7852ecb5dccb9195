"""Model prices, for the ``cost_usd`` of usage records.

Prices are USD per million tokens. :data:`DEFAULT_PRICES` holds a few well-known models
at their published list prices (late 2025); they change, so pass your own
``price_table=`` to a provider when cost matters::

    table = DEFAULT_PRICES.extended({"my-finetune": (0.3, 1.2)})
    provider = OpenAIProvider(model="my-finetune", price_table=table)

A model that is not in the table costs ``0.0`` (it is not guessed). Dated snapshots
resolve to their family: ``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini`` (the
longest table key that is a ``-``-separated prefix of the model name).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Union

from converge.errors import ConfigError


@dataclass(frozen=True)
class ModelPrice:
    """USD per million input and output tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def __post_init__(self) -> None:
        for name in ("input_per_mtok", "output_per_mtok"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"ModelPrice.{name} must be a finite number >= 0, got {value!r}")

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for a call with these token counts."""
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1_000_000


PriceLike = Union[ModelPrice, tuple[float, float]]


def _as_price(model: str, value: PriceLike) -> ModelPrice:
    if isinstance(value, ModelPrice):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return ModelPrice(value[0], value[1])
    raise ConfigError(
        f"price for model {model!r} must be a ModelPrice or an (input_per_mtok, output_per_mtok) pair, got {value!r}"
    )


class PriceTable(Mapping[str, ModelPrice]):
    """An immutable mapping of model name to :class:`ModelPrice`, with snapshot-aware lookup."""

    def __init__(self, prices: Mapping[str, PriceLike] | None = None) -> None:
        self._prices: dict[str, ModelPrice] = {}
        for model, value in (prices or {}).items():
            if not isinstance(model, str) or not model:
                raise ConfigError(f"price table keys must be non-empty model names, got {model!r}")
            self._prices[model] = _as_price(model, value)

    def __getitem__(self, model: str) -> ModelPrice:
        return self._prices[model]

    def __iter__(self) -> Iterator[str]:
        return iter(self._prices)

    def __len__(self) -> int:
        return len(self._prices)

    def __repr__(self) -> str:
        return f"PriceTable({len(self._prices)} models)"

    def lookup(self, model: str) -> ModelPrice | None:
        """The price of ``model``: exact name first, then the longest ``<key>-`` prefix; else ``None``."""
        price = self._prices.get(model)
        if price is not None:
            return price
        best = max((k for k in self._prices if model.startswith(k + "-")), key=len, default=None)
        return None if best is None else self._prices[best]

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float:
        """USD for a call; ``0.0`` for a model the table does not know."""
        price = self.lookup(model)
        return 0.0 if price is None else price.cost(input_tokens, output_tokens)

    def extended(self, prices: Mapping[str, PriceLike]) -> PriceTable:
        """A new table with ``prices`` added (or replacing existing entries)."""
        return PriceTable({**self._prices, **prices})


DEFAULT_PRICES = PriceTable(
    {
        # OpenAI
        "gpt-4o-mini": (0.15, 0.60),
        "gpt-4o": (2.50, 10.00),
        "gpt-4.1": (2.00, 8.00),
        "gpt-4.1-mini": (0.40, 1.60),
        "gpt-4.1-nano": (0.10, 0.40),
        "o4-mini": (1.10, 4.40),
        # Anthropic
        "claude-sonnet-4-20250514": (3.00, 15.00),
        "claude-sonnet-4": (3.00, 15.00),
        "claude-sonnet-4-5": (3.00, 15.00),
        "claude-haiku-4-5": (1.00, 5.00),
        "claude-opus-4": (15.00, 75.00),
        "claude-3-5-haiku": (0.80, 4.00),
        "claude-3-5-haiku-latest": (0.80, 4.00),
        # Mistral
        "mistral-small-latest": (0.10, 0.30),
        "mistral-medium-latest": (0.40, 2.00),
        "mistral-large-latest": (2.00, 6.00),
    }
)


def as_price_table(value: PriceTable | Mapping[str, PriceLike] | None) -> PriceTable:
    """``None`` → :data:`DEFAULT_PRICES`; a mapping → a :class:`PriceTable` of it."""
    if value is None:
        return DEFAULT_PRICES
    if isinstance(value, PriceTable):
        return value
    if isinstance(value, Mapping):
        return PriceTable(value)
    raise ConfigError(f"price_table must be a PriceTable or a mapping of model -> price, got {type(value).__name__}")


__all__ = ["DEFAULT_PRICES", "ModelPrice", "PriceTable", "as_price_table"]
