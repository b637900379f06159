"""Plan and select a token-budgeted mix (docs/mixing.md).

plan: for every source, scan its documents parts with the attribute parts beside them (same
row order), evaluate the recipe's filters in DuckDB over in-memory Arrow tables on a
connection with external access disabled, and count documents and tokens after each filter
(the funnel). Targets follow docs/recipes.md: a group's share of the budget, fixed targets
(`tokens`, `percent`) first, `weight` sources splitting the rest.

select: per source, every surviving document appears `floor(f)` times (f = target / tokens
after filters); the remainder is filled by the documents with the lowest seeded hash of their
id (md5 of "<seed>:<id>"), which is independent of order and parallelism, until the cumulative
tokens are closest to the remainder. Everything is columnar: one DuckDB query per part,
numpy over the survivors, pyarrow `take` to write the chosen rows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from mixer.errors import MixerError
from mixer.hashing import seeded_hash
from mixer.io import (
    atomic_path,
    clean_temporaries,
    config_hash,
    read_json,
    write_json_atomic,
    write_parquet_atomic,
)
from mixer.recipe import (
    DOCUMENT_COLUMNS,
    Recipe,
    attribute_tagger,
    filter_columns,
    format_tokens,
    missing_inputs,
)
from mixer.schema import (
    attributes_dir,
    documents_dir,
    list_parts,
    mix_dir,
    mix_manifest_path,
    part_index,
    part_name,
    state_dir,
)
from mixer.stage import Stage, Task, tree_fingerprint

TOKENS_COLUMN = "tokens__count"
TARGET_TOLERANCE = 0.005  # a target within 0.5% counts as reached
MIX_COLUMNS = ("id", "text", "source", "repeat", "doc_part", "doc_row")
MIX_VERSION = 3  # bump when the selection changes: reruns must not skip


# ------------------------------------------------------------------------------ plan model


@dataclass
class SourcePlan:
    name: str
    group: str
    target_kind: str
    target_value: float
    max_repetition: float
    status: str = "missing"  # data: scanned documents; expected: recipe figures; missing: neither
    docs: int | None = None  # before filters
    tokens: int | None = None
    funnel: list[dict] = field(default_factory=list)  # one {filter, docs, tokens} per filter
    eligible_docs: int | None = None  # after all filters
    eligible_tokens: int | None = None
    target_tokens: int | None = None
    share: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def repetition(self) -> float | None:
        if self.target_tokens is None or not self.eligible_tokens:
            return None
        return self.target_tokens / self.eligible_tokens

    def to_dict(self) -> dict:
        return {
            "group": self.group,
            "target": {"kind": self.target_kind, "value": self.target_value},
            "status": self.status,
            "docs_available": self.docs,
            "tokens_available": self.tokens,
            "funnel": self.funnel,
            "docs_after_filters": self.eligible_docs,
            "tokens_after_filters": self.eligible_tokens,
            "target_tokens": self.target_tokens,
            "repetition_factor": self.repetition,
            "max_repetition": self.max_repetition,
            "share_of_mix": self.share,
            "notes": self.notes,
        }


@dataclass
class Plan:
    recipe: Recipe
    workdir: Path
    sources: dict[str, SourcePlan]
    groups: dict[str, dict]
    missing_inputs: list[str]
    errors: list[str]  # targets that can't be met: `mixer plan` prints them, `mixer mix` refuses
    notes: list[str]

    @property
    def total_target(self) -> int | None:
        ts = [s.target_tokens for s in self.sources.values()]
        return None if any(t is None for t in ts) else int(sum(ts))

    def to_dict(self) -> dict:
        return {
            "mix": self.recipe.name,
            "recipe": str(self.recipe.path),
            "workdir": str(self.workdir),
            "budget": self.recipe.budget,
            "seed": self.recipe.seed,
            "total_target_tokens": self.total_target,
            "groups": self.groups,
            "sources": {n: s.to_dict() for n, s in self.sources.items()},
            "missing_inputs": self.missing_inputs,
            "errors": self.errors,
            "notes": self.notes,
        }

    def table(self) -> str:
        return format_plan(self)


# ------------------------------------------------------------------------------ scanning


@dataclass
class _SourceLayout:
    """Which parts and columns a source's scan reads."""

    parts: list[Path]  # documents parts
    attr_parts: dict[str, dict[int, Path]]  # tagger -> part index -> attribute part
    columns: dict[str, list[str]]  # tagger -> attribute columns needed
    doc_columns: list[str]
    missing: list[str]  # why the source can't be scanned (absent documents/attributes)


def _layout(
    recipe: Recipe, workdir: Path, name: str, extra_columns: tuple[str, ...] = ()
) -> _SourceLayout:
    src = recipe.sources[name]
    parts = list_parts(documents_dir(workdir, name))
    needed: set[str] = {TOKENS_COLUMN, *extra_columns}
    for expr in src.filters:
        needed |= filter_columns(expr)
    columns: dict[str, list[str]] = {}
    doc_columns = []
    for col in sorted(needed):
        tagger = attribute_tagger(col)
        if tagger is None:
            if col in DOCUMENT_COLUMNS and col != "id":
                doc_columns.append(col)
            continue
        columns.setdefault(tagger, []).append(col)
    missing = []
    if not parts:
        missing.append(f"no documents under {documents_dir(workdir, name)}")
    attr_parts: dict[str, dict[int, Path]] = {}
    for tagger in columns:
        found = {part_index(p): p for p in list_parts(attributes_dir(workdir, tagger, name))}
        attr_parts[tagger] = found
        if not parts:
            continue
        absent = [p for p in parts if part_index(p) not in found]
        if len(absent) == len(parts):
            missing.append(
                f"no attributes under {attributes_dir(workdir, tagger, name)} (needed for {', '.join(columns[tagger])})"
            )
        elif absent:
            missing.append(
                f"{attributes_dir(workdir, tagger, name)}: {len(absent)} of {len(parts)} parts not tagged yet"
            )
    return _SourceLayout(parts, attr_parts, columns, doc_columns, missing)


def _read_part_table(
    source: str, layout: _SourceLayout, part: Path, filter_text: Callable[[str], str]
) -> pa.Table:
    """The documents part's id (+ document columns) with the needed attribute columns beside it."""
    docs = pq.read_table(part, columns=["id", *layout.doc_columns])
    idx = part_index(part)
    arrays = {name: docs.column(name) for name in docs.column_names}
    for tagger, cols in layout.columns.items():
        path = layout.attr_parts[tagger][idx]
        have = set(pq.read_schema(path).names)
        for col in cols:
            if col not in have:
                known = ", ".join(sorted(c for c in have if c != "id"))
                raise MixerError(
                    f"source {source}: unknown attribute {col!r}{filter_text(col)} "
                    f"(attributes/{tagger}/{source} has: {known})"
                )
        # The row-order contract lets the columns sit side by side; reading each part's id
        # column only to compare would double the I/O, so the row count is the check.
        attrs = pq.read_table(path, columns=cols)
        if attrs.num_rows != docs.num_rows:
            raise MixerError(
                f"{path}: {attrs.num_rows} rows for the {docs.num_rows} of {part} "
                "(attributes are stale: rerun `mixer tag`)"
            )
        for col in cols:
            arrays[col] = attrs.column(col)
    return pa.table(arrays)


def _connect():
    from mixer.sql_views import safe_connect

    return safe_connect(threads=1)  # recipe filters run here: no file, no network


def _scan_part(recipe: Recipe, source: str, layout: _SourceLayout, part: Path, keep: bool) -> dict:
    """Funnel counts of one part; with `keep`, the surviving rows with their hash and tokens."""
    import duckdb

    src = recipe.sources[source]

    def filter_text(col: str) -> str:
        for i, expr in enumerate(src.filters):
            if col in filter_columns(expr):
                return f" in filter {recipe.where('sources', source, 'filters', i)} {expr!r}"
        return ""

    table = _read_part_table(source, layout, part, filter_text)
    outside = _outside_heldout(recipe, table.column("id"))  # held-out hook (mixer ablate)
    if outside is not None:
        table = table.take(pa.array(outside))
    con = _connect()
    try:
        con.register("__t", table)
        steps = ", ".join(
            f"coalesce(({expr}), false) AS __s{i}" for i, expr in enumerate(src.filters)
        )
        sql = (
            f"SELECT coalesce(CAST({TOKENS_COLUMN} AS BIGINT), 0) + 1 AS n"
            + (", " + steps if steps else "")
            + " FROM __t"
        )
        try:
            result = con.sql(sql).to_arrow_table()
        except duckdb.Error as e:
            # find the filter at fault: evaluate them one at a time
            for i, expr in enumerate(src.filters):
                try:
                    con.execute(f"SELECT coalesce(({expr}), false) FROM __t LIMIT 0")
                except duckdb.Error as e2:
                    msg = str(e2).splitlines()[0]
                    raise MixerError(
                        f"{recipe.where('sources', source, 'filters', i)}: filter {expr!r} failed on source {source}: {msg}"
                    ) from None
            raise MixerError(f"source {source}: {part}: {str(e).splitlines()[0]}") from None
    finally:
        con.close()
    n = result.column("n").to_numpy()
    alive = np.ones(len(n), dtype=bool)
    funnel = []
    for i in range(len(src.filters)):
        column = result.column(f"__s{i}")
        if column.type != pa.bool_():
            raise MixerError(
                f"{recipe.where('sources', source, 'filters', i)}: filter {src.filters[i]!r} "
                f"is not a boolean expression (it gives {column.type})"
            )
        alive &= column.to_numpy(zero_copy_only=False)
        funnel.append((int(alive.sum()), int(n[alive].sum())))
    out = {"index": part_index(part), "docs": len(n), "tokens": int(n.sum()), "funnel": funnel}
    if keep:
        rows = np.flatnonzero(alive)
        out["rows"] = rows if outside is None else outside[rows]  # row numbers in the part
        out["h"] = seeded_hash(table.column("id").take(pa.array(rows)), recipe.seed)
        out["n"] = n[rows]
    return out


def _outside_heldout(recipe: Recipe, ids: pa.ChunkedArray) -> np.ndarray | None:
    """Held-out hook: the rows NOT held out for evaluation (`mix.heldout_fraction`), or None.

    Held-out documents (mixer/ablate/heldout.py: a seeded hash of the id) are dropped before
    the filters, so they count nowhere in the plan and no mix can select them.
    """
    fraction = recipe.mix.get("heldout_fraction") or 0.0
    if not fraction:
        return None
    from mixer.ablate.heldout import heldout_mask

    return np.flatnonzero(~heldout_mask(ids, int(recipe.mix.get("heldout_seed") or 0), fraction))


def _workers(recipe: Recipe, n_tasks: int) -> int:
    want = recipe.mix.get("workers") or os.cpu_count() or 1
    return max(1, min(want, n_tasks))


def _scan_sources(
    recipe: Recipe, workdir: Path, layouts: dict[str, _SourceLayout], keep: bool, progress: bool
) -> dict:
    tasks = [(s, p) for s, lay in layouts.items() for p in lay.parts]
    results: dict[str, list[dict]] = {s: [] for s in layouts}
    if not tasks:
        return results
    bar = tqdm(total=len(tasks), desc="scan", unit="part", disable=not progress)
    with ThreadPoolExecutor(_workers(recipe, len(tasks))) as ex:
        futures = [ex.submit(_scan_part, recipe, s, layouts[s], p, keep) for s, p in tasks]
        for (s, _), fut in zip(tasks, futures, strict=True):
            results[s].append(fut.result())
            bar.update()
    bar.close()
    return results


# ------------------------------------------------------------------------------ targets


def compute_targets(
    recipe: Recipe, plans: dict[str, SourcePlan]
) -> tuple[dict, list[str], list[str]]:
    """Fill target_tokens and share of each source plan; returns (groups, errors, notes)."""
    errors: list[str] = []
    notes: list[str] = []
    groups: dict[str, dict] = {}
    for g in recipe.groups.values():
        group_tokens = g.share * recipe.budget
        fixed = 0.0
        unknown = False
        for sname, t in g.sources.items():
            sp = plans[sname]
            if t.kind == "tokens":
                sp.target_tokens = int(round(t.value))
            elif t.kind == "percent":
                if sp.eligible_tokens is None:
                    unknown = True
                    continue
                sp.target_tokens = int(round(t.value / 100.0 * sp.eligible_tokens))
            else:
                continue
            fixed += sp.target_tokens
        weights = {s: t.value for s, t in g.sources.items() if t.kind == "weight"}
        left = group_tokens - fixed
        if fixed > group_tokens * (1 + TARGET_TOLERANCE) and not unknown:
            errors.append(
                f"{recipe.where('groups', g.name)}: fixed targets (tokens/percent) need {format_tokens(fixed)} tokens, "
                f"more than the group's share {g.share:g} x budget = {format_tokens(group_tokens)} "
                f"(over by {format_tokens(fixed - group_tokens)})"
            )
            left = 0.0
        left = max(left, 0.0)
        if weights:
            total_w = sum(weights.values())
            for sname, w in weights.items():
                plans[sname].target_tokens = None if unknown else int(round(left * w / total_w))
        elif not unknown and left > group_tokens * TARGET_TOLERANCE:
            notes.append(
                f"group {g.name}: its sources' fixed targets fill {format_tokens(fixed)} of its "
                f"{format_tokens(group_tokens)} share (no weight source takes the rest)"
            )
        groups[g.name] = {
            "share": g.share,
            "budget_tokens": int(round(group_tokens)),
            "target_tokens": None
            if unknown
            else int(sum(plans[s].target_tokens or 0 for s in g.sources)),
        }
    total = sum(sp.target_tokens or 0 for sp in plans.values())
    for sname, sp in plans.items():
        if sp.target_tokens is not None and total > 0:
            sp.share = sp.target_tokens / total
        errors.extend(_reachability(recipe, sname, sp))
    return groups, errors, notes


def _reachability(recipe: Recipe, sname: str, sp: SourcePlan) -> list[str]:
    if sp.target_tokens is None or sp.eligible_tokens is None:
        return []
    where = recipe.where("groups", sp.group, "sources", sname)
    reach = sp.eligible_tokens * sp.max_repetition
    if sp.target_tokens > 0 and sp.eligible_tokens == 0:
        return [
            f"{where}: target {format_tokens(sp.target_tokens)} tokens but no document of source {sname} is left after its filters"
        ]
    if sp.target_tokens > reach * (1 + TARGET_TOLERANCE):
        return [
            f"{where}: target {format_tokens(sp.target_tokens)} tokens needs repetition "
            f"{sp.target_tokens / sp.eligible_tokens:.3g}x of {format_tokens(sp.eligible_tokens)} tokens after filters; "
            f"max_repetition {sp.max_repetition:g} allows {format_tokens(reach)}: short by "
            f"{format_tokens(sp.target_tokens - reach)} tokens ({sp.target_tokens - int(reach):,})"
        ]
    if sp.target_tokens > reach:
        sp.notes.append(
            f"short by {sp.target_tokens - int(reach):,} tokens (within 0.5%): max_repetition reached"
        )
    return []


# ------------------------------------------------------------------------------ plan


def plan(
    recipe: Recipe,
    workdir: str | Path | None = None,
    progress: bool = False,
    _scanned: dict | None = None,
) -> Plan:
    """Plan the mix from what exists in the workdir; never writes anything.

    Sources whose documents (or needed attributes) are absent plan from the recipe's
    `expected_tokens`/`expected_docs` when given, else are listed without availability.
    """
    workdir = Path(workdir) if workdir is not None else recipe.workdir
    plans: dict[str, SourcePlan] = {}
    layouts: dict[str, _SourceLayout] = {}
    for sname, src in recipe.sources.items():
        target = recipe.target_of(sname)
        sp = SourcePlan(
            sname, recipe.group_of(sname), target.kind, target.value, src.max_repetition
        )
        plans[sname] = sp
        layout = _layout(recipe, workdir, sname)
        if layout.missing:
            sp.notes.extend(layout.missing)
            if src.expected_tokens is not None:
                sp.status = "expected"
                sp.eligible_tokens = src.expected_tokens
                sp.eligible_docs = src.expected_docs
                sp.notes.append("planned from the recipe's expected_tokens")
        else:
            layouts[sname] = layout
    if _scanned is None:
        scanned = _scan_sources(recipe, workdir, layouts, False, progress)
    else:  # the mix.stats stage's per-part counts
        scanned = {s: list(_scanned.get(s, [])) for s in layouts}
    for sname, parts in scanned.items():
        sp = plans[sname]
        sp.status = "data"
        parts.sort(key=lambda r: r["index"])
        sp.docs = sum(r["docs"] for r in parts)
        sp.tokens = sum(r["tokens"] for r in parts)
        filters = recipe.sources[sname].filters
        sp.funnel = [
            {
                "filter": expr,
                "docs": sum(r["funnel"][i][0] for r in parts),
                "tokens": sum(r["funnel"][i][1] for r in parts),
            }
            for i, expr in enumerate(filters)
        ]
        sp.eligible_docs = sp.funnel[-1]["docs"] if sp.funnel else sp.docs
        sp.eligible_tokens = sp.funnel[-1]["tokens"] if sp.funnel else sp.tokens
    groups, errors, notes = compute_targets(recipe, plans)
    return Plan(recipe, workdir, plans, groups, missing_inputs(recipe), errors, notes)


def _span_columns(recipe: Recipe) -> tuple[str, ...]:
    col = recipe.mix.get("remove_spans")
    return (col,) if col else ()


# ------------------------------------------------------------------------------ selection


FILL_PASSES = 8


def select_copies(h: np.ndarray, n: np.ndarray, target: int, max_repetition: float) -> np.ndarray:
    """Copies of each surviving document so that sum(copies * n) is close to `target`.

    Whole repeats first (floor of target / available, at most max_repetition); then the
    remainder from the lowest hashes: documents are taken in hash order while they fit in
    what is left, a few passes fill the last gap with the next documents in hash order that
    fit, and a last one may overshoot by less than the gap. The choice depends only on the
    (hash, tokens) of the documents, never on the order of the rows.
    """
    copies = np.zeros(len(n), dtype=np.int64)
    available = int(n.sum())
    if target <= 0 or available == 0:
        return copies
    whole = min(target // available, int(math.floor(max_repetition)))
    copies += whole
    # never more than max_repetition x the available tokens in all
    remainder = min(target - whole * available, int((max_repetition - whole) * available))
    if remainder <= 0:
        return copies
    order = np.argsort(h, kind="stable")
    sizes = n[order]
    taken = np.zeros(len(order), dtype=bool)
    cums = np.cumsum(sizes)
    k = int(np.searchsorted(cums, remainder, side="right"))  # the hash-order prefix that fits
    taken[:k] = True
    gap = remainder - (int(cums[k - 1]) if k else 0)
    rest = k + np.flatnonzero(sizes[k:] <= gap)  # later documents small enough for the gap
    for _ in range(FILL_PASSES):
        rest = rest[sizes[rest] <= gap]
        if gap == 0 or not len(rest):
            break
        fill = np.cumsum(sizes[rest])
        j = int(np.searchsorted(fill, gap, side="right"))
        taken[rest[:j]] = True
        gap -= int(fill[j - 1])
        rest = rest[j:]
    if gap > 0:  # one more document if it lands closer to the target than stopping here
        closer = k + np.flatnonzero(~taken[k:] & (sizes[k:] < 2 * gap))
        if len(closer):
            taken[closer[0]] = True
    copies[order[taken]] += 1
    return copies


def _remove_spans(texts: pa.ChunkedArray, spans: pa.ChunkedArray) -> tuple[pa.Array, int]:
    """Cut [start, end) character spans out of each text; returns new texts, chars removed."""
    spans_list = spans.to_pylist()
    has = [i for i, s in enumerate(spans_list) if s]
    if not has:
        return texts, 0
    out = texts.to_pylist()
    removed = 0
    for i in has:
        text = out[i] or ""
        pieces, pos = [], 0
        for span in sorted(_span_bounds(s) for s in spans_list[i]):
            start, end = max(span[0], pos), min(span[1], len(text))
            if start >= end:
                continue
            pieces.append(text[pos:start])
            removed += end - start
            pos = end
        pieces.append(text[pos:])
        out[i] = "".join(pieces)
    return pa.array(out, type=pa.string()), removed


def _span_bounds(span) -> tuple[int, int]:
    if isinstance(span, dict):
        return int(span["start"]), int(span["end"])
    return int(span[0]), int(span[1])


def _write_part(
    path: Path,
    source: str,
    doc_part: Path,
    rows: np.ndarray,
    copies: np.ndarray,
    span_part: Path | None,
    span_col: str | None,
) -> dict:
    provenance = [c for c in ("src_file", "src_line") if c in pq.read_schema(doc_part).names]
    docs = pq.read_table(doc_part, columns=["id", "text", *provenance])
    reps = np.repeat(rows, copies)
    first = np.repeat(np.cumsum(copies) - copies, copies)  # where each document's copies start
    repeat = (np.arange(len(reps)) - first).astype(np.int32)
    text = docs.column("text")
    removed = 0
    if span_part is not None:
        spans = pq.read_table(span_part, columns=[span_col]).column(span_col).take(pa.array(rows))
        new_text, removed = _remove_spans(text.take(pa.array(rows)), spans)
        text = pa.chunked_array([new_text]).take(pa.array(np.repeat(np.arange(len(rows)), copies)))
    else:
        text = text.take(pa.array(reps))
    table = pa.table(
        {
            "id": docs.column("id").take(pa.array(reps)),
            "text": text,
            "source": pa.array([source] * len(reps), type=pa.string()),
            "repeat": pa.array(repeat, type=pa.int32()),
            "doc_part": pa.array(np.full(len(reps), part_index(doc_part), dtype=np.int32)),
            "doc_row": pa.array(reps.astype(np.int64)),
            # provenance, carried to the tokens' part-NNNNN.csv.gz (src, loc)
            **{c: docs.column(c).take(pa.array(reps)) for c in provenance},
        }
    )
    write_parquet_atomic(path, table)
    return {"rows": table.num_rows, "chars_removed": removed}


def _mix_config(recipe: Recipe) -> dict:
    """Every recipe setting the selection depends on."""
    return {
        "version": MIX_VERSION,
        "mix": recipe.name,
        "seed": recipe.seed,
        "budget": recipe.budget,
        "settings": {k: v for k, v in recipe.mix.items() if k != "workers"},
        "sources": {s: [v.filters, v.max_repetition] for s, v in recipe.sources.items()},
        "groups": {
            g: [v.share, {s: [t.kind, t.value] for s, t in v.sources.items()}]
            for g, v in recipe.groups.items()
        },
    }


def _part_inputs(layout: _SourceLayout, part: Path) -> list[Path]:
    """The documents part and the attribute parts beside it that a scan of it reads."""
    idx = part_index(part)
    return [part, *(found[idx] for found in layout.attr_parts.values() if idx in found)]


def _mix_state(workdir: Path, mix: str) -> Path:
    return state_dir(workdir) / "mix" / mix


class MixStatsStage(Stage):
    """Per-part statistics: one task per (source, documents part) evaluates the filters and
    counts the funnel; the survivors' rows, hashes and token counts go to state/mix/<mix>/
    (one small .npz per part) for the selection. The driver keeps only the counts."""

    name = "mix.stats"
    progress_unit = "B"
    group = "mix"

    def __init__(self, recipe: Recipe, workdir: str | Path):
        super().__init__(workdir, _mix_config(recipe))
        self.recipe = recipe

    def _layouts(self) -> dict[str, _SourceLayout]:
        return {s: _layout(self.recipe, self.workdir, s) for s in self.recipe.sources}

    def setup(self, ctx) -> None:
        clean_temporaries(_mix_state(self.workdir, self.recipe.name) / "survivors")
        for s, lay in self._layouts().items():
            if lay.missing:
                raise MixerError(
                    f"cannot mix before every source is ingested and tagged: source {s}: "
                    + "; ".join(lay.missing)
                )

    def input_fingerprint(self):
        return [
            tree_fingerprint(*_part_inputs(lay, p))
            for lay in self._layouts().values()
            for p in lay.parts
        ]

    def outputs(self):
        return [_mix_state(self.workdir, self.recipe.name) / "stats.json"]

    def tasks(self) -> list[Task]:
        out = []
        for s, lay in self._layouts().items():
            for p in lay.parts:
                out.append(
                    Task(
                        key=f"{s}/{p.name}",
                        args=(s, str(p)),
                        fingerprint=tree_fingerprint(*_part_inputs(lay, p)),
                        weight=p.stat().st_size,
                        outputs=(str(self._survivors_path(s, p)),),
                    )
                )
        return out

    def _survivors_path(self, source: str, part: Path) -> Path:
        folder = documents_dir(self.workdir, source).name  # safe for any source string
        name = part_name(part_index(part), ".npz")
        return _mix_state(self.workdir, self.recipe.name) / "survivors" / folder / name

    def run_task(self, task: Task) -> dict:
        source, part = task.args
        layout = _layout(self.recipe, self.workdir, source)
        r = _scan_part(self.recipe, source, layout, Path(part), keep=True)
        path = self._survivors_path(source, Path(part))
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, rows=r["rows"].astype(np.int64), h=r["h"], n=r["n"].astype(np.int64))
        return {k: r[k] for k in ("index", "docs", "tokens", "funnel")}

    def finish(self, results: list[dict]) -> dict:
        by_source: dict[str, list] = {s: [] for s in self.recipe.sources}
        for t, r in zip(self.tasks(), results, strict=True):
            by_source[t.args[0]].append(r)
        write_json_atomic(self.outputs()[0], by_source)
        return {"parts": len(results)}


class MixSelectStage(Stage):
    """Targets on the driver (from the statistics), then one task per output part selects and
    writes its rows; `finish` writes the manifest beside the mix folder. Output bytes depend on
    the recipe and the data only, never on the executor or the number of workers."""

    name = "mix.select"
    progress_unit = "doc"
    group = "mix"

    def __init__(self, recipe: Recipe, workdir: str | Path):
        super().__init__(workdir, _mix_config(recipe))
        self.recipe = recipe
        self.out_dir = mix_dir(self.workdir, recipe.name)
        self.manifest_path = mix_manifest_path(self.workdir, recipe.name)
        self._summary: dict | None = None

    def _stats_path(self) -> Path:
        return _mix_state(self.workdir, self.recipe.name) / "stats.json"

    def setup(self, ctx) -> None:
        clean_temporaries(self.out_dir)  # a killed run's half-written parts (the lock is held)

    def _record_path(self) -> Path:  # the parts mixer wrote into mixes/<mix>/
        return _mix_state(self.workdir, self.recipe.name) / "written.json"

    def input_fingerprint(self):
        return tree_fingerprint(self._stats_path())

    def outputs(self):
        m = read_json(self.manifest_path)
        parts = [self.out_dir / p["path"] for p in (m or {}).get("parts", [])]
        return [self.manifest_path, *parts]

    def tasks(self) -> list[Task]:
        recipe, workdir = self.recipe, self.workdir
        stats = read_json(self._stats_path())
        p = plan(recipe, workdir, _scanned=stats)
        absent = [
            f"source {s}: {'; '.join(sp.notes)}"
            for s, sp in p.sources.items()
            if sp.status != "data"
        ]
        if absent:
            raise MixerError(f"cannot mix before every source is ingested and tagged: {absent[0]}")
        if p.errors:
            more = f" (and {len(p.errors) - 1} more: see `mixer plan`)" if len(p.errors) > 1 else ""
            raise MixerError(p.errors[0] + more)
        span_col = recipe.mix.get("remove_spans")
        span_tagger = attribute_tagger(span_col) if span_col else None
        max_rows = recipe.mix.get("max_rows_per_part")
        jobs = []
        sources = {}
        for sname, sp in p.sources.items():
            surv = self._survivors(sname, stats[sname])
            copies = select_copies(surv["h"], surv["n"], sp.target_tokens or 0, sp.max_repetition)
            selected_tokens = int((copies * surv["n"]).sum())
            info = sp.to_dict()
            info.update(
                selected_docs=int(copies.sum()),
                unique_docs=int((copies > 0).sum()),
                selected_tokens=selected_tokens,
                achieved_repetition=(selected_tokens / sp.eligible_tokens)
                if sp.eligible_tokens
                else None,
                cause=_shortfall_cause(sp, selected_tokens, surv["n"]),
                chars_removed=0,
            )
            sources[sname] = info
            span_parts = {}
            if span_tagger:
                span_dir = attributes_dir(workdir, span_tagger, sname)
                span_parts = {
                    part_index(x): x
                    for x in list_parts(span_dir)
                    if span_col in pq.read_schema(x).names
                }
            doc_parts = {part_index(x): x for x in list_parts(documents_dir(workdir, sname))}
            chosen = copies > 0  # survivors are in (part, row) order already
            parts_sel, rows_sel, copies_sel = (
                surv["part"][chosen],
                surv["row"][chosen],
                copies[chosen],
            )
            bounds = np.flatnonzero(np.diff(parts_sel)) + 1
            for seg in np.split(np.arange(len(parts_sel)), bounds):
                if not len(seg):
                    continue
                idx = int(parts_sel[seg[0]])
                for chunk in _chunks(seg, copies_sel, max_rows):
                    jobs.append(
                        (
                            sname,
                            doc_parts[idx],
                            rows_sel[chunk],
                            copies_sel[chunk],
                            span_parts.get(idx),
                        )
                    )
        self._summary = {
            "total_target_tokens": p.total_target,
            "groups": p.groups,
            "sources": sources,
            "notes": p.notes,
        }
        names = [part_name(i) for i in range(len(jobs))]
        # the parts are about to change: a run killed from here on must not leave a manifest
        # that vouches for them, and the record must name every part this run may write
        self.manifest_path.unlink(missing_ok=True)
        before = read_json(self._record_path(), [])
        write_json_atomic(self._record_path(), sorted(set(before) | set(names)))
        tasks = []
        for name, (s, dp, rows, cps, spp) in zip(names, jobs, strict=True):
            digest = config_hash([rows.tobytes().hex(), cps.tobytes().hex()])
            tasks.append(
                Task(
                    key=name,
                    args=(s, str(dp), rows, cps, None if spp is None else str(spp), span_col),
                    fingerprint={
                        "source": s,
                        "inputs": tree_fingerprint(dp, *([spp] if spp else [])),
                        "rows": digest,
                    },
                    weight=int(cps.sum()),
                    outputs=(str(self.out_dir / name),),
                )
            )
        return tasks

    def _survivors(self, source: str, parts: list[dict]) -> dict:
        folder = documents_dir(self.workdir, source).name
        d = _mix_state(self.workdir, self.recipe.name) / "survivors" / folder
        cols: dict[str, list] = {"part": [], "row": [], "h": [], "n": []}
        for r in sorted(parts, key=lambda r: r["index"]):
            with np.load(d / part_name(r["index"], ".npz")) as z:
                cols["part"].append(np.full(len(z["rows"]), r["index"], dtype=np.int64))
                cols["row"].append(z["rows"])
                cols["h"].append(z["h"])
                cols["n"].append(z["n"])
        empty = {"part": np.int64, "row": np.int64, "h": np.uint64, "n": np.int64}
        return {
            k: np.concatenate(v).astype(empty[k]) if v else np.zeros(0, empty[k])
            for k, v in cols.items()
        }

    def run_task(self, task: Task) -> dict:
        s, dp, rows, cps, spp, span_col = task.args
        path = self.out_dir / task.key
        path.parent.mkdir(parents=True, exist_ok=True)
        res = _write_part(
            path, s, Path(dp), rows, cps, None if spp is None else Path(spp), span_col
        )
        return {"source": s, "doc_part": part_index(dp), **res}

    def finish(self, results: list[dict]) -> dict:
        if self._summary is None:  # tasks() ran in this process before finish: always set
            raise RuntimeError("mix.select: finish without a plan")
        recipe = self.recipe
        sources = self._summary["sources"]
        part_records = []
        for i, res in enumerate(results):
            part_records.append(
                {
                    "path": part_name(i),
                    "source": res["source"],
                    "doc_part": res["doc_part"],
                    "rows": res["rows"],
                }
            )
            sources[res["source"]]["chars_removed"] += res["chars_removed"]
        keep = {r["path"] for r in part_records}
        # only parts mixer's own record names are removed, never other files
        for stale in sorted(set(read_json(self._record_path(), [])) - keep):
            (self.out_dir / stale).unlink(missing_ok=True)
        write_json_atomic(self._record_path(), sorted(keep))
        total_selected = sum(s["selected_tokens"] for s in sources.values())
        for s in sources.values():
            s["selected_share"] = s["selected_tokens"] / total_selected if total_selected else None
        manifest = {
            "mix": recipe.name,
            "recipe": str(recipe.path),
            "seed": recipe.seed,
            "budget": recipe.budget,
            "total_target_tokens": self._summary["total_target_tokens"],
            "total_selected_tokens": total_selected,
            "total_tokens": total_selected,
            "total_selected_docs": sum(s["selected_docs"] for s in sources.values()),
            "tokens_counted_as": "tokens__count + 1 (EOS) per document",
            "groups": self._summary["groups"],
            "sources": sources,
            "parts": part_records,
            "notes": self._summary["notes"],
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.manifest_path, manifest)
        return {"total_tokens": total_selected, "parts": len(part_records)}


def mix_stages(recipe: Recipe, workdir: str | Path) -> list[Stage]:
    """The mix as stages: per-part statistics, then targets and selection per output part."""
    return [MixStatsStage(recipe, workdir), MixSelectStage(recipe, workdir)]


def run_mix(
    recipe: Recipe,
    workdir: str | Path | None = None,
    progress: bool = True,
    executor=None,
) -> dict:
    """Select the mix: mixes/<name>/part-*.parquet and mixes/<name>.manifest.json, through the
    stage runner. Returns the manifest with `skipped` (True when nothing had to be redone)."""
    from mixer.stage import run_command_stages

    workdir = Path(workdir) if workdir is not None else Path(recipe.workdir)
    _, skipped = run_command_stages(
        mix_stages(recipe, workdir), workdir, executor, recipe.mix.get("workers"), progress
    )
    manifest = read_json(mix_manifest_path(workdir, recipe.name))
    return {**manifest, "skipped": skipped}


def _chunks(seg: np.ndarray, copies: np.ndarray, max_rows: int | None) -> list[np.ndarray]:
    if not max_rows:
        return [seg]
    rows_cum = np.cumsum(copies[seg])
    cuts = np.flatnonzero(np.diff(rows_cum // max_rows)) + 1
    return [c for c in np.split(seg, cuts) if len(c)]


def _shortfall_cause(sp: SourcePlan, selected: int, n: np.ndarray) -> str | None:
    target = sp.target_tokens or 0
    if target == 0 or abs(selected - target) <= TARGET_TOLERANCE * target:
        return None
    available = int(n.sum())
    if selected < target and available * sp.max_repetition < target:
        return f"max_repetition {sp.max_repetition:g} reached: {available:,} tokens after filters give at most {int(available * sp.max_repetition):,}"
    return (
        f"documents are too large for this target: the closest selection is {selected:,} tokens "
        f"for a target of {target:,} (largest document {int(n.max()):,} tokens)"
    )


# ------------------------------------------------------------------------------ printing


def _fmt_int(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def format_plan(p: Plan) -> str:
    r = p.recipe
    lines = [
        f"mix {r.name}   budget {format_tokens(r.budget)} tokens   seed {r.seed}   workdir {p.workdir}",
        "",
    ]
    for sname, sp in p.sources.items():
        t = sp.target_kind
        tv = (
            f"{sp.target_value:g}%"
            if t == "percent"
            else (format_tokens(sp.target_value) if t == "tokens" else f"{sp.target_value:g}")
        )
        lines.append(
            f"source {sname}   group {sp.group}   {t} {tv}   max_repetition {sp.max_repetition:g}   [{sp.status}]"
        )
        rows = [("available", sp.docs, sp.tokens)]
        rows += [
            (f"{i + 1}. {f['filter']}", f["docs"], f["tokens"]) for i, f in enumerate(sp.funnel)
        ]
        if sp.status == "expected":
            rows = [("expected (recipe)", sp.eligible_docs, sp.eligible_tokens)]
        width = max(24, *(len(x[0]) for x in rows))
        width = min(width, 70)
        lines.append(f"  {'step':<{width}}  {'docs':>14}  {'tokens':>18}")
        for label, d, tk in rows:
            label = label if len(label) <= width else label[: width - 3] + "..."
            lines.append(f"  {label:<{width}}  {_fmt_int(d):>14}  {_fmt_int(tk):>18}")
        rep = sp.repetition
        share = f"{sp.share * 100:.2f}%" if sp.share is not None else "-"
        lines.append(
            f"  target {_fmt_int(sp.target_tokens)} tokens ({format_tokens(sp.target_tokens)})   "
            f"repetition {'-' if rep is None else f'{rep:.3f}x'}   share of mix {share}"
        )
        for note in sp.notes:
            lines.append(f"  note: {note}")
        lines.append("")
    header = f"{'source':<16} {'group':<10} {'status':<8} {'docs':>12} {'tokens':>10} {'after filters':>13} {'target':>10} {'rep':>7} {'share':>7}"
    lines += [header, "-" * len(header)]
    for sname, sp in p.sources.items():
        rep = sp.repetition
        lines.append(
            f"{sname[:16]:<16} {sp.group[:10]:<10} {sp.status:<8} {_fmt_int(sp.docs if sp.docs is not None else sp.eligible_docs):>12} "
            f"{format_tokens(sp.tokens):>10} {format_tokens(sp.eligible_tokens):>13} "
            f"{format_tokens(sp.target_tokens):>10} {'-' if rep is None else f'{rep:.2f}x':>7} "
            f"{'-' if sp.share is None else f'{sp.share * 100:.2f}%':>7}"
        )
    total = p.total_target
    lines.append(
        f"total target {format_tokens(total)} tokens of a {format_tokens(r.budget)} budget"
    )
    if p.missing_inputs:
        lines += ["", f"missing inputs ({len(p.missing_inputs)}):"] + [
            f"  {m}" for m in p.missing_inputs
        ]
    for note in p.notes:
        lines.append(f"note: {note}")
    for err in p.errors:
        lines.append(f"error: {err}")
    return "\n".join(lines)
