"""HTML and SVG rendered in Python for the lab views (no front-end build, no CDN)."""

from __future__ import annotations

import html
from typing import Any

STYLE = """<style>
.cvl table{border-collapse:collapse;font:12px monospace}.cvl td,.cvl th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
.cvl th{background:#f0f0f0}.cvl .muted{color:#888}.cvl .err{color:#b00020}.cvl .ok{color:#137333}
.cvl .board{display:flex;gap:8px}.cvl .col{flex:1;min-width:120px;background:#f7f7f7;padding:4px;border-radius:4px}
.cvl .card{background:#fff;border:1px solid #ddd;border-radius:3px;margin:3px 0;padding:3px;font:11px monospace}
</style>"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def table(df: Any, *, empty: str = "nothing yet", max_rows: int = 200) -> str:
    """A DataFrame as a compact HTML table (the newest ``max_rows`` rows)."""
    if df is None or len(df) == 0:
        return f'<div class="cvl"><span class="muted">{esc(empty)}</span></div>'
    shown = df.tail(max_rows)
    head = "".join(f"<th>{esc(c)}</th>" for c in shown.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(_cell(v))}</td>" for v in row) + "</tr>" for row in shown.itertuples(index=False))
    more = f'<div class="muted">{len(df) - len(shown)} older rows not shown</div>' if len(df) > len(shown) else ""
    return f'<div class="cvl">{more}<table><tr>{head}</tr>{body}</table></div>'


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v)
    return "" if v is None else str(v)


def task_board(df: Any) -> str:
    """Tasks as cards in one column per state."""
    states = ["pending", "assigned", "running", "completed", "failed", "cancelled"]
    cols = []
    for state in states:
        rows = df[df["state"] == state] if len(df) else df
        cards = "".join(
            f'<div class="card"><b>{esc(r.task_id[:8])}</b> p{r.priority}<br>{esc(r.objective)}'
            + (f"<br>→ {esc(r.assigned_to)}" if r.assigned_to else "")
            + (f"<br><span class='ok'>{esc(r.result)}</span>" if r.result else "") + "</div>"
            for r in rows.itertuples(index=False)
        )
        cols.append(f'<div class="col"><b>{state}</b> ({len(rows)}){cards}</div>')
    return f'<div class="cvl"><div class="board">{"".join(cols)}</div></div>'


def sequence_diagram(agents: list[str], rows: list[dict[str, Any]], *, max_rows: int = 60) -> str:
    """A message sequence diagram: one lifeline per agent, one arrow per message.

    ``rows`` have ``sender``, ``targets`` (names), ``label``, ``verified`` (bool|None), ``status``.
    Verified messages carry a ✓, unsigned/unverified a ✗ (red), rejected ones a dashed red arrow.
    """
    rows = rows[-max_rows:]
    lanes = list(agents)
    for r in rows:
        for name in [r["sender"], *r["targets"]]:
            if name and name not in lanes:
                lanes.append(name)
    if not lanes:
        return '<div class="cvl"><span class="muted">no agents yet</span></div>'
    gap, top, row_h = 140, 40, 22
    width = gap * len(lanes) + 40
    height = top + row_h * (len(rows) + 1) + 10
    x = {name: 40 + gap * i + gap // 2 - 40 for i, name in enumerate(lanes)}
    parts = [f'<svg class="cvl-seq" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="monospace" font-size="11">',
             '<defs><marker id="cvl-arrow" markerWidth="8" markerHeight="8" refX="7" refY="3" orient="auto">'
             '<path d="M0,0 L7,3 L0,6 z" fill="#444"/></marker></defs>']
    for name, xi in x.items():
        parts.append(f'<text class="cvl-lane" x="{xi}" y="20" text-anchor="middle" font-weight="bold">{esc(name)}</text>')
        parts.append(f'<line x1="{xi}" y1="28" x2="{xi}" y2="{height - 5}" stroke="#bbb" stroke-dasharray="4,3"/>')
    for i, r in enumerate(rows):
        y = top + row_h * (i + 1)
        x1 = x.get(r["sender"], 20)
        targets = r["targets"] or [r["sender"]]
        bad = r["status"] in ("rejected", "undeliverable", "dropped")
        color = "#b00020" if bad else "#444"
        for t in targets:
            x2 = x.get(t, x1 + 60)
            if x2 == x1:
                x2 = x1 + 30
            dash = ' stroke-dasharray="5,3"' if bad else ""
            parts.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{color}"{dash} marker-end="url(#cvl-arrow)"/>')
        mark = "✓" if r["verified"] else "✗"
        mark_color = "#137333" if r["verified"] else "#b00020"
        label = esc(r["label"][:40])
        mid = (x1 + x.get(targets[0], x1 + 60)) // 2
        parts.append(f'<text x="{mid}" y="{y - 4}" text-anchor="middle">{label} '
                     f'<tspan class="cvl-verified" fill="{mark_color}">{mark}</tspan></text>')
    parts.append("</svg>")
    return f'<div class="cvl">{"".join(parts)}</div>'


def waterfall(spans: list[dict[str, Any]], *, max_rows: int = 80) -> str:
    """A span waterfall: one bar per span, offset by start time, indented by depth."""
    spans = spans[-max_rows:]
    if not spans:
        return '<div class="cvl"><span class="muted">no spans yet</span></div>'
    t0 = min(s["start"] for s in spans)
    t1 = max(s["start"] + s["duration"] for s in spans)
    span_total = max(t1 - t0, 1e-6)
    depth: dict[str, int] = {}
    for s in spans:
        depth[s["span_id"]] = depth.get(s["parent_id"], -1) + 1 if s["parent_id"] in depth else 0
    width, label_w, row_h = 760, 260, 16
    height = row_h * len(spans) + 10
    parts = [f'<svg class="cvl-waterfall" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="monospace" font-size="10">']
    for i, s in enumerate(spans):
        y = 5 + i * row_h
        bx = label_w + (s["start"] - t0) / span_total * (width - label_w - 10)
        bw = max(1.0, s["duration"] / span_total * (width - label_w - 10))
        color = "#b00020" if s["status"] == "error" else "#4a7bd0"
        indent = 8 * depth.get(s["span_id"], 0)
        parts.append(f'<text x="{indent}" y="{y + 11}">{esc(s["label"])[:40]}</text>')
        parts.append(f'<rect x="{bx:.1f}" y="{y + 2}" width="{bw:.1f}" height="{row_h - 5}" fill="{color}">'
                     f'<title>{esc(s["name"])} {1000 * s["duration"]:.2f} ms</title></rect>')
    parts.append("</svg>")
    return f'<div class="cvl">{"".join(parts)}</div>'
