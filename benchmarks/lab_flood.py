"""Flood a lab with traffic while its dashboard is open; print loop lag, redraws/s and memory.

    python -m benchmarks.lab_flood                 # 60 s, in this process (a kernel-like asyncio loop)
    python -m benchmarks.lab_flood --kernel        # the same code inside a real IPython kernel (jupyter_client)
    python -m benchmarks.lab_flood --seconds 10 --rate 5000

20 relay agents; a pacer injects messages at ``rate / hops`` per second, each
relayed ``hops`` times to a random agent, so the network carries about
``rate`` messages per second. A ticker measures the event loop's lag (how late a
10 ms sleep wakes up). Targets (issue 9): lag p99 < 50 ms, redraws <= 5/s per
view, memory flat once the retention limit is reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from typing import Any


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def flood(seconds: float = 60.0, agents: int = 20, rate: int = 5000, hops: int = 5, retention: int = 2000,
                signed: bool = False) -> dict[str, Any]:
    from converge.core.decisions import SendMessage
    from converge.core.message import Message
    from converge.testing.agents import FunctionAgent
    from converge_lab import Lab

    lab = Lab(retention=retention, runtime_defaults={"sign_outgoing": signed})
    ids: list[str] = []
    rng = random.Random(1)

    def relay(agent: Any, messages: list[Message], tasks: list[Any]) -> list[Any]:
        out = []
        for m in messages:
            left = m.payload.get("hops", 0)
            if left > 0:
                out.append(SendMessage(Message(recipient=rng.choice(ids), payload={"hops": left - 1, "pad": "x" * 64})))
        return out

    await lab.open()
    for i in range(agents):
        h = await lab.add(FunctionAgent(relay, name=f"r{i:02d}", record_calls=False))
        ids.append(h.id)
    dashboard = lab.dashboard()  # every view live, as in a notebook
    lags: list[float] = []
    rss: list[tuple[float, float]] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t - 0.01)

    async def pacer() -> None:
        per_sec = rate / hops
        start = time.perf_counter()
        sent = 0
        while not stop.is_set():
            due = int((time.perf_counter() - start) * per_sec)
            for _ in range(due - sent):
                await lab.send(to=rng.choice(ids), payload={"hops": hops - 1, "pad": "x" * 64})
            sent = max(sent, due)
            await asyncio.sleep(0.005)

    async def sampler() -> None:
        t0 = time.perf_counter()
        while not stop.is_set():
            rss.append((time.perf_counter() - t0, _rss_mb()))
            await asyncio.sleep(max(1.0, seconds / 12))

    tasks = [asyncio.create_task(c) for c in (ticker(), pacer(), sampler())]
    delivered0 = lab.journal.counts.get("message", 0)
    views0 = {name: v.redraws for name, v in lab.views._views.items()}
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - t0
    stop.set()
    for t in tasks:
        await t
    delivered = lab.journal.counts.get("message", 0) - delivered0
    redraws = {name: (v.redraws - views0.get(name, 0)) / elapsed for name, v in lab.views._views.items()}
    rss.append((elapsed, _rss_mb()))
    await lab.aclose()
    del dashboard
    lags.sort()
    q = statistics.quantiles(lags, n=100) if len(lags) > 2 else [0.0] * 99
    half = [m for t, m in rss if t >= elapsed / 2]
    return {
        "seconds": round(elapsed, 1), "agents": agents, "signed": signed,
        "messages_per_sec": round(delivered / elapsed),
        "loop_lag_ms_p50": round(1000 * q[49], 2), "loop_lag_ms_p99": round(1000 * q[98], 2),
        "redraws_per_sec_max_view": round(max(redraws.values(), default=0.0), 2),
        "redraws_per_sec_all_views": round(sum(redraws.values()), 2),
        "rss_mb": [(round(t, 1), round(m, 1)) for t, m in rss],
        "rss_growth_second_half_mb": round(max(half) - min(half), 1) if half else 0.0,
    }


def _in_kernel(args: argparse.Namespace) -> dict[str, Any]:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        code = (f"import sys; sys.path.insert(0, {os.getcwd()!r})\n"
                "from benchmarks.lab_flood import flood\nimport json\n"
                f"print('RESULT', json.dumps(await flood({args.seconds}, {args.agents}, {args.rate}, signed={args.signed})))")
        out: list[str] = []
        kc.execute_interactive(code, timeout=args.seconds + 120,
                               output_hook=lambda msg: out.append(msg["content"].get("text", "")))
        line = next(x for x in "".join(out).splitlines() if x.startswith("RESULT "))
        return json.loads(line[len("RESULT "):])
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run(quick: bool = False) -> dict[str, Any]:
    """Entry for the benchmark suite."""
    return asyncio.run(flood(seconds=3.0 if quick else 60.0, rate=1000 if quick else 5000))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--rate", type=int, default=5000, help="target messages per second on the network")
    p.add_argument("--signed", action="store_true", help="sign every relayed message (default: unsigned)")
    p.add_argument("--kernel", action="store_true", help="run inside a real IPython kernel")
    args = p.parse_args(argv)
    result = _in_kernel(args) if args.kernel else asyncio.run(flood(args.seconds, args.agents, args.rate, signed=args.signed))
    for k, v in result.items():
        print(f"{k:>28}: {v}")
    ok = result["loop_lag_ms_p99"] < 50 and result["redraws_per_sec_max_view"] <= 5.0
    print(f"{'targets':>28}: lag p99 < 50 ms and <= 5 redraws/s per view -> {'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
