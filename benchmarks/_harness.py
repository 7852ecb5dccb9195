"""Measurement plumbing shared by the benchmark modules.

Every metric is measured the same way: one warm-up run (caches, JIT-free
CPython's specialising interpreter, connection set-up), then up to
``repeats`` timed runs, stopping early once ``time_bound`` seconds of timed
runs have been spent (at least one timed run always happens). The reported
rate is the median of the per-run rates; latencies (when a run records them)
are pooled across runs for p50/p99.

A *run* is a callable ``once(n) -> Sample`` (sync or async) that performs
``n`` operations and times itself, so set-up and tear-down stay outside the
timed region.

A metric with a target is *paired* with its limit: the limit (an async
callable returning operations per second, see
:class:`benchmarks.bench_limits.Probe`) is measured right before and right
after every timed run, and the ratio is taken per run. Another process that
grabs the CPU for a while then slows both sides of the ratio, not one of them;
the reported ratio is the median of the per-run ratios.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Sample:
    """What one timed run measured.

    Attributes:
        ops: operations completed (round trips, deliveries, tasks, ...).
        elapsed: seconds spent in the timed region.
        latencies: optional per-operation latencies in seconds.
    """

    ops: int
    elapsed: float
    latencies: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Result:
    """The median of a metric's timed runs.

    Attributes:
        name: metric name (``"runtime.local_signed"``, ...).
        unit: what one operation is (``"round trips"``, ``"deliveries"``, ...).
        rate: median operations per second.
        rates: the rate of every timed run.
        ops: operations per timed run.
        p50_us / p99_us: latency percentiles in microseconds, when recorded.
        limit_label / limit_rate / ratio / ratios: for a paired metric, what the
            limit is, its median rate, and the median (and every) per-run ratio.
    """

    name: str
    unit: str
    rate: float
    rates: tuple[float, ...]
    ops: int
    p50_us: float | None = None
    p99_us: float | None = None
    limit_label: str | None = None
    limit_rate: float | None = None
    ratio: float | None = None
    ratios: tuple[float, ...] = ()

    @property
    def seconds_per_op(self) -> float:
        return 1.0 / self.rate if self.rate else float("inf")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rates"] = list(self.rates)
        d["ratios"] = list(self.ratios)
        return d


@dataclass(frozen=True)
class Plan:
    """How hard to measure: warm-up size, timed-run size, repeats and a time bound (seconds)."""

    n: int
    warmup: int
    repeats: int = 5
    time_bound: float = 5.0

    def scaled(self, factor: float) -> Plan:
        return Plan(max(1, int(self.n * factor)), max(1, int(self.warmup * factor)), self.repeats, self.time_bound)


TINY = Plan(5, 2, 1, 0.1)
"""One timed run of five operations: the smoke test's size (the numbers mean nothing)."""


def choose(quick: bool, tiny: bool, full: Plan, quick_plan: Plan) -> Plan:
    """The plan for a run mode: ``tiny`` (smoke test) wins over ``quick``."""
    return TINY if tiny else quick_plan if quick else full


def percentile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of an already sorted list (nearest rank)."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


Limit = Callable[[], Awaitable[float]]
"""An async callable measuring a limit once and returning its operations per second."""


def summarise(
    name: str, unit: str, samples: list[Sample], limit_rates: list[float] | None = None, limit_label: str | None = None
) -> Result:
    rates = tuple(s.ops / s.elapsed for s in samples if s.elapsed > 0)
    lat = sorted(x for s in samples for x in s.latencies)
    ratios: tuple[float, ...] = ()
    if limit_rates:
        ratios = tuple(r / lim for r, lim in zip(rates, limit_rates, strict=True))
    return Result(
        name=name,
        unit=unit,
        rate=statistics.median(rates) if rates else 0.0,
        rates=rates,
        ops=samples[0].ops if samples else 0,
        p50_us=percentile(lat, 0.50) * 1e6 if lat else None,
        p99_us=percentile(lat, 0.99) * 1e6 if lat else None,
        limit_label=limit_label,
        limit_rate=statistics.median(limit_rates) if limit_rates else None,
        ratio=statistics.median(ratios) if ratios else None,
        ratios=ratios,
    )


async def measure(
    name: str,
    unit: str,
    once: Callable[[int], Sample | Awaitable[Sample]],
    plan: Plan,
    *,
    limit: Limit | None = None,
    limit_label: str | None = None,
) -> Result:
    """Warm up once with ``plan.warmup`` operations, then time up to ``plan.repeats`` runs of ``plan.n``.

    With ``limit``, the limit is measured before and after each timed run
    (their mean is that run's limit) and the result carries the ratios.
    """

    async def call(n: int) -> Sample:
        out = once(n)
        return await out if inspect.isawaitable(out) else out

    await call(plan.warmup)
    samples: list[Sample] = []
    limit_rates: list[float] = []
    spent = 0.0
    for _ in range(plan.repeats):
        gc.collect()
        before = await limit() if limit is not None else 0.0
        sample = await call(plan.n)
        if limit is not None:
            limit_rates.append((before + await limit()) / 2)
        samples.append(sample)
        spent += sample.elapsed
        if spent >= plan.time_bound:
            break
    return summarise(name, unit, samples, limit_rates or None, limit_label)


def measure_sync(name: str, unit: str, once: Callable[[int], Sample], plan: Plan) -> Result:
    """:func:`measure` for synchronous runs, outside any event loop."""
    return asyncio.run(measure(name, unit, once, plan))


def timed_loop(fn: Callable[[], Any], n: int) -> Sample:
    """Call ``fn()`` ``n`` times and time the whole loop."""
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return Sample(n, time.perf_counter() - t0)


__all__ = ["TINY", "Limit", "Plan", "choose", "Result", "Sample", "measure", "measure_sync", "percentile", "summarise", "timed_loop"]
