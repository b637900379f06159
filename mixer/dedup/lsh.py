"""LSH banding: bands x rows from a threshold, bucket keys per band, candidate pairs with DuckDB.

A pair of documents with Jaccard similarity s becomes a candidate with probability
P(s) = 1 - (1 - s**rows)**bands. `choose_bands` picks, over bands*rows <= num_perm, the
split with the smallest false-positive area (the integral of P below the threshold) among those
that catch a pair AT the threshold with probability >= CATCH_AT_THRESHOLD (0.92): the threshold
is the similarity the user wants removed, so pairs at it must be caught (threshold 0.8 with
112 permutations gives FineWeb's 14 x 8). datasketch's equal-weight rule would catch only
about half of the pairs at the threshold. Candidates below the threshold are what --verify
removes exactly.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np

from mixer.dedup.normalize import U64, fmix64

DEFAULT_NUM_PERM = 112
CATCH_AT_THRESHOLD = 0.92
VERIFY_ALL_PAIRS_MAX = 32  # buckets up to this size give all pairs when verifying, chains above


def candidate_probability(s, bands: int, rows: int):
    return 1.0 - (1.0 - np.asarray(s, dtype=np.float64) ** rows) ** bands


def error_areas(threshold: float, bands: int, rows: int, steps: int = 2001) -> tuple[float, float]:
    """(false-positive area below the threshold, false-negative area above it)."""
    lo = np.linspace(0.0, threshold, steps)
    hi = np.linspace(threshold, 1.0, steps)
    fp = np.trapezoid(candidate_probability(lo, bands, rows), lo)
    fn = np.trapezoid(1.0 - candidate_probability(hi, bands, rows), hi)
    return float(fp), float(fn)


def choose_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    best, best_fp = None, float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            if candidate_probability(threshold, bands, rows) < CATCH_AT_THRESHOLD:
                continue
            fp, _ = error_areas(threshold, bands, rows, steps=201)
            if fp < best_fp - 1e-12:
                best, best_fp = (bands, rows), fp
    return best or (num_perm, 1)


def lsh_summary(threshold: float, bands: int, rows: int) -> dict:
    fp, fn = error_areas(threshold, bands, rows)
    probe = {
        f"{s:.1f}": round(float(candidate_probability(s, bands, rows)), 4)
        for s in (0.5, 0.6, 0.7, 0.8, 0.9)
    }
    return {
        "bands": bands,
        "rows": rows,
        "threshold": threshold,
        "effective_threshold": round((1.0 / bands) ** (1.0 / rows), 4),
        "false_positive_area": round(fp, 5),
        "false_negative_area": round(fn, 5),
        "p_candidate_at": probe,
    }


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """A 64-bit key per document and band, shape (n_docs, bands), as int64."""
    n = sig.shape[0]
    keys = np.empty((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(bands):
            h = np.full(n, U64(j + 1), dtype=np.uint64)
            for r in range(j * rows, (j + 1) * rows):
                h = fmix64(h * U64(0x100000001B3) + sig[:, r].astype(np.uint64))
            keys[:, j] = h
    return keys.view(np.int64)


def connect(memory_limit: str, threads: int, temp_dir: Path) -> duckdb.DuckDBPyConnection:
    temp_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": memory_limit, "threads": max(1, threads)})
    con.execute(f"SET temp_directory = '{temp_dir.as_posix()}'")
    con.execute("SET preserve_insertion_order = false")
    return con


def candidate_pairs(
    con: duckdb.DuckDBPyConnection, bucket_files: list[str], offsets: list[int], all_pairs: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct candidate pairs (a < b, global ordinals) from the per-part bucket files.

    Documents sharing a (band, key) bucket are linked. Without verification a star (each member
    to the bucket's first member) is enough for connected components. With verification
    (`all_pairs`) small buckets give every pair, so one false-positive member cannot cut a
    true cluster apart; big buckets give chains.
    """
    if not bucket_files:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    con.execute("CREATE OR REPLACE TEMP TABLE part_offsets (filename VARCHAR, base BIGINT)")
    con.executemany(
        "INSERT INTO part_offsets VALUES (?, ?)", list(zip(bucket_files, offsets, strict=True))
    )
    files_sql = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in bucket_files) + "]"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE buckets AS
        SELECT p.band, p.key, p.row + o.base AS doc
        FROM read_parquet({files_sql}, filename = true) p JOIN part_offsets o USING (filename)"""
    )
    # a hash aggregate finds the shared buckets (few); only their members are joined back
    con.execute(
        """CREATE OR REPLACE TEMP TABLE multi AS
        SELECT b.band, b.key, b.doc, g.n, g.root
        FROM buckets b JOIN (
            SELECT band, key, count(*) AS n, min(doc) AS root FROM buckets
            GROUP BY band, key HAVING count(*) > 1
        ) g ON b.band = g.band AND b.key = g.key"""
    )
    con.execute("DROP TABLE buckets")
    if all_pairs:
        sql = f"""
        SELECT DISTINCT a, b FROM (
            SELECT x.doc AS a, y.doc AS b FROM multi x JOIN multi y
              ON x.band = y.band AND x.key = y.key AND x.doc < y.doc
              WHERE x.n <= {VERIFY_ALL_PAIRS_MAX}
            UNION ALL
            SELECT lag(doc) OVER (PARTITION BY band, key ORDER BY doc) AS a, doc AS b
              FROM multi WHERE n > {VERIFY_ALL_PAIRS_MAX}
        ) WHERE a IS NOT NULL ORDER BY a, b"""
    else:
        sql = "SELECT DISTINCT root AS a, doc AS b FROM multi WHERE doc <> root ORDER BY a, b"
    res = con.execute(sql).fetchnumpy()
    con.execute("DROP TABLE multi")
    return np.asarray(res["a"], dtype=np.int64), np.asarray(res["b"], dtype=np.int64)
