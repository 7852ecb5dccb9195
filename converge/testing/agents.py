"""Deterministic agents for tests, notebooks and benchmarks."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from converge.core.agent import Agent
from converge.core.decisions import SendMessage
from converge.core.identity import Identity
from converge.core.message import Message


class FunctionAgent(Agent):
    """An agent whose decisions come from ``fn(agent, messages, tasks) -> list``; sync or async fn.

    Every call is recorded in :attr:`calls` as ``(messages, tasks)`` unless
    ``record_calls=False`` (use that for long runs: the record is unbounded).
    """

    def __init__(self, fn: Callable[..., Any], identity: Identity | None = None, *, name: str | None = None,
                 capabilities: Iterable[Any] = (), topics: Iterable[Any] = (), record_calls: bool = True) -> None:
        super().__init__(identity or Identity.generate())
        self.fn = fn
        self.name = name or "agent"
        self.capabilities = list(capabilities)
        self.topics = list(topics)
        self.calls: list[tuple[list[Any], list[Any]]] = []
        self.record_calls = record_calls

    async def adecide(self, messages: list[Any], tasks: list[Any], **kwargs: Any) -> list[Any]:
        if self.record_calls:
            self.calls.append((list(messages), list(tasks)))
        fn = self.fn
        result = fn(self, messages, tasks, **kwargs) if (kwargs and _accepts_kwargs(fn)) else fn(self, messages, tasks)
        if inspect.isawaitable(result):
            result = await result
        return list(result or [])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, id={self.id[:12]}…)"


class ScriptedAgent(FunctionAgent):
    """Returns the next list from ``script`` on each decide with work; ``[]`` once it runs out."""

    def __init__(self, script: Iterable[list[Any]], identity: Identity | None = None, **kwargs: Any) -> None:
        steps = list(script)
        super().__init__(lambda agent, m, t: steps.pop(0) if steps else [], identity, **kwargs)


class EchoAgent(FunctionAgent):
    """Replies to every message with ``{"echo": payload}`` sent back to its sender.

    ``limit`` caps the number of replies (``None``: no cap), useful for ping-pong demos.
    """

    def __init__(self, identity: Identity | None = None, *, limit: int | None = None, **kwargs: Any) -> None:
        self.replies = 0
        self.limit = limit
        super().__init__(self._echo, identity, **kwargs)

    def _echo(self, agent: Agent, messages: list[Message], tasks: list[Any]) -> list[Any]:
        out = []
        for m in messages:
            if self.limit is not None and self.replies >= self.limit:
                break
            self.replies += 1
            out.append(SendMessage(Message(sender=self.id, recipient=m.sender, payload={"echo": m.payload})))
        return out


def _accepts_kwargs(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


__all__ = ["EchoAgent", "FunctionAgent", "ScriptedAgent"]
