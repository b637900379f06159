"""Inline SVG charts for report.html: no scripts, no external assets, one id per chart.

Every chart is an `<svg id=... viewBox=...>` that scales to the width of its box; text is sized
in the viewBox's units, so a chart keeps its proportions on any screen.
"""

from __future__ import annotations

import html
import math

PALETTE = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#86bcb6", "#d37295", "#a0cbe8", "#ffbe7d", "#8cd17d", "#b6992d",
)  # fmt: skip
KEEP, REMOVED, TARGET, MUTED = "#4e79a7", "#e8a0a0", "#222", "#8a8a8a"
FONT = 12
OTHER = "other"


def esc(s) -> str:
    return html.escape(str(s), quote=True)


def short(v) -> str:
    """Like compact, and thousands as k from 10,000 on: 100007 -> 100k."""
    if isinstance(v, (int, float)) and 1e4 <= abs(v) < 1e6:
        return f"{v / 1e3:.3g}k"
    return compact(v)


def compact(v) -> str:
    """1234 -> 1,234; 1234567 -> 1.23M; 0.4567 -> 0.457."""
    if v is None:
        return "n/a"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.3g}"
    v = int(v)
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:,}"


def colors_for(categories: list[str]) -> dict[str, str]:
    """A stable color per category, in the order given (most frequent first)."""
    out = {}
    for i, c in enumerate(categories):
        out[c] = MUTED if c in (OTHER, "untagged") else PALETTE[i % len(PALETTE)]
    return out


def _svg(chart_id: str, title: str, width: int, height: float, body: list[str]) -> str:
    return (
        f'<svg id="{esc(chart_id)}" class="chart" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {width} {height:.0f}" role="img" aria-label="{esc(title)}" '
        f'font-size="{FONT}" font-family="system-ui, sans-serif">'
        f"<title>{esc(title)}</title>" + "".join(body) + "</svg>"
    )


def _text(x, y, s, anchor="start", fill="#222", weight=None, size=None) -> str:
    extra = (f' font-weight="{weight}"' if weight else "") + (
        f' font-size="{size}"' if size else ""
    )
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}"{extra}>{esc(s)}</text>'
    )


def _clip(label: str, n: int) -> str:
    label = str(label)
    return label if len(label) <= n else label[: n - 1] + "…"


def hbars(
    chart_id: str,
    title: str,
    rows: list[dict],
    width: int = 560,
    label_width: int = 150,
    fmt=compact,
    log: bool = False,
    marker_name: str | None = None,
) -> str:
    """Horizontal bars. Each row: label, value, optional note (text after the bar), color,
    marker (a value drawn as a black tick, e.g. a target or a maximum)."""
    if not rows:
        return ""
    bar_h, gap, top = 18, 6, 8
    right = 120
    vmax = max([r["value"] or 0 for r in rows] + [r.get("marker") or 0 for r in rows]) or 1
    span = width - label_width - right

    def x(v: float) -> float:
        v = max(0.0, float(v or 0))
        return span * (math.log10(1 + v) / math.log10(1 + vmax) if log else v / vmax)

    body = []
    y = top
    for r in rows:
        w = x(r["value"])
        body.append(
            _text(label_width - 8, y + bar_h - 5, _clip(r["label"], label_width // 7), "end")
        )
        body.append(
            f'<rect x="{label_width}" y="{y}" width="{max(w, 0.5):.1f}" height="{bar_h}" '
            f'fill="{r.get("color", KEEP)}"><title>{esc(r["label"])}: {esc(fmt(r["value"]))}</title></rect>'
        )
        end = label_width + w
        if r.get("marker") is not None:
            m = label_width + x(r["marker"])
            body.append(
                f'<line x1="{m:.1f}" x2="{m:.1f}" y1="{y - 3}" y2="{y + bar_h + 3}" stroke="{TARGET}" stroke-width="2.5"/>'
            )
            end = max(end, m)
        note = r.get("note") or fmt(r["value"])
        body.append(_text(end + 6, y + bar_h - 5, note, fill="#333"))
        y += bar_h + gap
    if marker_name:
        body.append(
            f'<line x1="{label_width}" x2="{label_width}" y1="{y + 4}" y2="{y + 16}" stroke="{TARGET}" stroke-width="2.5"/>'
        )
        body.append(_text(label_width + 6, y + 15, marker_name, fill="#333"))
        y += 20
    return _svg(chart_id, title, width, y + 4, body)


def funnel(chart_id: str, title: str, steps: list[dict], width: int = 560) -> str:
    """One source's funnel: per step, the documents left (blue) and those the step removed
    (red, drawn after what is left, so each bar keeps the length of the step before)."""
    if not steps:
        return ""
    label_width, bar_h, gap, top, right = 170, 16, 5, 8, 215
    vmax = max(s["left"] + s.get("removed", 0) for s in steps) or 1
    span = width - label_width - right
    body = []
    y = top
    for s in steps:
        left, removed = s["left"], s.get("removed", 0)
        wl, wr = span * left / vmax, span * removed / vmax
        body.append(
            _text(label_width - 8, y + bar_h - 4, _clip(s["label"], label_width // 7), "end")
        )
        tip = f"{s['label']}: {left:,} documents left" + (
            f", {removed:,} removed" if removed else ""
        )
        body.append(
            f'<rect x="{label_width}" y="{y}" width="{max(wl, 0.5):.1f}" height="{bar_h}" '
            f'fill="{s.get("color", KEEP)}"><title>{esc(tip)}</title></rect>'
        )
        if removed:
            body.append(
                f'<rect x="{label_width + wl:.1f}" y="{y}" width="{max(wr, 1):.1f}" height="{bar_h}" '
                f'fill="{REMOVED}"><title>{esc(tip)}</title></rect>'
            )
        note = s.get("note") or (
            f"{compact(left)}  −{compact(removed)} ({removed / max(left + removed, 1):.0%})"
            if removed
            else compact(left)
        )
        body.append(_text(label_width + wl + wr + 6, y + bar_h - 4, note, fill="#333"))
        y += bar_h + gap
    return _svg(chart_id, title, width, y + 2, body)


def stacked(
    chart_id: str,
    title: str,
    rows: list[tuple[str, dict[str, float]]],
    colors: dict[str, str],
    width: int = 560,
    label_width: int = 150,
    legend: bool = True,
) -> str:
    """100% stacked horizontal bars: each row's values as shares of the row's total."""
    rows = [(label, vals) for label, vals in rows if sum(vals.values()) > 0]
    if not rows:
        return ""
    bar_h, gap, top = 20, 8, 8
    span = width - label_width - 10
    body = []
    y = top
    for label, vals in rows:
        total = sum(vals.values())
        body.append(_text(label_width - 8, y + bar_h - 6, _clip(label, label_width // 7), "end"))
        x = label_width
        for cat, v in sorted(
            vals.items(), key=lambda kv: list(colors).index(kv[0]) if kv[0] in colors else 99
        ):
            w = span * v / total
            if w <= 0:
                continue
            body.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colors.get(cat, MUTED)}" '
                f'stroke="#fff" stroke-width="0.5"><title>{esc(label)}: {esc(cat)} {v / total:.1%}</title></rect>'
            )
            if w > 34:
                body.append(
                    _text(x + w / 2, y + bar_h - 6, f"{v / total:.0%}", "middle", "#fff", size=10)
                )
            x += w
        y += bar_h + gap
    if legend:
        y = _legend(body, colors, label_width, y + 4, width)
    return _svg(chart_id, title, width, y + 4, body)


def _legend(body: list[str], colors: dict[str, str], x0: float, y: float, width: int) -> float:
    x = x0
    for cat, color in colors.items():
        w = 18 + 7 * len(str(cat)) + 14
        if x + w > width:
            x, y = x0, y + 18
        body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="11" height="11" fill="{color}"/>')
        body.append(_text(x + 15, y + 10, cat))
        x += w
    return y + 18


def columns(
    chart_id: str,
    title: str,
    categories: list[str],
    series: dict[str, dict[str, float]],
    width: int = 560,
    height: int = 230,
    percent: bool = True,
    x_label: str = "",
) -> str:
    """Grouped vertical bars: one group per category (in the order given), one bar per series."""
    if not categories or not series:
        return ""
    left, bottom, top = 44, 52, 10
    names = list(series)
    colors = colors_for(names)
    vmax = max((v for s in series.values() for v in s.values()), default=0) or 1
    plot_h = height - bottom - top
    group_w = (width - left - 8) / len(categories)
    bar_w = max(2.0, (group_w - 4) / len(names))
    body = []
    for k in range(5):  # grid lines
        v = vmax * k / 4
        yy = top + plot_h - plot_h * k / 4
        body.append(
            f'<line x1="{left}" x2="{width - 4}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#e6e6e6"/>'
        )
        body.append(
            _text(left - 4, yy + 4, f"{v:.0%}" if percent else compact(v), "end", "#666", size=10)
        )
    for i, cat in enumerate(categories):
        gx = left + i * group_w + 2
        for j, name in enumerate(names):
            v = series[name].get(cat, 0)
            h = plot_h * v / vmax
            body.append(
                f'<rect x="{gx + j * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 1:.1f}" '
                f'height="{h:.1f}" fill="{colors[name]}"><title>{esc(name)}, {esc(cat)}: '
                f"{v:.1%}</title></rect>"
                if percent
                else f'<rect x="{gx + j * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 1:.1f}" '
                f'height="{h:.1f}" fill="{colors[name]}"><title>{esc(name)}, {esc(cat)}: {compact(v)}</title></rect>'
            )
        body.append(
            _text(gx + group_w / 2 - 2, top + plot_h + 14, _clip(cat, 8), "middle", "#444", size=10)
        )
    if x_label:
        body.append(
            _text(left + (width - left) / 2, top + plot_h + 30, x_label, "middle", "#666", size=11)
        )
    _legend(body, colors, left, height - 16, width)
    return _svg(chart_id, title, width, height + 4, body)
