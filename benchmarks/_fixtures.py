"""Shared inputs: the 200-byte payload, sample messages, benchmark agents."""

from __future__ import annotations

from typing import Any

import msgpack

from converge.core.agent import Agent
from converge.core.decisions import SendMessage
from converge.core.identity import Identity
from converge.core.message import Message

PAYLOAD_BYTES = 200


def payload(size: int = PAYLOAD_BYTES) -> dict[str, Any]:
    """A flat payload whose msgpack encoding is exactly ``size`` bytes (``size >= 40``)."""
    body = {"seq": 0, "kind": "bench", "text": ""}
    overhead = len(msgpack.packb(body, use_bin_type=True))
    n = size - overhead
    body["text"] = "x" * n
    # crossing the str8 / str16 header boundaries changes the header length
    while len(msgpack.packb(body, use_bin_type=True)) > size:
        n -= 1
        body["text"] = "x" * n
    return body


def signed_sample(identity: Identity | None = None) -> Message:
    """A signed message with the 200-byte payload, addressed to a fixed recipient."""
    identity = identity or Identity.generate()
    return Message(recipient="f" * 64, payload=payload()).sign(identity)


class PingAgent(Agent):
    """Answers every message by sending a reply to its sender (async ``decide``: no worker thread).

    ``on_reply(message)`` is called for every message received; the benchmark
    uses it to complete round trips. When ``reply`` is False it only counts.
    """

    def __init__(self, identity: Identity, *, reply: bool = True, topics: list[Any] | None = None) -> None:
        super().__init__(identity)
        self.reply = reply
        self.received = 0
        self.topics = list(topics or [])
        self.route: Any = None  # extra topics on replies (the TCP route back)
        self.waiter: Any = None

    async def adecide(self, messages: list[Message], tasks: list[Any], **kwargs: Any) -> list[Any]:
        self.received += len(messages)
        waiter = self.waiter
        if waiter is not None:
            waiter(self, messages)
        if not self.reply:
            return []
        me = self.id
        return [
            SendMessage(Message(sender=me, recipient=m.sender, topics=self.route or [], payload=m.payload))
            for m in messages
        ]


__all__ = ["PAYLOAD_BYTES", "PingAgent", "payload", "signed_sample"]
