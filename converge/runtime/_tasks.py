"""Which pending tasks an agent sees on a step (reference §6.4 "Task visibility")."""

from __future__ import annotations

from typing import Any


class TaskView:
    """Computes an agent's visible tasks, caching its pool ids for ``pool_cache_ttl_sec``.

    Topic filtering uses an explicitly passed ``agent_descriptor``'s topics, or
    else the agent's own ``topics`` when they are ``Topic`` objects (the
    reference ignored the agent's topics without a descriptor).
    """

    def __init__(self, runtime: Any) -> None:
        self._rt = runtime
        self._pool_ids: list[str] | None = None
        self._pool_ids_at = 0.0
        self._last_refresh = 0.0

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
        if rt.pool_manager is None:
            return list(tm.list_pending_tasks(refresh_from_store=refresh))
        return list(
            tm.list_pending_tasks_for_agent(
                rt.agent.id,
                pool_ids=self._pools(force_refresh),
                capabilities=list(getattr(rt.agent, "capabilities", None) or []),
                topics=self._topics(),
                sort_by_priority=True,
                refresh_from_store=refresh,
            )
        )
