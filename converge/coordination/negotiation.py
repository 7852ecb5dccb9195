"""Multi-party negotiation sessions: propose, counter, accept, reject.

State machine of a session (each step by a participant)::

    PROPOSED --propose--> COUNTERED --propose--> COUNTERED
    PROPOSED/COUNTERED --accept--> ACCEPTED     (terminal)
    PROPOSED/COUNTERED --reject--> REJECTED     (terminal)
    any non-terminal   --close---> CLOSED       (terminal)

Unlike the reference, a terminal session refuses every further step: a
rejected session can no longer be accepted (nor an accepted one rejected).
Refusals return ``False`` (the reference contract); each is logged with its
reason, counted in :attr:`NegotiationProtocol.refused` and kept in
:attr:`NegotiationProtocol.last_refusal`.

With a ``store``, sessions live under ``negotiation:<session_id>`` and every
step is a compare-and-set, so runtimes in several processes can negotiate in
one session.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from converge.coordination._cas import cas_update
from converge.core.store import Store
from converge.errors import ConfigError

logger = logging.getLogger("converge.coordination.negotiation")

_PREFIX = "negotiation:"


class NegotiationState(Enum):
    PROPOSED = "proposed"
    COUNTERED = "countered"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CLOSED = "closed"


_OPEN = frozenset({NegotiationState.PROPOSED, NegotiationState.COUNTERED})


@dataclass
class Proposal:
    """One proposal; ``timestamp`` is wall-clock seconds when it was made."""

    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    proposer_id: str = ""
    content: Any = None
    timestamp: float = 0.0


@dataclass
class NegotiationSession:
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    participants: list[str] = field(default_factory=list)
    history: list[Proposal] = field(default_factory=list)
    state: NegotiationState = NegotiationState.PROPOSED
    current_proposal: Proposal | None = None


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class NegotiationProtocol:
    """Negotiation sessions by id.

    Args:
        store: keep sessions in this store (shared across processes); ``None`` keeps them in memory.
        clock: wall-clock source for proposal timestamps.

    Attributes:
        sessions: session id -> session (the sessions this instance has seen).
        refused: reason -> number of refused steps.
        last_refusal: the reason text of the latest refusal, or ``None``.
    """

    def __init__(self, store: Store | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.sessions: dict[str, NegotiationSession] = {}
        self.refused: Counter[str] = Counter()
        self.last_refusal: str | None = None

    def create_session(
        self, initiator_id: str, participants: list[str], initial_proposal: Any, *, session_id: str | None = None
    ) -> str:
        """Open a session with ``[initiator_id, *participants]`` and a first proposal; returns its id.

        Raises:
            ConfigError: ``session_id`` is already in use.
        """
        members = [initiator_id, *(p for p in participants if p != initiator_id)]
        first = Proposal(proposer_id=initiator_id, content=initial_proposal, timestamp=self.clock())
        session = NegotiationSession(participants=members, history=[first], current_proposal=first)
        if session_id is not None:
            session.id = session_id
        if self.store is not None:
            stored = dataclasses.replace(session, participants=list(members), history=[first])
            if not self.store.put_if_absent(_PREFIX + session.id, stored):
                raise ConfigError(f"negotiation session {session.id!r} already exists")
        elif session.id in self.sessions:
            raise ConfigError(f"negotiation session {session.id!r} already exists")
        self.sessions[session.id] = session
        return session.id

    def get_session(self, session_id: str) -> NegotiationSession | None:
        """The session (refreshed from the store when there is one), or ``None``."""
        if self.store is None:
            return self.sessions.get(session_id)
        stored = self.store.get(_PREFIX + session_id)
        if stored is None:
            return self.sessions.get(session_id)
        return self._remember(stored)

    def _remember(self, stored: NegotiationSession) -> NegotiationSession:
        cached = self.sessions.get(stored.id)
        if cached is None:
            cached = dataclasses.replace(stored, participants=list(stored.participants), history=list(stored.history))
            self.sessions[stored.id] = cached
        else:
            for f in dataclasses.fields(NegotiationSession):
                value = getattr(stored, f.name)
                setattr(cached, f.name, list(value) if isinstance(value, list) else value)
        return cached

    def _step(self, session_id: str, agent_id: str, action: str, change: Callable[[NegotiationSession], NegotiationSession]) -> bool:
        def modify(current: Any) -> tuple[NegotiationSession, None]:
            if current is None:
                raise _Refused("unknown_session", f"no session {session_id!r}")
            if agent_id not in current.participants:
                raise _Refused("not_participant", f"{agent_id} is not a participant of {session_id}")
            if current.state not in _OPEN:
                raise _Refused("closed", f"session {session_id} is {current.state.value}; cannot {action}")
            return change(current), None

        try:
            if self.store is not None:
                new, _ = cas_update(self.store, _PREFIX + session_id, modify)
                self._remember(new)
            else:
                session = self.sessions.get(session_id)
                new, _ = modify(session)
                assert session is not None
                for f in dataclasses.fields(NegotiationSession):
                    setattr(session, f.name, getattr(new, f.name))
        except _Refused as refusal:
            self.refused[refusal.reason] += 1
            self.last_refusal = str(refusal)
            logger.info("negotiation: %s by %s refused: %s", action, agent_id, refusal)
            return False
        return True

    def propose(self, session_id: str, agent_id: str, content: Any) -> bool:
        """Counter-propose ``content``; ``False`` if the session is unknown, terminal, or ``agent_id`` is not in it."""
        proposal = Proposal(proposer_id=agent_id, content=content, timestamp=self.clock())
        return self._step(
            session_id, agent_id, "propose",
            lambda s: dataclasses.replace(
                s, history=[*s.history, proposal], current_proposal=proposal, state=NegotiationState.COUNTERED
            ),
        )

    def accept(self, session_id: str, agent_id: str) -> bool:
        """Accept the current proposal; ``False`` if unknown, terminal (e.g. rejected), no proposal, or not a participant."""

        def change(s: NegotiationSession) -> NegotiationSession:
            if s.current_proposal is None:
                raise _Refused("no_proposal", f"session {session_id} has no proposal to accept")
            return dataclasses.replace(s, state=NegotiationState.ACCEPTED, history=list(s.history))

        return self._step(session_id, agent_id, "accept", change)

    def reject(self, session_id: str, agent_id: str) -> bool:
        """Reject the session; ``False`` if unknown, already terminal, or not a participant."""
        return self._step(
            session_id, agent_id, "reject",
            lambda s: dataclasses.replace(s, state=NegotiationState.REJECTED, history=list(s.history)),
        )

    def close(self, session_id: str, agent_id: str) -> bool:
        """End an open session without agreement (state ``CLOSED``)."""
        return self._step(
            session_id, agent_id, "close",
            lambda s: dataclasses.replace(s, state=NegotiationState.CLOSED, history=list(s.history)),
        )


__all__ = ["NegotiationProtocol", "NegotiationSession", "NegotiationState", "Proposal"]
