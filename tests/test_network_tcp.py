"""TcpTransport over real sockets on 127.0.0.1 with OS-assigned ports."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import struct

import msgpack
import pytest

from converge.core.identity import Identity
from converge.core.message import Message
from converge.core.topic import Topic
from converge.errors import FrameError, TransportError, UndeliverableError
from converge.network.identity_registry import IdentityRegistry
from converge.network.transport.tcp import TcpTransport, tcp_topic
from converge.observability.metrics import MetricsCollector


pytestmark = pytest.mark.usefixtures("no_leaked_tasks")  # from conftest


class DropWatcher:
    """A drop listener that lets a test await the next drop."""

    def __init__(self, transport):
        self.drops: list[tuple[Message | None, str, str]] = []
        self._event = asyncio.Event()
        transport.add_drop_listener(self)

    def __call__(self, message, reason, detail):
        self.drops.append((message, reason, detail))
        self._event.set()

    async def next(self):
        async with asyncio.timeout(10):
            await self._event.wait()
        self._event.clear()
        return self.drops[-1]


@pytest.fixture
async def pair():
    metrics = MetricsCollector()
    a = TcpTransport("127.0.0.1", 0, "agent-a")
    b = TcpTransport("127.0.0.1", 0, "agent-b", max_frame_size=4096, metrics_collector=metrics)
    await a.start()
    await b.start()
    yield a, b, metrics
    await a.stop()
    await b.stop()


def to(t: TcpTransport, **kw) -> Message:
    return Message(topics=[t.address_topic], **kw)


async def test_port_zero_exposes_the_bound_port():
    t = TcpTransport("127.0.0.1", 0, "x")
    assert t.bound_address is None
    async with t:
        host, port = t.bound_address
        assert host == "127.0.0.1" and port == t.port and port > 0
        assert t.address_topic == Topic("transport.tcp", {"host": "127.0.0.1", "port": port})
        assert TcpTransport.route_topic("h", 1) == tcp_topic("h", 1)
    assert t.bound_address is None and t.server is None


async def test_signed_messages_verify_after_the_wire(pair):
    a, b, _ = pair
    alice, bob = Identity.generate(), Identity.generate()
    keys = IdentityRegistry()
    keys.register_identity(alice)
    keys.register_identity(bob)
    signed = to(b, payload={"q": "ping", "nested": {"z": 1, "a": [1, 2]}}).sign(alice)
    await a.send(signed)
    got = await b.receive_verified(keys, timeout=5)
    assert got is not None and got == signed and got.verify(alice.public_key)
    # and back, the reply routed by the address the request advertised
    reply = Message(recipient=alice.fingerprint, topics=[a.address_topic], payload={"q": "pong"}).sign(bob)
    await b.send(reply)
    back = await a.receive(timeout=5)
    assert back.payload == {"q": "pong"} and back.verify(bob.public_key)


async def test_frame_bytes_match_reference_appendix_a1():
    frames: list[bytes] = []
    done = asyncio.Event()

    async def raw_server(reader, writer):
        header = await reader.readexactly(4)
        frames.append(header + await reader.readexactly(struct.unpack("!I", header)[0]))
        done.set()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(raw_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    msg = Message(id="m1", sender="a", topics=[Topic("transport.tcp", {"host": "127.0.0.1", "port": port})], payload={"x": 1}, timestamp=1)
    sender = TcpTransport("127.0.0.1", 0, "a")
    try:
        await sender.send(msg)
        async with asyncio.timeout(5):
            await done.wait()
    finally:
        await sender.stop()
        server.close()
        await server.wait_closed()
    body = msgpack.packb(
        {
            "id": "m1",
            "sender": "a",
            "recipient": None,
            "topics": [{"namespace": "transport.tcp", "attributes": {"host": "127.0.0.1", "port": port}, "version": "1.0"}],
            "payload": {"x": 1},
            "task_id": None,
            "timestamp": 1,
            "signature": b"",
        },
        use_bin_type=True,
    )
    assert frames == [struct.pack("!I", len(body)) + body]


def _frame(body: bytes) -> bytes:
    return struct.pack("!I", len(body)) + body


BAD_INPUTS = {
    "garbage": (b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1", "malformed_frame"),
    "non_map_msgpack": (_frame(msgpack.packb([1, 2, 3])), "malformed_frame"),
    "wrong_field_types": (_frame(msgpack.packb({"id": 5, "payload": "nope"})), "malformed_frame"),
    "topic_not_a_map": (_frame(msgpack.packb({"id": "x", "topics": ["transport.tcp"]})), "malformed_frame"),
    "empty_body": (_frame(b""), "malformed_frame"),
    "length_over_limit": (struct.pack("!I", 4097) + b"\x80" * 16, "oversized_frame"),
    "huge_length_header": (b"\xff\xff\xff\xff", "oversized_frame"),
    "disconnect_mid_body": (struct.pack("!I", 100) + b"\x80" * 10, "truncated_frame"),
    "disconnect_mid_header": (b"\x00\x00", "truncated_frame"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
async def test_bad_frame_closes_only_that_connection(pair, case):
    a, b, metrics = pair
    data, reason = BAD_INPUTS[case]
    watcher = DropWatcher(b)
    # a healthy connection that stays open across the incident
    good_reader, good_writer = await asyncio.open_connection("127.0.0.1", b.port)
    bad_reader, bad_writer = await asyncio.open_connection("127.0.0.1", b.port)
    try:
        bad_writer.write(data)
        await bad_writer.drain()
        if reason == "truncated_frame":
            bad_writer.close()  # the peer goes away in the middle of a frame
        message, got_reason, detail = await watcher.next()
        assert (message, got_reason) == (None, reason)
        assert "closed that connection" in detail
        if reason != "truncated_frame":
            async with asyncio.timeout(5):
                assert await bad_reader.read() == b""  # the server closed the bad connection
        # the connection opened before the incident still works ...
        early = to(b, payload={"via": "old connection"})
        good_writer.write(_frame(early.to_bytes()))
        await good_writer.drain()
        assert (await b.receive(timeout=5)).payload == {"via": "old connection"}
        # ... and so does a new one
        await a.send(to(b, payload={"via": "transport"}))
        assert (await b.receive(timeout=5)).payload == {"via": "transport"}
    finally:
        for w in (good_writer, bad_writer):
            w.close()
    assert b.drops[reason] == 1 and sum(b.drops.values()) == 1
    assert metrics.get_counter("transport_dropped_total", labels={"reason": reason}) == 1


async def test_many_frames_and_short_reads_on_one_connection(pair):
    _, b, _ = pair
    msgs = [to(b, payload={"i": i}) for i in range(20)]
    stream = b"".join(_frame(m.to_bytes()) for m in msgs)
    reader, writer = await asyncio.open_connection("127.0.0.1", b.port)
    try:
        for i in range(0, len(stream), 7):  # dribble the bytes in 7-byte pieces
            writer.write(stream[i : i + 7])
            await writer.drain()
            await asyncio.sleep(0)
        got = [await b.receive(timeout=5) for _ in msgs]
    finally:
        writer.close()
    assert [m.payload["i"] for m in got] == list(range(20))
    assert got == msgs


async def test_no_route_raises_and_counts(pair):
    a, _, _ = pair
    watcher = DropWatcher(a)
    with pytest.raises(UndeliverableError, match="no transport.tcp topic"):
        await a.send(Message(payload={}))
    with pytest.raises(UndeliverableError, match="invalid host/port"):
        await a.send(Message(topics=[Topic("transport.tcp", {"host": "127.0.0.1"})]))
    with pytest.raises(UndeliverableError, match="invalid host/port"):
        await a.send(Message(topics=[Topic("transport.tcp", {"host": "127.0.0.1", "port": 70000})]))
    assert a.drops["no_route"] == 3 and [d[1] for d in watcher.drops] == ["no_route"] * 3


async def test_send_to_dead_peer_raises_then_retry_reconnects():
    sender = TcpTransport("127.0.0.1", 0, "s")
    receiver = TcpTransport("127.0.0.1", 0, "r")
    await receiver.start()
    port = receiver.port
    try:
        await sender.send(to(receiver, payload={"n": 1}))
        assert (await receiver.receive(timeout=5)).payload == {"n": 1}
        await receiver.stop()
        with pytest.raises(TransportError, match="failed"):
            await sender.send(Message(topics=[tcp_topic("127.0.0.1", port)], payload={"n": 2}))
        assert sender.drops["send_failed"] == 1
        receiver = TcpTransport("127.0.0.1", port, "r")  # the peer comes back on the same port
        await receiver.start()
        await sender.send(Message(topics=[tcp_topic("127.0.0.1", port)], payload={"n": 3}))
        assert (await receiver.receive(timeout=5)).payload == {"n": 3}
    finally:
        await sender.stop()
        await receiver.stop()


async def test_connection_refused_is_a_transport_error():
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with TcpTransport("127.0.0.1", 0, "s") as sender:
        with pytest.raises(TransportError) as info:
            await sender.send(Message(topics=[tcp_topic("127.0.0.1", port)]))
        assert isinstance(info.value.__cause__, OSError)
        assert sender.drops["send_failed"] == 1


async def test_connections_are_pooled_and_concurrent_sends_all_arrive(pair):
    a, b, _ = pair
    await asyncio.gather(*(a.send(to(b, payload={"i": i})) for i in range(50)))
    got = sorted([(await b.receive(timeout=5)).payload["i"] for _ in range(50)])
    assert got == list(range(50))
    assert list(a.pool) == [("127.0.0.1", b.port)]
    assert len(b._handlers) == 1  # one accepted connection served all 50


async def test_oversized_outgoing_message_is_refused_by_the_sender(pair):
    a, b, _ = pair
    with pytest.raises(FrameError, match="max_frame_size=4096"):
        await b.send(to(a, payload={"blob": b"x" * 5000}))
    assert b.drops["oversized_frame"] == 1


async def test_oversized_incoming_message_is_dropped_by_the_receiver(pair):
    a, b, _ = pair
    watcher = DropWatcher(b)
    await a.send(to(b, payload={"blob": b"x" * 5000}))  # a's limit is 10 MiB; b's is 4096
    assert (await watcher.next())[1] == "oversized_frame"
    pooled = a.pool[("127.0.0.1", b.port)]
    async with asyncio.timeout(5):  # wait until the sender has seen the server close the connection
        while pooled.usable():
            await asyncio.sleep(0.01)
    await a.send(to(b, payload={"small": True}))  # the pool reconnects
    assert (await b.receive(timeout=5)).payload == {"small": True}


async def test_unencodable_payload_is_a_frame_error(pair):
    a, b, _ = pair
    with pytest.raises(FrameError, match="cannot be encoded"):
        await a.send(to(b, payload={"obj": object()}))
    assert a.drops["encode_failed"] == 1


async def test_receive_timeout_and_lifecycle():
    t = TcpTransport("127.0.0.1", 0, "x")
    await t.stop()  # before start: fine
    await t.start()
    await t.start()  # idempotent
    with pytest.raises(TimeoutError):
        await t.receive(timeout=0.01)
    await t.stop()
    await t.stop()


def test_bad_constructor_arguments_name_the_problem():
    with pytest.raises(ValueError, match="port must be"):
        TcpTransport("127.0.0.1", 70000, "x")
    with pytest.raises(ValueError, match="max_frame_size"):
        TcpTransport("127.0.0.1", 0, "x", max_frame_size=0)


async def test_stop_closes_accepted_connections_and_handler_tasks(pair):
    a, b, _ = pair
    await a.send(to(b))
    await b.receive(timeout=5)
    reader, writer = await asyncio.open_connection("127.0.0.1", b.port)
    writer.write(_frame(to(b).to_bytes()))
    await b.receive(timeout=5)  # proves the server accepted and serves this connection
    assert len(b._handlers) == 2
    await b.stop()
    assert b._handlers == set()
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls_round_trip(tmp_path):
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    receiver = TcpTransport("127.0.0.1", 0, "r", ssl_context=server_ctx)
    sender = TcpTransport("127.0.0.1", 0, "s", client_ssl_context=client_ctx)
    async with receiver, sender:
        await sender.send(to(receiver, payload={"secure": True}))
        assert (await receiver.receive(timeout=5)).payload == {"secure": True}
