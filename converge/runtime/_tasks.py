"""Which pending tasks an agent sees on a step (reference §6.4 "Task visibility")."""

from __future__ import annotations

import inspect
from typing import Any


class TaskView:
    """Computes an agent's visible tasks, caching its pool ids for ``pool_cache_ttl_sec``.

    Topic filtering uses an explicitly passed ``agent_descriptor``'s topics, or
    else the agent's own ``topics`` when they are ``Topic`` objects (the
    reference ignored the agent's topics without a descriptor).

    At most ``runtime.max_visible_tasks`` tasks are shown, highest priority
    first (the reference showed every pending task, so the cost of a step grew
    with the backlog). The cap is passed to the task manager as ``limit=`` when
    its ``list_pending_tasks_for_agent`` accepts one, else the list is cut.
    """

    def __init__(self, runtime: Any) -> None:
        self._rt = runtime
        self._pool_ids: list[str] | None = None
        self._pool_ids_at = 0.0
        self._last_refresh = 0.0
        self._limit_kw: tuple[Any, bool] | None = None  # (manager, accepts limit=)

    def invalidate_pools(self) -> None:
        self._pool_ids = None

    def _pools(self, force: bool) -> list[str]:
        rt = self._rt
        ttl = rt.pool_cache_ttl_sec
        now = rt.clock()
        if force or ttl is None or self._pool_ids is None or now - self._pool_ids_at >= ttl:
            self._pool_ids = list(rt.pool_manager.get_pools_for_agent(rt.agent.id))
            self._pool_ids_at = now
        return self._pool_ids

    def _topics(self) -> list[Any] | None:
        rt = self._rt
        if rt.agent_descriptor is not None:
            return list(rt.agent_descriptor.topics)
        return None

    def visible(self, *, force_refresh: bool = False) -> list[Any]:
        rt = self._rt
        tm = rt.task_manager
        if tm is None:
            return []
        refresh = force_refresh
        interval = rt.task_refresh_interval_sec
        if not refresh and interval is not None:
            now = rt.clock()
            if now - self._last_refresh >= interval:
                refresh = True
                self._last_refresh = now
        cap = rt.max_visible_tasks
        if rt.pool_manager is None:
            tasks = tm.list_pending_tasks(refresh_from_store=refresh)
            return list(tasks if cap is None else tasks[:cap])
        kwargs: dict[str, Any] = {}
        if cap is not None and self._accepts_limit(tm):
            kwargs["limit"] = cap
        tasks = tm.list_pending_tasks_for_agent(
            rt.agent.id,
            pool_ids=self._pools(force_refresh),
            capabilities=list(getattr(rt.agent, "capabilities", None) or []),
            topics=self._topics(),
            sort_by_priority=True,
            refresh_from_store=refresh,
            **kwargs,
        )
        return list(tasks if cap is None or "limit" in kwargs else tasks[:cap])

    def _accepts_limit(self, tm: Any) -> bool:
        known = self._limit_kw
        if known is None or known[0] is not tm:
            try:
                params = inspect.signature(tm.list_pending_tasks_for_agent).parameters
                ok = "limit" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
            except (TypeError, ValueError):
                ok = False
            known = self._limit_kw = (tm, ok)
        return known[1]
