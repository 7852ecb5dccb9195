"""The machine's own limits, measured in the same run as everything else.

* ``limits.queue_rt`` — a round trip between two tasks over two ``asyncio.Queue`` objects;
* ``limits.queue_fanout_50`` — one producer puts a burst of messages into 50 queues, each
  drained by its own task (deliveries/s);
* ``limits.loop_tick`` — ``await asyncio.sleep(0)`` in one task (event-loop iterations/s);
* ``limits.tcp_echo_rt`` — a bare asyncio-streams echo on 127.0.0.1 with the frame size of a
  signed 200-byte-payload message (4-byte length header + body);
* ``limits.ed25519_sign`` / ``limits.ed25519_verify`` — the raw primitive on the signing bytes
  of that message, of the fastest backend installed (OpenSSL through ``cryptography``, or
  libsodium through PyNaCl when present — the backend :class:`~converge.core.identity.Identity`
  then uses too);
* ``limits.msgpack_rt`` — ``msgpack.packb`` + ``msgpack.unpackb`` of that message's wire map;
* ``limits.handoff_rt`` — not a machine limit but the floor of the runtime's *structure*: a round
  trip where each side has a listener task (receive queue → inbox → scheduler notify) and a step
  task (scheduler wait → inbox → peer queue), as in :class:`~converge.runtime.AgentRuntime`,
  with empty bodies. It shows what the two-tasks-per-hop design costs before any step work.

:class:`Probe` measures any of them (or a weighted sum, e.g. "2 signs + 1 queue
round trip") in a few milliseconds, so a benchmark can pair every timed run
with a fresh measurement of its limit. Run alone with
``python -m benchmarks.bench_limits [--quick]``.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time
from typing import Any

import msgpack

from benchmarks._fixtures import signed_sample
from benchmarks._harness import Limit, Plan, Result, Sample, choose, measure, timed_loop
from converge.core.identity import Identity

FANOUT = 50


async def _queue_rt(n: int) -> Sample:
    ping: asyncio.Queue[Any] = asyncio.Queue()
    pong: asyncio.Queue[Any] = asyncio.Queue()

    async def echo() -> None:
        while True:
            item = await ping.get()
            if item is None:
                return
            pong.put_nowait(item)

    task = asyncio.create_task(echo())
    await asyncio.sleep(0)
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        ping.put_nowait(i)
        await pong.get()
        lat.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - t0
    ping.put_nowait(None)
    await task
    return Sample(n, elapsed, lat)


async def _queue_fanout(n: int, consumers: int = FANOUT) -> Sample:
    queues: list[asyncio.Queue[Any]] = [asyncio.Queue() for _ in range(consumers)]
    done = asyncio.Event()
    remaining = [consumers]

    async def consume(q: asyncio.Queue[Any]) -> None:
        for _ in range(n):
            await q.get()
        remaining[0] -= 1
        if not remaining[0]:
            done.set()

    tasks = [asyncio.create_task(consume(q)) for q in queues]
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    for i in range(n):
        for q in queues:
            q.put_nowait(i)
    await done.wait()
    elapsed = time.perf_counter() - t0
    await asyncio.gather(*tasks)
    return Sample(n * consumers, elapsed)


async def _loop_tick(n: int) -> Sample:
    sleep = asyncio.sleep
    t0 = time.perf_counter()
    for _ in range(n):
        await sleep(0)
    return Sample(n, time.perf_counter() - t0)


async def _handoff_rt(n: int) -> Sample:
    from collections import deque

    from converge.network.transport._queue import ReceiveQueue
    from converge.runtime.scheduler import Scheduler

    class Side:
        def __init__(self) -> None:
            self.queue: ReceiveQueue[int] = ReceiveQueue()
            self.inbox: deque[int] = deque()
            self.scheduler = Scheduler()
            self.peer: Side = self

    a, b = Side(), Side()
    a.peer, b.peer = b, a
    done = asyncio.Event()
    count = [0]

    async def listener(side: Side) -> None:
        while True:
            side.inbox.append(await side.queue.get_within(30.0))
            side.scheduler.notify()

    async def stepper(side: Side) -> None:
        while True:
            await side.scheduler.wait_for_work(1.0)
            while side.inbox:
                item = side.inbox.popleft()
                if side is a:
                    count[0] += 1
                    if count[0] >= n:
                        done.set()
                        continue
                side.peer.queue.put_nowait(item)

    tasks = [asyncio.create_task(f(side)) for side in (a, b) for f in (listener, stepper)]
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    a.queue.put_nowait(0)
    await done.wait()
    elapsed = time.perf_counter() - t0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return Sample(n, elapsed)


def frame_body_size() -> int:
    """Bytes of the wire body of a signed 200-byte-payload message (what the TCP limit echoes)."""
    return len(signed_sample().to_bytes())


async def _tcp_echo(n: int, body_size: int) -> Sample:
    header = struct.Struct("!I")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(4)
                body = await reader.readexactly(header.unpack(head)[0])
                writer.write(head + body)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    frame = header.pack(body_size) + b"\x00" * body_size
    lat = []
    try:
        for _ in range(20):  # warm the connection before timing
            writer.write(frame)
            await writer.drain()
            await reader.readexactly(4 + body_size)
        t0 = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            writer.write(frame)
            await writer.drain()
            head = await reader.readexactly(4)
            await reader.readexactly(header.unpack(head)[0])
            lat.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - t0
    finally:
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
    return Sample(n, elapsed, lat)


def _primitives(identity: Identity, data: bytes, signature: bytes) -> tuple[list[Any], list[Any]]:
    """Zero-argument raw Ed25519 sign and verify calls of every backend installed (cryptography; PyNaCl if present)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    assert identity.private_key is not None
    key = Ed25519PrivateKey.from_private_bytes(identity.private_key)
    pub = key.public_key()
    signs: list[Any] = [lambda: key.sign(data)]
    verifies: list[Any] = [lambda: pub.verify(signature, data)]
    try:
        from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
    except ImportError:
        return signs, verifies
    pk, sk = crypto_sign_seed_keypair(identity.private_key)
    signed = signature + data  # libsodium's attached form, built once
    signs.append(lambda: crypto_sign(data, sk))
    verifies.append(lambda: crypto_sign_open(signed, pk))
    return signs, verifies


def _crypto_runs() -> tuple[Any, Any, Any]:
    """Runs for the fastest Ed25519 sign and verify installed, and msgpack pack+unpack of a message."""
    identity = Identity.generate()
    msg = signed_sample(identity)
    data = msg.signing_bytes()
    signs, verifies = _primitives(identity, data, identity.sign(data))
    wire = msg._wire_dict()
    pack, unpack = msgpack.packb, msgpack.unpackb

    def best(samples: list[Sample]) -> Sample:
        return min(samples, key=lambda s: s.elapsed / s.ops)

    def sign_once(n: int) -> Sample:
        return best([timed_loop(f, n) for f in signs])

    def verify_once(n: int) -> Sample:
        return best([timed_loop(f, n) for f in verifies])

    def pack_once(n: int) -> Sample:
        return timed_loop(lambda: unpack(pack(wire, use_bin_type=True), raw=False), n)

    return sign_once, verify_once, pack_once


class Probe:
    """Quick measurements of each limit, to pair with a metric's timed runs.

    Args:
        quick: smaller probes (a few ms each) for ``--quick`` runs.
        tiny: a handful of operations each (smoke test).
    """

    def __init__(self, quick: bool = False, *, tiny: bool = False) -> None:
        k = 1 if quick else 2
        self.sizes = {
            "queue_rt": 2_000 * k, "queue_fanout_50": 100 * k, "loop_tick": 5_000 * k, "tcp_echo_rt": 300 * k,
            "ed25519_sign": 300 * k, "ed25519_verify": 150 * k, "msgpack_rt": 2_000 * k, "handoff_rt": 1_000 * k,
        }
        if tiny:
            self.sizes = dict.fromkeys(self.sizes, 3)
        self._body = frame_body_size()
        sign_once, verify_once, pack_once = _crypto_runs()
        self._runs: dict[str, Any] = {
            "queue_rt": _queue_rt, "queue_fanout_50": _queue_fanout, "loop_tick": _loop_tick,
            "tcp_echo_rt": lambda n: _tcp_echo(n, self._body),
            "ed25519_sign": sign_once, "ed25519_verify": verify_once, "msgpack_rt": pack_once,
            "handoff_rt": _handoff_rt,
        }

    async def rate(self, name: str) -> float:
        """Operations per second of limit ``name`` (one short run)."""
        out = self._runs[name](self.sizes[name])
        sample = await out if asyncio.iscoroutine(out) else out
        return sample.ops / sample.elapsed

    def composite(self, **weights: float) -> Limit:
        """A limit made of ``weights[name]`` operations of each named limit per operation.

        ``probe.composite(ed25519_sign=2, queue_rt=1)`` is "2 signs + 1 queue round trip".
        """
        unknown = set(weights) - set(self._runs)
        if unknown:
            raise ValueError(f"unknown limits {sorted(unknown)}; known: {sorted(self._runs)}")

        async def limit() -> float:
            seconds = 0.0
            for name, weight in weights.items():
                seconds += weight / await self.rate(name)
            return 1.0 / seconds

        return limit


async def _run_all(quick: bool, tiny: bool) -> dict[str, Result]:
    rt = choose(quick, tiny, Plan(50_000, 5_000, 5, 4.0), Plan(3_000, 500, 3, 1.0))
    fan = choose(quick, tiny, Plan(4_000, 400, 5, 4.0), Plan(400, 50, 3, 1.0))
    tick = choose(quick, tiny, Plan(300_000, 20_000, 5, 4.0), Plan(20_000, 2_000, 3, 1.0))
    tcp = choose(quick, tiny, Plan(20_000, 1_000, 5, 4.0), Plan(1_000, 100, 3, 1.0))
    cpu = choose(quick, tiny, Plan(20_000, 2_000, 5, 4.0), Plan(2_000, 200, 3, 1.0))
    body = frame_body_size()
    sign_once, verify_once, pack_once = _crypto_runs()
    return {
        r.name: r
        for r in [
            await measure("limits.queue_rt", "round trips", _queue_rt, rt),
            await measure("limits.queue_fanout_50", "deliveries", _queue_fanout, fan),
            await measure("limits.loop_tick", "ticks", _loop_tick, tick),
            await measure("limits.tcp_echo_rt", "round trips", lambda n: _tcp_echo(n, body), tcp),
            await measure("limits.ed25519_sign", "signs", sign_once, cpu),
            await measure("limits.ed25519_verify", "verifies", verify_once, cpu),
            await measure("limits.msgpack_rt", "pack+unpack", pack_once, cpu.scaled(5)),
            await measure("limits.handoff_rt", "round trips", _handoff_rt, rt.scaled(0.5)),
        ]
    }


def run(quick: bool = False, *, tiny: bool = False) -> dict[str, Result]:
    """Measure every limit in a fresh event loop (``tiny``: a handful of operations, for the smoke test)."""
    return asyncio.run(_run_all(quick, tiny))


if __name__ == "__main__":
    for res in run("--quick" in sys.argv).values():
        print(f"{res.name:<28} {res.rate:>14,.0f} {res.unit}/s")
