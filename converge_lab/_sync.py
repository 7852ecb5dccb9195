"""Run a coroutine from synchronous code, inside or outside a running event loop.

This is the only place in converge_lab that runs a loop to completion, and it
exists for the ``*_sync`` convenience methods (``lab.step_sync()``...).
Inside a running kernel loop it applies nest-asyncio once (on first use,
never at import); in a plain script it drives the lab's own loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_nest_applied = False


def _apply_nest_asyncio() -> None:
    global _nest_applied
    if _nest_applied:
        return
    try:
        import nest_asyncio
    except ImportError as exc:
        raise ImportError(
            "the *_sync methods need nest-asyncio inside a running event loop; "
            'install it with: pip install "converge[lab]" (or use the async API: await lab.step())'
        ) from exc
    nest_asyncio.apply()
    _nest_applied = True


def run_sync(coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop | None) -> T:
    """Run ``coro`` to completion on ``loop`` (the lab's loop) and return its result.

    Args:
        coro: the coroutine.
        loop: the loop the lab lives on; ``None`` when the lab has not bound one yet.
    """
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        if loop is not None and loop is not running:
            coro.close()
            raise RuntimeError("this lab lives on another event loop; call its async methods from that loop")
        _apply_nest_asyncio()
        return running.run_until_complete(coro)
    if loop is None or loop.is_closed():
        coro.close()
        raise RuntimeError("the lab has no event loop yet; create it with Lab.open_sync() or use it under asyncio")
    return loop.run_until_complete(coro)
