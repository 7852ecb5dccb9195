"""Record inbound/outbound messages and feed them back later (reference section 8.5).

A :class:`ReplayLog` keeps events of the reference shape (Appendix A.4)::

    {"type": "message", "direction": "inbound", "agent_id": "a1",
     "transport": "LocalTransport", "timestamp": <msg.timestamp>, "data": <msg.to_dict()>}

Differences from the reference:

* with ``path=`` every event is appended to a JSON-lines file and flushed at
  once, so a crashed run still leaves its log (one small write per event);
* :meth:`ReplayLog.export` writes JSON lines and bytes (signatures) survive as
  ``{"$bytes": base64}`` — the reference wrote ``str(bytes)``; :meth:`ReplayLog.load`
  reads both our format and the reference's JSON array;
* a corrupt line raises :class:`~converge.errors.DecodeError` naming the line;
* ``max_events=`` bounds the in-memory list (evictions are counted in ``evicted``).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import Callable
from typing import IO, Any

from converge.core.message import Message
from converge.errors import ConfigError, DecodeError
from converge.observability._replay_io import dumps_event, iter_events

Event = dict[str, Any]


class ReplayLog:
    """Recorded message events, in memory and optionally in a JSON-lines file.

    Args:
        path: JSON-lines file to append each event to (created on the first event).
        max_events: keep at most this many events in memory (oldest evicted first).

    Attributes:
        events: the events in recording order.
        evicted: events dropped from memory because of ``max_events`` (still in the file).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, max_events: int | None = None) -> None:
        if max_events is not None and max_events < 1:
            raise ConfigError(f"max_events must be >= 1 or None, got {max_events}")
        self.path = os.fspath(path) if path is not None else None
        self.max_events = max_events
        self.events: list[Event] = []
        self.evicted = 0
        self._fh: IO[str] | None = None
        self._lock = threading.Lock()

    # -- recording -----------------------------------------------------------
    def record_inbound(self, message: Message, *, agent_id: str | None = None, transport: str | None = None) -> Event:
        """Record a message received by ``agent_id``; returns the event."""
        return self._record("inbound", message, agent_id, transport)

    def record_outbound(self, message: Message, *, agent_id: str | None = None, transport: str | None = None) -> Event:
        """Record a message sent by ``agent_id``; returns the event."""
        return self._record("outbound", message, agent_id, transport)

    def record_message(self, message: Message) -> Event:
        """Compatibility alias: ``record_outbound(message)`` without agent or transport."""
        return self.record_outbound(message)

    def _record(self, direction: str, message: Message, agent_id: str | None, transport: str | None) -> Event:
        event: Event = {
            "type": "message",
            "direction": direction,
            "agent_id": agent_id,
            "transport": transport,
            "timestamp": message.timestamp,
            "data": message.to_dict(),
        }
        line = dumps_event(event) if self.path is not None else None
        with self._lock:
            if line is not None:
                if self._fh is None:
                    self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
                self._fh.write(line + "\n")
                self._fh.flush()
            self._append(event)
        return event

    def _append(self, event: Event) -> None:
        self.events.append(event)
        if self.max_events is not None and len(self.events) > self.max_events:
            overflow = len(self.events) - self.max_events
            del self.events[:overflow]
            self.evicted += overflow

    # -- files ---------------------------------------------------------------
    def export(self, filepath: str | os.PathLike[str]) -> None:
        """Write all in-memory events to ``filepath`` as JSON lines (overwrites)."""
        with self._lock:
            lines = [dumps_event(e) for e in self.events]
        with open(filepath, "w", encoding="utf-8") as fh:
            fh.writelines(line + "\n" for line in lines)

    def load(self, filepath: str | os.PathLike[str]) -> None:
        """Replace the in-memory events with those of ``filepath``.

        Accepts JSON lines (our format) and the reference's JSON array.

        Raises:
            DecodeError: a line (or the array) is not valid; names the line number.
        """
        with open(filepath, encoding="utf-8") as fh:
            text = fh.read()
        loaded = list(iter_events(text, os.fspath(filepath)))
        with self._lock:
            self.events = []
            for event in loaded:
                self._append(event)

    @classmethod
    def from_file(cls, filepath: str | os.PathLike[str], *, max_events: int | None = None) -> ReplayLog:
        """A new in-memory log holding the events of ``filepath``."""
        log = cls(max_events=max_events)
        log.load(filepath)
        return log

    def close(self) -> None:
        """Close the JSON-lines file (idempotent; a later event reopens it in append mode)."""
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> ReplayLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.events)

    def messages(self, *, direction: str | None = None, agent_id: str | None = None) -> list[Message]:
        """The recorded messages (rebuilt), optionally filtered."""
        return [_message_of(e, i) for i, e in enumerate(_select(self.events, direction, agent_id, None, None))]


def _select(events: list[Event], direction: str | None, agent_id: str | None, start_ts: int | None, end_ts: int | None) -> list[Event]:
    out = []
    for e in events:
        if not isinstance(e, dict) or e.get("type") != "message":
            continue
        if direction is not None and e.get("direction") != direction:
            continue
        if agent_id is not None and e.get("agent_id") != agent_id:
            continue
        ts = e.get("timestamp")
        if start_ts is not None and (not isinstance(ts, (int, float)) or ts < start_ts):
            continue
        if end_ts is not None and (not isinstance(ts, (int, float)) or ts > end_ts):
            continue
        out.append(e)
    out.sort(key=lambda e: e.get("timestamp") if isinstance(e.get("timestamp"), (int, float)) else 0)
    return out


def _message_of(event: Event, index: int) -> Message:
    data = event.get("data")
    if not isinstance(data, dict):
        raise DecodeError(f"replay event {index} has no message data (got {type(data).__name__})")
    try:
        return Message.from_dict(data)
    except (DecodeError, TypeError) as exc:
        raise DecodeError(f"replay event {index} does not hold a valid message: {exc}") from exc


class ReplayRunner:
    """Feeds the messages of a :class:`ReplayLog` back into an inbox, a callback or an agent."""

    def __init__(self, replay_log: ReplayLog) -> None:
        self.replay_log = replay_log

    def select(
        self, *, direction: str | None = None, agent_id: str | None = None,
        start_ts: int | None = None, end_ts: int | None = None,
    ) -> list[Event]:
        """Message events matching the filters (bounds inclusive), stably sorted by timestamp."""
        return _select(list(self.replay_log.events), direction, agent_id, start_ts, end_ts)

    async def replay(
        self, *, inbox: Any = None, callback: Callable[[Message], Any] | None = None,
        direction: str | None = None, agent_id: str | None = None,
        start_ts: int | None = None, end_ts: int | None = None, dry_run: bool = False,
    ) -> list[Event]:
        """Push each selected message into ``inbox`` (``await inbox.push(msg)``) or call ``callback(msg)``.

        Returns the selected events. With ``dry_run`` nothing is delivered.

        Raises:
            ConfigError: neither ``inbox`` nor ``callback`` given (and not ``dry_run``).
            DecodeError: an event does not hold a valid message (names its index).
        """
        events = self.select(direction=direction, agent_id=agent_id, start_ts=start_ts, end_ts=end_ts)
        if dry_run:
            return events
        if inbox is None and callback is None:
            raise ConfigError("replay() needs inbox= or callback= (or dry_run=True)")
        for index, event in enumerate(events):
            msg = _message_of(event, index)
            if inbox is not None:
                await inbox.push(msg)
            else:
                result = callback(msg)  # type: ignore[misc]
                if inspect.isawaitable(result):
                    await result
        return events

    async def replay_into_agent(
        self, agent: Any, *, batch_size: int = 1, direction: str = "inbound",
        agent_id: str | None = None, start_ts: int | None = None, end_ts: int | None = None,
        tasks: list[Any] | None = None,
    ) -> list[Any]:
        """Run the recorded messages through ``agent``'s decide and return all its decisions.

        Messages are passed ``batch_size`` at a time (``decide(batch, tasks)``),
        calling ``adecide``/async ``decide`` directly and a synchronous ``decide``
        in a worker thread, as the runtime does. Decisions are returned in order.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        events = self.select(direction=direction, agent_id=agent_id, start_ts=start_ts, end_ts=end_ts)
        messages = [_message_of(e, i) for i, e in enumerate(events)]
        decisions: list[Any] = []
        for i in range(0, len(messages), batch_size):
            batch = messages[i:i + batch_size]
            decisions.extend(await _call_decide(agent, batch, list(tasks or [])) or [])
        return decisions


async def _call_decide(agent: Any, messages: list[Message], tasks: list[Any]) -> Any:
    adecide = getattr(agent, "adecide", None)
    if adecide is not None and inspect.iscoroutinefunction(adecide):
        return await adecide(messages, tasks)
    if inspect.iscoroutinefunction(agent.decide):
        return await agent.decide(messages, tasks)
    return await asyncio.to_thread(agent.decide, messages, tasks)


__all__ = ["ReplayLog", "ReplayRunner"]
