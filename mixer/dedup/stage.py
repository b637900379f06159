"""The dedup stage: documents -> attributes/dedup, out of core.

1. scan (a process per documents part, cached per part): normalise the text, hash it for the
   exact key, MinHash signatures -> LSH bucket keys, paragraph keys. Written to
   state/dedup/parts/<source>/part-NNNNN.{meta,buckets,paras}.parquet.
2. group: DuckDB (memory_limit, spilling to state/dedup/tmp) groups bucket keys into candidate
   pairs; optional exact-Jaccard verification on the shingle sets drops LSH false positives.
3. cluster: exact-key edges + candidate edges -> connected components; one kept member per
   cluster by the keep rule (mixer.dedup.clusters).
4. write attributes/dedup/<source>/part-NNNNN.parquet for every documents part (same rows, same
   order) and state/dedup/stats.json.

A rerun with the same documents parts, quality attributes and settings does nothing.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from mixer.dedup import lsh
from mixer.dedup.clusters import (
    DEFAULT_KEEP_RULE,
    choose_kept,
    components,
    exact_edges,
    parse_keep_rule,
)
from mixer.dedup.minhash import SCHEMES, permutations, shingle_hashes, signatures
from mixer.dedup.normalize import hash_sequences, hash_words, normalize, split_words, words
from mixer.dedup.paragraphs import SPAN_TYPE, paragraph_records, spans_column
from mixer.errors import MixerError
from mixer.io import (
    atomic_path,
    clean_temporaries,
    config_hash,
    file_fingerprint,
    read_json,
    write_json_atomic,
    write_parquet_atomic,
)
from mixer.schema import (
    attributes_dir,
    documents_dir,
    list_parts,
    list_sources,
    part_index,
    part_name,
    source_dir_name,
    state_dir,
)

SCAN_VERSION = 2
BATCH_ROWS = 2048
DEFAULT_SEED = 42
DEFAULT_MEMORY_LIMIT = "2GB"
TOP_CLUSTERS = 10
POOL_MIN_BYTES = 16 << 20  # below this much Parquet, one process is faster than a pool
SAMPLE_IDS = 5


# ---------------------------------------------------------------------------- part scan


def _scan_part(job: dict) -> str:
    """Scan one documents part into its state files (skipped when cached); returns the part path."""
    marker = Path(job["marker"])
    fingerprint = {"part": job["fingerprint"], "settings": job["scan_key"]}
    if read_json(marker) == fingerprint:
        return job["part"]
    a, b = permutations(job["num_perm"], job["seed"], job["scheme"])
    metas, buckets, paras, sigs = [], [], [], []
    base = 0
    pf = pq.ParquetFile(job["part"])
    for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=["text"]):
        texts = batch.column(0)
        normalized = normalize(texts)
        flat, offsets = split_words(normalized)
        wh = hash_words(flat)
        n = len(texts)
        lengths = (
            pa.compute.utf8_length(pa.compute.fill_null(texts, "")).to_numpy().astype(np.int64)
        )
        metas.append((hash_sequences(wh, offsets).view(np.int64), lengths))
        if job["minhash"]:
            hv, sh_offsets = shingle_hashes(wh, offsets, job["ngram"])
            sig = signatures(hv, sh_offsets, a, b, job["scheme"])
            sigs.append(sig)
            keys = lsh.band_keys(sig, job["bands"], job["rows"])
            has = np.flatnonzero(np.diff(sh_offsets) > 0)
            nb = job["bands"]
            buckets.append(
                (
                    np.tile(np.arange(nb, dtype=np.int16), len(has)),
                    keys[has].reshape(-1),
                    np.repeat(has + base, nb).astype(np.int32),
                )
            )
        if job["paragraphs"]:
            rec = paragraph_records(texts, normalized)
            rec["row"] = rec["row"] + base
            paras.append(rec)
        base += n
    key = np.concatenate([m[0] for m in metas]) if metas else np.zeros(0, np.int64)
    length = np.concatenate([m[1] for m in metas]) if metas else np.zeros(0, np.int64)
    write_parquet_atomic(job["meta"], pa.table({"key": key, "length": length}))
    if job["minhash"]:
        bands = np.concatenate([x[0] for x in buckets]) if buckets else np.zeros(0, np.int16)
        keys = np.concatenate([x[1] for x in buckets]) if buckets else np.zeros(0, np.int64)
        rows = np.concatenate([x[2] for x in buckets]) if buckets else np.zeros(0, np.int32)
        write_parquet_atomic(job["buckets"], pa.table({"band": bands, "key": keys, "row": rows}))
        sig = np.concatenate(sigs) if sigs else np.zeros((0, job["num_perm"]), np.uint32)
        with atomic_path(job["sig"]) as tmp, open(tmp, "wb") as f:
            np.save(f, sig)
    if job["paragraphs"]:
        names = ("row", "para", "start", "end", "key")
        table = {
            k: np.concatenate([p[k] for p in paras]) if paras else np.zeros(0, np.int64)
            for k in names
        }
        write_parquet_atomic(job["paras"], pa.table(table))
    write_json_atomic(marker, fingerprint)
    return job["part"]


def _shingle_sets(job: dict) -> tuple[np.ndarray, list[np.ndarray]]:
    """Sorted distinct shingle hashes of the given rows of one part (for verification)."""
    rows = np.asarray(job["rows"], dtype=np.int64)
    texts = pq.read_table(job["part"], columns=["text"]).column(0).take(pa.array(rows))
    flat, offsets = words(texts)
    hv, sh_offsets = shingle_hashes(hash_words(flat), offsets, job["ngram"])
    return rows, [np.unique(hv[sh_offsets[i] : sh_offsets[i + 1]]) for i in range(len(rows))]


def field_edges(con, paths: list, field: str) -> tuple[np.ndarray, np.ndarray]:
    """Edges joining documents whose metadata `field` (e.g. the URL) has the same value.

    The values are hashed by DuckDB (64 bits) straight from the metadata JSON; documents
    without the field join nothing.
    """
    path = "$." + field
    hashes, valid = [], []
    for p in paths:
        t = con.execute(
            "SELECT hash(v) AS h, v IS NOT NULL AS ok FROM "
            "(SELECT json_extract_string(metadata, ?) AS v FROM read_parquet(?))",
            [path, str(p)],
        ).fetchnumpy()
        hashes.append(np.asarray(t["h"], dtype=np.uint64))
        valid.append(np.asarray(t["ok"], dtype=bool))
    if not hashes:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    h, ok = np.concatenate(hashes), np.concatenate(valid)
    idx = np.flatnonzero(ok)
    a, b = exact_edges(h[idx])
    return idx[a], idx[b]


def _map(fn: Callable, jobs: list, workers: int, desc: str, progress: bool) -> Iterable:
    bar = tqdm(total=len(jobs), desc=desc, unit="part", disable=not progress, file=sys.stderr)
    if workers <= 1 or len(jobs) <= 1:
        for j in jobs:
            yield fn(j)
            bar.update()
    else:
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as ex:
            for r in ex.map(fn, jobs):
                yield r
                bar.update()
    bar.close()


# ---------------------------------------------------------------------------- helpers


def _resolve_lsh(num_perm, bands, rows, threshold) -> tuple[int, int, int]:
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
        return num_perm, bands, rows
    num_perm = num_perm or lsh.DEFAULT_NUM_PERM
    if num_perm < 1:
        raise MixerError(f"dedup: num_perm must be positive (got {num_perm})")
    try:
        bands, rows = lsh.choose_bands(threshold, num_perm)
    except ValueError as e:
        raise MixerError(f"dedup: {e}") from None
    return num_perm, bands, rows


def _jaccard_filter(a, b, sets: dict[int, np.ndarray], threshold: float) -> np.ndarray:
    keep = np.zeros(len(a), dtype=bool)
    for i, (x, y) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        sx, sy = sets[x], sets[y]
        inter = len(np.intersect1d(sx, sy, assume_unique=True))
        union = len(sx) + len(sy) - inter
        keep[i] = union > 0 and inter / union >= threshold
    return keep


def _quality_scores(workdir: Path, parts: list[dict]) -> tuple[np.ndarray | None, dict]:
    """quality__score per document where the quality attribute exists for its part (NaN elsewhere)."""
    chunks, fps, found = [], {}, False
    for p in parts:
        path = attributes_dir(workdir, "quality", p["source"]) / part_name(p["index"])
        scores = np.full(p["rows"], np.nan)
        if path.exists():
            try:
                col = pq.read_table(path, columns=["quality__score"]).column(0)
                if len(col) == p["rows"]:
                    scores = col.to_numpy(zero_copy_only=False).astype(np.float64)
                    found = True
                    fps[str(path)] = file_fingerprint(path, with_hash=False)
            except (KeyError, pa.ArrowInvalid):
                pass
        chunks.append(scores)
    if not found:
        return None, {}
    return (np.concatenate(chunks) if chunks else np.zeros(0)), fps


def _echo(msg: str, progress: bool) -> None:
    if progress:
        tqdm.write(msg, file=sys.stderr)


# ---------------------------------------------------------------------------- the stage


def run_dedup(
    workdir,
    sources=None,
    exact: bool = True,
    minhash: bool = True,
    ngram: int = 5,
    exact_field: str | None = None,
    num_perm: int | None = None,
    bands: int | None = None,
    rows: int | None = None,
    threshold: float = 0.8,
    verify: bool = False,
    paragraphs: bool = False,
    keep_rule: str = DEFAULT_KEEP_RULE,
    workers: int | None = None,
    progress: bool = True,
    seed: int = DEFAULT_SEED,
    scheme: str = "affine32",
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    signature_check: bool = True,
) -> dict:
    """Deduplicate the documents of `workdir`; write attributes/dedup and return the stats."""
    t0 = time.time()
    workdir = Path(workdir)
    available = list_sources(workdir)
    if not available:
        raise MixerError(
            f"dedup: no documents under {documents_dir(workdir)} (run `mixer ingest` first)"
        )
    if sources:
        sources = sorted(set(sources))
        missing = [s for s in sources if s not in available]
        if missing:
            raise MixerError(
                f"dedup: unknown source(s) {', '.join(missing)} (have: {', '.join(available)})"
            )
    else:
        sources = available
    if ngram < 1:
        raise MixerError(f"dedup: ngram must be positive (got {ngram})")
    if scheme not in SCHEMES:
        raise MixerError(f"dedup: scheme must be one of {', '.join(SCHEMES)} (got {scheme!r})")
    try:
        parse_keep_rule(keep_rule)
    except ValueError as e:
        raise MixerError(f"dedup: {e}") from None
    num_perm, bands, rows = _resolve_lsh(num_perm, bands, rows, threshold)
    workers = max(1, workers or os.cpu_count() or 1)

    state = state_dir(workdir) / "dedup"
    parts_state = state / "parts"
    settings = {
        "version": SCAN_VERSION, "sources": sources, "exact": exact, "minhash": minhash, "ngram": ngram,
        "num_perm": num_perm, "bands": bands, "rows": rows, "threshold": threshold, "verify": verify,
        "paragraphs": paragraphs, "keep_rule": keep_rule, "seed": seed, "scheme": scheme,
        "signature_check": signature_check, "exact_field": exact_field,
    }  # fmt: skip
    scan_key = config_hash(
        {
            k: settings[k]
            for k in (
                "version",
                "minhash",
                "ngram",
                "num_perm",
                "bands",
                "rows",
                "paragraphs",
                "seed",
                "scheme",
            )
        }
    )

    parts: list[dict] = []
    base = 0
    for source in sources:
        for path in list_parts(documents_dir(workdir, source)):
            try:
                n = pq.ParquetFile(path).metadata.num_rows
            except Exception as e:  # noqa: BLE001 - any unreadable part is a user-facing input error
                raise MixerError(f"dedup: cannot read documents part {path}: {e}") from None
            idx = part_index(path)
            stem = parts_state / source_dir_name(source) / part_name(idx, "")
            parts.append({
                "source": source, "index": idx, "path": str(path), "rows": n, "base": base,
                "fingerprint": file_fingerprint(path, with_hash=False),
                "meta": f"{stem}.meta.parquet", "buckets": f"{stem}.buckets.parquet",
                "paras": f"{stem}.paras.parquet", "sig": f"{stem}.sig.npy", "marker": f"{stem}.json",
            })  # fmt: skip
            base += n
    n_docs = base
    quality, quality_fps = _quality_scores(workdir, parts)

    manifest_path = state / "manifest.json"
    manifest = {
        "settings": settings,
        "parts": {p["path"]: p["fingerprint"] for p in parts},
        "quality": quality_fps,
    }
    outputs = [attributes_dir(workdir, "dedup", p["source"]) / part_name(p["index"]) for p in parts]
    stats_path = state / "stats.json"
    if (
        read_json(manifest_path) == manifest
        and stats_path.exists()
        and all(o.exists() for o in outputs)
    ):
        stats = read_json(stats_path)
        stats["cached"] = True
        _echo("dedup: up to date (same documents and settings), nothing to do", progress)
        return stats

    summary = lsh.lsh_summary(threshold, bands, rows)
    if minhash:
        _echo(
            f"dedup: MinHash {num_perm} permutations, {bands} bands x {rows} rows "
            f"(effective threshold {summary['effective_threshold']}; P(candidate) at J="
            + ", ".join(f"{k}: {v}" for k, v in summary["p_candidate_at"].items())
            + f"; false-positive area {summary['false_positive_area']}, false-negative area "
            f"{summary['false_negative_area']})",
            progress,
        )

    # 1. scan
    t_scan = time.time()
    jobs = [
        {"part": p["path"], "fingerprint": p["fingerprint"], "scan_key": scan_key, "meta": p["meta"],
         "buckets": p["buckets"], "paras": p["paras"], "sig": p["sig"], "marker": p["marker"], "minhash": minhash,
         "paragraphs": paragraphs, "ngram": ngram, "num_perm": num_perm, "bands": bands, "rows": rows,
         "seed": seed, "scheme": scheme}
        for p in parts
    ]  # fmt: skip
    total_bytes = sum(p["fingerprint"]["size"] for p in parts)
    scan_workers = workers if total_bytes >= POOL_MIN_BYTES else 1  # spawning costs ~1 s a worker
    for _ in _map(_scan_part, jobs, scan_workers, "dedup scan", progress):
        pass
    keys = np.concatenate([pq.read_table(p["meta"]).column("key").to_numpy() for p in parts])
    lengths = np.concatenate([pq.read_table(p["meta"]).column("length").to_numpy() for p in parts])
    t_group = time.time()

    # 2. group candidates
    tmp = state / "tmp"
    con = lsh.connect(memory_limit, workers, tmp)
    edges_a, edges_b = [], []
    stats_pairs = {}
    try:
        if exact:
            ea, eb = exact_edges(keys)
            edges_a.append(ea)
            edges_b.append(eb)
        if exact_field:
            ea, eb = field_edges(con, [p["path"] for p in parts], exact_field)
            stats_pairs["exact_field_edges"] = len(ea)
            edges_a.append(ea)
            edges_b.append(eb)
        if minhash:
            ca, cb = lsh.candidate_pairs(
                con,
                [p["buckets"] for p in parts],
                [p["base"] for p in parts],
                verify or signature_check,
            )
            stats_pairs["candidate_pairs"] = len(ca)
            if signature_check and len(ca):
                ok = _signature_check(parts, ca, cb, threshold, num_perm)
                ca, cb = ca[ok], cb[ok]
                stats_pairs["signature_checked_pairs"] = len(ca)
            if verify and len(ca):
                ca, cb = _verify(parts, ca, cb, ngram, threshold, workers, progress)
                stats_pairs["verified_pairs"] = len(ca)
            edges_a.append(ca)
            edges_b.append(cb)
        para_spans = _paragraph_spans(con, parts, state) if paragraphs else None
    finally:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)
    t_cluster = time.time()

    # 3. cluster and keep
    a = np.concatenate(edges_a) if edges_a else np.zeros(0, np.int64)
    b = np.concatenate(edges_b) if edges_b else np.zeros(0, np.int64)
    cluster = components(n_docs, a, b)
    keep = choose_kept(cluster, lengths, quality, keep_rule)
    size = np.bincount(cluster, minlength=n_docs)[cluster] if n_docs else np.zeros(0, np.int64)
    kept_of = np.zeros(n_docs, dtype=np.int64)
    kept_idx = np.flatnonzero(keep)
    kept_of[cluster[kept_idx]] = kept_idx  # cluster value (first ordinal) -> kept ordinal
    kept_member = kept_of[cluster]

    # ids we need: kept members of clusters with removed documents, samples of the largest clusters
    uniq_clusters, first_pos, counts = np.unique(cluster, return_index=True, return_counts=True)
    order = np.lexsort((uniq_clusters, -counts))[:TOP_CLUSTERS]
    top = [(int(uniq_clusters[i]), int(counts[i])) for i in order if counts[i] > 1]
    samples = {c: np.flatnonzero(cluster == c)[:SAMPLE_IDS] for c, _ in top}
    need = np.unique(np.concatenate([kept_member[~keep], *samples.values(), np.zeros(0, np.int64)]))
    ids = _lookup_ids(parts, need)

    # 4. write
    t_write = time.time()
    exact_hex = np.char.mod("%016x", keys.view(np.uint64)) if n_docs else np.zeros(0, dtype="U16")
    for p, out in zip(parts, outputs, strict=True):
        lo, hi = p["base"], p["base"] + p["rows"]
        id_col = pq.read_table(p["path"], columns=["id"]).column("id")
        dup_of = [None if keep[i] else ids[int(kept_member[i])] for i in range(lo, hi)]
        cols = {
            "id": id_col,
            "dedup__exact_cluster": pa.array(exact_hex[lo:hi].tolist(), pa.string()),
            "dedup__minhash_cluster": pa.array(cluster[lo:hi], pa.int64()),
            "dedup__cluster_size": pa.array(size[lo:hi], pa.int64()),
            "dedup__keep": pa.array(keep[lo:hi], pa.bool_()),
            "dedup__duplicate_of": pa.array(dup_of, pa.string()),
        }
        if paragraphs:
            sel = (para_spans["doc"] >= lo) & (para_spans["doc"] < hi)
            cols["dedup__paragraph_spans"] = spans_column(
                p["rows"],
                para_spans["doc"][sel] - lo,
                para_spans["start"][sel],
                para_spans["end"][sel],
            )
        write_parquet_atomic(out, pa.table(cols))
    _remove_stale(attributes_dir(workdir, "dedup"), set(sources), {str(o) for o in outputs})

    # stats
    per_source = {}
    exact_first = np.zeros(n_docs, dtype=bool)
    if n_docs:
        exact_first[np.unique(keys, return_index=True)[1]] = True
    for source in sources:
        sel = np.zeros(n_docs, dtype=bool)
        for p in parts:
            if p["source"] == source:
                sel[p["base"] : p["base"] + p["rows"]] = True
        per_source[source] = {
            "documents": int(sel.sum()),
            "removed": int((~keep & sel).sum()),
            "kept": int((keep & sel).sum()),
            "exact_duplicates": int((~exact_first & sel).sum()),
        }
    sizes, n_clusters = np.unique(counts, return_counts=True)
    stats = {
        "documents": int(n_docs),
        "removed": int((~keep).sum()),
        "kept": int(keep.sum()),
        "settings": settings,
        "lsh": summary if minhash else None,
        **stats_pairs,
        "clusters_by_size": {str(int(s)): int(c) for s, c in zip(sizes, n_clusters, strict=True)},
        "exact_clusters_by_size": _sizes_hist(keys),
        "removed_per_source": {s: v["removed"] for s, v in per_source.items()},
        "per_source": per_source,
        "largest_clusters": [
            {
                "cluster": c,
                "size": n,
                "kept_id": ids.get(int(kept_of[c])),
                "sample_ids": [ids[int(i)] for i in samples[c]],
            }
            for c, n in top
        ],
        "seconds": {
            "scan": round(t_group - t_scan, 3),
            "group": round(t_cluster - t_group, 3),
            "cluster": round(t_write - t_cluster, 3),
            "write": round(time.time() - t_write, 3),
            "total": round(time.time() - t0, 3),
        },
        "cached": False,
    }
    if paragraphs:
        stats["paragraphs"] = {
            "flagged": int(len(para_spans["doc"])),
            "chars": int((para_spans["end"] - para_spans["start"]).sum()),
            "documents_with_spans": int(len(np.unique(para_spans["doc"]))),
        }
    write_json_atomic(stats_path, stats)
    write_json_atomic(manifest_path, manifest)
    return stats


def _remove_stale(root: Path, sources: set[str], outputs: set[str]) -> None:
    """Drop dedup attributes this run did not write: their clusters refer to another corpus."""
    clean_temporaries(root)
    dirs = {source_dir_name(s) for s in sources}
    for d in root.iterdir() if root.is_dir() else []:
        if d.is_dir() and d.name not in dirs:
            shutil.rmtree(d)
        elif d.is_dir():
            for part in list_parts(d):
                if str(part) not in outputs:
                    part.unlink()


def _sizes_hist(keys: np.ndarray) -> dict:
    if len(keys) == 0:
        return {}
    _, counts = np.unique(keys, return_counts=True)
    sizes, n = np.unique(counts, return_counts=True)
    return {str(int(s)): int(c) for s, c in zip(sizes, n, strict=True)}


def _part_of(parts: list[dict], ordinals: np.ndarray) -> np.ndarray:
    bases = np.array([p["base"] for p in parts], dtype=np.int64)
    return np.searchsorted(bases, ordinals, side="right") - 1


def _lookup_ids(parts: list[dict], ordinals: np.ndarray) -> dict[int, str]:
    ids: dict[int, str] = {}
    if len(ordinals) == 0:
        return ids
    which = _part_of(parts, ordinals)
    for pi in np.unique(which):
        p = parts[int(pi)]
        sel = ordinals[which == pi]
        col = pq.read_table(p["path"], columns=["id"]).column("id").take(pa.array(sel - p["base"]))
        ids.update(zip(sel.tolist(), col.to_pylist(), strict=True))
    return ids


def _verify(parts, a, b, ngram, threshold, workers, progress):
    docs = np.unique(np.concatenate([a, b]))
    which = _part_of(parts, docs)
    jobs = []
    for pi in np.unique(which):
        p = parts[int(pi)]
        jobs.append(
            {
                "part": p["path"],
                "rows": (docs[which == pi] - p["base"]).tolist(),
                "ngram": ngram,
                "base": p["base"],
            }
        )
    sets: dict[int, np.ndarray] = {}
    verify_workers = workers if len(docs) >= 20_000 else 1
    for job, (rows_, hv_sets) in zip(
        jobs, _map(_shingle_sets, jobs, verify_workers, "dedup verify", progress), strict=True
    ):
        for r, s in zip(rows_.tolist(), hv_sets, strict=True):
            sets[job["base"] + r] = s
    keep = _jaccard_filter(a, b, sets, threshold)
    return a[keep], b[keep]


SIGNATURE_CHECK_SIGMAS = 3.0  # pairs at the threshold pass 99.9% of the time


def signature_floor(threshold: float, num_perm: int) -> float:
    """Lowest estimated Jaccard a candidate pair may have: three standard errors below the threshold."""
    return threshold - SIGNATURE_CHECK_SIGMAS * float(
        np.sqrt(threshold * (1.0 - threshold) / num_perm)
    )


def _signature_check(parts, a, b, threshold, num_perm, chunk: int = 65536) -> np.ndarray:
    """Keep candidate pairs whose full signatures agree on >= signature_floor of the permutations.

    Banding alone lets through pairs far below the threshold (P(candidate | J=0.45) is about 2%
    for 14 x 8): the fraction of equal signature values estimates J with standard error
    sqrt(J(1-J)/num_perm), so pairs at the threshold pass (99.9%) while such pairs do not.
    """
    docs = np.unique(np.concatenate([a, b]))
    which = _part_of(parts, docs)
    sig = np.empty((len(docs), num_perm), dtype=np.uint32)
    for pi in np.unique(which):
        p = parts[int(pi)]
        sel = np.flatnonzero(which == pi)
        sig[sel] = np.load(p["sig"], mmap_mode="r")[docs[sel] - p["base"]]
    ia, ib = np.searchsorted(docs, a), np.searchsorted(docs, b)
    floor = signature_floor(threshold, num_perm)
    ok = np.empty(len(a), dtype=bool)
    for lo in range(0, len(a), chunk):
        hi = lo + chunk
        est = (sig[ia[lo:hi]] == sig[ib[lo:hi]]).mean(axis=1)
        ok[lo:hi] = est >= floor
    return ok


def _paragraph_spans(con, parts: list[dict], state: Path) -> dict[str, np.ndarray]:
    """Every paragraph occurrence after the first of its key, in corpus order: doc, start, end."""
    files = [p["paras"] for p in parts]
    empty = {k: np.zeros(0, np.int64) for k in ("doc", "start", "end")}
    if not files:
        return empty
    con.execute("CREATE OR REPLACE TEMP TABLE para_offsets (filename VARCHAR, base BIGINT)")
    con.executemany(
        "INSERT INTO para_offsets VALUES (?, ?)", [(p["paras"], p["base"]) for p in parts]
    )
    files_sql = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    res = con.execute(
        f"""WITH p AS (
            SELECT q.key, q.row + o.base AS doc, q.para, q.start, q."end"
            FROM read_parquet({files_sql}, filename = true) q JOIN para_offsets o USING (filename)
        ), r AS (
            SELECT doc, start, "end", row_number() OVER (PARTITION BY key ORDER BY doc, para) AS rn FROM p
        )
        SELECT doc, start, "end" FROM r WHERE rn > 1 ORDER BY doc, start"""
    ).fetchnumpy()
    return {k: np.asarray(res[k], dtype=np.int64) for k in ("doc", "start", "end")}


__all__ = ["run_dedup", "DEFAULT_KEEP_RULE", "SPAN_TYPE"]
