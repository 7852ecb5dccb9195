"""Auctions: agents bid an amount; :meth:`BiddingProtocol.resolve` picks the winner.

Auction types and their rules (the reference applied "highest bid wins" to all):

* ``FIRST_PRICE_SEALED_BID`` — sealed bids, each agent's last bid counts; the
  highest wins and pays its bid.
* ``SECOND_PRICE_SEALED_BID`` (Vickrey) — the highest wins and pays the
  second-highest amount; a sole bidder pays the reserve price when one is set,
  else its own bid.
* ``ENGLISH`` — open ascending: a bid is accepted only if it beats the current
  highest bid by at least ``min_increment`` (any amount above it when the
  increment is 0) and is at least the reserve; the highest bidder wins and pays its bid.
* ``DUTCH`` — open descending: the auctioneer lowers :attr:`BiddingProtocol.asking_price`
  with :meth:`BiddingProtocol.lower_price`; the first bid at or above the current
  asking price wins at once, the auction closes and the winner pays the asking price.

Ties on the amount go to the agent that bid first. ``resolve()`` returns the
winner's id (or ``None`` without bids; the auction stays open) and sets
:attr:`winner` and :attr:`clearing_price`. Refused bids return ``False`` and are
logged and counted in :attr:`refused` by reason.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any

from converge.errors import ConfigError

logger = logging.getLogger("converge.coordination.bidding")


class AuctionType:
    """Auction type names."""

    FIRST_PRICE_SEALED_BID = "first_price_sealed_bid"
    SECOND_PRICE_SEALED_BID = "second_price_sealed_bid"
    ENGLISH = "english"
    DUTCH = "dutch"

    ALL = frozenset({FIRST_PRICE_SEALED_BID, SECOND_PRICE_SEALED_BID, ENGLISH, DUTCH})


def _finite(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class BiddingProtocol:
    """One auction.

    Args:
        auction_type: one of :class:`AuctionType`.
        reserve_price: bids below it are refused.
        min_increment: English auctions: how much a new bid must beat the highest by.
        start_price: Dutch auctions: the initial asking price (required for ``DUTCH``).

    Attributes:
        bids: agent id -> amount (each agent's last accepted bid, first-bid order).
        contents: agent id -> the content sent with its last accepted bid.
        active: False once resolved.
        winner / clearing_price: set by :meth:`resolve`.
        refused: reason -> count of refused bids.
    """

    def __init__(
        self,
        auction_type: str = AuctionType.FIRST_PRICE_SEALED_BID,
        *,
        reserve_price: float | None = None,
        min_increment: float = 0.0,
        start_price: float | None = None,
    ) -> None:
        if auction_type not in AuctionType.ALL:
            raise ConfigError(f"auction_type must be one of {sorted(AuctionType.ALL)}, got {auction_type!r}")
        self.auction_type = auction_type
        self.reserve_price = _finite("reserve_price", reserve_price)
        self.min_increment = _finite("min_increment", min_increment) or 0.0
        if self.min_increment < 0:
            raise ConfigError(f"min_increment must be >= 0, got {min_increment!r}")
        self.asking_price = _finite("start_price", start_price)
        if auction_type == AuctionType.DUTCH and self.asking_price is None:
            raise ConfigError("a Dutch auction needs start_price (the initial asking price)")
        self.bids: dict[str, float] = {}
        self.contents: dict[str, Any] = {}
        self.active = True
        self.winner: str | None = None
        self.clearing_price: float | None = None
        self.refused: Counter[str] = Counter()

    @property
    def highest_bid(self) -> float | None:
        """The highest amount bid so far (visible in open auctions)."""
        return max(self.bids.values()) if self.bids else None

    def _refuse(self, agent_id: str, reason: str, detail: str) -> bool:
        self.refused[reason] += 1
        logger.info("auction (%s): bid by %s refused: %s", self.auction_type, agent_id, detail)
        return False

    def submit_bid(self, agent_id: str, amount: float, content: Any = None) -> bool:
        """Place or replace ``agent_id``'s bid; ``False`` when refused (see the module rules)."""
        if not self.active:
            return self._refuse(agent_id, "closed", "the auction is closed")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount):
            return self._refuse(agent_id, "invalid_amount", f"amount must be a finite number, got {amount!r}")
        amount = float(amount)
        if self.reserve_price is not None and amount < self.reserve_price:
            return self._refuse(agent_id, "below_reserve", f"{amount} is below the reserve price {self.reserve_price}")
        if self.auction_type == AuctionType.ENGLISH:
            high = self.highest_bid
            if high is not None and not (amount > high and amount - high >= self.min_increment):
                return self._refuse(agent_id, "not_higher", f"{amount} does not beat {high} by {self.min_increment}")
        if self.auction_type == AuctionType.DUTCH:
            assert self.asking_price is not None
            if amount < self.asking_price:
                return self._refuse(agent_id, "below_asking", f"{amount} is below the asking price {self.asking_price}")
            self.bids[agent_id] = amount
            self.contents[agent_id] = content
            self._close(agent_id, self.asking_price)
            return True
        self.bids[agent_id] = amount
        self.contents[agent_id] = content
        return True

    def lower_price(self, new_price: float) -> None:
        """Dutch auctions: lower the asking price.

        Raises:
            ConfigError: not a Dutch auction, or ``new_price`` is not lower / below the reserve.
        """
        if self.auction_type != AuctionType.DUTCH:
            raise ConfigError(f"lower_price is only for Dutch auctions, this one is {self.auction_type!r}")
        price = _finite("new_price", new_price)
        assert price is not None and self.asking_price is not None
        if price >= self.asking_price:
            raise ConfigError(f"new_price must be below the asking price {self.asking_price}, got {price}")
        if self.reserve_price is not None and price < self.reserve_price:
            raise ConfigError(f"new_price {price} is below the reserve price {self.reserve_price}")
        self.asking_price = price

    def _close(self, winner: str, price: float) -> None:
        self.winner, self.clearing_price, self.active = winner, price, False

    def resolve(self) -> str | None:
        """Close the auction and return the winner's id, or ``None`` without bids (stays open)."""
        if not self.active:
            return self.winner
        if not self.bids:
            return None
        ranked = sorted(self.bids.items(), key=lambda kv: -kv[1])  # stable: first bidder wins ties
        winner, top = ranked[0]
        price = top
        if self.auction_type == AuctionType.SECOND_PRICE_SEALED_BID:
            if len(ranked) > 1:
                price = ranked[1][1]
            elif self.reserve_price is not None:
                price = self.reserve_price
        self._close(winner, price)
        return winner


__all__ = ["AuctionType", "BiddingProtocol"]
