"""Voting helpers and a store-backed ballot box.

:class:`Consensus` has the reference's static helpers. :class:`StoreVotes` is a
``votes_store`` for the executor (``vote_id -> [(agent_id, option), ...]``)
kept in a :class:`~converge.core.store.Store` under ``vote:<vote_id>``, so
runtimes in several processes share the same votes. Appends are atomic
(compare-and-set), so concurrent voters never overwrite each other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

from converge.coordination._cas import cas_update
from converge.core.store import Store

Ballot = tuple[str, Any]


class Consensus:
    """Static voting rules over a list of hashable options."""

    @staticmethod
    def majority_vote(votes: list[Any]) -> Any:
        """The option with strictly more than half of the votes, else ``None``."""
        if not votes:
            return None
        option, count = Counter(votes).most_common(1)[0]
        return option if count > len(votes) / 2 else None

    @staticmethod
    def plurality_vote(votes: list[Any]) -> Any:
        """The most common option; ``None`` for no votes or a tie for first place."""
        if not votes:
            return None
        top = Counter(votes).most_common(2)
        if not top:
            return None
        if len(top) > 1 and top[0][1] == top[1][1]:
            return None
        return top[0][0]

    @staticmethod
    def options(ballots: Iterable[Ballot], *, one_per_agent: bool = False) -> list[Any]:
        """The options of ``(agent_id, option)`` ballots; with ``one_per_agent`` only each agent's last vote."""
        pairs = list(ballots)
        if not one_per_agent:
            return [option for _, option in pairs]
        return list({agent: option for agent, option in pairs}.values())


def _as_ballots(raw: Any) -> list[Ballot]:
    return [(str(entry[0]), entry[1]) for entry in raw or []]


class BallotList:
    """A live view of one vote's ballots; :meth:`append` writes through to the store atomically."""

    def __init__(self, owner: StoreVotes, vote_id: str) -> None:
        self._owner = owner
        self.vote_id = vote_id

    def _snapshot(self) -> list[Ballot]:
        return _as_ballots(self._owner.store.get(self._owner.key(self.vote_id)))

    def append(self, ballot: Ballot) -> None:
        """Add ``(agent_id, option)``."""
        self._owner.record(self.vote_id, *ballot)

    def extend(self, ballots: Iterable[Ballot]) -> None:
        for ballot in ballots:
            self.append(ballot)

    def __iter__(self) -> Iterator[Ballot]:
        return iter(self._snapshot())

    def __len__(self) -> int:
        return len(self._snapshot())

    def __getitem__(self, index: int) -> Ballot:
        return self._snapshot()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BallotList):
            return self._snapshot() == other._snapshot()
        if isinstance(other, list):
            return self._snapshot() == [tuple(x) for x in other]
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"BallotList({self.vote_id!r}, {self._snapshot()!r})"


class StoreVotes(MutableMapping[str, BallotList]):
    """``vote_id -> ballots`` kept in a store, shared by every runtime using that store.

    Works as the executor's ``votes_store``: ``setdefault(vote_id, []).append((agent, option))``
    appends atomically, and assigning the returned list back is a no-op.

    Args:
        store: any :class:`~converge.core.store.Store`.
        prefix: key prefix (default ``"vote:"``).
    """

    def __init__(self, store: Store, *, prefix: str = "vote:") -> None:
        self.store = store
        self.prefix = prefix

    def key(self, vote_id: str) -> str:
        return f"{self.prefix}{vote_id}"

    def record(self, vote_id: str, agent_id: str, option: Any) -> None:
        """Append one ballot atomically (safe across processes)."""

        def add(current: Any) -> tuple[list[list[Any]], None]:
            return [*(list(b) for b in current or []), [agent_id, option]], None

        cas_update(self.store, self.key(vote_id), add)

    def ballots(self, vote_id: str) -> list[Ballot]:
        """A snapshot of the ballots (empty when nobody voted)."""
        return _as_ballots(self.store.get(self.key(vote_id)))

    def __getitem__(self, vote_id: str) -> BallotList:
        if self.store.get(self.key(vote_id)) is None:
            raise KeyError(vote_id)
        return BallotList(self, vote_id)

    def setdefault(self, vote_id: str, default: Any = None) -> BallotList:  # type: ignore[override]
        self.store.put_if_absent(self.key(vote_id), [list(b) for b in default or []])
        return BallotList(self, vote_id)

    def __setitem__(self, vote_id: str, ballots: Any) -> None:
        if isinstance(ballots, BallotList) and ballots._owner is self and ballots.vote_id == vote_id:
            return  # a live view of this very key: its appends are already stored
        self.store.put(self.key(vote_id), [[str(a), o] for a, o in ballots])

    def __delitem__(self, vote_id: str) -> None:
        if self.store.get(self.key(vote_id)) is None:
            raise KeyError(vote_id)
        self.store.delete(self.key(vote_id))

    def __iter__(self) -> Iterator[str]:
        n = len(self.prefix)
        return iter([k[n:] for k in self.store.list(self.prefix)])

    def __len__(self) -> int:
        return len(self.store.list(self.prefix))


__all__ = ["Ballot", "BallotList", "Consensus", "StoreVotes"]
