"""Messages through full :class:`~converge.runtime.AgentRuntime` objects.

* ``runtime.local_signed`` — ping-pong between two runtimes on one local registry; every
  message is signed by its runtime (``sign_outgoing=True``, the default);
* ``runtime.local_unsigned`` — the same with ``sign_outgoing=False``;
* ``runtime.local_verified`` — signed, and each runtime verifies on receive
  (``identity_registry=...``);
* ``runtime.fanout_50`` — one publisher sends a burst of topic messages to 50 runtimes
  subscribed to that topic; deliveries/s counts messages handed to ``decide``;
* ``runtime.tcp_signed`` — signed ping-pong between two runtimes over TCP on 127.0.0.1;
* ``runtime.idle_tick_4`` — loop iterations per second of 4 idle runtimes with a pool and a
  task manager (``scheduler_timeout_sec=0``): the "one loop tick" the task benchmark is
  compared with.

Each metric with a target is paired with its limit (:class:`~benchmarks.bench_limits.Probe`).

A round trip is: runtime A decides to send a ping, signs and sends it; B's listener
receives it, B's step decides a reply, signs and sends it; A's listener receives
it and A's step sees it. The agents decide asynchronously (``adecide``), so no
worker thread is involved. Run alone with ``python -m benchmarks.bench_runtime [--quick]``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from benchmarks._fixtures import PingAgent, payload
from benchmarks._harness import Limit, Plan, Result, Sample, choose, measure
from benchmarks.bench_limits import Probe
from converge.coordination.pool_manager import PoolManager
from converge.coordination.task_manager import TaskManager
from converge.core.agent import Agent
from converge.core.identity import Identity
from converge.core.message import Message
from converge.core.topic import Topic
from converge.extensions.storage.memory import MemoryStore
from converge.network.identity_registry import IdentityRegistry
from converge.network.transport.local import LocalTransport, LocalTransportRegistry
from converge.network.transport.tcp import TcpTransport
from converge.runtime import AgentRuntime

FANOUT = 50
FANOUT_TOPIC = Topic("bench.fanout")


class _Pinger(PingAgent):
    """Sends the next ping when the previous pong arrives; records round-trip latencies."""

    def __init__(self, identity: Identity, peer: str) -> None:
        super().__init__(identity, reply=False)
        self.peer = peer
        self.target = 0
        self.sent_at = 0.0
        self.latencies: list[float] = []
        self.done: asyncio.Event | None = None
        self.body = payload()

    def arm(self, n: int) -> asyncio.Event:
        self.target, self.latencies, self.done = n, [], asyncio.Event()
        return self.done

    async def adecide(self, messages: list[Message], tasks: list[Any], **kwargs: Any) -> list[Any]:
        now = time.perf_counter()
        out = []
        for _ in messages:
            if self.sent_at:
                self.latencies.append(now - self.sent_at)
            if len(self.latencies) >= self.target:
                assert self.done is not None
                self.done.set()
                self.sent_at = 0.0
                continue
            self.sent_at = now
            out.append(Message(sender=self.id, recipient=self.peer, topics=self.route or [], payload=self.body))
        return out


async def _ping_pong_run(a_rt: AgentRuntime, pinger: _Pinger, kick: Message, n: int) -> Sample:
    done = pinger.arm(n)
    pinger.sent_at = 0.0
    t0 = time.perf_counter()
    await a_rt.deliver(kick)
    await done.wait()
    elapsed = time.perf_counter() - t0
    return Sample(n, elapsed, list(pinger.latencies))


async def _local_ping_pong(name: str, plan: Plan, *, sign: bool, verify: bool, limit: Limit | None = None,
                           limit_label: str | None = None) -> Result:
    registry = LocalTransportRegistry.isolated()
    ida, idb = Identity.generate(), Identity.generate()
    keys = IdentityRegistry()
    keys.register_identity(ida)
    keys.register_identity(idb)
    pinger, ponger = _Pinger(ida, idb.fingerprint), PingAgent(idb)
    opts: dict[str, Any] = {"sign_outgoing": sign, "identity_registry": keys if verify else None}
    a = AgentRuntime(pinger, LocalTransport(ida.fingerprint, registry=registry), **opts)
    b = AgentRuntime(ponger, LocalTransport(idb.fingerprint, registry=registry), **opts)
    kick = Message(sender=idb.fingerprint, recipient=ida.fingerprint, payload=payload()).sign(idb)
    async with a, b:
        return await measure(name, "round trips", lambda n: _ping_pong_run(a, pinger, kick, n), plan,
                             limit=limit, limit_label=limit_label)


async def _tcp_ping_pong(name: str, plan: Plan, limit: Limit | None = None, limit_label: str | None = None) -> Result:
    ida, idb = Identity.generate(), Identity.generate()
    pinger, ponger = _Pinger(ida, idb.fingerprint), PingAgent(idb)
    ta = TcpTransport("127.0.0.1", 0, ida.fingerprint)
    tb = TcpTransport("127.0.0.1", 0, idb.fingerprint)
    a, b = AgentRuntime(pinger, ta), AgentRuntime(ponger, tb)
    async with a, b:
        pinger.route, ponger.route = [tb.address_topic], [ta.address_topic]
        kick = Message(sender=idb.fingerprint, recipient=ida.fingerprint, payload=payload()).sign(idb)
        return await measure(name, "round trips", lambda n: _ping_pong_run(a, pinger, kick, n), plan,
                             limit=limit, limit_label=limit_label)


async def _fanout(name: str, plan: Plan, subscribers: int = FANOUT, limit: Limit | None = None,
                  limit_label: str | None = None) -> Result:
    registry = LocalTransportRegistry.isolated()
    publisher = LocalTransport("publisher", registry=registry)
    agents = [PingAgent(Identity.generate(), reply=False, topics=[FANOUT_TOPIC]) for _ in range(subscribers)]
    runtimes = [AgentRuntime(ag, LocalTransport.for_agent(ag, registry=registry)) for ag in agents]
    state = {"target": 0, "left": 0, "done": asyncio.Event()}

    def seen(agent: PingAgent, messages: list[Message]) -> None:
        if agent.received >= state["target"]:
            agent.waiter = None
            state["left"] -= 1
            if not state["left"]:
                state["done"].set()

    async def once(n: int) -> Sample:
        state.update(target=n, left=subscribers, done=asyncio.Event())
        for ag in agents:
            ag.received, ag.waiter = 0, seen
        messages = [Message(sender="publisher", topics=[FANOUT_TOPIC], payload={"i": i}) for i in range(n)]
        t0 = time.perf_counter()
        for m in messages:
            await publisher.send(m)
        await state["done"].wait()
        return Sample(n * subscribers, time.perf_counter() - t0)

    async with publisher:
        for rt in runtimes:
            await rt.start()
        try:
            return await measure(name, "deliveries", once, plan, limit=limit, limit_label=limit_label)
        finally:
            for rt in runtimes:
                await rt.stop()


async def _idle_ticks(name: str, plan: Plan, workers: int = 4) -> Result:
    """Steps per second of ``workers`` idle runtimes set up like the task benchmark's workers."""
    store = MemoryStore()
    pools, tasks = PoolManager(store), TaskManager(store)
    agents = [Agent(Identity.generate()) for _ in range(workers)]
    pools.create_pool({"id": "workers", "agents": [a.id for a in agents]})
    registry = LocalTransportRegistry.isolated()
    runtimes = [
        AgentRuntime(a, LocalTransport(a.id, registry=registry), pool_manager=pools, task_manager=tasks,
                     receive_timeout_sec=1.0, scheduler_timeout_sec=0.0)
        for a in agents
    ]

    async def once(ms: int) -> Sample:
        start_steps = sum(rt.step_count for rt in runtimes)
        t0 = time.perf_counter()
        await asyncio.sleep(ms / 1000)
        elapsed = time.perf_counter() - t0
        return Sample(sum(rt.step_count for rt in runtimes) - start_steps, elapsed)

    for rt in runtimes:
        await rt.start()
    try:
        return await measure(name, "ticks", once, plan)
    finally:
        for rt in runtimes:
            await rt.stop()


def idle_tick_rate(quick: bool = False, *, tiny: bool = False) -> Result:
    """``runtime.idle_tick_4`` alone, in a fresh event loop (the suite runs it around the task benchmark)."""
    plan = choose(quick, tiny, Plan(1_000, 200, 5, 4.0), Plan(200, 50, 3, 1.0))
    return asyncio.run(_idle_ticks("runtime.idle_tick_4", plan))


async def _run_all(quick: bool, tiny: bool) -> dict[str, Result]:
    pp = choose(quick, tiny, Plan(20_000, 2_000, 5, 6.0), Plan(1_500, 200, 3, 1.5))
    fan = choose(quick, tiny, Plan(2_000, 200, 5, 6.0), Plan(500, 100, 3, 1.5))
    tcp = choose(quick, tiny, Plan(8_000, 1_000, 5, 6.0), Plan(500, 100, 3, 1.5))
    probe = Probe(quick, tiny=tiny)
    results = [
        await _local_ping_pong("runtime.local_signed", pp, sign=True, verify=False,
                               limit=probe.composite(ed25519_sign=2, queue_rt=1),
                               limit_label="2 signs + 1 queue round trip"),
        await _local_ping_pong("runtime.local_unsigned", pp, sign=False, verify=False,
                               limit=probe.composite(queue_rt=1), limit_label="1 queue round trip"),
        await _local_ping_pong("runtime.local_verified", pp, sign=True, verify=True,
                               limit=probe.composite(ed25519_sign=2, ed25519_verify=2, queue_rt=1),
                               limit_label="2 signs + 2 verifies + 1 queue round trip"),
        await _fanout("runtime.fanout_50", fan, limit=probe.composite(queue_fanout_50=1),
                      limit_label="bare queue fan-out 1 -> 50"),
        await _tcp_ping_pong("runtime.tcp_signed", tcp, limit=probe.composite(ed25519_sign=2, tcp_echo_rt=1),
                             limit_label="2 signs + 1 bare TCP echo round trip"),
    ]
    return {r.name: r for r in results}


def run(quick: bool = False, *, tiny: bool = False) -> dict[str, Result]:
    """Run every runtime scenario in a fresh event loop (``tiny``: a handful of operations, for the smoke test)."""
    return asyncio.run(_run_all(quick, tiny))


if __name__ == "__main__":
    for res in run("--quick" in sys.argv).values():
        ratio = "" if res.ratio is None else f"  {res.ratio:.2f} of {res.limit_label}"
        print(f"{res.name:<28} {res.rate:>12,.0f} {res.unit}/s  p50={res.p50_us or 0:.0f}µs p99={res.p99_us or 0:.0f}µs{ratio}")
    print(idle_tick_rate("--quick" in sys.argv).rate, "idle ticks/s (4 runtimes)")
