"""OUT/report.html of an ablation: self-contained, in the run report's style (its CSS, palette
and table helper), with inline SVG curves."""

from __future__ import annotations

import html
from pathlib import Path

from mixer import report as _report
from mixer.io import write_bytes_atomic

CSS = getattr(_report, "CSS", "")
PALETTE = getattr(_report, "PALETTE", ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f"])
EXTRA_CSS = ".win{font-weight:bold}.sig{color:#2a7d2a}.nosig{color:#a66}"


def _table(rows: list[dict]) -> str:
    """The run report's table helper when it has one, else the same plain table."""
    helper = getattr(_report, "table", None)
    if helper is not None:
        return helper(rows)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _num(v, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _pm(s: dict, digits: int = 4) -> str:
    return _num(s["mean"], digits) + (
        f" &plusmn; {_num(s['ci95'], digits)}" if s.get("ci95") is not None else ""
    )


def line_chart(
    title: str, series: dict[str, list], xlabel: str, ylabel: str, width=520, height=300
) -> str:
    """Lines through (x, y) points, one per series; inline SVG."""
    pts = [p for s in series.values() for p in s]
    if not pts:
        return ""
    left, right, top, bottom = 60, 16, 28, 40
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1 = x1 if x1 > x0 else x0 + 1
    pad = (y1 - y0) * 0.05 or 0.5
    y0, y1 = y0 - pad, y1 + pad

    def sx(x):
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y):
        return top + (y1 - y) / (y1 - y0) * (height - top - bottom)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11">',
        f'<text x="{left}" y="16" font-weight="bold">{html.escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" fill="none" stroke="#ccc"/>',
    ]
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        xv = x0 + (x1 - x0) * i / 4
        out.append(
            f'<text x="{left - 4}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>'
            f'<text x="{sx(xv):.1f}" y="{height - bottom + 14}" text-anchor="middle">{xv:,.0f}</text>'
        )
    out.append(
        f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">{html.escape(xlabel)}</text>'
        f'<text x="12" y="{(top + height - bottom) / 2}" transform="rotate(-90 12 {(top + height - bottom) / 2})" text-anchor="middle">{html.escape(ylabel)}</text>'
    )
    for i, (name, points) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{path}"/>')
        out.append(
            f'<rect x="{width - right - 150}" y="{top + 6 + i * 16}" width="10" height="10" fill="{color}"/>'
            f'<text x="{width - right - 136}" y="{top + 15 + i * 16}">{html.escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def render(res: dict) -> str:
    mixes = list(res["results"])
    domains = [d["name"] for d in res["domains"]]
    if "overall" in next(iter(res["results"].values()), {}):
        domains.append("overall")
    seeds = len(res["seeds"])
    title = f"mixer ablate: {res['name']}"
    out = [
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{CSS}{EXTRA_CSS}</style><h1>{html.escape(title)}</h1>",
        f"<p class=muted>proxy {html.escape(str(res['proxy']['name']))}, "
        f"{res['params']:,} parameters, {res['tokens_per_run']:,} training tokens per run, "
        f"{seeds} seed(s) {res['seeds']}; held-out fraction {res['heldout']['fraction']:g} "
        f"(seed {res['heldout']['seed']}). Bits per byte on data no mix trained on: lower is "
        + ("better; &plusmn; is a 95% interval across seeds.</p>" if seeds > 1 else "better.</p>"),
    ]
    # mix x domain
    head = "".join(f"<th>{html.escape(d)}</th>" for d in domains)
    rows = []
    for m in mixes:
        cells = []
        for d in domains:
            s = res["results"][m][d]["bpb"]
            win = res["winners"].get(d, {}).get("winner") == m and len(mixes) > 1
            cells.append(f"<td{' class=win' if win else ''}>{_pm(s)}</td>")
        rows.append(f"<tr><td>{html.escape(m)}</td>{''.join(cells)}</tr>")
    out.append("<h2>Bits per byte, mix &times; domain</h2>")
    out.append(f"<table><tr><th>mix</th>{head}</tr>{''.join(rows)}</table>")
    # winners
    if len(mixes) > 1:
        rows = []
        for d in domains:
            w = res["winners"].get(d)
            if not w:
                continue
            if "margin" in w:
                ci = w["margin_ci95"]
                verdict = (
                    "<span class=sig>larger than the seed noise</span>"
                    if w["significant"]
                    else (
                        "<span class=nosig>within the seed noise</span>"
                        if ci is not None
                        else "<span class=muted>one seed: no error estimate</span>"
                    )
                )
                rows.append(
                    f"<tr><td>{html.escape(d)}</td><td>{html.escape(w['winner'])}</td>"
                    f"<td>{html.escape(w['runner_up'])}</td><td>{_num(w['margin'])}"
                    + (f" &plusmn; {_num(ci)}" if ci is not None else "")
                    + f"</td><td>{verdict}</td></tr>"
                )
        out.append("<h2>Which mix wins, per domain</h2>")
        out.append(
            "<table><tr><th>domain</th><th>winner</th><th>runner-up</th>"
            "<th>margin (bpb, paired by seed)</th><th></th></tr>" + "".join(rows) + "</table>"
        )
    # curves
    held = {
        m: list(zip(c["tokens"], c["heldout_bpb"], strict=True)) for m, c in res["curves"].items()
    }
    train = {m: c["train_loss"] for m, c in res["curves"].items()}
    out.append("<h2>Loss curves (mean over seeds)</h2><div class=plots>")
    out.append(line_chart("held-out bits per byte", held, "training tokens", "bits per byte"))
    out.append(
        line_chart("training loss (each on its own mix)", train, "training tokens", "nats/token")
    )
    out.append("</div>")
    # mixes
    rows = []
    for m, info in res["mixes"].items():
        shares = ", ".join(
            f"{s} {v:.1%}" for s, v in (info.get("shares") or {}).items() if v is not None
        )
        tot = info.get("total_tokens") or 0
        rows.append(
            f"<tr><td>{html.escape(m)}</td><td>{html.escape(info['recipe'])}</td>"
            f"<td>{tot:,}</td><td>{res['tokens_per_run'] / max(tot, 1):.2f}</td>"
            f"<td>{html.escape(shares)}</td></tr>"
        )
    out.append("<h2>Mixes</h2><table><tr><th>mix</th><th>recipe</th><th>tokens</th>"
               "<th>epochs per run</th><th>shares</th></tr>" + "".join(rows) + "</table>")  # fmt: skip
    out.append(
        "<h2>Evaluation domains</h2>"
        + _table(
            [
                {k: d[k] for k in ("name", "kind", "documents", "tokens", "bytes")}
                for d in res["domains"]
            ]
        )
    )
    out.append(
        "<p class=muted>A proxy's ranking is evidence, not proof: small models trained briefly "
        "can rank mixes differently from the full-size model (docs/ablate.md).</p>"
    )
    return "\n".join(out)


def write_html(res: dict, path: Path) -> Path:
    write_bytes_atomic(path, render(res).encode())
    return path
