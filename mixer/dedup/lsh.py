"""LSH banding: bands x rows from a threshold and the bucket key of each document and band.

A pair of documents with Jaccard similarity s becomes a candidate with probability
P(s) = 1 - (1 - s**rows)**bands. `choose_bands` picks, over bands*rows <= num_perm, the
split with the smallest false-positive area (the integral of P below the threshold) among those
that catch a pair AT the threshold with probability >= CATCH_AT_THRESHOLD (0.92): the threshold
is the similarity the user wants removed, so pairs at it must be caught (threshold 0.8 with
112 permutations gives FineWeb's 14 x 8). datasketch's equal-weight rule would catch only
about half of the pairs at the threshold. Candidates below the threshold are what --verify
removes exactly. Grouping the keys into candidate pairs is the dedup.candidates stage
(mixer.dedup.stages).
"""

from __future__ import annotations

import numpy as np

from mixer.dedup.normalize import U64, fmix64

DEFAULT_NUM_PERM = 112
CATCH_AT_THRESHOLD = 0.92


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
