"""The Breakpoints tab: the list of breakpoints and, for held agents, Approve / Edit / Drop."""

from __future__ import annotations

import dataclasses
import html
import json
from typing import TYPE_CHECKING, Any

from converge.core.decisions import SendMessage
from converge_lab.frames import describe_decision
from converge_lab.views import _render, _widgets

if TYPE_CHECKING:
    from converge_lab.views import Views


def decision_to_json(d: Any) -> str:
    """Editable JSON of a decision's fields (a SendMessage shows recipient and payload)."""
    if isinstance(d, SendMessage):
        return json.dumps({"recipient": d.message.recipient, "payload": d.message.payload}, indent=1, default=str)
    if dataclasses.is_dataclass(d):
        return json.dumps({f.name: getattr(d, f.name) for f in dataclasses.fields(d)}, indent=1, default=str)
    raise TypeError(f"{type(d).__name__} is not editable here; use lab.edit() from code")


def decision_from_json(original: Any, text: str) -> Any:
    """A copy of ``original`` with the fields from ``text`` (JSON object)."""
    fields = json.loads(text)
    if not isinstance(fields, dict):
        raise ValueError("edited decision must be a JSON object of fields")
    if isinstance(original, SendMessage):
        msg = dataclasses.replace(original.message, signature=b"", **{k: v for k, v in fields.items()
                                                                        if k in ("recipient", "payload")})
        return SendMessage(msg)
    return dataclasses.replace(original, **fields)


class BreakpointPanel:
    def __init__(self, views: Views) -> None:
        w = _widgets()
        self.views = views
        self.list_html = w.HTML()
        self.pending_box = w.VBox()
        self.widget = w.VBox([self.list_html, self.pending_box])
        self.widget.add_class("converge-lab-breakpoints")
        self.approve_buttons: list[Any] = []
        self.drop_buttons: list[Any] = []
        self.edit_buttons: list[Any] = []

    def render_list(self) -> str:
        lab = self.views.lab
        bps = lab.breakpoints
        if not bps:
            return _render.STYLE + '<div class="cvl muted">no breakpoints — lab.break_on(...)</div>'
        rows = "".join(f"<tr><td>{html.escape(bp.describe(lab._name_of))}</td><td>{'on' if bp.enabled else 'off'}</td>"
                       f"<td>{bp.hits}</td></tr>" for bp in bps)
        return _render.STYLE + f'<div class="cvl"><table><tr><th>breakpoint</th><th>enabled</th><th>hits</th></tr>{rows}</table></div>'

    def redraw(self) -> None:
        w = _widgets()
        lab = self.views.lab
        self.list_html.value = self.render_list()
        rows: list[Any] = []
        self.approve_buttons, self.drop_buttons, self.edit_buttons = [], [], []
        for h in lab.held():
            info = lab.hold_info(h)
            rows.append(w.HTML(f"<b>{html.escape(h.name)}</b> held at {info['phase']} (step {info['step']}): "
                               f"{html.escape(info['reason'])}"))
            for i, d in enumerate(info["decisions"]):
                drop = w.Button(description="Drop", button_style="warning")
                edit = w.Button(description="Edit")
                drop.on_click(self._guard(lambda _b, h=h, i=i: self._drop(h, i)))
                edit.on_click(self._guard(lambda _b, h=h, i=i, d=d: self._edit(h, i, d)))
                self.drop_buttons.append(drop)
                self.edit_buttons.append(edit)
                rows.append(w.HBox([w.HTML(f"<code>{i}: {html.escape(describe_decision(d, lab._name_of))}</code>"),
                                    edit, drop]))
            approve = w.Button(description="Approve", button_style="success", icon="check")
            approve.add_class("converge-lab-approve")
            approve.on_click(self._guard(lambda _b, h=h: lab.approve(h)))
            self.approve_buttons.append(approve)
            rows.append(approve)
        self.pending_box.children = rows

    def _guard(self, fn: Any) -> Any:
        def wrapped(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:  # shown in the dashboard error area
                self.views.lab.journal.add_error("breakpoints", f"{type(exc).__name__}: {exc}")

        return wrapped

    def _drop(self, handle: Any, index: int) -> None:
        self.views.lab.drop(handle, index)
        self.redraw()

    def _edit(self, handle: Any, index: int, decision: Any) -> None:
        w = _widgets()
        area = w.Textarea(value=decision_to_json(decision), layout=w.Layout(width="500px", height="120px"))
        save = w.Button(description="Save edit", button_style="info")

        def apply(_b: Any) -> None:
            self.views.lab.edit(handle, index, decision_from_json(decision, area.value))
            self.redraw()

        save.on_click(self._guard(apply))
        self.pending_box.children = (*self.pending_box.children, area, save)
