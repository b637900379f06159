"""The run report: report/report.json and report/report.html, built only from what the stages
left on disk.

report.html is one self-contained page (inline CSS and SVG, no script, nothing fetched) meant to
be put on a screen: headline numbers, the funnel of every source from lines read to tokens
selected, target vs selected tokens, repetition, document lengths before and after, the domains
and languages of the final mix, the domain mix of each source before and after filtering, dedup
cluster sizes, and the tables behind them. Every chart is an <svg> with a stable id
(CHART_IDS names them).
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from mixer import report_charts as ch
from mixer.io import read_json, write_bytes_atomic, write_json_atomic
from mixer.schema import mix_dir, mix_manifest_path, report_dir, state_dir, tokens_dir
from mixer.sql_views import connect

TOP_CATEGORIES = 9  # larger label sets are folded into "other"
WIDE = 1240  # viewBox width of a chart spanning the page (text keeps its size)

# ------------------------------------------------------------------------ data


def _columns(con) -> set[str]:
    return {c for (c,) in con.execute("SELECT column_name FROM (DESCRIBE docs)").fetchall()}


def _views(con) -> set[str]:
    return {
        n
        for (n,) in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal"
        ).fetchall()
    }


def _length_histogram(con, table: str) -> dict[str, int]:
    """Documents by length in characters, in powers-of-two buckets ("<64": 32 to 63 chars)."""
    rows = con.execute(
        f"""SELECT CASE WHEN length(text) = 0 THEN 0 ELSE floor(log2(length(text)))::INT + 1 END AS b, count(*)
            FROM {table} GROUP BY b ORDER BY b"""
    ).fetchall()
    return {("0" if b == 0 else f"<{2**b}"): n for b, n in rows}


def _by_source_label(con, column: str, table: str, weight: str = "count(*)") -> dict:
    rows = con.execute(
        f"SELECT source, coalesce({column}::VARCHAR, 'untagged'), {weight} FROM {table} "
        "GROUP BY 1, 2 ORDER BY 1, 3 DESC"
    ).fetchall()
    out: dict[str, dict[str, int]] = {}
    for source, label, n in rows:
        out.setdefault(source, {})[label] = int(n or 0)
    return out


def find_manifest(workdir: Path, name: str) -> dict | None:
    """The mix manifest beside the mix folder (mixes/<mix>.manifest.json), or inside it (older
    workdirs)."""
    return read_json(mix_manifest_path(workdir, name)) or read_json(
        mix_dir(workdir, name) / "manifest.json"
    )


def _only_mix(workdir: Path) -> str | None:
    """The workdir's mix when it has exactly one (so `mixer report WORKDIR` needs no recipe)."""
    mixes = workdir / "mixes"
    if not mixes.is_dir():
        return None
    names = {p.name for p in mixes.iterdir() if p.is_dir() and (p / "manifest.json").exists()}
    names |= {p.name[: -len(".manifest.json")] for p in mixes.glob("*.manifest.json")}
    return next(iter(names)) if len(names) == 1 else None


def _mix_join(con, cols: set[str], name: str) -> str | None:
    """SQL of the mix's rows joined with their documents' attributes (one row per selected copy)."""
    view = f'"mix_{name}"'
    if f"mix_{name}" not in _views(con):
        return None
    mix_cols = {c for (c,) in con.execute(f"SELECT column_name FROM (DESCRIBE {view})").fetchall()}
    if {"doc_part", "doc_row"} <= mix_cols:
        on = 'd.source = m.source AND d.part = m.doc_part AND d."row" = m.doc_row'
    else:
        on = "d.source = m.source AND d.id = m.id"
    keep = [c for c in ("domain__label", "lang__label", "tokens__count") if c in cols]
    select = ", ".join(["m.source", "m.text", *(f"d.{c}" for c in keep)])
    return f"(SELECT {select} FROM {view} m LEFT JOIN docs d ON {on})"


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
            report[col.split("__")[0] + "_distribution"] = _by_source_label(con, col, "docs")
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
        manifest = find_manifest(wd, name)
        if manifest:
            report["mix"] = manifest
        joined = _mix_join(con, cols, name)
        if joined is not None:
            report["length_histogram_after"] = _length_histogram(con, joined)
            weight = "sum(tokens__count + 1)" if "tokens__count" in cols else "count(*)"
            report["weighted_by"] = "tokens" if "tokens__count" in cols else "documents"
            for col in ("domain__label", "lang__label"):
                if col in cols:
                    key = col.split("__")[0]
                    report[f"mix_{key}_distribution"] = _by_source_label(con, col, joined, weight)
                    if col == "domain__label":
                        report["mix_domain_documents"] = _by_source_label(con, col, joined)
        tokens = read_json(tokens_dir(wd, name) / "tokens.json")
        if tokens:
            report["tokens"] = {k: v for k, v in tokens.items() if k != "parts"}
            report["tokens"]["parts"] = len(tokens.get("parts") or [])
        train = read_json(wd / "runs" / name / "summary.json")
        if train:
            report["train"] = train
    stages = {}
    for p in sorted((state_dir(wd) / "stages").glob("*/stage.json")):  # the runner's records
        stages[p.parent.name] = (read_json(p) or {}).get("seconds")
    report["stage_seconds"] = stages
    return report


# ------------------------------------------------------------------------ derived tables


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
            {"source": name, "step": "ingested", "documents": s.get("docs_available"),
             "tokens": s.get("tokens_available")}
        )  # fmt: skip
        for step in s.get("funnel") or []:
            rows.append(
                {"source": name, "step": f"after {step.get('filter')}", "documents": step.get("docs"),
                 "tokens": step.get("tokens")}
            )  # fmt: skip
        rows.append(
            {"source": name, "step": "selected (distinct)", "documents": s.get("unique_docs")}
        )
        rows.append(
            {"source": name, "step": "selected (with repeats)", "documents": s.get("selected_docs"),
             "tokens": s.get("selected_tokens")}
        )  # fmt: skip
    return rows


def funnel_steps(report: dict, name: str) -> list[dict]:
    """The bars of one source's funnel chart: documents left after each step, and removed by it."""
    s = report["mix"]["sources"][name]
    got = (report.get("ingest") or {}).get("sources", {}).get(name) or {}
    steps = []
    ingested = s.get("docs_available") or 0
    if got:
        quarantined = got.get("quarantined", 0)
        steps.append({"label": "lines read", "left": ingested + quarantined})
        steps.append({"label": "ingested (valid JSON)", "left": ingested, "removed": quarantined})
    else:
        steps.append({"label": "ingested", "left": ingested})
    left = ingested
    for step in s.get("funnel") or []:
        docs = step.get("docs") or 0
        steps.append(
            {
                "label": _short_filter(step.get("filter", "")),
                "left": docs,
                "removed": max(0, left - docs),
            }
        )
        left = docs
    unique = s.get("unique_docs")
    if unique is not None:
        steps.append(
            {
                "label": "selected (distinct)",
                "left": unique,
                "removed": max(0, left - unique),
                "color": "#2e6b9e",
            }
        )
    sel_docs, sel_tokens = s.get("selected_docs") or 0, s.get("selected_tokens") or 0
    rep = s.get("repetition_factor")
    steps.append(
        {
            "label": "in the mix (copies)",
            "left": sel_docs,
            "color": "#59a14f",
            "note": f"{ch.compact(sel_docs)} docs · {ch.short(sel_tokens)} tokens"
            + (f" · {rep:.2f}x" if isinstance(rep, (int, float)) else ""),
        }
    )
    return steps


def _short_filter(expr: str) -> str:
    """`gopher__keep` -> gopher; long SQL stays as written (clipped by the chart)."""
    e = expr.strip()
    if e.endswith("__keep") and e.replace("_", "").isalnum():
        return e[: -len("__keep")]
    return e


def _fold(counts: dict[str, float], keep: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in counts.items():
        key = k if k in keep else ch.OTHER
        out[key] = out.get(key, 0) + v
    return out


def _top_labels(dist: dict[str, dict[str, int]], n: int = TOP_CATEGORIES) -> list[str]:
    totals: dict[str, int] = {}
    for d in dist.values():
        for k, v in d.items():
            totals[k] = totals.get(k, 0) + v
    ranked = [k for k, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))]
    keep = [k for k in ranked if k != "untagged"][:n]
    return keep + (["untagged"] if "untagged" in totals else [])


def cluster_sizes(dedup: dict, key: str = "clusters_by_size") -> list[tuple[int, int]]:
    """(size, clusters), sizes in numeric order (JSON keys are text: '10' sorts before '2')."""
    sizes = dedup.get(key)
    if not isinstance(sizes, dict):
        return []
    out = []
    for k, v in sizes.items():
        try:
            out.append((int(k), int(v)))
        except (TypeError, ValueError):
            continue
    return sorted(out)


def _size_buckets(sizes: list[tuple[int, int]], limit: int = 14) -> list[tuple[str, int]]:
    """Exact sizes when few, else powers-of-two ranges (2, 3-4, 5-8, ...), in numeric order."""
    if len(sizes) <= limit:
        return [(str(s), n) for s, n in sizes]
    buckets: dict[int, int] = {}
    for s, n in sizes:
        b = 0 if s <= 1 else math.ceil(math.log2(s))
        buckets[b] = buckets.get(b, 0) + n
    out = []
    for b in sorted(buckets):
        lo, hi = (1, 1) if b == 0 else (2 ** (b - 1) + 1, 2**b)
        out.append((str(lo) if lo == hi else f"{lo}–{hi}", buckets[b]))
    return out


# ------------------------------------------------------------------------ html

CSS = """
:root{--ink:#1d2330;--muted:#6b7280;--line:#e5e7eb;--bg:#f6f7f9}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:var(--bg);color:var(--ink)}
main{max-width:1320px;margin:0 auto;padding:20px 28px 48px}
header h1{font-size:26px;margin:0 0 2px}header p{margin:0;color:var(--muted);word-break:break-all}
h2{font-size:19px;margin:30px 0 10px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:14px;margin:0 0 6px;color:#374151}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;margin:18px 0 6px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.card b{display:block;font-size:24px;font-variant-numeric:tabular-nums}
.card span{color:var(--muted);font-size:13px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px}
.panel{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 14px;min-width:0}
.panel.wide{grid-column:1/-1}
.chart{width:100%;height:auto;display:block}
.note{color:var(--muted);font-size:13px;margin:6px 0 0}
.tablewrap{overflow-x:auto;background:#fff;border:1px solid var(--line);border-radius:8px;margin:8px 0}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
td,th{padding:5px 9px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th{background:#f3f4f6;font-weight:600;white-space:normal;vertical-align:bottom}
th:first-child,td:first-child{text-align:left;position:sticky;left:0;background:inherit}
th:first-child{background:#f3f4f6}
tr{background:#fff}
td.text{text-align:left;white-space:normal;max-width:420px;word-break:break-word}
details{margin:8px 0}summary{cursor:pointer;color:#374151}
@media print{body{background:#fff}.panel,.card,.tablewrap{break-inside:avoid}}
"""

#: The charts a report can hold (ids of their <svg>); `funnel-<source>` is one per source.
CHART_IDS = (
    "chart-funnel-<source>", "chart-tokens-target-selected", "chart-repetition",
    "chart-length", "chart-mix-domains", "chart-mix-languages", "chart-domain-before-after",
    "chart-dedup-clusters", "chart-rule-removals", "chart-stage-seconds",
)  # fmt: skip


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    if v is None:
        return ""
    return html.escape(str(v))


def table(rows: list[dict], columns: list[str] | None = None, text_cols=()) -> str:
    """An HTML table in a horizontally scrolling box (wide tables never widen the page)."""
    if not rows:
        return "<p class=note>none</p>"
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=text' if c in text_cols else ''}>{_fmt(r.get(c))}</td>" for c in columns
        )
        + "</tr>"
        for r in rows
    )
    return f"<div class=tablewrap><table><tr>{head}</tr>{body}</table></div>"


def _panel(title: str, chart: str, note: str = "", wide: bool = False) -> str:
    if not chart:
        return ""
    cls = "panel wide" if wide else "panel"
    return (
        f"<div class='{cls}'><h3>{html.escape(title)}</h3>{chart}"
        + (f"<p class=note>{note}</p>" if note else "")
        + "</div>"
    )


def _cards(report: dict) -> str:
    cards = []
    ingest, mix, tokens = (
        report.get("ingest") or {},
        report.get("mix") or {},
        report.get("tokens") or {},
    )
    docs = sum(d["docs"] for d in (report.get("documents") or {}).values())
    if ingest:
        cards.append((ch.compact(ingest.get("lines_read")), "lines read"))
    cards.append((ch.compact(docs), "documents ingested"))
    if mix:
        srcs = mix.get("sources") or {}
        unique = sum(s.get("unique_docs") or 0 for s in srcs.values())
        cards.append(
            (ch.compact(unique), f"distinct documents in the mix ({unique / max(docs, 1):.1%})")
        )
        sel, target = mix.get("total_selected_tokens"), mix.get("total_target_tokens")
        cards.append((ch.compact(sel), f"tokens selected (target {ch.compact(target)})"))
        cards.append((str(len(srcs)), "sources"))
    dedup = report.get("dedup") or {}
    if isinstance(dedup.get("removed"), int):
        cards.append((ch.compact(dedup["removed"]), "near-duplicates removed"))
    if tokens:
        cards.append(
            (
                f"{tokens.get('dtype')}",
                f"{ch.compact(tokens.get('vocab_size'))} ids, {tokens.get('parts')} part{'s' if tokens.get('parts') != 1 else ''}",
            )
        )
    train = report.get("train") or {}
    for k in ("final_val_loss", "val_loss", "final_loss"):
        if isinstance(train.get(k), (int, float)):
            cards.append((f"{train[k]:.3f}", k.replace("_", " ")))
            break
    return (
        "<div class=cards>"
        + "".join(
            f"<div class=card><b>{html.escape(v)}</b><span>{html.escape(t)}</span></div>"
            for v, t in cards
        )
        + "</div>"
    )


def _mix_section(report: dict) -> str:
    mix = report["mix"]
    by_size = sorted(
        (mix.get("sources") or {}).items(), key=lambda kv: -(kv[1].get("selected_tokens") or 0)
    )
    sources = dict(by_size)  # largest first, in every chart of the section
    out = ["<h2>Funnel per source: from lines read to the mix</h2><div class=grid>"]
    for name in sources:
        chart = ch.funnel(f"chart-funnel-{name}", f"Funnel of {name}", funnel_steps(report, name))
        s = sources[name]
        note = f"group {html.escape(str(s.get('group')))}" if s.get("group") else ""
        if s.get("cause"):
            note += f" · {html.escape(str(s['cause']))}"
        out.append(_panel(name, chart, note))
    out.append("</div><p class=note>Blue: documents left after each step; red: removed by that step "
               "(filters apply in the recipe's order, so a document counts at the first filter that "
               "removes it). The last bar counts repeated copies.</p>")  # fmt: skip
    out.append("<h2>Tokens and repetition</h2><div class=grid>")
    rows = [
        {"label": n, "value": s.get("selected_tokens") or 0, "marker": s.get("target_tokens"),
         "color": ch.KEEP if not s.get("cause") else "#e15759",
         "note": f"{ch.compact(s.get('selected_tokens'))} / {ch.compact(s.get('target_tokens'))}"}
        for n, s in sources.items()
    ]  # fmt: skip
    out.append(_panel("Tokens per source: selected (bar) vs target (tick)",
                      ch.hbars("chart-tokens-target-selected", "Tokens per source: selected vs target",
                               rows, marker_name="target"),
                      f"{ch.compact(mix.get('total_selected_tokens'))} of {ch.compact(mix.get('total_target_tokens'))} "
                      "target tokens selected"))  # fmt: skip
    rows = [
        {"label": n, "value": float(s.get("repetition_factor") or 0), "marker": s.get("max_repetition"),
         "color": "#f28e2b" if (s.get("repetition_factor") or 0) > 1 else ch.KEEP,
         "note": f"{float(s.get('repetition_factor') or 0):.2f}x (max {ch.compact(s.get('max_repetition'))})"}
        for n, s in sources.items()
    ]  # fmt: skip
    out.append(_panel("Repetition per source: selected / available after filters (tick: the recipe's max)",
                      ch.hbars("chart-repetition", "Repetition per source", rows,
                               fmt=lambda v: f"{v:.2f}x", marker_name="max repetition"),
                      "Above 1x a source is repeated (upsampled); below 1x it is subsampled."))  # fmt: skip
    out.append("</div>")
    return "\n".join(out)


def _distribution_section(report: dict) -> str:
    out = ["<h2>What the mix is made of</h2><div class=grid>"]
    before, after = (
        report.get("length_histogram_before") or {},
        report.get("length_histogram_after") or {},
    )
    if before:
        cats = sorted(set(before) | set(after), key=lambda k: 0 if k == "0" else int(k[1:]))
        series = {"all ingested documents": _shares(before)}
        if after:
            series["documents in the mix"] = _shares(after)
        out.append(_panel("Document length before and after (share of documents)",
                          ch.columns("chart-length", "Document length", cats, series,
                                     x_label="characters (bucket: up to this many)"),
                          wide=False))  # fmt: skip
    weighted = report.get("weighted_by", "documents")
    domain_keep: list[str] = []
    for key, title, chart_id in (
        ("mix_domain_distribution", "Domains of the final mix", "chart-mix-domains"),
        ("mix_lang_distribution", "Languages of the final mix", "chart-mix-languages"),
    ):
        dist = report.get(key)
        if not dist:
            continue
        keep = _top_labels(dist)
        colors = ch.colors_for(keep + ([ch.OTHER] if len(keep) < len(_all_labels(dist)) else []))
        if key == "mix_domain_distribution":
            domain_keep = keep  # the before/after chart below uses the same labels and colors
        total = {}
        for d in dist.values():
            for k, v in _fold(d, keep).items():
                total[k] = total.get(k, 0) + v
        rows = [("whole mix", total)] + [(s, _fold(d, keep)) for s, d in sorted(dist.items())]
        out.append(_panel(f"{title} (share of {weighted})", ch.stacked(chart_id, title, rows, colors),
                          "untagged: the source's recipe runs no such tagger."
                          if "untagged" in colors else ""))  # fmt: skip
    dom_before, dom_after = report.get("domain_distribution"), report.get("mix_domain_documents")
    if dom_before and dom_after:
        keep = domain_keep or _top_labels(dom_before)
        colors = ch.colors_for(keep + [ch.OTHER])
        rows = []
        for s in sorted(dom_after):
            rows.append((f"{s}: ingested", _fold(dom_before.get(s, {}), keep)))
            rows.append((f"{s}: in the mix", _fold(dom_after[s], keep)))
        out.append(_panel("Domain mix per source, before and after filtering (share of documents)",
                          ch.stacked("chart-domain-before-after", "Domains before and after", rows,
                                     colors, width=WIDE, label_width=220), wide=True))  # fmt: skip
    out.append("</div>")
    return "\n".join(out)


def _shares(hist: dict[str, int]) -> dict[str, float]:
    total = sum(hist.values()) or 1
    return {k: v / total for k, v in hist.items()}


def _all_labels(dist: dict) -> set[str]:
    return {k for d in dist.values() for k in d}


def _dedup_section(report: dict) -> str:
    dedup = report.get("dedup")
    out = []
    if dedup:
        out.append("<h2>Deduplication</h2><div class=grid>")
        sizes = cluster_sizes(dedup)
        dup = [(s, n) for s, n in sizes if s > 1]
        if dup:
            rows = [{"label": f"size {lbl}", "value": n} for lbl, n in _size_buckets(dup)]
            singles = dict(sizes).get(1)
            note = f"{singles:,} documents have no near-duplicate. " if singles else ""
            out.append(_panel("Near-duplicate clusters by size (numeric order; log scale)",
                              ch.hbars("chart-dedup-clusters", "Duplicate clusters by size", rows, log=True),
                              note + "Every cluster keeps one document."))  # fmt: skip
        removed = dedup.get("removed_per_source")
        flat = {
            k: v
            for k, v in dedup.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        tables = table([flat]) if flat else ""
        if isinstance(removed, dict):
            tables += table([{"source": s, "removed": n} for s, n in removed.items()])
        out.append(f"<div class=panel><h3>Dedup totals</h3>{tables}</div></div>")
    rules = report.get("rule_removals")
    if rules:
        out.append("<h2>Why web documents were removed</h2><div class=grid>")
        totals: dict[str, int] = {}
        for d in rules.values():
            for r, n in d.items():
                totals[r] = totals.get(r, 0) + n
        ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:15]
        out.append(_panel("Documents removed per rule (first failing rule of each tagger)",
                          ch.hbars("chart-rule-removals", "Documents removed per rule",
                                   [{"label": r, "value": n} for r, n in ranked],
                                   label_width=230, width=620),
                          "Taggers judge every document independently, so one document can fail "
                          "several taggers; the funnel counts it once."))  # fmt: skip
        srcs = sorted(rules)
        rows = [
            {
                "rule": r,
                **{s: rules[s].get(r) for s in srcs},
                **({"total": n} if len(srcs) > 1 else {}),
            }
            for r, n in sorted(totals.items(), key=lambda kv: -kv[1])
        ]
        out.append(
            f"<div class=panel><h3>Documents removed, per rule and source</h3>{table(rows)}</div></div>"
        )
    return "\n".join(out)


MIX_COLUMNS = (
    "group", "docs_available", "tokens_available", "tokens_after_filters", "target_tokens",
    "selected_tokens", "share_of_mix", "repetition_factor", "max_repetition", "cause",
)  # fmt: skip


def _tables_section(report: dict) -> str:
    out = ["<h2>Tables</h2>"]
    mix = report.get("mix")
    if mix:
        rows = [
            {"source": n, **{k: s.get(k) for k in MIX_COLUMNS}}
            for n, s in mix.get("sources", {}).items()
        ]
        out.append(
            "<h3>Mix per source</h3>" + table(rows, ["source", *MIX_COLUMNS], text_cols=("cause",))
        )
        out.append("<details><summary>Funnel per source, step by step</summary>"
                   + table(funnel(report), text_cols=("step",)) + "</details>")  # fmt: skip
    ingest = report.get("ingest")
    if ingest:
        out.append("<h3>Ingest</h3>")
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
    tokens = report.get("tokens")
    if tokens:
        out.append("<h3>Tokens</h3>")
        flat = {
            k: v for k, v in tokens.items()
            if isinstance(v, (int, float, str)) and k not in ("tokenizer_sha256", "fingerprint", "mix_dir")
        }  # fmt: skip
        out.append(table([{"key": k, "value": v} for k, v in flat.items()], text_cols=("value",)))
    train = report.get("train")
    if train:
        out.append("<h3>Training</h3>")
        out.append(table([{k: v for k, v in train.items() if isinstance(v, (int, float, str))}]))
    return "\n".join(out)


def _stage_section(report: dict) -> str:
    secs = {
        k: v for k, v in (report.get("stage_seconds") or {}).items() if isinstance(v, (int, float))
    }
    if not secs:
        return ""
    rows = [
        {"label": k, "value": v, "note": f"{v:,.1f} s"}
        for k, v in sorted(secs.items(), key=lambda kv: -kv[1])
    ]
    chart = ch.hbars("chart-stage-seconds", "Stage times", rows, label_width=220, width=WIDE,
                     fmt=lambda v: f"{v:,.1f} s")  # fmt: skip
    return (
        "<h2>Stage times (last run of each)</h2><div class=grid>"
        + _panel(f"{sum(secs.values()):,.0f} s in all", chart, wide=True)
        + "</div>"
    )


def render_html(report: dict, title: str = "mixer report") -> str:
    out = [
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{CSS}</style><main>",
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(report['workdir'])}</p></header>",
        _cards(report),
    ]
    if report.get("mix"):
        out.append(_mix_section(report))
    out.append(_distribution_section(report))
    out.append(_dedup_section(report))
    out.append(_stage_section(report))
    out.append(_tables_section(report))
    out.append("</main></html>")
    return "\n".join(x for x in out if x)


def build_report(workdir: str | Path, recipe=None) -> dict[str, Path]:
    """Write report/report.json and report/report.html. Returns their paths."""
    report = collect(workdir, recipe)
    out = report_dir(workdir)
    write_json_atomic(out / "report.json", report)
    title = f"mixer report: {report['mix_name']}" if report.get("mix_name") else "mixer report"
    write_bytes_atomic(out / "report.html", render_html(report, title).encode())
    return {"json": out / "report.json", "html": out / "report.html"}
