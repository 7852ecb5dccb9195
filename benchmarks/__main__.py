"""``python -m benchmarks [--quick] [--json PATH]`` — the whole suite, one table.

Every figure is compared with a limit of this machine measured in the same
run (see :mod:`benchmarks.bench_limits`). Metrics with a target are *paired*:
their limit is re-measured right before and after each timed run and the
ratio is the median of the per-run ratios, so a burst of load from another
process slows both sides. The limits table is measured three times (before,
between and after the other benchmarks; median shown) and serves the
informational rows and the task rows. The task target's "one loop tick" is
one iteration of an idle :class:`~converge.runtime.AgentRuntime` set up like
the task workers (``runtime.idle_tick_4``), measured right before and after
the task benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks import bench_core, bench_limits, bench_network, bench_runtime
from benchmarks._harness import Result

LIMIT_PASSES = 3


@dataclass(frozen=True)
class Target:
    """A metric, the limit it is compared with (seconds per operation) and the ratio to reach."""

    label: str
    metric: str
    limit_label: str
    limit_seconds: Callable[[dict[str, float]], float]
    target: float | None
    paired: bool = True  # use the metric's own paired ratio when it has one (its limit is this target's)

    def ratio(self, rate: float, limits: dict[str, float]) -> float:
        return rate * self.limit_seconds(limits)


def _s(limits: dict[str, float], name: str) -> float:
    return 1.0 / limits[f"limits.{name}"]


SIGN, VERIFY, QRT = "ed25519_sign", "ed25519_verify", "queue_rt"

TARGETS = [
    Target("sign/verify path", "core.sign_verify", "1 sign + 1 verify + 1 pack/unpack",
           lambda L: _s(L, SIGN) + _s(L, VERIFY) + _s(L, "msgpack_rt"), 0.85),
    Target("signed local ping-pong", "runtime.local_signed", "2 signs + 1 queue round trip",
           lambda L: 2 * _s(L, SIGN) + _s(L, QRT), 0.60),
    Target("unsigned local ping-pong", "runtime.local_unsigned", "1 queue round trip",
           lambda L: _s(L, QRT), 0.25),
    Target("unsigned ping-pong vs structure", "runtime.local_unsigned", "handoff floor (2 tasks per hop, no work)",
           lambda L: _s(L, "handoff_rt"), None, paired=False),
    Target("verified local ping-pong", "runtime.local_verified", "2 signs + 2 verifies + 1 queue rt",
           lambda L: 2 * _s(L, SIGN) + 2 * _s(L, VERIFY) + _s(L, QRT), None),
    Target("fan-out 1 -> 50", "runtime.fanout_50", "bare queue fan-out 1 -> 50",
           lambda L: _s(L, "queue_fanout_50"), 0.20),
    Target("TCP ping-pong signed", "runtime.tcp_signed", "2 signs + 1 bare TCP echo round trip",
           lambda L: 2 * _s(L, SIGN) + _s(L, "tcp_echo_rt"), 0.45),
    Target("transport local (no runtime)", "network.local", "1 queue round trip", lambda L: _s(L, QRT), None),
    Target("transport local signed+verified", "network.local_signed", "2 signs + 2 verifies + 1 queue rt",
           lambda L: 2 * _s(L, SIGN) + 2 * _s(L, VERIFY) + _s(L, QRT), None),
    Target("transport TCP (no runtime)", "network.tcp", "1 bare TCP echo round trip",
           lambda L: _s(L, "tcp_echo_rt"), None),
    Target("transport TCP signed+verified", "network.tcp_signed", "2 signs + 2 verifies + 1 TCP echo",
           lambda L: 2 * _s(L, SIGN) + 2 * _s(L, VERIFY) + _s(L, "tcp_echo_rt"), None),
]


def _network_tiny() -> dict[str, Any]:
    async def go() -> list[dict[str, Any]]:
        return [await bench_network._local(5, signed=False), await bench_network._local(5, signed=True),
                await bench_network._tcp(5, signed=False), await bench_network._tcp(5, signed=True)]

    return {r["scenario"]: r for r in asyncio.run(go())}


def _network(quick: bool, tiny: bool = False) -> dict[str, dict[str, Any]]:
    out = {}
    for scenario, r in (_network_tiny() if tiny else bench_network.run(quick)).items():
        out[f"network.{scenario}"] = {
            "name": f"network.{scenario}", "unit": "round trips", "rate": r["round_trips_per_sec"],
            "ops": r["round_trips"], "p50_us": r["p50_us"], "p99_us": r["p99_us"],
        }
    return out


def _tasks_tiny(bench_tasks: Any) -> dict[str, Any]:
    from converge.coordination.task_manager import TaskManager

    async def go() -> list[dict[str, Any]]:
        rows = [await bench_tasks._scenario("indexed", n, TaskManager) for n in (8, 16, 32)]
        return [*rows, await bench_tasks._scenario("naive-scan", 16, bench_tasks.ScanPerTickTaskManager)]

    return {"results": asyncio.run(go())}


def _tasks(quick: bool, tiny: bool = False) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    try:
        from benchmarks import bench_tasks
    except ImportError as exc:  # reported in the table, never skipped silently
        print(f"warning: benchmarks.bench_tasks is not available ({exc}); task rows are missing", file=sys.stderr)
        return {}, None
    raw = _tasks_tiny(bench_tasks) if tiny else bench_tasks.run(quick)
    out = {}
    for r in raw["results"]:
        name = f"tasks.{r['scenario']}_N{r['tasks']}"
        out[name] = {"name": name, "unit": "tasks", "rate": r["tasks_per_sec"], "ops": r["tasks"],
                     "p50_us": None, "p99_us": None}
    return out, raw


def _as_dict(results: dict[str, Result]) -> dict[str, dict[str, Any]]:
    return {k: v.as_dict() for k, v in results.items()}


def _task_targets(results: dict[str, dict[str, Any]], limits: dict[str, float]) -> list[dict[str, Any]]:
    sizes = sorted(int(k.rsplit("_N", 1)[1]) for k in results if k.startswith("tasks.indexed_N"))
    if not sizes:
        return []
    mid, small, large = sizes[len(sizes) // 2], sizes[0], sizes[-1]
    rate = results[f"tasks.indexed_N{mid}"]["rate"]
    flat = results[f"tasks.indexed_N{large}"]["rate"] / results[f"tasks.indexed_N{small}"]["rate"]
    rows = []
    if "runtime.idle_tick_4" in results:
        tick = results["runtime.idle_tick_4"]["rate"]
        rows.append({"label": f"tasks, N = {mid}", "metric": f"tasks.indexed_N{mid}", "rate": rate, "unit": "tasks",
                     "limit_label": "one runtime loop tick per task", "limit_rate": tick, "ratio": rate / tick,
                     "target": 0.20})
    bare = limits["limits.loop_tick"]
    rows += [
        {"label": f"tasks, N = {mid} (bare asyncio)", "metric": f"tasks.indexed_N{mid}", "rate": rate, "unit": "tasks",
         "limit_label": "one bare asyncio loop tick per task", "limit_rate": bare, "ratio": rate / bare, "target": None},
        {"label": f"tasks, N = {large} vs N = {small}", "metric": f"tasks.indexed_N{large}",
         "rate": results[f"tasks.indexed_N{large}"]["rate"], "unit": "tasks",
         "limit_label": f"tasks/s at N = {small}", "limit_rate": results[f"tasks.indexed_N{small}"]["rate"],
         "ratio": flat, "target": 0.80},
    ]
    naive = [k for k in results if k.startswith("tasks.naive-scan_N")]
    if naive:
        n = naive[0].rsplit("_N", 1)[1]
        if f"tasks.indexed_N{n}" in results:
            nr = results[naive[0]]["rate"]
            rows.append({"label": f"tasks vs naive scan, N = {n}", "metric": f"tasks.indexed_N{n}",
                         "rate": results[f"tasks.indexed_N{n}"]["rate"], "unit": "tasks",
                         "limit_label": "naive scan-per-tick tasks/s", "limit_rate": nr,
                         "ratio": results[f"tasks.indexed_N{n}"]["rate"] / nr,
                         "target": 10.0 if int(n) >= 2000 else None})  # issue 5 sets the 10x at N = 2000
    return rows


def evaluate(results: dict[str, dict[str, Any]], limits: dict[str, float]) -> list[dict[str, Any]]:
    """One row per target (or informational comparison) whose metric was measured.

    A paired metric (one that carries its own ``ratio``) uses it; the others are
    compared with the limits table.
    """
    rows = []
    for t in TARGETS:
        if t.metric not in results:
            continue
        r = results[t.metric]
        if t.paired and r.get("ratio") is not None:
            row = {"limit_rate": r["limit_rate"], "ratio": r["ratio"], "paired": True}
        else:
            row = {"limit_rate": 1.0 / t.limit_seconds(limits), "ratio": t.ratio(r["rate"], limits), "paired": False}
        rows.append({"label": t.label, "metric": t.metric, "rate": r["rate"], "unit": r["unit"],
                     "limit_label": t.limit_label, "target": t.target, **row})
    rows.extend(_task_targets(results, limits))
    for row in rows:
        row["status"] = "info" if row["target"] is None else ("PASS" if row["ratio"] >= row["target"] else "MISS")
    return rows


def _fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def render(results: dict[str, dict[str, Any]], limits: dict[str, float], spread: dict[str, tuple[float, float]],
           rows: list[dict[str, Any]]) -> str:
    lines = ["Limits of this machine (median of passes; min..max)", ""]
    lines.append(f"| {'limit':<26} | {'ops/s':>12} | {'range':>23} |")
    lines.append(f"|{'-' * 28}|{'-' * 14}|{'-' * 25}|")
    for name, rate in limits.items():
        lo, hi = spread[name]
        lines.append(f"| {name:<26} | {rate:>12,.0f} | {f'{lo:,.0f}..{hi:,.0f}':>23} |")
    lines += ["", "Measurements (median of timed repeats)", ""]
    lines.append(f"| {'metric':<34} | {'ops/s':>12} | {'unit':<12} | {'p50 µs':>8} | {'p99 µs':>8} |")
    lines.append(f"|{'-' * 36}|{'-' * 14}|{'-' * 14}|{'-' * 10}|{'-' * 10}|")
    for name, r in results.items():
        p50 = "-" if r.get("p50_us") is None else f"{r['p50_us']:.0f}"
        p99 = "-" if r.get("p99_us") is None else f"{r['p99_us']:.0f}"
        lines.append(f"| {name:<34} | {r['rate']:>12,.0f} | {r['unit']:<12} | {p50:>8} | {p99:>8} |")
    lines += ["", "Targets (ratio = measured rate / limit rate, same run; * = limit re-measured around each timed run)", ""]
    lines.append(f"| {'target':<34} | {'measured/s':>11} | {'limit':<40} | {'limit/s':>10} | {'ratio':>6} | {'target':>7} | {'':<4} |")
    lines.append(f"|{'-' * 36}|{'-' * 13}|{'-' * 42}|{'-' * 12}|{'-' * 8}|{'-' * 9}|{'-' * 6}|")
    for row in rows:
        target = "-" if row["target"] is None else f"≥ {row['target']:.2f}"
        label = row["label"] + (" *" if row.get("paired") else "")
        lines.append(
            f"| {label:<34} | {_fmt_rate(row['rate']):>11} | {row['limit_label']:<40} | "
            f"{_fmt_rate(row['limit_rate']):>10} | {row['ratio']:>6.3f} | {target:>7} | {row['status']:<4} |"
        )
    return "\n".join(lines)


def run_suite(quick: bool, log: Callable[[str], None] = lambda s: None, *, tiny: bool = False) -> dict[str, Any]:
    """Run every benchmark and return the limits, results and target rows.

    ``tiny`` runs each benchmark once with a handful of operations (the smoke
    test's mode: it proves the suite runs; its numbers mean nothing).
    """
    t0 = time.perf_counter()
    passes: list[dict[str, Result]] = []
    results: dict[str, dict[str, Any]] = {}
    tasks_raw = None
    steps: list[tuple[str, Callable[[], None]]] = [
        ("limits", lambda: passes.append(bench_limits.run(quick, tiny=tiny))),
        ("core", lambda: results.update(_as_dict(bench_core.run(quick, tiny=tiny)))),
        ("runtime", lambda: results.update(_as_dict(bench_runtime.run(quick, tiny=tiny)))),
        ("limits", lambda: passes.append(bench_limits.run(quick, tiny=tiny))),
        ("network", lambda: results.update(_network(quick, tiny))),
        ("tasks", lambda: _tasks_step()),
        ("limits", lambda: passes.append(bench_limits.run(quick, tiny=tiny))),
    ]

    def _tasks_step() -> None:
        nonlocal tasks_raw
        before = bench_runtime.idle_tick_rate(quick, tiny=tiny)
        rows, tasks_raw = _tasks(quick, tiny)
        after = bench_runtime.idle_tick_rate(quick, tiny=tiny)
        tick = before.as_dict()
        tick.update(rate=(before.rate + after.rate) / 2, rates=[*before.rates, *after.rates])
        results["runtime.idle_tick_4"] = tick
        results.update(rows)

    for name, step in steps:
        s = time.perf_counter()
        step()
        log(f"{name} done in {time.perf_counter() - s:.1f}s")
    limits = {name: statistics.median(p[name].rate for p in passes) for name in passes[0]}
    spread = {name: (min(p[name].rate for p in passes), max(p[name].rate for p in passes)) for name in passes[0]}
    rows = evaluate(results, limits)
    return {
        "command": "python -m benchmarks" + (" --smoke" if tiny else " --quick" if quick else ""),
        "quick": quick,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "elapsed_sec": round(time.perf_counter() - t0, 1),
        "limits": limits,
        "limit_range": spread,
        "limit_passes": [_as_dict(p) for p in passes],
        "results": results,
        "tasks_raw": tasks_raw,
        "targets": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (< 60 s)")
    parser.add_argument("--json", metavar="PATH", help="also write every number to PATH as JSON")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tests: tiny N, meaningless numbers
    args = parser.parse_args(argv)
    out = run_suite(args.quick, log=lambda s: print(s, file=sys.stderr, flush=True), tiny=args.smoke)
    print(f"$ {out['command']}    # Python {out['python']}, {out['platform']}, {out['elapsed_sec']} s\n")
    print(render(out["results"], out["limits"], out["limit_range"], out["targets"]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
