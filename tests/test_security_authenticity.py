"""Nobody is let in: forged, tampered, wrongly keyed, unsigned, replayed, oversized and deep messages.

Each bad message is sent into a real ``Lab`` whose receiving agent verifies on
receive; it must not reach the agent's ``decide``, must be counted in the lab's
metrics, and must show up in ``lab.frames.messages()`` as rejected. A genuine
message goes through the same path as a control.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest

from converge.core.identity import Identity
from converge.core.message import Message
from converge.core.topic import Topic
from converge.network.transport import HookedTransport, LocalTransport
from converge.network.transport.guards import PayloadLimits, ReplayGuard
from converge.testing.agents import FunctionAgent
from converge_lab import Lab

pytest.importorskip("pandas")


@pytest.fixture(autouse=True)
async def no_leaked_tasks():
    yield
    await asyncio.sleep(0)
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []


class Bob:
    """A receiving agent that records every message its decide sees."""

    def __init__(self) -> None:
        self.seen: list[Message] = []
        self.agent = FunctionAgent(lambda agent, messages, tasks: self.seen.extend(messages) or [], name="bob")

    @property
    def seen_ids(self) -> list[str]:
        return [m.id for m in self.seen]


@pytest.fixture
async def lab():
    async with Lab(runtime_defaults={"receive_timeout_sec": 0.2}) as lab:
        yield lab


@pytest.fixture
async def cast(lab):
    """alice and bob in the lab (bob verifies on receive), mallory and carol outside it."""
    alice, bob = FunctionAgent(lambda a, m, t: [], name="alice"), Bob()
    await lab.add(alice)
    await lab.add(bob.agent, identity_registry=lab.identities)
    return {"alice": alice.identity, "bob": bob, "mallory": Identity.generate(), "carol": Identity.generate(), "lab": lab}


def to_bob(c: dict, **kw) -> Message:
    return Message(recipient=c["bob"].agent.id, payload=kw.pop("payload", {"order": "buy", "qty": 1}), **kw)


def forged_sender(c):
    signed_by_mallory = to_bob(c).sign(c["mallory"])
    return dataclasses.replace(signed_by_mallory, sender=c["alice"].fingerprint)


def tampered_payload(c):
    return dataclasses.replace(to_bob(c).sign(c["alice"]), payload={"order": "buy", "qty": 1000})


def tampered_topics(c):
    genuine = to_bob(c, topics=[Topic("orders", {"desk": "a"})]).sign(c["alice"])
    return dataclasses.replace(genuine, topics=[Topic("orders", {"desk": "b"})])


def tampered_timestamp(c):
    genuine = to_bob(c).sign(c["alice"])
    return dataclasses.replace(genuine, timestamp=genuine.timestamp + 1)


def wrong_key(c):
    c["lab"].identities.register(c["alice"].fingerprint, c["carol"].public_key)  # the registry holds another key
    return to_bob(c).sign(c["alice"])


def unknown_sender(c):
    return to_bob(c).sign(c["mallory"])  # correctly signed, but nobody registered mallory


def unsigned(c):
    return to_bob(c, sender=c["alice"].fingerprint)


def garbage_signature(c):
    return dataclasses.replace(to_bob(c).sign(c["alice"]), signature=b"\x00" * 64)


BAD: dict[str, Callable[[dict], Message]] = {
    "forged sender": forged_sender,
    "tampered payload": tampered_payload,
    "tampered topics": tampered_topics,
    "tampered timestamp": tampered_timestamp,
    "wrong key": wrong_key,
    "unknown sender": unknown_sender,
    "unsigned": unsigned,
    "garbage signature": garbage_signature,
}


async def eventually(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.01)


def rows_for(lab: Lab, message_id: str):
    df = lab.frames.messages()
    return df[df["message_id"] == message_id]


async def test_genuine_message_is_delivered_and_marked_verified(lab, cast):
    genuine = to_bob(cast).sign(cast["alice"])
    await lab.send(genuine)
    assert await lab.run_until_idle(timeout=5)
    assert cast["bob"].seen_ids == [genuine.id]
    rows = rows_for(lab, genuine.id)
    assert rows["status"].tolist() == ["injected"] and rows["verified"].tolist() == [True]
    assert lab.metrics.counter_total("transport_dropped_total") == 0


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_message_is_rejected_counted_and_shown(lab, cast, case):
    bad = BAD[case](cast)
    await lab.send(bad)
    genuine = to_bob(cast, payload={"after": case}).sign(cast["alice"]) if case != "wrong key" else None
    if genuine is not None:
        await lab.send(genuine)  # bob keeps serving after the rejection
    assert await lab.run_until_idle(timeout=5)
    assert bad.id not in cast["bob"].seen_ids
    if genuine is not None:
        assert cast["bob"].seen_ids == [genuine.id]
    assert lab.metrics.get_counter("transport_dropped_total", labels={"reason": "signature_rejected"}) == 1
    assert lab.metrics.get_counter("messages_rejected_total", labels={"reason": "unverified"}) == 1
    rows = rows_for(lab, bad.id)
    rejected = rows[rows["status"] == "rejected"]
    assert len(rejected) == 1, rows[["status", "reason"]].values.tolist()
    assert "signature_rejected" in rejected["reason"].iloc[0]
    assert rejected["verified"].tolist() == [False]


# -- guards: replay, oversized, deeply nested -------------------------------------
@pytest.fixture
async def guarded(lab):
    """bob behind ReplayGuard + PayloadLimits: a HookedTransport over a local transport on the lab's registry."""
    bob = Bob()
    guards = [PayloadLimits(max_bytes=64 * 1024, max_depth=16, metrics_collector=lab.metrics),
              ReplayGuard(metrics_collector=lab.metrics)]
    transport = HookedTransport(LocalTransport(bob.agent.id, registry=lab.registry), guards, metrics_collector=lab.metrics)
    await lab.add(bob.agent, transport=transport, identity_registry=lab.identities)
    alice = Identity.generate()
    lab.identities.register_identity(alice)
    return {"bob": bob, "alice": alice, "lab": lab, "guards": guards}


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"d": value}
    return value


GUARDED = {
    "replay": ("replay_rejected", "ReplayGuard", None),
    "oversized": ("payload_size_rejected", "PayloadLimits", {"blob": "x" * 200_000}),
    "deeply nested": ("payload_depth_rejected", "PayloadLimits", nested(40)),
}


async def _send_guarded_case(g: dict, case: str) -> tuple[Message, Message]:
    lab, bob, alice = g["lab"], g["bob"], g["alice"]
    payload = GUARDED[case][2]
    first = Message(recipient=bob.agent.id, payload=payload or {"order": 1}).sign(alice)
    await lab.send(first)
    if case == "replay":
        await eventually(lambda: bob.seen_ids == [first.id])  # the original goes through
        await lab.send(first)  # the same signed message again
    control = Message(recipient=bob.agent.id, payload={"control": case}).sign(alice)
    await lab.send(control)
    await eventually(lambda: control.id in bob.seen_ids)
    return first, control


@pytest.mark.parametrize("case", list(GUARDED))
async def test_guarded_rejection_is_counted_and_visible_in_the_lab(guarded, case):
    reason, guard_name, _ = GUARDED[case]
    lab, bob = guarded["lab"], guarded["bob"]
    bad, control = await _send_guarded_case(guarded, case)
    expected_seen = [bad.id, control.id] if case == "replay" else [control.id]
    assert bob.seen_ids == expected_seen  # rejected once, and bob keeps serving
    guard_label = "replay" if guard_name == "ReplayGuard" else "payload"
    assert lab.metrics.get_counter("message_guard_rejected_total", labels={"guard": guard_label, "reason": reason}) == 1
    assert lab.metrics.counter_total("transport_dropped_total") == 1
    assert sum(g.rejected[reason] for g in guarded["guards"]) == 1
    assert lab.metrics.get_counter("transport_dropped_total", labels={"reason": reason}) == 1  # under its own reason
    assert lab.metrics.get_counter("messages_rejected_total", labels={"reason": "unverified"}) == 0  # not a signature
    rows = rows_for(lab, bad.id)
    dropped = rows[~rows["status"].isin(["injected", "delivered"])]
    assert dropped["status"].tolist() == ["rejected"], rows[["status", "reason"]].values.tolist()
    assert reason in dropped["reason"].iloc[0] and guard_name in dropped["reason"].iloc[0]
