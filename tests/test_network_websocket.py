"""WebSocket client/server transports over real sockets on 127.0.0.1 (OS-assigned ports)."""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import msgpack
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from converge.core.identity import Identity
from converge.core.message import Message
from converge.errors import FrameError, TransportError, UndeliverableError
from converge.network.identity_registry import IdentityRegistry
from converge.network.transport.websocket import AGENT_HEADER, WebSocketServerTransport, WebSocketTransport
from converge.observability.metrics import MetricsCollector


pytestmark = pytest.mark.usefixtures("no_leaked_tasks")  # from conftest


@pytest.fixture
async def server():
    metrics = MetricsCollector()
    s = WebSocketServerTransport("hub", "127.0.0.1", 0, max_frame_size=4096, metrics_collector=metrics)
    await s.start()
    yield s
    await s.stop()


async def wait_for(predicate, what: str) -> None:
    async with asyncio.timeout(10):
        while not predicate():
            await asyncio.sleep(0.01)


def _frame(body: bytes) -> bytes:
    return struct.pack("!I", len(body)) + body


async def test_pair_exchanges_signed_messages_both_ways(server):
    alice = Identity.generate()
    keys = IdentityRegistry()
    keys.register_identity(alice)
    async with WebSocketTransport(alice.fingerprint, server.uri) as client:
        await wait_for(lambda: alice.fingerprint in server.clients, "client registration")
        signed = Message(payload={"hello": "hub", "n": [1, 2]}).sign(alice)
        await client.send(signed)
        got = await server.receive_verified(keys, timeout=5)
        assert got == signed and got.verify(alice.public_key)
        assert await server.send(Message(sender="hub", recipient=alice.fingerprint, payload={"hi": 1})) == [alice.fingerprint]
        assert (await client.receive(timeout=5)).payload == {"hi": 1}
    assert not client.connected


async def test_server_broadcasts_to_every_client(server):
    c1, c2 = WebSocketTransport("c1", server.uri), WebSocketTransport("c2", server.uri)
    async with c1, c2:
        await wait_for(lambda: set(server.clients) == {"c1", "c2"}, "both clients")
        assert sorted(await server.send(Message(sender="hub", payload={"all": True}))) == ["c1", "c2"]
        assert (await c1.receive(timeout=5)).payload == {"all": True}
        assert (await c2.receive(timeout=5)).payload == {"all": True}
    await wait_for(lambda: not server.clients, "clients gone")
    assert await server.send(Message(sender="hub")) == []
    assert server.drops["no_route"] == 1


async def test_unknown_recipient_raises(server):
    with pytest.raises(UndeliverableError, match="ghost"):
        await server.send(Message(recipient="ghost"))
    assert server.drops["unknown_recipient"] == 1
    assert server.metrics_collector.get_counter("transport_dropped_total", labels={"reason": "unknown_recipient"}) == 1


BAD = {
    "garbage": (b"\x00\x00\x00\x03\xc1\xc1\xc1", "malformed_frame", 1007),
    "non_map_msgpack": (_frame(msgpack.packb("just a string")), "malformed_frame", 1007),
    "wrong_field_types": (_frame(msgpack.packb({"id": "x", "timestamp": "yesterday"})), "malformed_frame", 1007),
    "trailing_bytes": (_frame(Message().to_bytes()) + b"junk", "malformed_frame", 1007),
    "text_frame": ("\x00\x00\x00\x02hi", "malformed_frame", 1007),  # text is read as its UTF-8 bytes
    "shorter_than_header": (b"\x00\x01", "truncated_frame", 1007),
    "shorter_than_announced": (struct.pack("!I", 50) + b"\x80", "truncated_frame", 1007),
    "length_over_limit": (struct.pack("!I", 5000) + b"\x80", "oversized_frame", 1009),
    "message_over_size_limit": (struct.pack("!I", 100) + b"x" * 6000, "oversized_frame", 1009),
}


@pytest.mark.parametrize("case", sorted(BAD))
async def test_bad_frame_closes_only_that_connection(server, case):
    data, reason, code = BAD[case]
    dropped = asyncio.Event()
    server.add_drop_listener(lambda m, r, d: dropped.set())
    async with WebSocketTransport("steady", server.uri) as steady:
        await wait_for(lambda: "steady" in server.clients, "steady client")
        async with connect(server.uri, additional_headers={AGENT_HEADER: "rogue"}) as rogue:
            await rogue.send(data)
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(10):
                    await rogue.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code
        async with asyncio.timeout(10):
            await dropped.wait()
        assert server.drops[reason] == 1 and sum(server.drops.values()) == 1
        assert server.metrics_collector.get_counter("transport_dropped_total", labels={"reason": reason}) == 1
        # the connection that was open all along still works, both ways
        await steady.send(Message(payload={"after": case}))
        assert (await server.receive(timeout=5)).payload == {"after": case}
        await server.send(Message(recipient="steady", payload={"still": "here"}))
        assert (await steady.receive(timeout=5)).payload == {"still": "here"}
    # and a brand-new connection works too
    async with WebSocketTransport("late", server.uri) as late:
        await late.send(Message(payload={"late": True}))
        assert (await server.receive(timeout=5)).payload == {"late": True}


async def test_client_refuses_oversized_and_unencodable_messages(server):
    async with WebSocketTransport("c", server.uri, max_frame_size=128) as client:
        with pytest.raises(FrameError, match="max_frame_size=128"):
            await client.send(Message(payload={"blob": "x" * 500}))
        with pytest.raises(FrameError, match="cannot be encoded"):
            await client.send(Message(payload={"obj": object()}))
    assert client.drops["oversized_frame"] == 1 and client.drops["encode_failed"] == 1


async def test_client_send_after_server_went_away_raises(server):
    client = WebSocketTransport("c", server.uri)
    await client.start()
    try:
        await server.stop()
        await wait_for(lambda: not client.connected, "client notices the close")
        with pytest.raises(TransportError, match="failed"):
            await client.send(Message(payload={}))
        assert client.drops["send_failed"] == 1
    finally:
        await client.stop()


async def test_connect_failure_and_not_started_errors():
    port_holder = WebSocketServerTransport("tmp")
    await port_holder.start()
    uri = port_holder.uri
    await port_holder.stop()
    client = WebSocketTransport("c", uri, open_timeout=5)
    with pytest.raises(TransportError, match="cannot connect"):
        await client.start()
    with pytest.raises(RuntimeError, match="not started"):
        await client.send(Message())
    with pytest.raises(RuntimeError, match="not started"):
        await WebSocketServerTransport("s").send(Message())
    await client.stop()


async def test_receive_timeout_and_idempotent_lifecycle(server):
    await server.start()  # second start is a no-op
    assert server.bound_address == ("127.0.0.1", server.port)
    with pytest.raises(TimeoutError):
        await server.receive(timeout=0.01)
    client = WebSocketTransport("c", server.uri)
    await client.stop()  # before start
    await client.start()
    await client.start()
    await client.stop()
    await client.stop()


def test_missing_websockets_names_the_extra():
    code = textwrap.dedent(
        """
        import asyncio, sys
        sys.modules["websockets"] = None  # as if the package were not installed
        from converge.errors import MissingExtraError
        from converge.network.transport.websocket import WebSocketTransport
        t = WebSocketTransport("a", "ws://127.0.0.1:9")
        try:
            asyncio.run(t.start())
        except MissingExtraError as exc:
            print("OK", exc)
        """
    )
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OK") and "converge[websocket]" in out.stdout
