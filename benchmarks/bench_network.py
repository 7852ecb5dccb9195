"""Ping-pong benchmarks for the local and TCP transports.

Run ``python -m benchmarks.bench_network [--quick]``. Each scenario bounces a
message between two transports and reports round trips per second and the
p50/p99 round-trip latency. ``signed`` variants sign every message (two signs
per round trip) and verify on receipt, as a runtime with an identity registry does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from converge.core.identity import Identity
from converge.core.message import Message
from converge.network.identity_registry import IdentityRegistry
from converge.network.transport.base import Transport
from converge.network.transport.local import LocalTransport, LocalTransportRegistry
from converge.network.transport.tcp import TcpTransport


def _summary(name: str, latencies: list[float], elapsed: float) -> dict[str, Any]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "scenario": name,
        "round_trips": len(latencies),
        "round_trips_per_sec": round(len(latencies) / elapsed, 1),
        "p50_us": round(statistics.median(ordered) * 1e6, 1),
        "p99_us": round(p99 * 1e6, 1),
    }


async def _ping_pong(
    name: str,
    ping: Transport,
    pong: Transport,
    make_ping: Callable[[int], Message],
    make_pong: Callable[[Message], Message],
    rounds: int,
    receive: Callable[[Transport], Awaitable[Message | None]],
) -> dict[str, Any]:
    async def responder() -> None:
        for _ in range(rounds + 10):
            msg = await receive(pong)
            assert msg is not None, "verification failed in the benchmark"
            await pong.send(make_pong(msg))

    task = asyncio.create_task(responder())
    try:
        for i in range(10):  # warm-up (connections, caches)
            await ping.send(make_ping(i))
            await receive(ping)
        latencies = []
        start = time.perf_counter()
        for i in range(rounds):
            t0 = time.perf_counter()
            await ping.send(make_ping(i))
            await receive(ping)
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return _summary(name, latencies, elapsed)


async def _local(rounds: int, signed: bool) -> dict[str, Any]:
    registry = LocalTransportRegistry.isolated()
    alice, bob = Identity.generate(), Identity.generate()
    keys = IdentityRegistry()
    keys.register_identity(alice)
    keys.register_identity(bob)
    a = LocalTransport(alice.fingerprint, registry=registry)
    b = LocalTransport(bob.fingerprint, registry=registry)
    async with a, b:
        if signed:
            return await _ping_pong(
                "local_signed",
                a,
                b,
                lambda i: Message(recipient=bob.fingerprint, payload={"i": i}).sign(alice),
                lambda m: Message(recipient=alice.fingerprint, payload=m.payload).sign(bob),
                rounds,
                lambda t: t.receive_verified(keys),
            )
        return await _ping_pong(
            "local",
            a,
            b,
            lambda i: Message(sender=alice.fingerprint, recipient=bob.fingerprint, payload={"i": i}),
            lambda m: Message(sender=bob.fingerprint, recipient=alice.fingerprint, payload=m.payload),
            rounds,
            lambda t: t.receive(),
        )


async def _tcp(rounds: int, signed: bool) -> dict[str, Any]:
    alice, bob = Identity.generate(), Identity.generate()
    keys = IdentityRegistry()
    keys.register_identity(alice)
    keys.register_identity(bob)
    a = TcpTransport("127.0.0.1", 0, alice.fingerprint)
    b = TcpTransport("127.0.0.1", 0, bob.fingerprint)
    async with a, b:
        to_b, to_a = [b.address_topic], [a.address_topic]

        def ping(i: int) -> Message:
            m = Message(sender=alice.fingerprint, topics=to_b, payload={"i": i})
            return m.sign(alice) if signed else m

        def pong(m: Message) -> Message:
            r = Message(sender=bob.fingerprint, topics=to_a, payload=m.payload)
            return r.sign(bob) if signed else r

        receive = (lambda t: t.receive_verified(keys)) if signed else (lambda t: t.receive())
        return await _ping_pong("tcp_signed" if signed else "tcp", a, b, ping, pong, rounds, receive)


async def _run_all(quick: bool) -> dict[str, Any]:
    local_rounds, tcp_rounds = (2_000, 500) if quick else (50_000, 10_000)
    results = [
        await _local(local_rounds, signed=False),
        await _local(local_rounds, signed=True),
        await _tcp(tcp_rounds, signed=False),
        await _tcp(tcp_rounds, signed=True),
    ]
    return {r["scenario"]: r for r in results}


def run(quick: bool = False) -> dict[str, Any]:
    """Run every scenario in a fresh event loop; returns ``{scenario: numbers}``."""
    return asyncio.run(_run_all(quick))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer round trips (a few seconds)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    results = run(args.quick)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'scenario':<14} {'round trips':>11} {'rt/s':>10} {'p50 µs':>9} {'p99 µs':>9}")
    for r in results.values():
        print(f"{r['scenario']:<14} {r['round_trips']:>11} {r['round_trips_per_sec']:>10} {r['p50_us']:>9} {r['p99_us']:>9}")


if __name__ == "__main__":
    main()
