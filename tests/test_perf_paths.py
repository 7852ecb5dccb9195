"""Behaviour of the primitives rewritten for speed (benchmarks/README.md explains why).

The scheduler and the transport receive queues time out through one re-armed
timer (``converge._deadline.DeadlineTimer``) instead of ``asyncio.timeout`` per
wait; these tests pin the observable contract: wake-ups, timeouts, coalescing,
several waiters, cancellation, and no lost items.
"""

from __future__ import annotations

import asyncio

import pytest

from converge._deadline import DeadlineTimer
from converge.runtime.scheduler import Scheduler


async def test_deadline_timer_resolves_each_future_at_its_own_deadline() -> None:
    loop = asyncio.get_running_loop()
    timer = DeadlineTimer()
    late, early = loop.create_future(), loop.create_future()
    now = loop.time()
    timer.watch(late, now + 0.08)
    timer.watch(early, now + 0.02)  # earlier than the armed handle: re-arms it
    assert await early is False
    assert not late.done()
    assert await late is False
    assert loop.time() >= now + 0.08


async def test_deadline_timer_leaves_completed_and_forgotten_futures_alone() -> None:
    loop = asyncio.get_running_loop()
    timer = DeadlineTimer()
    done, forgotten = loop.create_future(), loop.create_future()
    timer.watch(done, loop.time() + 0.01)
    timer.watch(forgotten, loop.time() + 0.01)
    done.set_result(True)
    timer.forget(forgotten)
    await asyncio.sleep(0.03)
    assert done.result() is True
    assert not forgotten.done()
    timer.cancel()


async def test_scheduler_notify_before_wait_returns_at_once_and_coalesces() -> None:
    s = Scheduler()
    s.notify()
    s.notify()
    assert s.pending
    assert await s.wait_for_work(timeout=5) is True
    assert not s.pending
    assert await s.wait_for_work(timeout=0.01) is False


async def test_scheduler_times_out_and_wakes_on_notify() -> None:
    s = Scheduler()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await s.wait_for_work(timeout=0.03) is False
    assert loop.time() - t0 >= 0.03
    loop.call_later(0.01, s.notify)
    assert await s.wait_for_work(timeout=10) is True
    assert await s.wait_for_work(timeout=0) is False


async def test_scheduler_short_wait_after_long_wait_still_times_out() -> None:
    s = Scheduler()
    long_wait = asyncio.create_task(s.wait_for_work(timeout=10))
    await asyncio.sleep(0)
    assert await s.wait_for_work(timeout=0.02) is False  # re-arms the shared timer earlier
    assert not long_wait.done()
    s.notify()
    assert await long_wait is True


async def test_scheduler_wakes_every_waiter_and_survives_cancellation() -> None:
    s = Scheduler()
    waiters = [asyncio.create_task(s.wait_for_work(timeout=10)) for _ in range(3)]
    cancelled = asyncio.create_task(s.wait_for_work(timeout=10))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    s.notify()
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert not s.pending  # the one notification was consumed
