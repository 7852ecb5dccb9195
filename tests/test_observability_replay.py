"""ReplayLog / ReplayRunner: event shape, JSON-lines persistence, bytes round trip, filters, errors."""

from __future__ import annotations

import json

import pytest

from converge.core.decisions import SendMessage
from converge.core.identity import Identity
from converge.core.message import Message
from converge.core.topic import Topic
from converge.errors import ConfigError, DecodeError
from converge.observability import ReplayLog, ReplayRunner
from converge.runtime import Inbox
from converge.testing.agents import FunctionAgent


def signed(payload: dict, ts: int, *, identity: Identity | None = None) -> Message:
    return Message(payload=payload, timestamp=ts, topics=[Topic("ns", {"k": 1})]).sign(identity or Identity.generate())


def test_event_shape_matches_reference():
    log = ReplayLog()
    msg = Message(id="m1", sender="s", payload={"x": 1}, timestamp=5)
    log.record_inbound(msg, agent_id="a1", transport="LocalTransport")
    log.record_message(msg)
    assert log.events[0] == {
        "type": "message", "direction": "inbound", "agent_id": "a1", "transport": "LocalTransport",
        "timestamp": 5, "data": msg.to_dict(),
    }
    assert log.events[1]["direction"] == "outbound"
    assert log.events[1]["agent_id"] is None and log.events[1]["transport"] is None


def test_recording_snapshots_the_payload():
    log = ReplayLog()
    msg = Message(payload={"n": 1})
    log.record_outbound(msg)
    msg.payload["n"] = 2  # a hook mutating the payload later does not rewrite history
    assert log.events[0]["data"]["payload"] == {"n": 1}


def test_json_lines_file_round_trip_keeps_signatures(tmp_path):
    ident = Identity.generate()
    path = tmp_path / "run.jsonl"
    with ReplayLog(path) as log:
        a = signed({"blob": b"\x00\xffraw", "nested": {"$bytes": "not-a-marker"}}, 10, identity=ident)
        b = signed({"i": 2}, 11, identity=ident)
        log.record_inbound(a, agent_id="x", transport="TcpTransport")
        log.record_outbound(b, agent_id="x")
        # appended and flushed per event: readable before close
        assert len(path.read_text().splitlines()) == 2
    for line in path.read_text().splitlines():
        json.loads(line)
    loaded = ReplayLog.from_file(path)
    assert loaded.events == log.events
    (ma,) = loaded.messages(direction="inbound")
    assert ma.signature == a.signature and ma.verify(ident.public_key)
    assert ma.payload == {"blob": b"\x00\xffraw", "nested": {"$bytes": "not-a-marker"}}
    assert ma.topics == [Topic("ns", {"k": 1})]


def test_file_log_appends_across_instances(tmp_path):
    path = tmp_path / "a.jsonl"
    with ReplayLog(path) as first:
        first.record_inbound(Message(timestamp=1))
    second = ReplayLog(path)
    second.record_inbound(Message(timestamp=2))
    second.close()
    second.close()  # idempotent
    assert [e["timestamp"] for e in ReplayLog.from_file(path).events] == [1, 2]


def test_export_and_load(tmp_path):
    log = ReplayLog()
    msg = signed({"v": 1}, 3)
    log.record_inbound(msg, agent_id="a")
    out = tmp_path / "export.jsonl"
    log.export(out)
    other = ReplayLog()
    other.record_outbound(Message())
    other.load(out)  # replaces
    assert other.events == log.events
    assert other.messages()[0].signature == msg.signature


def test_load_reference_json_array_with_str_bytes(tmp_path):
    ident = Identity.generate()
    msg = signed({"v": 1}, 7, identity=ident)
    event = {"type": "message", "direction": "inbound", "agent_id": "a", "transport": None,
             "timestamp": 7, "data": msg.to_dict()}
    path = tmp_path / "ref.json"
    path.write_text(json.dumps([event], default=str))  # exactly what the reference's export() writes
    log = ReplayLog.from_file(path)
    restored = log.messages()[0]
    assert restored.signature == msg.signature and restored.verify(ident.public_key)


def test_corrupt_line_names_line_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"type": "message", "direction": "inbound", "timestamp": 1, "data": {}})
    path.write_text(f"{good}\n\n{good}\n{{not json\n")
    with pytest.raises(DecodeError, match=r"bad\.jsonl: line 4"):
        ReplayLog().load(path)
    path.write_text(f"{good}\n[1, 2]\n")
    with pytest.raises(DecodeError, match="line 2: expected a JSON object"):
        ReplayLog().load(path)
    path.write_text('{"type": "message", "data": {"$bytes": "***"}}\n')
    with pytest.raises(DecodeError, match="line 1"):
        ReplayLog().load(path)


def test_bounded_memory_counts_evictions(tmp_path):
    path = tmp_path / "b.jsonl"
    log = ReplayLog(path, max_events=2)
    for ts in range(5):
        log.record_inbound(Message(timestamp=ts))
    log.close()
    assert [e["timestamp"] for e in log.events] == [3, 4] and log.evicted == 3
    assert len(ReplayLog.from_file(path)) == 5  # the file keeps everything
    with pytest.raises(ConfigError):
        ReplayLog(max_events=0)


async def test_runner_filters_sorts_and_delivers():
    log = ReplayLog()
    for ts, direction, agent in [(30, "inbound", "a"), (10, "inbound", "a"), (20, "outbound", "a"), (15, "inbound", "b")]:
        (log.record_inbound if direction == "inbound" else log.record_outbound)(
            Message(payload={"ts": ts}, timestamp=ts), agent_id=agent
        )
    log.events.append({"type": "note", "text": "ignored"})
    runner = ReplayRunner(log)
    dry = await runner.replay(direction="inbound", agent_id="a", dry_run=True)
    assert [e["timestamp"] for e in dry] == [10, 30]
    assert [e["timestamp"] for e in await runner.replay(start_ts=15, end_ts=20, dry_run=True)] == [15, 20]
    inbox = Inbox()
    await runner.replay(inbox=inbox, direction="inbound")
    assert [m.payload["ts"] for m in inbox.poll(10)] == [10, 15, 30]
    seen: list[int] = []

    async def acallback(msg: Message) -> None:
        seen.append(msg.timestamp)

    await runner.replay(callback=acallback, agent_id="b")
    await runner.replay(callback=lambda m: seen.append(-m.timestamp), agent_id="b")
    assert seen == [15, -15]
    with pytest.raises(ConfigError):
        await runner.replay()


async def test_runner_rejects_invalid_message_data():
    log = ReplayLog()
    log.events.append({"type": "message", "direction": "inbound", "timestamp": 1, "data": {"payload": "nope"}})
    with pytest.raises(DecodeError, match="event 0"):
        await ReplayRunner(log).replay(callback=lambda m: None)


async def test_replay_into_agent_reproduces_decisions():
    def reply(agent, messages, tasks):
        return [SendMessage(Message(id=f"re-{m.id}", recipient=m.sender, payload={"n": m.payload["n"] * 2}, timestamp=0))
                for m in messages]

    msgs = [signed({"n": i}, 100 + i) for i in range(5)]
    first = FunctionAgent(reply)
    log = ReplayLog()
    decisions_live = []
    for m in msgs:
        log.record_inbound(m, agent_id=first.id)
        decisions_live += await first.adecide([m], [])
    fresh = FunctionAgent(reply)
    replayed = await ReplayRunner(log).replay_into_agent(fresh)
    assert replayed == decisions_live
    assert [len(c[0]) for c in fresh.calls] == [1] * 5
    fresh2 = FunctionAgent(reply)
    assert await ReplayRunner(log).replay_into_agent(fresh2, batch_size=2) == decisions_live
    assert [len(c[0]) for c in fresh2.calls] == [2, 2, 1]

    class SyncAgent:
        def decide(self, messages, tasks):
            return reply(self, messages, tasks)

    assert await ReplayRunner(log).replay_into_agent(SyncAgent()) == decisions_live
    with pytest.raises(ConfigError):
        await ReplayRunner(log).replay_into_agent(fresh, batch_size=0)
