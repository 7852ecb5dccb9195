"""Discovery descriptors, queries and persistence; AgentNetwork and build_descriptor."""

from __future__ import annotations

import base64
import contextlib
import sqlite3

import pytest

from converge.core.agent import Agent
from converge.core.capability import Capability
from converge.core.identity import Identity
from converge.core.message import Message
from converge.core.topic import Topic
from converge.errors import DecodeError
from converge.extensions.storage.file import FileStore
from converge.extensions.storage.memory import MemoryStore
from converge.extensions.storage.sqlite_store import SQLiteStore
from converge.network.discovery import AgentDescriptor, DiscoveryQuery, DiscoveryService
from converge.network.network import AgentNetwork, build_descriptor
from converge.network.transport import LocalTransport, LocalTransportRegistry
from converge.observability.metrics import MetricsCollector

OCR = Capability("ocr", "2.0", "reads text", constraints={"lang": "en"}, costs={"usd": 0.5}, latency_ms=120)


def descriptor(agent_id: str, topics=(), caps=(), key: bytes | None = None) -> AgentDescriptor:
    return AgentDescriptor(id=agent_id, topics=list(topics), capabilities=list(caps), public_key=key)


def test_descriptor_dict_round_trip_with_and_without_key():
    key = Identity.generate().public_key
    d = descriptor("a1", [Topic("jobs", {"kind": "ocr"}, "2.0")], [OCR], key)
    data = d.to_dict()
    assert data == {
        "id": "a1",
        "topics": [{"namespace": "jobs", "attributes": {"kind": "ocr"}, "version": "2.0"}],
        "capabilities": [
            {"name": "ocr", "version": "2.0", "description": "reads text", "constraints": {"lang": "en"}, "costs": {"usd": 0.5}, "latency_ms": 120}
        ],
        "public_key": base64.b64encode(key).decode("ascii"),
    }
    assert AgentDescriptor.from_dict(data) == d
    assert "public_key" not in descriptor("a2").to_dict()
    minimal = AgentDescriptor.from_dict({"capabilities": [{"name": "x"}]})
    assert minimal.id == "" and minimal.capabilities == [Capability("x", "1.0", "")] and minimal.public_key is None


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"id": 3}, "'id' must be a str"),
        ({"id": "a", "topics": "jobs"}, "'topics' must be a list of dicts"),
        ({"id": "a", "topics": ["jobs"]}, "'topics' must be a list of dicts"),
        ({"id": "a", "topics": [{"nope": 1}]}, "invalid topic"),
        ({"id": "a", "capabilities": [{"version": "1"}]}, "without a str 'name'"),
        ({"id": "a", "public_key": "***"}, "not valid base64"),
        (["not", "a", "dict"], "must be a dict"),
    ],
)
def test_malformed_descriptor_raises_a_clear_error(bad, fragment):
    with pytest.raises(DecodeError, match=fragment):
        AgentDescriptor.from_dict(bad)


def test_query_by_topic_and_capabilities():
    svc = DiscoveryService()
    a = descriptor("a", [Topic("jobs", {"kind": "ocr"})], [OCR, "translate"])
    b = descriptor("b", [Topic("jobs", {"kind": "asr"})], ["ocr"])
    c = descriptor("c", [Topic("news")], [])
    for d in (a, b, c):
        svc.register(d)
    assert svc.query(DiscoveryQuery()) == [a, b, c]
    assert svc.query(DiscoveryQuery(topics=[Topic("jobs", {"kind": "ocr"})])) == [a]
    assert svc.query(DiscoveryQuery(topics=[Topic("jobs")])) == []  # attributes must match exactly
    assert svc.query(DiscoveryQuery(topics=[Topic("jobs", {"kind": "ocr"}, "2.0")])) == []  # and the version
    assert svc.query(DiscoveryQuery(capabilities=["ocr"])) == [a, b]
    assert svc.query(DiscoveryQuery(capabilities=["ocr", "translate"])) == [a]
    assert svc.query(DiscoveryQuery(topics=[Topic("news"), Topic("jobs", {"kind": "asr"})])) == [b, c]
    assert svc.query(DiscoveryQuery(capabilities=["ocr"]), candidates=[b]) == [b]
    svc.unregister("a")
    svc.unregister("a")  # no error when absent
    assert svc.query(DiscoveryQuery(capabilities=["ocr"])) == [b]


@pytest.fixture(params=["memory", "file", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "file":
        yield FileStore(tmp_path / "filestore")
    else:
        with SQLiteStore(tmp_path / "discovery.sqlite3") as s:
            yield s


def test_descriptors_persist_and_are_read_back_by_a_second_service(store):
    key = Identity.generate().public_key
    first = DiscoveryService(store=store)
    first.register(descriptor("a", [Topic("jobs", {"kind": "ocr"})], [OCR], key))
    first.register(descriptor("b", [Topic("news")], ["summarise"]))
    assert store.get("discovery:agent:a") == first.descriptors["a"].to_dict()  # plain dict, reference layout
    second = DiscoveryService(store=store)
    assert second.descriptors == {"a": first.descriptors["a"], "b": AgentDescriptor.from_dict(first.descriptors["b"].to_dict())}
    assert second.descriptors["a"].public_key == key
    assert [d.id for d in second.query(DiscoveryQuery(capabilities=["ocr"]))] == ["a"]
    # changes made by one service become visible to the other on refresh()
    first.unregister("a")
    first.register(descriptor("c"))
    assert store.get("discovery:agent:a") is None
    assert second.refresh() == 2
    assert sorted(second.descriptors) == ["b", "c"]


def test_sqlite_file_is_readable_by_a_new_process_style_reopen(tmp_path):
    path = tmp_path / "shared.sqlite3"
    with SQLiteStore(path) as s:
        DiscoveryService(store=s).register(descriptor("a", [Topic("t")], ["x"]))
    with SQLiteStore(path) as s:
        assert [d.id for d in DiscoveryService(store=s).query(DiscoveryQuery(topics=[Topic("t")]))] == ["a"]


def test_descriptor_objects_stored_through_the_codec_are_loaded(tmp_path):
    with SQLiteStore(tmp_path / "codec.sqlite3") as s:
        s.put("discovery:agent:obj", descriptor("obj", [Topic("t")], [OCR], b"\x01" * 32))
        svc = DiscoveryService(store=s)
        assert svc.descriptors["obj"].capabilities == [OCR]
        assert svc.descriptors["obj"].public_key == b"\x01" * 32


def test_malformed_stored_entries_are_logged_and_counted(store, caplog):
    metrics = MetricsCollector()
    store.put("discovery:agent:good", descriptor("good").to_dict())
    store.put("discovery:agent:listy", ["not", "a", "descriptor"])
    store.put("discovery:agent:broken", {"id": "broken", "topics": "oops"})
    store.put("discovery:agent:alias", descriptor("someone-else").to_dict())
    store.put("unrelated", {"id": "x"})
    svc = DiscoveryService(store=store, metrics_collector=metrics)
    assert list(svc.descriptors) == ["good"]
    assert svc.skipped == {"not_a_descriptor": 1, "malformed": 1, "id_mismatch": 1}
    assert sorted(svc.load_errors) == ["discovery:agent:alias", "discovery:agent:broken", "discovery:agent:listy"]
    assert "'topics' must be a list" in svc.load_errors["discovery:agent:broken"]
    assert metrics.get_counter("discovery_skipped_total", labels={"reason": "malformed"}) == 1
    assert "discovery:agent:broken" in caplog.text


def test_undecodable_row_is_counted(tmp_path):
    path = tmp_path / "corrupt.sqlite3"
    with SQLiteStore(path) as s:
        s.put("discovery:agent:ok", descriptor("ok").to_dict())
    with contextlib.closing(sqlite3.connect(path)) as raw, raw:  # corrupt one row behind the store's back
        raw.execute("INSERT INTO store (key, value) VALUES (?, ?)", ("discovery:agent:bad", b"garbage"))
    with SQLiteStore(path) as s:
        svc = DiscoveryService(store=s)
        assert list(svc.descriptors) == ["ok"] and svc.skipped == {"undecodable": 1}


def test_refresh_without_store_is_a_no_op():
    svc = DiscoveryService()
    svc.register(descriptor("a"))
    assert svc.refresh() == 1 and svc.get("a") is not None and svc.get("b") is None


def test_build_descriptor_converts_topics_and_capabilities():
    agent = Agent(Identity.generate())
    agent.topics = [Topic("jobs"), {"namespace": "alerts", "attributes": {"lvl": 1}, "version": "1.0"}, "news"]
    agent.capabilities = [OCR, "translate"]
    d = build_descriptor(agent)
    assert d.id == agent.id and d.public_key == agent.identity.public_key
    assert d.topics == [Topic("jobs"), Topic("alerts", {"lvl": 1}), Topic("news")]
    assert d.capabilities == [OCR, Capability("translate", "1.0", "")]

    class Bare:
        id = "bare"

    assert build_descriptor(Bare()) == AgentDescriptor(id="bare", topics=[], capabilities=[], public_key=None)


async def test_agent_network_sends_and_discovers():
    registry = LocalTransportRegistry.isolated()
    alice, bob = Agent(Identity.generate()), Agent(Identity.generate())
    alice.capabilities = ["ocr"]
    bob.topics = [Topic("jobs")]
    async with LocalTransport(alice.id, registry=registry) as ta, LocalTransport(bob.id, registry=registry) as tb:
        net = AgentNetwork(ta)
        net.register_agent(alice)
        net.register_agent(bob)
        assert [d.id for d in net.discover(DiscoveryQuery(capabilities=["ocr"]))] == [alice.id]
        assert [d.id for d in net.discover(DiscoveryQuery(topics=[Topic("jobs")]))] == [bob.id]
        assert await net.send(Message(sender=alice.id, recipient=bob.id)) == [bob.id]
        assert await net.broadcast(Message(sender=alice.id)) == [bob.id]
        assert (await tb.receive(timeout=1)).recipient == bob.id
        net.unregister_agent(bob.id)
        net.unregister_agent(bob.id)
        assert list(net.local_agents) == [alice.id]
