"""Dedup as stages over the one stage interface (mixer.stage): every heavy step is a task.

    dedup.signatures  a task per 16 MB of documents Parquet (small parts batched, large ones
                      split into row ranges):
                      exact key, length, keep-rule scores, MinHash signature, LSH band keys,
                      paragraph keys. Records are written split by hash range into P partitions.
    dedup.exact       a task per partition: exact groups (one representative each, by the keep
                      rule), equal-field groups (--exact-field) and repeated paragraphs.
    dedup.candidates  a task per partition of band keys: documents sharing a bucket become
                      candidate pairs (identical texts collapsed first), split by pair hash.
    dedup.verify      a task per partition of pairs: each distinct pair is checked once, by its
                      signature estimate (standard error sqrt(J(1-J)/num_perm)) and, with
                      --verify, by the exact Jaccard of the two shingle sets.
    dedup.graph, dedup.components (in rounds), dedup.labels, dedup.resolve, dedup.clusters,
    dedup.write       (mixer/dedup/resolve.py) connected components over exact groups and
                      verified edges in rounds of tasks, then per component partition the
                      keep rule: documents in keep-rule order, each one kept unless a verified
                      neighbour before it was kept; so a removed document is always verified
                      similar to the document it is removed for (no chains A~B~C); then cluster
                      sizes and ids, and a task per batch of parts writing
                      attributes/dedup/<source>/part-NNNNN.parquet.

Documents are numbered by their ordinal in corpus order (sources sorted, parts by index, rows
in order); intermediate files live under WORKDIR/state/dedup/ and are named by the plan, so
outputs do not depend on the executor, the number of workers or the number of partitions.
The driver holds the plan (one entry per part) and small summaries, never per-document arrays.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mixer.dedup import lsh
from mixer.dedup.clusters import DEFAULT_KEEP_RULE, parse_keep_rule
from mixer.dedup.minhash import SCHEMES, permutations, shingle_hashes, signatures
from mixer.dedup.normalize import (
    U64,
    fill_empty,
    fmix64,
    hash_sequences,
    hash_strings,
    indices,
    normalize,
    numbers,
    word_hashes,
)
from mixer.dedup.paragraphs import paragraph_records
from mixer.errors import MixerError
from mixer.io import (
    atomic_path,
    clean_temporaries,
    read_json,
    write_json_atomic,
)
from mixer.recipe_schema import parse_size
from mixer.schema import (
    attributes_dir,
    documents_dir,
    list_parts,
    list_sources,
    part_index,
    part_name,
    state_dir,
)
from mixer.stage import Stage, Task, tree_fingerprint

PLAN_VERSION = 3
BATCH_ROWS = 2048
DEFAULT_SEED = 42
DEFAULT_MEMORY_LIMIT = "2GB"
TASK_BYTES = 16 << 20  # documents Parquet per signature / write task (small parts batched)
MIN_TASKS = 8  # ... or less, so that a small corpus still makes this many tasks
MIN_TASK_BYTES = 1 << 20
PAIR_TASKS_MAX = 8
TOP_CLUSTERS = 10
SAMPLE_IDS = 5
ALL_PAIRS_MAX = 64  # buckets up to this many distinct texts give every pair
BIG_BUCKET_NEIGHBOURS = 8  # larger ones: each member with its next few and the first member
SIGNATURE_CHECK_SIGMAS = 3.0  # pairs at the threshold pass the signature check 99.9% of the time
EMPTY_SALT = 0x5BD1E9955BD1E995  # exact keys of texts with no words: hash of the raw text, salted
RECORD_BYTES = 24 * 4  # per band record, with sorting and pair building overhead


DEFAULTS: dict[str, Any] = {
    "sources": None, "exact": True, "minhash": True, "ngram": 5, "exact_field": None,
    "num_perm": None, "bands": None, "rows": None, "threshold": 0.8, "verify": False,
    "paragraphs": False, "keep_rule": DEFAULT_KEEP_RULE, "seed": DEFAULT_SEED,
    "scheme": "affine32", "memory_limit": DEFAULT_MEMORY_LIMIT, "signature_check": True,
    "task_bytes": TASK_BYTES,
}  # fmt: skip


# ---------------------------------------------------------------------------- settings


def _parse_bytes(value) -> int:
    size = parse_size(value)
    if size is None:
        raise MixerError(f"dedup: memory_limit {value!r} is not a size like 2GB or 512MB")
    return size


def resolve_settings(settings: dict) -> dict:
    """Validate the dedup settings (recipe section or command options) and fill in defaults."""
    unknown = sorted(set(settings) - set(DEFAULTS) - {"workers"})
    if unknown:
        raise MixerError(f"dedup: unknown setting(s) {', '.join(unknown)}")
    s = {**DEFAULTS, **{k: v for k, v in settings.items() if k != "workers"}}
    if not s["exact"] and not s["minhash"]:
        s["exact"] = s["minhash"] = True
    if not isinstance(s["ngram"], int) or s["ngram"] < 1:
        raise MixerError(f"dedup: ngram must be a positive integer (got {s['ngram']!r})")
    if s["scheme"] not in SCHEMES:
        raise MixerError(f"dedup: scheme must be one of {', '.join(SCHEMES)} (got {s['scheme']!r})")
    try:
        parse_keep_rule(s["keep_rule"])
    except ValueError as e:
        raise MixerError(f"dedup: {e}") from None
    t = s["threshold"]
    if isinstance(t, bool) or not isinstance(t, int | float) or not 0.0 < t < 1.0:
        raise MixerError(f"dedup: threshold must be between 0 and 1 (got {t!r})")
    num_perm, bands, rows = s["num_perm"], s["bands"], s["rows"]
    if (bands is None) != (rows is None):
        raise MixerError(
            "dedup: give both --bands and --rows, or neither (then --threshold decides)"
        )
    if bands is not None:
        if bands < 1 or rows < 1:
            raise MixerError(f"dedup: bands and rows must be positive (got {bands} x {rows})")
        num_perm = num_perm or bands * rows
        if bands * rows > num_perm:
            raise MixerError(f"dedup: bands x rows = {bands * rows} exceeds num_perm = {num_perm}")
    else:
        num_perm = num_perm or lsh.DEFAULT_NUM_PERM
        if num_perm < 1:
            raise MixerError(f"dedup: num_perm must be positive (got {num_perm})")
        bands, rows = lsh.choose_bands(t, num_perm)
    s.update(
        num_perm=num_perm, bands=bands, rows=rows, memory_limit=_parse_bytes(s["memory_limit"])
    )
    if s["sources"] is not None:
        s["sources"] = sorted(set(s["sources"]))
    if not isinstance(s["task_bytes"], int) or s["task_bytes"] < 1:
        raise MixerError(f"dedup: task_bytes must be a positive integer (got {s['task_bytes']!r})")
    return s


def signature_floor(threshold: float, num_perm: int) -> float:
    """Lowest signature estimate a pair may have: three standard errors below the threshold."""
    return threshold - SIGNATURE_CHECK_SIGMAS * math.sqrt(threshold * (1.0 - threshold) / num_perm)


# ---------------------------------------------------------------------------- small helpers


def _save(path: Path | str, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)


def _load(path: Path | str, mmap: bool = False) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None)


def _concat(arrays: list[np.ndarray], cols: int, dtype=np.int64) -> np.ndarray:
    arrays = [a for a in arrays if len(a)]
    if not arrays:
        return np.zeros((0, cols), dtype=dtype)
    return np.concatenate(arrays)


def _partition(keys: np.ndarray, n: int) -> np.ndarray:
    """Partition of each 64-bit key (keys are hashes: the top bits are uniform)."""
    if n == 1:
        return np.zeros(len(keys), dtype=np.int64)
    return (((keys.view(np.uint64) >> U64(32)) * U64(n)) >> U64(32)).astype(np.int64)


def _split(records: np.ndarray, part: np.ndarray, n: int) -> list[np.ndarray]:
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(n + 1))
    return [records[order[bounds[i] : bounds[i + 1]]] for i in range(n)]


def _rows_sorted_unique(pairs: np.ndarray) -> np.ndarray:
    if len(pairs) == 0:
        return pairs
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    p = pairs[order]
    first = np.r_[True, (p[1:] != p[:-1]).any(axis=1)]
    return p[first]


def priority_order(ordinal: np.ndarray, length: np.ndarray, quality: np.ndarray, rule: str):
    """Sort keys (most significant last, for np.lexsort) putting the document to keep first."""
    keys: list[np.ndarray] = []
    for part in parse_keep_rule(rule):
        if part == "quality":
            keys.append(-np.nan_to_num(quality, nan=-np.inf))
        elif part == "longest":
            keys.append(-length)
        elif part == "shortest":
            keys.append(length)
        elif part == "first":
            keys.append(ordinal)
        elif part == "last":
            keys.append(-ordinal)
    keys.append(ordinal)
    return tuple(reversed(keys))


# ---------------------------------------------------------------------------- the plan


class _DedupStage(Stage):
    group = "dedup"

    def __init__(self, workdir, settings: dict):
        super().__init__(workdir, settings)
        self.state = state_dir(self.workdir) / "dedup"
        self._plan: dict | None = None

    # The plan has an entry per documents part: it is not pickled with the stage for every
    # task; a worker reads it from state/dedup/plan.json (once per process and plan file).
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_plan"] = None
        return state

    @property
    def plan(self) -> dict:
        if self._plan is None:
            self._plan = _read_plan(self.plan_path)
        return self._plan

    @plan.setter
    def plan(self, value: dict) -> None:
        self._plan = value

    # plan.json: sources, parts (path, rows, base), task groups, partitions; written by the
    # signatures stage's setup and read by the others
    @property
    def plan_path(self) -> Path:
        return self.state / "plan.json"

    def setup(self, ctx) -> None:
        plan = read_json(self.plan_path)
        if plan is None or plan.get("settings") != _plan_settings(self.config):
            raise MixerError("dedup: no plan in state/dedup (run the dedup.signatures stage first)")
        self.plan = plan

    # file names inside state/dedup
    def sig_file(self, g: int, kind: str) -> Path:
        return self.state / "sig" / f"g{g:05d}.{kind}.npy"

    def rec_file(self, g: int, kind: str, p: int) -> Path:
        return self.state / "sig" / f"g{g:05d}.{kind}-p{p:04d}.npy"

    def group_of(self, docs: np.ndarray) -> np.ndarray:
        los = np.array([g["lo"] for g in self.plan["groups"]], dtype=np.int64)
        return np.searchsorted(los, docs, side="right") - 1

    def part_of(self, docs: np.ndarray) -> np.ndarray:
        bases = np.array([p["base"] for p in self.plan["parts"]], dtype=np.int64)
        return np.searchsorted(bases, docs, side="right") - 1

    def doc_values(self, kind: str, lo: int, hi: int) -> np.ndarray:
        """A per-document array of the signature tasks (key, len, quality) for ordinals lo..hi."""
        out = []
        for g in range(
            int(self.group_of(np.array([lo]))[0]) if hi > lo else 0, len(self.plan["groups"])
        ):
            grp = self.plan["groups"][g]
            if grp["lo"] >= hi:
                break
            arr = _load(self.sig_file(g, kind), mmap=True)
            out.append(
                np.asarray(arr[max(lo, grp["lo"]) - grp["lo"] : min(hi, grp["hi"]) - grp["lo"]])
            )
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def dir_fingerprint(self, *names: str) -> list:
        return tree_fingerprint(*(self.state / n for n in names))


_PLAN_CACHE: dict = {}


def _read_plan(path: Path) -> dict:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _PLAN_CACHE:
        _PLAN_CACHE.clear()
        _PLAN_CACHE[key] = read_json(path)
    return _PLAN_CACHE[key]


def _plan_settings(settings: dict) -> dict:
    return {k: settings[k] for k in sorted(settings)}


def _pack(items: list[dict], limit: int) -> list[list[dict]]:
    """Consecutive items in batches of up to `limit` bytes (an item larger than that alone)."""
    out, cur, size = [], [], 0
    for it in items:
        if cur and size + it["bytes"] > limit:
            out.append(cur)
            cur, size = [], 0
        cur.append(it)
        size += it["bytes"]
    if cur:
        out.append(cur)
    return out


def _row_ranges(part: int, size: int, row_groups: list, limit: int) -> list[dict]:
    """Segments of a part larger than `limit` bytes: its consecutive row groups up to `limit`
    bytes, a row group larger than that in equal row ranges. Ranges end at row group ends
    where they can: a reader decodes a row group from its start up to the range's end."""
    weights = np.array([max(w, 1) for _, w in row_groups], dtype=np.float64)
    shares = weights * size / weights.sum()
    out, start, run = [], 0, None  # run: a segment of whole row groups, still growing
    for (rows, _), share in zip(row_groups, shares, strict=True):
        k = max(1, min(rows, math.ceil(share / limit)))
        if k == 1 and run is not None and run["bytes"] + share <= limit:
            run["hi"], run["bytes"] = start + rows, run["bytes"] + int(share)
        elif k == 1:
            run = {"part": part, "lo": start, "hi": start + rows, "bytes": int(share)}
            out.append(run)
        else:
            run = None
            out += [
                {"part": part, "lo": start + rows * j // k, "hi": start + rows * (j + 1) // k,
                 "bytes": int(share / k)}
                for j in range(k)
            ]  # fmt: skip
        start += rows
    return [x for x in out if x["hi"] > x["lo"]]


def _quality_path(workdir: Path, source: str, index: int) -> Path:
    return attributes_dir(workdir, "quality", source) / part_name(index)


def make_plan(workdir: Path, settings: dict) -> dict:
    available = list_sources(workdir)
    if not available:
        raise MixerError(
            f"dedup: no documents under {documents_dir(workdir)} (run `mixer ingest` first)"
        )
    sources = settings["sources"] or available
    missing = [s for s in sources if s not in available]
    if missing:
        raise MixerError(
            f"dedup: unknown source(s) {', '.join(missing)} (have: {', '.join(available)})"
        )
    parts, base, row_groups = [], 0, []
    for source in sources:
        for path in list_parts(documents_dir(workdir, source)):
            try:
                meta = pq.ParquetFile(path).metadata
                rows = meta.num_rows
                row_groups.append(
                    [(meta.row_group(j).num_rows, meta.row_group(j).total_byte_size)
                     for j in range(meta.num_row_groups)]
                )  # fmt: skip
            except Exception as e:  # noqa: BLE001 - an unreadable part is a user-facing input error
                raise MixerError(f"dedup: cannot read documents part {path}: {e}") from None
            st = path.stat()
            idx = part_index(path)
            q = _quality_path(workdir, source, idx)
            qst = q.stat() if q.exists() else None
            parts.append({
                "source": source, "index": idx, "path": str(path), "rows": rows, "base": base,
                "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "quality": [str(q), qst.st_size, qst.st_mtime_ns] if qst else None,
            })  # fmt: skip
            base += rows
    # signature tasks: consecutive segments (a part, or a row range of a part larger than
    # task_bytes) up to task_bytes of Parquet; write tasks: consecutive whole parts
    # a small corpus still makes MIN_TASKS tasks (a balanced load for a few workers); outputs do
    # not depend on the task size, only the number of intermediate files does
    total = sum(p["size"] for p in parts)
    tb = min(settings["task_bytes"], max(MIN_TASK_BYTES, math.ceil(total / MIN_TASKS)))
    segments = []
    for i, p in enumerate(parts):
        if p["size"] <= tb or p["rows"] <= 1:
            segments.append({"part": i, "lo": 0, "hi": p["rows"], "bytes": p["size"]})
        else:
            segments += _row_ranges(i, p["size"], row_groups[i], tb)
    groups = []
    for batch in _pack(segments, tb):
        lo = parts[batch[0]["part"]]["base"] + batch[0]["lo"]
        hi = parts[batch[-1]["part"]]["base"] + batch[-1]["hi"]
        groups.append(
            {"segments": batch, "lo": lo, "hi": hi, "bytes": sum(x["bytes"] for x in batch)}
        )
    write_groups = []
    for batch in _pack([{"part": i, "bytes": p["size"]} for i, p in enumerate(parts)], tb):
        first, last = parts[batch[0]["part"]], parts[batch[-1]["part"]]
        write_groups.append(
            {
                "parts": [x["part"] for x in batch],
                "lo": first["base"],
                "hi": last["base"] + last["rows"],
                "bytes": sum(x["bytes"] for x in batch),
            }
        )
    # partitions: each candidate task's band records within its share of the memory limit
    records = base * (settings["bands"] if settings["minhash"] else 1)
    partitions = max(1, math.ceil(records * RECORD_BYTES / settings["memory_limit"]))
    return {
        "version": PLAN_VERSION,
        "settings": _plan_settings(settings),
        "sources": sources,
        "parts": parts,
        "groups": groups,
        "write_groups": write_groups,
        "documents": base,
        "partitions": partitions,
        # pairs are checked in at least as many tasks as there are signature tasks (up to 8),
        # so that verification, which reads texts again, runs in parallel on small corpora too
        "pair_partitions": max(partitions, min(len(groups), PAIR_TASKS_MAX)),
    }


# ---------------------------------------------------------------------------- 1. signatures


class SignaturesStage(_DedupStage):
    name = "dedup.signatures"
    progress_unit = "B"

    def setup(self, ctx) -> None:
        clean_temporaries(self.state)
        plan = make_plan(self.workdir, self.config)
        if read_json(self.plan_path) != plan:
            write_json_atomic(self.plan_path, plan)
        self.plan = plan

    def input_fingerprint(self) -> Any:
        return {"plan": self.plan}

    def outputs(self) -> list[Path]:
        return [self.sig_file(g, "meta") for g in range(len(self.plan["groups"]))]

    def tasks(self) -> list[Task]:
        tasks = []
        for g, grp in enumerate(self.plan["groups"]):
            parts = [
                {**self.plan["parts"][x["part"]], "lo": x["lo"], "hi": x["hi"]}
                for x in grp["segments"]
            ]
            tasks.append(
                Task(
                    key=f"g{g:05d}",
                    args={
                        "g": g,
                        "parts": parts,
                        "lo": grp["lo"],
                        "hi": grp["hi"],
                        "partitions": self.plan["partitions"],
                    },
                    fingerprint={"parts": parts, "partitions": self.plan["partitions"]},
                    weight=grp["bytes"],
                )  # fmt: skip
            )
        return tasks

    def run_task(self, task: Task) -> dict:
        s = self.config
        a = task.args
        g, P = a["g"], a["partitions"]
        perm = permutations(s["num_perm"], s["seed"], s["scheme"]) if s["minhash"] else None
        keys, lengths, sigs, buckets, fields, paras = [], [], [], [], [], []
        shingled, shingles, sh_counts = [], [], []
        quality = [_read_quality(part)[part["lo"] : part["hi"]] for part in a["parts"]]
        cols = ["text"] + (["metadata"] if s["exact_field"] else [])
        off = a["lo"]  # the group's parts are consecutive in corpus order
        for batch in _batches(a["parts"], cols, BATCH_ROWS):
            texts = batch.column(0)
            n = len(texts)
            wh, offsets = word_hashes(texts)
            k = hash_sequences(wh, offsets)
            empty = np.diff(offsets) == 0
            if empty.any():  # no words: identical raw texts only (symbol junk is not one text)
                raw = fill_empty(texts.take(indices(np.flatnonzero(empty))))
                k[empty] = hash_strings(raw) ^ U64(EMPTY_SALT)
            keys.append(k.view(np.int64))
            length = pc.utf8_length(fill_empty(texts)).cast(pa.int64())
            lengths.append(numbers(length, np.int64).copy())
            docs = off + np.arange(n, dtype=np.int64)
            if s["minhash"]:
                hv, sh_off = shingle_hashes(wh, offsets, s["ngram"])
                sig = signatures(hv, sh_off, *perm, s["scheme"])
                sigs.append(sig)
                if s["verify"]:  # kept for the exact Jaccard of candidate pairs
                    shingles.append(hv)
                    sh_counts.append(np.diff(sh_off))
                shingled.append(np.diff(sh_off) > 0)
                has = np.flatnonzero(shingled[-1])  # no shingles: never a neighbour
                bk = lsh.band_keys(sig[has], s["bands"], s["rows"])
                nb = s["bands"]
                buckets.append(
                    np.stack(
                        [bk.reshape(-1), np.repeat(docs[has], nb), np.repeat(k.view(np.int64)[has], nb)],
                        axis=1,
                    )
                )  # fmt: skip
            if s["exact_field"]:
                fields.append(_field_records(batch.column(1), s["exact_field"], docs))
            if s["paragraphs"]:
                rec = paragraph_records(texts, normalize(texts))
                paras.append(
                    np.stack([rec["key"], docs[rec["row"]], rec["para"], rec["start"], rec["end"]], axis=1)
                )  # fmt: skip
            off += n
        key = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        length = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        qual = np.concatenate(quality) if quality else np.zeros(0, np.float64)
        docs = np.arange(a["lo"], a["hi"], dtype=np.int64)
        _save(self.sig_file(g, "key"), key)
        _save(self.sig_file(g, "len"), length)
        _save(self.sig_file(g, "quality"), qual)
        if s["minhash"]:
            _save(self.sig_file(g, "sig"), _concat(sigs, s["num_perm"], np.uint32))
        if s["minhash"] and s["verify"]:
            counts = np.concatenate(sh_counts) if sh_counts else np.zeros(0, np.int64)
            _save(
                self.sig_file(g, "shingles"),
                np.concatenate(shingles) if shingles else np.zeros(0, np.uint32),
            )
            _save(self.sig_file(g, "shingle_offsets"), np.r_[0, np.cumsum(counts)].astype(np.int64))
        exact = np.stack([key, docs, length, qual.view(np.int64)], axis=1)
        if not s["exact"]:  # MinHash alone: identical texts join only through their shingles
            exact = exact[np.concatenate(shingled) if shingled else np.zeros(0, bool)]
        outs = {"e": (exact, exact[:, 0])}
        if s["minhash"]:
            b = _concat(buckets, 3)
            outs["b"] = (b, b[:, 0])
        if s["exact_field"]:
            f = _concat(fields, 2)
            # field records carry the keep-rule scores of their documents, like exact records
            rel = f[:, 1] - a["lo"]
            f = np.stack([f[:, 0], f[:, 1], length[rel], qual.view(np.int64)[rel]], axis=1)
            outs["f"] = (f, f[:, 0])
        if s["paragraphs"]:
            pr = _concat(paras, 5)
            outs["para"] = (pr, pr[:, 0])
        for kind, (rec, k) in outs.items():
            for p, chunk in enumerate(_split(rec, _partition(k, P), P)):
                _save(self.rec_file(g, kind, p), chunk)
        _save(self.sig_file(g, "meta"), np.array([len(key)], dtype=np.int64))  # written last
        return {"documents": len(key), "records": int(sum(len(v[0]) for v in outs.values()))}

    def finish(self, results: list) -> dict:
        return {
            "documents": sum(r["documents"] for r in results),
            "tasks": len(results),
            "partitions": self.plan["partitions"],
        }


def _batches(parts: list[dict], columns: list[str], rows: int):
    """Record batches of `rows` rows (the last one shorter) over consecutive parts or row ranges
    of parts ("lo", "hi" when given): small parts are read together, so per-batch costs do not
    multiply with the number of parts, and a large part is read only where its range lies."""
    pending, count = [], 0
    for part in parts:
        pf = pq.ParquetFile(part["path"])
        lo, hi = part.get("lo", 0), part.get("hi", pf.metadata.num_rows)
        starts = np.r_[
            0, np.cumsum([pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
        ]
        groups = [i for i in range(pf.num_row_groups) if starts[i] < hi and starts[i + 1] > lo]
        pos = int(starts[groups[0]]) if groups else 0
        # one thread: a task is one core's work, and threads cost more than they give on the
        # many small parts of many sources
        for batch in (
            pf.iter_batches(batch_size=rows, columns=columns, row_groups=groups, use_threads=False)
            if groups
            else ()
        ):
            b_lo, b_hi = max(lo - pos, 0), min(hi - pos, batch.num_rows)
            pos += batch.num_rows
            if b_hi > b_lo:
                batch = batch.slice(b_lo, b_hi - b_lo)
                cols = [c.cast(pa.large_string()) for c in batch.columns]
                pending.append(pa.RecordBatch.from_arrays(cols, names=columns))
                count += batch.num_rows
                if count >= rows:
                    table = pa.Table.from_batches(pending).combine_chunks()
                    full = count // rows * rows
                    for start in range(0, full, rows):
                        yield table.slice(start, rows).to_batches()[0]
                    rest = table.slice(full)
                    pending, count = (rest.to_batches() if rest.num_rows else []), rest.num_rows
            if pos >= hi:  # the rest of the row group lies past the range: not decoded
                break
    if count:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def _read_quality(part: dict) -> np.ndarray:
    scores = np.full(part["rows"], np.nan)
    if part["quality"]:
        try:
            col = pq.ParquetFile(part["quality"][0]).read(columns=["quality__score"]).column(0)
            if len(col) == part["rows"]:
                scores = col.to_numpy(zero_copy_only=False).astype(np.float64)
        except (KeyError, OSError, pa.ArrowInvalid):
            pass
    return scores


def _field_records(meta: pa.Array, field: str, docs: np.ndarray) -> np.ndarray:
    """(hash of the metadata field's value, doc) for documents that have the field."""
    values, rows = [], []
    for i, raw in enumerate(meta.to_pylist()):
        if not raw:
            continue
        try:
            v = orjson.loads(raw).get(field) if raw.startswith("{") else None
        except orjson.JSONDecodeError:
            continue
        if v is not None:
            values.append(v if isinstance(v, str) else orjson.dumps(v).decode())
            rows.append(i)
    if not rows:
        return np.zeros((0, 2), np.int64)
    h = hash_strings(pa.array(values, pa.large_string())).view(np.int64)
    return np.stack([h, docs[np.array(rows)]], axis=1)


# ---------------------------------------------------------------------------- 2. exact groups


class ExactStage(_DedupStage):
    name = "dedup.exact"

    def input_fingerprint(self) -> Any:
        return self.dir_fingerprint("sig")

    def outputs(self) -> list[Path]:
        return [self.state / "exact" / f"p{p:04d}.map.npy" for p in range(self.plan["partitions"])]

    def tasks(self) -> list[Task]:
        G = len(self.plan["groups"])
        return [
            Task(key=f"p{p:04d}", args={"p": p, "groups": G},
                 fingerprint=tree_fingerprint(*(self.rec_file(g, "e", p) for g in range(G))))
            for p in range(self.plan["partitions"])
        ]  # fmt: skip

    def run_task(self, task: Task) -> dict:
        s, p, G = self.config, task.args["p"], task.args["groups"]
        out = self.state / "exact"
        e = _concat([_load(self.rec_file(g, "e", p)) for g in range(G)], 4)
        mapping, sizes = _groups_to_rep(e, s["keep_rule"])
        _save(out / f"p{p:04d}.map.npy", mapping)
        edges = np.zeros((0, 2), np.int64)
        if s["exact_field"]:
            f = _concat([_load(self.rec_file(g, "f", p)) for g in range(G)], 4)
            edges = _field_edges(f, s["keep_rule"])
        _save(out / f"p{p:04d}.field.npy", edges)
        spans = np.zeros((0, 3), np.int64)
        if s["paragraphs"]:
            pr = _concat([_load(self.rec_file(g, "para", p)) for g in range(G)], 5)
            order = np.lexsort((pr[:, 2], pr[:, 1], pr[:, 0]))
            pr = pr[order]
            later = np.r_[False, pr[1:, 0] == pr[:-1, 0]][: len(pr)]  # empty: none
            spans = pr[later][:, [1, 3, 4]]
            spans = spans[np.lexsort((spans[:, 1], spans[:, 0]))]
        _save(out / f"p{p:04d}.spans.npy", spans)
        hist = np.unique(sizes, return_counts=True) if len(sizes) else ([], [])
        return {
            "exact_duplicates": len(mapping),
            "sizes": {str(int(k)): int(v) for k, v in zip(*hist, strict=True)},
            "field_edges": len(edges),
            "paragraphs": len(spans),
        }

    def finish(self, results: list) -> dict:
        sizes: dict[str, int] = {}
        for r in results:
            for k, v in r["sizes"].items():
                sizes[k] = sizes.get(k, 0) + v
        return {
            "exact_duplicates": sum(r["exact_duplicates"] for r in results),
            "exact_group_sizes": sizes,
            "field_edges": sum(r["field_edges"] for r in results),
            "paragraph_spans": sum(r["paragraphs"] for r in results),
        }


def _groups_to_rep(rec: np.ndarray, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """rec rows (key, doc, length, quality bits): (doc, representative) for every member that is
    not its group's representative (the first by the keep rule), sorted by doc; group sizes."""
    if len(rec) == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64)
    key, doc, length, qual = rec[:, 0], rec[:, 1], rec[:, 2], rec[:, 3].view(np.float64)
    order = np.lexsort((*priority_order(doc, length, qual, rule), key))
    k = key[order]
    first = np.r_[True, k[1:] != k[:-1]]
    gid = np.cumsum(first) - 1
    rep = doc[order][first][gid]
    sizes = np.bincount(gid)
    members = ~first
    m = np.stack([doc[order][members], rep[members]], axis=1)
    return m[np.argsort(m[:, 0], kind="stable")], sizes[sizes > 1]


def _field_edges(rec: np.ndarray, rule: str) -> np.ndarray:
    """Documents with equal field values: edges from the group's first (by the keep rule) to each
    member, plus every pair in groups of up to ALL_PAIRS_MAX (so that a removed first member
    does not leave the others apart)."""
    if len(rec) == 0:
        return np.zeros((0, 2), np.int64)
    key, doc, length, qual = rec[:, 0], rec[:, 1], rec[:, 2], rec[:, 3].view(np.float64)
    order = np.lexsort((*priority_order(doc, length, qual, rule), key))
    return _bucket_pairs(key[order], doc[order])


def _bucket_pairs(bucket: np.ndarray, doc: np.ndarray) -> np.ndarray:
    """Pairs of documents sharing a bucket (arrays sorted by bucket): every pair in buckets of up
    to ALL_PAIRS_MAX members; in larger ones each member with the first member and with its next
    BIG_BUCKET_NEIGHBOURS members. Rows (a, b) with a < b, sorted and distinct."""
    n = len(bucket)
    if n < 2:
        return np.zeros((0, 2), np.int64)
    first = np.r_[True, bucket[1:] != bucket[:-1]]
    gid = np.cumsum(first) - 1
    sizes = np.bincount(gid)
    size = sizes[gid]
    multi = size > 1
    bucket, doc, gid, size = bucket[multi], doc[multi], gid[multi], size[multi]
    if len(doc) == 0:
        return np.zeros((0, 2), np.int64)
    out = []
    max_d = int(min(size.max() - 1, ALL_PAIRS_MAX - 1))
    for d in range(1, max_d + 1):
        same = gid[:-d] == gid[d:]
        if d > BIG_BUCKET_NEIGHBOURS:
            same &= size[:-d] <= ALL_PAIRS_MAX
        if not same.any():
            continue
        out.append(np.stack([doc[:-d][same], doc[d:][same]], axis=1))
    big = size > ALL_PAIRS_MAX
    if big.any():
        starts = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
        head = doc[starts][np.searchsorted(gid[starts], gid[big])]
        out.append(np.stack([head, doc[big]], axis=1))
    pairs = _concat(out, 2)
    pairs = np.stack([pairs.min(axis=1), pairs.max(axis=1)], axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return _rows_sorted_unique(pairs)


# ---------------------------------------------------------------------------- 3. candidates


class CandidatesStage(_DedupStage):
    name = "dedup.candidates"

    def input_fingerprint(self) -> Any:
        return self.dir_fingerprint("sig")

    def outputs(self) -> list[Path]:
        P, Q = self.plan["partitions"], self.plan["pair_partitions"]
        return [self.state / "pairs" / f"p{p:04d}-q{q:04d}.npy" for p in range(P) for q in range(Q)]

    def tasks(self) -> list[Task]:
        G = len(self.plan["groups"])
        return [
            Task(key=f"p{p:04d}", args={"p": p, "groups": G},
                 fingerprint=tree_fingerprint(*(self.rec_file(g, "b", p) for g in range(G))))
            for p in range(self.plan["partitions"])
        ]  # fmt: skip

    def run_task(self, task: Task) -> dict:
        p, G, Q = task.args["p"], task.args["groups"], self.plan["pair_partitions"]
        b = _concat([_load(self.rec_file(g, "b", p)) for g in range(G)], 3)
        n_records = len(b)
        # only keys held by two records or more matter (most buckets hold one document)
        key = np.ascontiguousarray(b[:, 0])
        order = np.argsort(key, kind="stable")
        ks = key[order]
        same = ks[1:] == ks[:-1]
        shared = np.zeros(len(ks), dtype=bool)
        shared[1:] |= same
        shared[:-1] |= same
        b = b[np.sort(order[shared])]
        del key, order, ks, same, shared
        # one member per identical text in a bucket: the first (identical texts share every
        # bucket, so it is the first of that text in the corpus; dedup.resolve maps it on)
        order = np.lexsort((b[:, 1], b[:, 2], b[:, 0]))
        b = b[order]
        first = np.r_[True, (b[1:, 0] != b[:-1, 0]) | (b[1:, 2] != b[:-1, 2])]
        b = b[first[: len(b)]]
        order = np.lexsort((b[:, 1], b[:, 0]))
        pairs = _bucket_pairs(b[order, 0], b[order, 1])
        del b, order
        with np.errstate(over="ignore"):
            h = fmix64(
                pairs[:, 0].astype(np.uint64) * U64(0x9E3779B97F4A7C15)
                + pairs[:, 1].astype(np.uint64)
            )
        for q, chunk in enumerate(_split(pairs, _partition(h.view(np.int64), Q), Q)):
            _save(self.state / "pairs" / f"p{p:04d}-q{q:04d}.npy", chunk)
        return {"records": n_records, "pairs": len(pairs)}

    def finish(self, results: list) -> dict:
        return {"band_records": sum(r["records"] for r in results)}


# ---------------------------------------------------------------------------- 4. verify


class VerifyStage(_DedupStage):
    name = "dedup.verify"

    def input_fingerprint(self) -> Any:
        return self.dir_fingerprint("pairs")

    def outputs(self) -> list[Path]:
        return [self.state / "edges" / f"q{q:04d}.npy" for q in range(self.plan["pair_partitions"])]

    def tasks(self) -> list[Task]:
        P = self.plan["partitions"]
        return [
            Task(key=f"q{q:04d}", args={"q": q},
                 fingerprint=tree_fingerprint(*(self.state / "pairs" / f"p{p:04d}-q{q:04d}.npy" for p in range(P))))
            for q in range(self.plan["pair_partitions"])
        ]  # fmt: skip

    def run_task(self, task: Task) -> dict:
        s, q, P = self.config, task.args["q"], self.plan["partitions"]
        pairs = _rows_sorted_unique(
            _concat([_load(self.state / "pairs" / f"p{p:04d}-q{q:04d}.npy") for p in range(P)], 2)
        )
        n = len(pairs)
        sig_rejected = ver_rejected = 0
        if n and s["signature_check"]:
            est = self._estimates(pairs)
            ok = est >= signature_floor(s["threshold"], s["num_perm"])
            sig_rejected = int((~ok).sum())
            pairs = pairs[ok]
        if len(pairs) and s["verify"]:
            jac = self._jaccard(pairs)
            ok = jac >= s["threshold"]
            ver_rejected = int((~ok).sum())
            pairs = pairs[ok]
        _save(self.state / "edges" / f"q{q:04d}.npy", pairs)
        return {"candidates": n, "signature_rejected": sig_rejected,
                "verification_rejected": ver_rejected, "verified": len(pairs)}  # fmt: skip

    def _estimates(self, pairs: np.ndarray, chunk: int = 65536) -> np.ndarray:
        docs = np.unique(pairs)
        grp = self.group_of(docs)
        sig = np.empty((len(docs), self.config["num_perm"]), dtype=np.uint32)
        for g in np.unique(grp):
            sel = np.flatnonzero(grp == g)
            lo = self.plan["groups"][int(g)]["lo"]
            sig[sel] = _load(self.sig_file(int(g), "sig"), mmap=True)[docs[sel] - lo]
        ia, ib = np.searchsorted(docs, pairs[:, 0]), np.searchsorted(docs, pairs[:, 1])
        est = np.empty(len(pairs))
        for lo in range(0, len(pairs), chunk):
            hi = lo + chunk
            est[lo:hi] = (sig[ia[lo:hi]] == sig[ib[lo:hi]]).mean(axis=1)
        return est

    def _jaccard(self, pairs: np.ndarray) -> np.ndarray:
        docs = np.unique(pairs)
        grp = self.group_of(docs)
        values, counts = [], []
        for g in np.unique(grp):  # docs and groups are sorted: the sets come out in doc order
            rel = docs[grp == g] - self.plan["groups"][int(g)]["lo"]
            off = _load(self.sig_file(int(g), "shingle_offsets"), mmap=True)
            starts, ends = np.asarray(off[rel]), np.asarray(off[rel + 1])
            lens = ends - starts
            pos = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
            pos += np.repeat(starts, lens)
            values.append(np.asarray(_load(self.sig_file(int(g), "shingles"), mmap=True)[pos]))
            counts.append(lens)
        values = np.concatenate(values)
        offsets = np.r_[0, np.cumsum(np.concatenate(counts))]
        ia, ib = np.searchsorted(docs, pairs[:, 0]), np.searchsorted(docs, pairs[:, 1])
        return jaccard_pairs(values, offsets, ia, ib)

    def finish(self, results: list) -> dict:
        return {k: sum(r[k] for r in results) for k in
                ("candidates", "signature_rejected", "verification_rejected", "verified")}  # fmt: skip


def distinct_sets(values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each set's values sorted and distinct (sets given as values[offsets[i]:offsets[i + 1]])."""
    n = len(offsets) - 1
    doc = np.repeat(np.arange(n, dtype=np.uint64), np.diff(offsets))
    keyed = np.sort((doc << U64(32)) | values.astype(np.uint64))
    keyed = keyed[np.r_[True, keyed[1:] != keyed[:-1]]] if len(keyed) else keyed
    d = (keyed >> U64(32)).astype(np.int64)
    return (keyed & U64(0xFFFFFFFF)).astype(np.uint32), np.searchsorted(d, np.arange(n + 1))


def jaccard_pairs(values, offsets, ia, ib, chunk_cells: int = 1 << 23) -> np.ndarray:
    """Exact Jaccard of the shingle set of ia[k] and that of ib[k], for every k.

    The sets are made sorted and distinct once; then per chunk of pairs the keys (pair, shingle)
    form two ascending runs per pair, which a stable sort (timsort) merges in linear time, and
    equal neighbours are the intersection.
    """
    values, offsets = distinct_sets(values, offsets)
    sizes = np.diff(offsets)
    sa, sb = sizes[ia], sizes[ib]
    out = np.empty(len(ia))
    cum = np.cumsum(sa + sb)
    lo = 0
    while lo < len(ia):
        base = cum[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(cum, base + chunk_cells, side="right")))
        la, lb = sa[lo:hi], sb[lo:hi]
        lens = np.stack([la, lb], axis=1).reshape(-1)
        starts = np.stack([offsets[ia[lo:hi]], offsets[ib[lo:hi]]], axis=1).reshape(-1)
        total = int(lens.sum())
        pos = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
        pair = np.repeat(np.arange(hi - lo, dtype=np.uint64), la + lb)
        keyed = np.sort((pair << U64(32)) | values[pos].astype(np.uint64), kind="stable")
        both = keyed[1:] == keyed[:-1]
        inter = np.bincount((keyed[1:][both] >> U64(32)).astype(np.int64), minlength=hi - lo)
        union = la + lb - inter
        out[lo:hi] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        lo = hi
    return out


# ---------------------------------------------------------------------------- attributes


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex16(keys: np.ndarray) -> pa.Array:
    """Each 64-bit key as 16 lowercase hex digits (what "%016x" gives), built as one buffer."""
    n = len(keys)
    b = keys.view(np.uint64).astype(">u8").view(np.uint8).reshape(n, 8)
    out = np.empty((n, 16), dtype=np.uint8)
    out[:, 0::2] = _HEX[b >> 4]
    out[:, 1::2] = _HEX[b & 15]
    offsets = np.arange(0, 16 * (n + 1), 16, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out.tobytes()))


# ---------------------------------------------------------------------------- the factory


def dedup_stages(workdir: str | Path, settings: dict) -> list[Stage]:
    """The dedup stages, in order, for `settings` (run_dedup's keyword arguments). All share the
    group "dedup"; the last one's finish returns the stats dict (also in state/dedup/stats.json).
    dedup.components runs the rounds after its first as stages it chains (`next_stage`)."""
    s = resolve_settings(settings)
    stages: list[Stage] = [SignaturesStage(workdir, s), ExactStage(workdir, s)]
    if s["minhash"]:
        stages += [CandidatesStage(workdir, s), VerifyStage(workdir, s)]
    from mixer.dedup.resolve import resolve_stages  # it builds on the stages above

    return stages + resolve_stages(workdir, s)


__all__ = ["dedup_stages", "resolve_settings", "signature_floor", "DEFAULTS"]
