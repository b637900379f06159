"""The run report: report/report.json and a self-contained report/report.html (inline SVG plots,
no network needed to view it), built only from what the stages left on disk."""

from __future__ import annotations

import html
import math
from pathlib import Path

from mixer.io import read_json, write_bytes_atomic, write_json_atomic
from mixer.schema import mix_manifest_path, report_dir, state_dir, tokens_dir
from mixer.sql_views import connect

# ------------------------------------------------------------------------ data


def _columns(con) -> set[str]:
    return {c for (c,) in con.execute("SELECT column_name FROM (DESCRIBE docs)").fetchall()}


def _length_histogram(con, table: str) -> dict[str, int]:
    """Documents by length in characters, in powers-of-two buckets."""
    rows = con.execute(
        f"""SELECT CASE WHEN length(text) = 0 THEN 0 ELSE floor(log2(length(text)))::INT + 1 END AS b, count(*)
            FROM {table} GROUP BY b ORDER BY b"""
    ).fetchall()
    return {("0" if b == 0 else f"<{2**b}"): n for b, n in rows}


def _distribution(con, column: str) -> dict[str, dict[str, int]]:
    rows = con.execute(
        f"SELECT source, coalesce({column}::VARCHAR, 'null'), count(*) FROM docs GROUP BY 1, 2 ORDER BY 1, 3 DESC"
    ).fetchall()
    out: dict[str, dict[str, int]] = {}
    for source, label, n in rows:
        out.setdefault(source, {})[label] = n
    return out


def _only_mix(workdir: Path) -> str | None:
    """The workdir's mix when it has exactly one (so `mixer report WORKDIR` needs no recipe)."""
    mixes = [
        p.name.removesuffix(".manifest.json") for p in (workdir / "mixes").glob("*.manifest.json")
    ]
    return mixes[0] if len(mixes) == 1 else None


def collect(workdir: str | Path, recipe=None) -> dict:
    wd = Path(workdir)
    report: dict = {"workdir": str(wd)}
    ingest = read_json(state_dir(wd) / "ingest.json")
    if ingest:
        report["ingest"] = ingest
    con = connect(wd)
    cols = _columns(con)
    report["documents"] = {
        src: {"docs": n, "chars": int(c or 0)}
        for src, n, c in con.execute(
            "SELECT source, count(*), sum(length(text)) FROM documents GROUP BY 1 ORDER BY 1"
        ).fetchall()
    }
    report["length_histogram_before"] = _length_histogram(con, "documents")
    for col in ("lang__label", "domain__label"):
        if col in cols:
            report[col.split("__")[0] + "_distribution"] = _distribution(con, col)
    rules = {}
    for tagger in ("gopher", "c4", "fineweb"):
        if f"{tagger}__keep" in cols:
            reason = f"{tagger}__reason" if f"{tagger}__reason" in cols else None
            q = f"SELECT source, {reason or 'NULL'}, count(*) FROM docs WHERE NOT {tagger}__keep GROUP BY 1, 2 ORDER BY 1, 3 DESC"
            for source, why, n in con.execute(q).fetchall():
                rules.setdefault(source, {})[f"{tagger}: {why or 'removed'}"] = n
    if rules:
        report["rule_removals"] = rules
    dedup = read_json(state_dir(wd) / "dedup" / "stats.json")
    if dedup:
        report["dedup"] = dedup
    name = recipe.name if recipe is not None else _only_mix(wd)
    if name is not None:
        report["mix_name"] = name
        manifest = read_json(mix_manifest_path(wd, name))
        if manifest:
            report["mix"] = manifest
            views = {
                n
                for (n,) in con.execute(
                    "SELECT view_name FROM duckdb_views() WHERE NOT internal"
                ).fetchall()
            }
            if f"mix_{name}" in views:
                report["length_histogram_after"] = _length_histogram(con, f'"mix_{name}"')
        tokens = read_json(tokens_dir(wd, name) / "tokens.json")
        if tokens:
            report["tokens"] = tokens
        train = read_json(wd / "runs" / name / "summary.json")
        if train:
            report["train"] = train
    stages = {}
    pipeline = state_dir(wd) / "pipeline"
    if pipeline.is_dir():
        for p in sorted(pipeline.glob("*.json")):
            stages[p.stem] = (read_json(p) or {}).get("seconds")
    report["stage_seconds"] = stages
    return report


# ------------------------------------------------------------------------ html

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f6f6f6}
.plots{display:flex;flex-wrap:wrap;gap:20px}.muted{color:#777}
"""
PALETTE = [
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p class=muted>none</p>"
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def bar_chart(
    title: str, series: dict[str, dict[str, float]], width: int = 520, log: bool = False
) -> str:
    """Grouped horizontal bars: series name -> {category: value}; inline SVG."""
    categories = list(dict.fromkeys(c for s in series.values() for c in s))
    if not categories:
        return ""
    names = list(series)
    vmax = max((v for s in series.values() for v in s.values()), default=1) or 1
    scale = (lambda v: math.log10(1 + v) / math.log10(1 + vmax)) if log else (lambda v: v / vmax)
    bar_h, gap, left = 12, 6, 150
    group_h = bar_h * len(names) + gap
    height = 40 + group_h * len(categories) + 18 * len(names)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11">',
        f'<text x="0" y="14" font-weight="bold">{html.escape(title)}</text>',
    ]
    y = 28
    for cat in categories:
        parts.append(
            f'<text x="{left - 6}" y="{y + group_h / 2}" text-anchor="end">{html.escape(str(cat))[:24]}</text>'
        )
        for i, name in enumerate(names):
            v = series[name].get(cat, 0)
            w = max(0.0, scale(v)) * (width - left - 70)
            parts.append(
                f'<rect x="{left}" y="{y + i * bar_h}" width="{w:.1f}" height="{bar_h - 2}" fill="{PALETTE[i % len(PALETTE)]}"/>'
            )
            parts.append(
                f'<text x="{left + w + 4:.1f}" y="{y + i * bar_h + bar_h - 3}">{_fmt(v)}</text>'
            )
        y += group_h
    for i, name in enumerate(names):
        parts.append(
            f'<rect x="{left}" y="{y + 4 + i * 18}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{left + 14}" y="{y + 13 + i * 18}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: dict, title: str = "mixer report") -> str:
    out = [
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{CSS}</style>",
        f"<h1>{html.escape(title)}</h1><p class=muted>{html.escape(report['workdir'])}</p>",
    ]
    ingest = report.get("ingest")
    if ingest:
        out.append("<h2>Ingest</h2>")
        out.append(
            table(
                [
                    {
                        "lines read": ingest["lines_read"],
                        "ingested": ingest["ingested"],
                        "quarantined": ingest["quarantined"],
                    }
                ]
            )
        )
        out.append(table([{"source": s, **c} for s, c in ingest.get("sources", {}).items()]))
        if ingest.get("quarantine_reasons"):
            out.append(
                table(
                    [
                        {"quarantine reason": r, "lines": n}
                        for r, n in ingest["quarantine_reasons"].items()
                    ]
                )
            )
    mix = report.get("mix")
    if mix:
        out.append("<h2>Funnel and mix</h2>")
        out.append(_mix_tables(mix))
        out.append("<h3>Funnel per source: from raw lines to the mix</h3>")
        out.append(table(funnel(report)))
    if report.get("rule_removals"):
        out.append("<h2>Documents removed by each web rule (first failing rule)</h2>")
        rows = [
            {"source": s, "rule": r, "documents": n}
            for s, d in report["rule_removals"].items()
            for r, n in d.items()
        ]
        out.append(table(rows))
    plots = []
    hist = {"before (documents)": report.get("length_histogram_before", {})}
    if report.get("length_histogram_after"):
        hist["after (mix)"] = report["length_histogram_after"]
    plots.append(bar_chart("Document length (characters)", hist, log=True))
    for key, label in (
        ("domain_distribution", "Domain labels"),
        ("lang_distribution", "Languages"),
    ):
        if report.get(key):
            totals: dict[str, int] = {}
            for d in report[key].values():
                for k, v in d.items():
                    totals[k] = totals.get(k, 0) + v
            top = dict(sorted(totals.items(), key=lambda kv: -kv[1])[:12])
            plots.append(bar_chart(label, {"documents": top}, log=True))
    dedup = report.get("dedup")
    if dedup:
        sizes = dedup.get("clusters_by_size")
        if isinstance(sizes, dict):
            plots.append(
                bar_chart(
                    "Duplicate clusters by size",
                    {"clusters": {str(k): v for k, v in list(sizes.items())[:15]}},
                    log=True,
                )
            )
    out.append("<h2>Distributions</h2><div class=plots>" + "".join(plots) + "</div>")
    if dedup:
        out.append("<h2>Deduplication</h2>")
        flat = {k: v for k, v in dedup.items() if isinstance(v, (int, float, str))}
        out.append(table([flat]) if flat else "")
        removed = dedup.get("removed_per_source")
        if isinstance(removed, dict):
            out.append(table([{"source": s, "removed": n} for s, n in removed.items()]))
    tokens = report.get("tokens")
    if tokens:
        out.append("<h2>Tokens</h2>")
        flat = {
            k: v
            for k, v in tokens.items()
            if isinstance(v, (int, float, str)) and k != "tokenizer_sha256"
        }
        out.append(table([flat]))
    train = report.get("train")
    if train:
        out.append("<h2>Training</h2>")
        out.append(table([{k: v for k, v in train.items() if isinstance(v, (int, float, str))}]))
    if report.get("stage_seconds"):
        out.append("<h2>Stage times (last run of each)</h2>")
        out.append(table([{"stage": k, "seconds": v} for k, v in report["stage_seconds"].items()]))
    return "\n".join(out)


def funnel(report: dict) -> list[dict]:
    """Per source, in order: lines read, quarantined, ingested, left after each filter, selected."""
    ingest = (report.get("ingest") or {}).get("sources", {})
    rows = []
    for name, s in (report.get("mix") or {}).get("sources", {}).items():
        got = ingest.get(name, {})
        if got:
            read = got.get("ingested", 0) + got.get("quarantined", 0)
            rows.append({"source": name, "step": "lines read", "documents": read})
            rows.append(
                {"source": name, "step": "quarantined", "documents": got.get("quarantined", 0)}
            )
        rows.append(
            {
                "source": name,
                "step": "ingested",
                "documents": s.get("docs_available"),
                "tokens": s.get("tokens_available"),
            }
        )
        for step in s.get("funnel") or []:
            rows.append(
                {
                    "source": name,
                    "step": f"after {step.get('filter')}",
                    "documents": step.get("docs"),
                    "tokens": step.get("tokens"),
                }
            )
        rows.append(
            {"source": name, "step": "selected (distinct)", "documents": s.get("unique_docs")}
        )
        rows.append(
            {
                "source": name,
                "step": "selected (with repeats)",
                "documents": s.get("selected_docs"),
                "tokens": s.get("selected_tokens"),
            }
        )
    return rows


MIX_COLUMNS = (
    "group", "docs_available", "tokens_available", "tokens_after_filters", "target_tokens",
    "selected_tokens", "share_of_mix", "repetition_factor", "max_repetition", "cause",
)  # fmt: skip


def _mix_tables(manifest: dict) -> str:
    sources = manifest.get("sources", {})
    rows = [{"source": name, **{k: s.get(k) for k in MIX_COLUMNS}} for name, s in sources.items()]
    plot = {
        "target": {name: s.get("target_tokens") or 0 for name, s in sources.items()},
        "selected": {name: s.get("selected_tokens") or 0 for name, s in sources.items()},
    }
    return table(rows, ["source", *MIX_COLUMNS]) + bar_chart(
        "Tokens per source: target vs selected", plot
    )


def build_report(workdir: str | Path, recipe=None) -> dict[str, Path]:
    """Write report/report.json and report/report.html. Returns their paths."""
    report = collect(workdir, recipe)
    out = report_dir(workdir)
    write_json_atomic(out / "report.json", report)
    title = f"mixer report: {report['mix_name']}" if report.get("mix_name") else "mixer report"
    write_bytes_atomic(out / "report.html", render_html(report, title).encode())
    return {"json": out / "report.json", "html": out / "report.html"}
