"""ipywidgets views of a lab: thin, throttled observers of lab events.

Each view is a stock ipywidgets ``HTML`` (or a box of them) re-rendered from
``lab.frames`` when an event it cares about arrives. Redraws are batched: at
most one per view every ``min_interval`` seconds (default 0.2 s, i.e. ≤ 5/s),
scheduled with ``loop.call_later`` — no polling task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from converge_lab._journal import HIT, MESSAGE, PENDING, SPAN, STATE, STEP
from converge_lab.views import _render

if TYPE_CHECKING:
    from converge_lab.controller import Lab


def _widgets() -> Any:
    try:
        import ipywidgets
    except ImportError as exc:
        raise ImportError('lab views need ipywidgets: pip install "converge[lab]"') from exc
    return ipywidgets


class View:
    """One rendered panel: an ``HTML`` widget plus the events that make it stale."""

    def __init__(self, name: str, render: Callable[[], str], kinds: set[str]) -> None:
        w = _widgets()
        self.name = name
        self.render = render
        self.kinds = kinds
        self.widget = w.HTML(value=_render.STYLE + render())
        self.widget.add_class(f"converge-lab-{name}")
        self.redraws = 0

    def redraw(self) -> None:
        self.widget.value = _render.STYLE + self.render()
        self.redraws += 1


class Views:
    """``lab.views``: ``agents()``, ``inbox()``, ``pools()``, ``tasks()``, ``messages()``, ``trace()``,
    ``costs()``, ``breakpoints()`` and ``dashboard()``.

    Args:
        lab: the lab to observe.
        min_interval: minimum seconds between two redraws of one view.
    """

    def __init__(self, lab: Lab, *, min_interval: float = 0.2) -> None:
        self.lab = lab
        self.min_interval = min_interval
        self.budget_usd: float | None = None
        self.selected: str | None = None
        self._views: dict[str, View] = {}
        self._dirty: set[str] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        self.redraws = 0
        self._unsubscribe = lab.journal.subscribe(self._on_event)
        self._dashboard: Any = None
        self._by_kind: dict[str, set[str]] = {}
        self.visible: set[str] | None = None  # None: every view is visible; the dashboard narrows it to its tab

    # ------------------------------------------------------------------ events
    def _on_event(self, kind: str, item: Any) -> None:
        names = self._by_kind.get(kind)
        if not names:
            return
        self._dirty |= names
        if self._handle is None and self._needs_flush():
            loop = self.lab._loop
            if loop is None or loop.is_closed():
                return
            delay = max(0.0, self._last_flush + self.min_interval - time.monotonic())
            self._handle = loop.call_later(delay, self.flush)

    def _needs_flush(self) -> bool:
        return bool(self._dirty if self.visible is None else self._dirty & self.visible)

    def show(self, names: set[str] | None) -> None:
        """Set which views are on screen (None: all); stale views that become visible redraw now."""
        self.visible = names
        if self._needs_flush():
            self.flush()

    def flush(self, *, everything: bool = False) -> None:
        """Redraw the stale views that are visible (all stale views with ``everything=True``)."""
        self._handle = None
        self._last_flush = time.monotonic()
        if everything or self.visible is None:
            dirty, self._dirty = self._dirty, set()
        else:
            dirty = self._dirty & self.visible
            self._dirty -= dirty
        for name in dirty:
            view = self._views.get(name)
            if view is None:
                continue
            try:
                view.redraw()
                self.redraws += 1
            except Exception as exc:  # shown in the dashboard's error area, never raised into the void
                self.lab.journal.add_error(f"view:{name}", f"{type(exc).__name__}: {exc}")
        if self._dashboard is not None:
            self._dashboard.refresh_controls()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._unsubscribe()

    def _register(self, view: View) -> None:
        self._views[view.name] = view
        for kind in view.kinds:
            self._by_kind.setdefault(kind, set()).add(view.name)

    def _view(self, name: str, render: Callable[[], str], kinds: set[str]) -> Any:
        if name not in self._views:
            self._register(View(name, render, kinds))
        return self._views[name].widget

    # ------------------------------------------------------------------ panels
    def agents(self) -> Any:
        return self._view("agents", lambda: _render.table(self.lab.frames.agents(), empty="no agents yet"),
                          {STEP, STATE, HIT, PENDING})

    def inbox(self) -> Any:
        return self._view("inbox", lambda: _render.table(self.lab.frames.inbox(self.selected), empty="inbox empty"),
                          {MESSAGE, STEP, STATE})

    def pools(self) -> Any:
        return self._view("pools", lambda: _render.table(self.lab.frames.pools(), empty="no pools"), {STEP, STATE})

    def tasks(self) -> Any:
        return self._view("tasks", lambda: _render.task_board(self.lab.frames.tasks()), {STEP, STATE})

    def messages(self) -> Any:
        return self._view("messages", self._render_messages, {MESSAGE, STATE})

    def trace(self) -> Any:
        return self._view("trace", self._render_trace, {SPAN})

    def costs(self) -> Any:
        return self._view("costs", self._render_costs, {STEP})

    def steps(self) -> Any:
        return self._view("steps", lambda: _render.table(self.lab.frames.steps(50, include_idle=False),
                                                         empty="no steps yet", max_rows=50), {STEP})

    def breakpoints(self) -> Any:
        from converge_lab.views._breakpoints import BreakpointPanel

        if "breakpoints" not in self._views:
            panel = BreakpointPanel(self)
            view = View("breakpoints", panel.render_list, {HIT, PENDING, STATE})
            view.panel = panel  # type: ignore[attr-defined]
            view.redraw = panel.redraw  # type: ignore[method-assign]
            self._register(view)
            panel.redraw()
        return self._views["breakpoints"].panel.widget  # type: ignore[attr-defined]

    def dashboard(self) -> Any:
        """Controls + one tab per view (see :class:`~converge_lab.views._dashboard.Dashboard`)."""
        from converge_lab.views._dashboard import Dashboard

        if self._dashboard is None:
            self._dashboard = Dashboard(self)
        return self._dashboard.widget

    # ------------------------------------------------------------------ renderers
    def _render_messages(self) -> str:
        lab = self.lab
        df = lab.frames.messages(last=60)
        rows = [{"sender": r.sender, "targets": list(r.delivered_to) or ([r.recipient] if r.recipient else []),
                 "label": r.payload, "verified": bool(r.verified), "status": r.status}
                for r in df.itertuples(index=False)]
        names = [h.name for h in lab.agents]
        total = len(lab.journal.messages)
        note = f'<div class="cvl muted">{total} messages kept; newest 60 drawn, 15 listed</div>'
        return _render.sequence_diagram(names, rows) + note + _render.table(df.tail(15), empty="no messages yet")

    def _render_trace(self) -> str:
        lab = self.lab
        spans = []
        for s in list(lab.journal.spans)[-80:]:
            attrs = s.attributes or {}
            who = lab._name_of(attrs["agent_id"]) + " " if "agent_id" in attrs else ""
            spans.append({"span_id": s.span_id, "parent_id": s.parent_id, "name": s.name, "label": who + s.name,
                          "start": s.start_time or 0.0, "duration": s.duration_sec or 0.0, "status": s.status})
        return _render.waterfall(spans)

    def _render_costs(self) -> str:
        df = self.lab.frames.costs()
        total = float(df["cost_usd"].sum()) if len(df) else 0.0
        tokens = int(df["input_tokens"].sum() + df["output_tokens"].sum()) if len(df) else 0
        budget = self.budget_usd
        line = f"<b>total ${total:.4f}</b>, {tokens} tokens"
        if budget:
            pct = min(100.0, 100 * total / budget)
            cls = "err" if total > budget else "ok"
            line += (f' — budget ${budget:.4f}: <span class="{cls}">{pct:.0f}% used</span>'
                     f'<div style="background:#eee;width:300px;height:8px"><div style="background:'
                     f'{"#b00020" if total > budget else "#137333"};width:{3 * pct:.0f}px;height:8px"></div></div>')
        by_agent = df.groupby(["agent", "model"], as_index=False)[["input_tokens", "output_tokens", "cost_usd"]].sum() if len(df) else df
        return f'<div class="cvl">{line}</div>' + _render.table(by_agent, empty="no LLM calls yet")
