"""The dashboard: controls, an error area, and one tab per view."""

from __future__ import annotations

import html
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from converge_lab.views import _render, _widgets

if TYPE_CHECKING:
    from converge_lab.views import Views

TABS = ("Agents", "Steps", "Inbox", "Pools", "Tasks", "Messages", "Trace", "Costs", "Breakpoints")
ALL = ""  # the picker's "all agents" entry (ipywidgets shows a None value as no selection)
VIEW_OF_TAB = ("agents", "steps", "inbox", "pools", "tasks", "messages", "trace", "costs", "breakpoints")


def _make_box_class() -> type:
    w = _widgets()

    class LabDashboard(w.VBox):  # type: ignore[misc,name-defined]
        """A VBox that also carries a plain HTML snapshot for front ends that cannot render widgets."""

        _lab_views: Any = None

        def _repr_mimebundle_(self, **kwargs: Any) -> Any:
            bundle = super()._repr_mimebundle_(**kwargs)
            views = self._lab_views
            if views is not None and isinstance(bundle, dict):
                frames = views.lab.frames
                bundle["text/html"] = (_render.STYLE + "<h4>converge lab (static snapshot)</h4>"
                                       + _render.table(frames.agents(), empty="no agents")
                                       + _render.table(frames.steps().tail(20), empty="no steps"))
                bundle["text/plain"] = repr(views.lab)
            return bundle

    return LabDashboard


class Dashboard:
    """Agent picker, Step / Play-Pause / Run until idle, steps per redraw, errors, tabs."""

    def __init__(self, views: Views) -> None:
        w = _widgets()
        self.views = views
        lab = views.lab
        self.agent_picker = w.Dropdown(description="agent", options=self._options(), value=ALL)
        self.step_button = w.Button(description="Step", icon="step-forward", tooltip="run one decide/execute iteration")
        self.play_button = w.ToggleButton(description="Play", value=False, icon="play", tooltip="run / pause")
        self.idle_button = w.Button(description="Run until idle", icon="fast-forward")
        self.steps_per_redraw = w.BoundedIntText(value=1, min=1, max=1000, description="steps/redraw")
        self.status = w.HTML()
        self.errors = w.HTML()
        self.errors.add_class("converge-lab-errors")
        for b, cls in ((self.step_button, "step"), (self.play_button, "play"), (self.idle_button, "idle")):
            b.add_class(f"converge-lab-{cls}")
        self.step_button.on_click(self._guard(self._on_step))
        self.idle_button.on_click(self._guard(self._on_idle))
        self.play_button.observe(self._guard(self._on_play), names="value")
        self.agent_picker.observe(self._guard(self._on_pick), names="value")
        panels = [views.agents(), views.steps(), views.inbox(), views.pools(), views.tasks(), views.messages(),
                  views.trace(), views.costs(), views.breakpoints()]
        self.tabs = w.Tab(children=panels)
        for i, title in enumerate(TABS):
            self.tabs.set_title(i, title)
        self.tabs.selected_index = 0
        # Only the selected tab redraws; the others catch up when selected (keeps the kernel loop responsive).
        self.tabs.observe(self._guard(self._on_tab), names="selected_index")
        views.show({VIEW_OF_TAB[0]})
        controls = w.HBox([self.agent_picker, self.step_button, self.play_button, self.idle_button, self.steps_per_redraw])
        box_cls = _make_box_class()
        self.widget = box_cls([controls, self.status, self.errors, self.tabs])
        self.widget._lab_views = views
        self.widget.add_class("converge-lab-dashboard")
        self._shown_errors = 0
        self.refresh_controls()
        lab.journal.subscribe(lambda kind, item: self.refresh_controls() if kind in ("state", "error") else None)

    # ------------------------------------------------------------------ helpers
    def _options(self) -> list[tuple[str, Any]]:
        return [("all agents", ALL)] + [(h.name, h.id) for h in self.views.lab.agents]

    @property
    def selected_agent(self) -> str | None:
        """The picked agent id, or None for all agents."""
        value = self.agent_picker.value
        return None if value == ALL else value

    def show_error(self, where: str, exc: BaseException) -> None:
        """Put an exception in the visible error area (and the lab journal)."""
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.views.lab.journal.add_error(where, text)

    def _guard(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:  # a button callback never raises into the void
                self.show_error(getattr(fn, "__name__", "callback"), exc)

        return wrapped

    def _run(self, coro: Any, where: str) -> None:
        self.views.lab._spawn(coro, on_error=lambda exc: self.show_error(where, exc))

    def refresh_controls(self) -> None:
        lab = self.views.lab
        options = self._options()
        if [o[1] for o in options] != [o[1] for o in self.agent_picker.options]:
            current = self.agent_picker.value
            self.agent_picker.options = options
            self.agent_picker.value = current if current in [o[1] for o in options] else ALL
        held = [h.name for h in lab.held()]
        states = ", ".join(f"{h.name}: {h.state}" for h in lab.agents) or "no agents"
        self.status.value = (f"<span style='font:12px monospace'>{html.escape(states)}"
                             + (f" — <b style='color:#b00020'>held: {html.escape(', '.join(held))}</b>" if held else "")
                             + "</span>")
        errors = list(lab.journal.errors)
        if len(errors) != self._shown_errors:
            self._shown_errors = len(errors)
            items = "".join(f"<li><b>{html.escape(w)}</b>: {html.escape(t)}</li>" for _, w, t in errors[-5:])
            self.errors.value = f"<div style='color:#b00020;font:12px monospace'><ul>{items}</ul></div>" if errors else ""

    # ------------------------------------------------------------------ callbacks
    def _on_step(self, _button: Any) -> None:
        agent = self.selected_agent
        n = int(self.steps_per_redraw.value)
        if self.play_button.value:
            self.play_button.value = False
        self._run(self._step(agent, n), "Step")

    async def _step(self, agent: Any, n: int) -> None:
        await self.views.lab.step(agent, n)
        self.views.flush(everything=True)  # a click is rare: bring every tab up to date at once

    def _on_idle(self, _button: Any) -> None:
        self._run(self.views.lab.run_until_idle(), "Run until idle")

    def _on_play(self, change: dict[str, Any]) -> None:
        lab = self.views.lab
        agent = self.selected_agent
        if change["new"]:
            lab.resume(agent)
            self.play_button.description, self.play_button.icon = "Pause", "pause"
        else:
            lab.pause(agent)
            self.play_button.description, self.play_button.icon = "Play", "play"

    def _on_tab(self, change: dict[str, Any]) -> None:
        index = change["new"]
        self.views.show({VIEW_OF_TAB[index]} if index is not None else set())

    def _on_pick(self, change: dict[str, Any]) -> None:
        self.views.selected = None if change["new"] == ALL else change["new"]
        self.views._on_event("state", None)
