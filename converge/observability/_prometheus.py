"""Prometheus text exposition (format 0.0.4) of a metrics snapshot.

Layout: counters, then gauges, then histograms; families sorted by name, one
``# HELP`` and one ``# TYPE`` line per family, then its series sorted by
labels (the unlabelled series first). Names are sanitised to
``[a-zA-Z_:][a-zA-Z0-9_:]*``; values are written as Python does (``2``,
``3.0``) except the special floats (``+Inf``, ``-Inf``, ``NaN``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]

_BAD_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_:]")
_BAD_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


def sanitize_metric_name(name: str) -> str:
    """A valid Prometheus metric name: invalid characters become ``_``, a leading digit gets a ``_`` prefix."""
    clean = _BAD_NAME_CHARS.sub("_", name)
    if not clean or clean[0].isdigit():
        clean = "_" + clean
    return clean


def sanitize_label_name(name: str) -> str:
    """A valid Prometheus label name (``:`` is not allowed in label names)."""
    clean = _BAD_LABEL_CHARS.sub("_", name)
    if not clean or clean[0].isdigit():
        clean = "_" + clean
    return clean


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_str(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    pairs = list(labels) + ([extra] if extra else [])
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in pairs) + "}"


def _clean_labels(labels: Labels, reserved: tuple[str, ...] = ()) -> Labels:
    out = []
    for k, v in labels:
        k = sanitize_label_name(k)
        if k in reserved:
            k += "_"
        out.append((k, v))
    return tuple(sorted(out))


class _Family:
    __slots__ = ("name", "kind", "series")

    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind
        self.series: dict[Labels, Any] = {}


def format_exposition(
    counters: Mapping[str, Any],
    gauges: Mapping[str, Any],
    histograms: Mapping[str, Mapping[str, Any]],
    meta: Callable[[str], tuple[str, Labels]],
    help_text: Callable[[str], str],
) -> str:
    """Render the three kinds of series.

    Args:
        counters/gauges: series key -> value.
        histograms: series key -> ``{"le": bounds, "buckets": cumulative counts, "sum", "count"}``.
        meta: series key -> (raw metric name, labels).
        help_text: raw metric name -> HELP text.
    """
    families: dict[str, _Family] = {}
    raw_names: dict[str, str] = {}
    for kind, data in (("counter", counters), ("gauge", gauges), ("histogram", histograms)):
        for key, value in data.items():
            raw, labels = meta(key)
            name = sanitize_metric_name(raw)
            fam = families.get(name)
            if fam is not None and fam.kind != kind:
                # Same name as a family of another kind: keep the data visible under a suffixed name.
                name = f"{name}_{kind}"
                fam = families.get(name)
            if fam is None:
                fam = families[name] = _Family(name, kind)
                raw_names[name] = raw
            labels = _clean_labels(labels, ("le",) if kind == "histogram" else ())
            if kind == "counter" and labels in fam.series:
                fam.series[labels] += value  # two raw names that sanitise alike ("a.b", "a_b")
            else:
                fam.series[labels] = value
    lines: list[str] = []
    for kind in ("counter", "gauge", "histogram"):
        for name in sorted(n for n, f in families.items() if f.kind == kind):
            fam = families[name]
            lines.append(f"# HELP {name} {_escape_help(help_text(raw_names[name]))}")
            lines.append(f"# TYPE {name} {kind}")
            for labels in sorted(fam.series):
                value = fam.series[labels]
                if kind == "histogram":
                    _histogram_lines(lines, name, labels, value)
                else:
                    lines.append(f"{name}{_label_str(labels)} {format_value(value)}")
    return "\n".join(lines) + "\n" if lines else ""


def _histogram_lines(lines: list[str], name: str, labels: Labels, h: Mapping[str, Any]) -> None:
    bounds: Sequence[float] = h["le"]
    for bound, count in zip(bounds, h["buckets"], strict=True):
        lines.append(f"{name}_bucket{_label_str(labels, ('le', format_value(float(bound))))} {count}")
    lines.append(f"{name}_bucket{_label_str(labels, ('le', '+Inf'))} {h['count']}")
    lines.append(f"{name}_sum{_label_str(labels)} {format_value(h['sum'])}")
    lines.append(f"{name}_count{_label_str(labels)} {h['count']}")


__all__ = ["CONTENT_TYPE", "format_exposition", "format_value", "sanitize_label_name", "sanitize_metric_name"]
