"""Decisions: what an agent's ``decide`` returns and an executor carries out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from converge.core.message import Message
from converge.core.task import Task


class Decision:
    """Base class of every decision. Subclass it for custom decisions (see ``custom_handlers``)."""


@dataclass
class SendMessage(Decision):
    message: Message


@dataclass
class JoinPool(Decision):
    """Join a pool. ``context`` travels to the pool's admission policy (e.g. ``{"token": ...}``)."""

    pool_id: str
    context: dict[str, Any] | None = None


@dataclass
class LeavePool(Decision):
    pool_id: str


@dataclass
class CreatePool(Decision):
    spec: dict[str, Any]


@dataclass
class SubmitTask(Decision):
    task: Task


@dataclass
class ClaimTask(Decision):
    task_id: str


@dataclass
class ReportTask(Decision):
    task_id: str
    result: Any


@dataclass
class SubmitBid(Decision):
    auction_id: str
    amount: float
    content: Any = None


@dataclass
class Vote(Decision):
    vote_id: str
    option: Any


@dataclass
class Propose(Decision):
    session_id: str
    proposal_content: Any


@dataclass
class AcceptProposal(Decision):
    session_id: str


@dataclass
class RejectProposal(Decision):
    session_id: str


@dataclass
class Delegate(Decision):
    delegatee_id: str
    scope: list[str]


@dataclass
class RevokeDelegation(Decision):
    delegation_id: str


@dataclass
class InvokeTool(Decision):
    tool_name: str
    params: dict[str, Any]


BUILTIN_DECISIONS: tuple[type[Decision], ...] = (
    SendMessage,
    JoinPool,
    LeavePool,
    CreatePool,
    SubmitTask,
    ClaimTask,
    ReportTask,
    SubmitBid,
    Vote,
    Propose,
    AcceptProposal,
    RejectProposal,
    Delegate,
    RevokeDelegation,
    InvokeTool,
)

__all__ = [
    "AcceptProposal",
    "BUILTIN_DECISIONS",
    "ClaimTask",
    "CreatePool",
    "Decision",
    "Delegate",
    "InvokeTool",
    "JoinPool",
    "LeavePool",
    "Propose",
    "RejectProposal",
    "ReportTask",
    "RevokeDelegation",
    "SendMessage",
    "SubmitBid",
    "SubmitTask",
    "Vote",
]
