"""MinHash signatures of word n-gram shingles, computed over batches with numpy.

Compatible with datasketch (>= 2.0): for the same `num_perm`, `seed` and scheme, and with
`shingle_hash32_py` as datasketch's `hashfunc`, `datasketch.MinHash(...).hashvalues` over a
document's shingles equals our signature row. Two schemes are implemented:

- "affine32" (datasketch 2.x default): h = fmix32(shingle_hash); value = a*h + b mod 2**32.
- "legacy" (datasketch < 2.0): value = ((a*h + b) mod 2**64 mod (2**61 - 1)) & (2**32 - 1).

A shingle is `ngram` consecutive normalised words joined by one space; a document with fewer
words (but at least one) has one shingle made of all its words; an empty one has none (its
signature stays at the maximum value and it is never bucketed).
"""

from __future__ import annotations

import numpy as np

from mixer.dedup.normalize import (
    FMIX_M1,
    FMIX_M2,
    MASK64,
    U64,
    fmix64,
    fmix64_py,
    hash_string_py,
)

SHINGLE_MULT = 0x9FB21C651E98DF25
SCHEMES = ("affine32", "legacy")
MERSENNE = (1 << 61) - 1
MAX32 = (1 << 32) - 1
CHUNK_CELLS = 1 << 19  # shingles x permutations computed at once (stays in cache)
AFFINE_CHUNK_CELLS = 1 << 20  # permutations x shingles per block of the affine32 path


# ---------------------------------------------------------------------------- shingle hashes


def _fmix64_(x: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """fmix64 in place (tmp: a scratch array of the same size)."""
    for mult in (FMIX_M1, FMIX_M2, None):
        np.right_shift(x, U64(33), out=tmp)
        x ^= tmp
        if mult is not None:
            x *= U64(mult)
    return x


def _combine(h: np.ndarray, w: np.ndarray) -> np.ndarray:
    return fmix64(h * U64(SHINGLE_MULT) + w)


def shingle_hashes(
    word_hashes: np.ndarray, offsets: np.ndarray, ngram: int
) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hash of every shingle of every document, and the shingle offsets per document.

    word_hashes: 64-bit hashes of the flattened words; offsets: word offsets per document.
    """
    counts = np.diff(offsets)
    short = (counts > 0) & (counts < ngram)
    n_sh = np.where(short, 1, np.maximum(counts - ngram + 1, 0))
    sh_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(n_sh, out=sh_offsets[1:])
    total = len(word_hashes)
    # the window starting at every word position, over the flattened words; a window is a
    # shingle when its document has ngram words left from there, i.e. unless it starts at one
    # of the last ngram-1 words of a document (which covers every word of a short document)
    windows = max(total - ngram + 1, 0)
    h = np.zeros(windows, dtype=np.uint64)
    tmp = np.empty(windows, dtype=np.uint64)
    for k in range(ngram):
        h *= U64(SHINGLE_MULT)
        h += word_hashes[k : windows + k]
        _fmix64_(h, tmp)
    valid = np.ones(windows, dtype=bool)
    for k in range(1, ngram):
        last = offsets[1:] - k
        valid[last[(last >= offsets[:-1]) & (last < windows)]] = False
    out = np.empty(int(sh_offsets[-1]), dtype=np.uint64)
    if short.any():
        docs = np.flatnonzero(short)
        hs = np.zeros(len(docs), dtype=np.uint64)
        for j in range(ngram - 1):  # a short document: one shingle of all its words
            more = counts[docs] > j
            hs[more] = _combine(hs[more], word_hashes[offsets[docs[more]] + j])
        slot = np.zeros(len(out), dtype=bool)
        slot[sh_offsets[docs]] = True
        out[~slot] = h[valid]
        out[sh_offsets[docs]] = hs
    else:
        out[:] = h[valid]
    return (out >> U64(32)).astype(np.uint32), sh_offsets


def shingle_hash32_py(shingle: str | bytes) -> int:
    """The 32-bit hash of one shingle ("w1 w2 ... wn" of normalised words): datasketch's hashfunc."""
    s = shingle.decode("utf-8") if isinstance(shingle, bytes) else shingle
    h = 0
    for w in s.split(" "):
        h = fmix64_py(((h * SHINGLE_MULT) + hash_string_py(w)) & MASK64)
    return h >> 32


def shingles_py(word_list: list[str], ngram: int) -> list[str]:
    if not word_list:
        return []
    if len(word_list) < ngram:
        return [" ".join(word_list)]
    return [" ".join(word_list[i : i + ngram]) for i in range(len(word_list) - ngram + 1)]


# ---------------------------------------------------------------------------- permutations


def permutations(
    num_perm: int, seed: int, scheme: str = "affine32"
) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) exactly as datasketch.MinHash draws them for this num_perm, seed and scheme."""
    gen = np.random.RandomState(seed)
    if scheme == "affine32":
        a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
        return a, b
    if scheme == "legacy":
        ab = np.array(
            [
                (
                    gen.randint(1, MERSENNE, dtype=np.uint64),
                    gen.randint(0, MERSENNE, dtype=np.uint64),
                )
                for _ in range(num_perm)
            ],
            dtype=np.uint64,
        ).T
        return ab[0].copy(), ab[1].copy()
    raise ValueError(f"unknown MinHash scheme {scheme!r} (one of {', '.join(SCHEMES)})")


def _fmix32(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> np.uint32(13))
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> np.uint32(16))


def _permute(hv: np.ndarray, a: np.ndarray, b: np.ndarray, scheme: str) -> np.ndarray:
    """Permuted values, shape (len(hv), num_perm), uint32."""
    if scheme == "affine32":
        m = hv[:, None] * a[None, :]
        m += b[None, :]
        return m
    m = hv.astype(np.uint64)[:, None] * a[None, :]
    m += b[None, :]
    # (m mod 2**61-1) & 0xffffffff without a division: fold the top bits once, then the
    # conditional subtraction of the prime only changes the low 32 bits by the carry c
    m = (m & U64(MERSENNE)) + (m >> U64(61))
    m += (m + U64(1)) >> U64(61)
    return (m & U64(MAX32)).astype(np.uint32)


def signatures(
    hv: np.ndarray, sh_offsets: np.ndarray, a: np.ndarray, b: np.ndarray, scheme: str = "affine32"
) -> np.ndarray:
    """MinHash signature of each document: shape (n_docs, num_perm), uint32 (max value if empty)."""
    n_docs = len(sh_offsets) - 1
    num_perm = len(a)
    if scheme == "affine32":
        return _signatures_affine32(hv, sh_offsets, a, b)
    sig = np.full((n_docs, num_perm), MAX32, dtype=np.uint32)
    if len(hv) == 0:
        return sig
    counts = np.diff(sh_offsets)
    doc_of = np.repeat(np.arange(n_docs), counts)
    step = max(CHUNK_CELLS // num_perm, 256)
    total = len(hv)
    with np.errstate(over="ignore"):
        for lo in range(0, total, step):
            hi = min(lo + step, total)
            m = _permute(hv[lo:hi], a, b, scheme)
            d = doc_of[lo:hi]
            seg = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
            seg_docs = d[seg]
            mins = np.minimum.reduceat(m, seg, axis=0)
            sig[seg_docs] = np.minimum(sig[seg_docs], mins)
    return sig


def _signatures_affine32(
    hv: np.ndarray, sh_offsets: np.ndarray, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """The affine32 scheme with permutations as the outer axis: each block is (num_perm,
    shingles), so the per-document minimum is a `minimum.reduceat` along contiguous rows (about
    three times faster than reducing along the strided axis). A document cut by a block edge is
    finished by taking the minimum with what the previous block found."""
    n_docs = len(sh_offsets) - 1
    num_perm = len(a)
    sig = np.full((num_perm, n_docs), MAX32, dtype=np.uint32)
    total = len(hv)
    if total == 0:
        return np.ascontiguousarray(sig.T)
    hv = _fmix32(hv.astype(np.uint32))
    step = max(AFFINE_CHUNK_CELLS // num_perm, 256)
    a_col, b_col = a[:, None], b[:, None]
    buf = np.empty((num_perm, min(step, total)), dtype=np.uint32)
    for lo in range(0, total, step):
        hi = min(lo + step, total)
        m = buf[:, : hi - lo]
        np.multiply(a_col, hv[None, lo:hi], out=m)  # wraps mod 2**32, as wanted
        m += b_col
        d0 = int(np.searchsorted(sh_offsets, lo, side="right")) - 1
        d1 = int(np.searchsorted(sh_offsets, hi - 1, side="right")) - 1
        docs = np.arange(d0, d1 + 1)
        seg = np.maximum(sh_offsets[d0 : d1 + 1], lo) - lo
        # documents without shingles start where the next one does: drop them
        keep = np.r_[seg[1:] > seg[:-1], True]
        docs, seg = docs[keep], seg[keep]
        mins = np.minimum.reduceat(m, seg, axis=1)
        np.minimum(sig[:, docs], mins, out=mins)
        sig[:, docs] = mins
    return np.ascontiguousarray(sig.T)
