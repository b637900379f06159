"""Text normalisation and vectorised hashing of words, shingles and word sequences.

Normalisation (the same for exact keys, MinHash shingles and paragraphs):
  1. Unicode NFKD, then combining marks (category Mn) dropped: accents stripped, ligatures split;
  2. lowercase;
  3. every decimal digit (any script) -> "0";
  4. punctuation and symbols (categories P*, S*) removed;
  5. whitespace folded: the text is split on runs of whitespace into words.

Everything runs on Arrow arrays (pyarrow.compute) and numpy over whole batches; there is no
Python object per document. Each function here has a plain-Python twin (`*_py`) that defines
the same value one item at a time: tests compare the two, and `shingle_hash32_py` is the
hash function to give datasketch's MinHash for identical signatures.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MASK64 = (1 << 64) - 1
BYTE_BASE = 0x100000001B3  # odd multiplier of the per-word polynomial hash (FNV prime)
SEQ_BASE = 0x9E3779B97F4A7C15  # odd multiplier for sequences of word hashes (golden ratio)
LEN_SALT = 0xD6E8FEB86659FD93
FMIX_M1 = 0xFF51AFD7ED558CCD
FMIX_M2 = 0xC4CEB9FE1A85EC53

U64 = np.uint64


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer (an avalanching bijection), element-wise on uint64."""
    x = x ^ (x >> U64(33))
    x = x * U64(FMIX_M1)
    x = x ^ (x >> U64(33))
    x = x * U64(FMIX_M2)
    return x ^ (x >> U64(33))


def fmix64_py(x: int) -> int:
    x ^= x >> 33
    x = (x * FMIX_M1) & MASK64
    x ^= x >> 33
    x = (x * FMIX_M2) & MASK64
    return x ^ (x >> 33)


# ---------------------------------------------------------------------------- normalisation


def _ascii_table() -> tuple[np.ndarray, np.ndarray]:
    """Byte maps for ASCII text: keep (not punctuation/symbol) and the lowercased, digit-folded byte."""
    keep = np.ones(256, dtype=bool)
    out = np.arange(256, dtype=np.uint8)
    for b in range(128):
        ch = chr(b)
        if 32 <= b < 127 and not (ch.isalnum() or ch.isspace()):  # P* and S* in ASCII
            keep[b] = False
        if ch.isdigit():
            out[b] = ord("0")
        elif "A" <= ch <= "Z":
            out[b] = ord(ch.lower())
    return keep, out


_ASCII_KEEP, _ASCII_MAP = _ascii_table()


def _normalize_unicode(t: pa.Array) -> pa.Array:
    t = pc.utf8_normalize(t, "NFKD")
    t = pc.replace_substring_regex(t, r"[\p{Mn}\p{P}\p{S}]+", "")
    t = pc.utf8_lower(t)
    return pc.replace_substring_regex(t, r"\p{Nd}", "0")


def _normalize_ascii(t: pa.Array) -> pa.Array:
    """The same rules for pure-ASCII strings, as one byte-table pass in numpy (regexes are slow)."""
    t = t.cast(pa.large_string()) if t.type == pa.string() else t
    n = len(t)
    if n == 0:
        return t
    bufs = t.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64, count=n + 1, offset=t.offset * 8)
    lo, hi = int(offsets[0]), int(offsets[-1])
    data = (
        np.frombuffer(bufs[2], dtype=np.uint8)[lo:hi]
        if bufs[2] is not None
        else np.zeros(0, np.uint8)
    )
    keep = _ASCII_KEEP[data]
    out = _ASCII_MAP[data][keep]
    starts = offsets[:-1] - lo
    lengths = np.diff(offsets)
    kept = np.zeros(n, dtype=np.int64)
    nonempty = np.flatnonzero(lengths > 0)
    if len(nonempty):
        kept[nonempty] = np.add.reduceat(keep, starts[nonempty], dtype=np.int64)
    new_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(kept, out=new_offsets[1:])
    return pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(new_offsets), pa.py_buffer(out.tobytes())
    )


def normalize(texts: pa.Array) -> pa.Array:
    """Normalised text of each element (nulls become empty strings); whitespace kept as is.

    Whitespace (newlines included) passes through untouched, so a normalised text splits into
    the same lines as the original; words are split on whitespace runs afterwards. Pure-ASCII
    texts take a byte-table path in numpy; the others go through Arrow's Unicode kernels.
    Both give the same result on ASCII text (a test checks it).
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    t = pc.fill_null(texts, "").cast(pa.large_string())
    is_ascii = pc.string_is_ascii(t).to_numpy(zero_copy_only=False)
    if is_ascii.all():
        return _normalize_ascii(t)
    if not is_ascii.any():
        return _normalize_unicode(t)
    ascii_idx = np.flatnonzero(is_ascii)
    other_idx = np.flatnonzero(~is_ascii)
    parts = pa.concat_arrays(
        [
            _normalize_ascii(t.take(pa.array(ascii_idx))),
            _normalize_unicode(t.take(pa.array(other_idx))),
        ]
    )
    position = np.empty(len(t), dtype=np.int64)  # where each original row landed in `parts`
    position[ascii_idx] = np.arange(len(ascii_idx))
    position[other_idx] = len(ascii_idx) + np.arange(len(other_idx))
    return parts.take(pa.array(position))


def split_words(normalized: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Words of already normalised texts, flattened, and the word offsets of each text (len n+1)."""
    split = pc.utf8_split_whitespace(normalized)
    flat = pc.list_flatten(split)
    parents = pc.list_parent_indices(split).to_numpy()
    lengths = pc.binary_length(flat).to_numpy()
    keep = lengths > 0  # leading/trailing whitespace and empty texts give empty words
    if not keep.all():
        flat = flat.filter(pa.array(keep))
        parents = parents[keep]
    counts = np.bincount(parents, minlength=len(normalized))
    offsets = np.zeros(len(normalized) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return flat, offsets


def words(texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Normalised words of every text, flattened, and the word offsets of each text (len n+1)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    return split_words(normalize(texts))


def normalized_words_py(text: str) -> list[str]:
    """The words of one text (through the same Arrow kernels, for tests and reference hashing)."""
    flat, _ = words(pa.array([text]))
    return flat.to_pylist()


# ---------------------------------------------------------------------------- hashing

_pow_cache: dict[int, np.ndarray] = {}


def _powers(base: int, n: int) -> np.ndarray:
    """base**i mod 2**64 for i < n (cached, grown by doubling)."""
    have = _pow_cache.get(base)
    if have is None or len(have) < n:
        size = max(1024, 1 << int(np.ceil(np.log2(max(n, 1)))))
        p = np.empty(size, dtype=np.uint64)
        p[0] = 1
        with np.errstate(over="ignore"):
            # cumulative product wraps modulo 2**64, which is the arithmetic wanted here
            p[1:] = U64(base)
            p = np.cumprod(p, dtype=np.uint64)
        _pow_cache[base] = have = p
    return have[:n]


def _segment_poly(
    values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, base: int
) -> np.ndarray:
    """sum(values[start+i] * base**i) mod 2**64 for each segment (empty segments give 0)."""
    out = np.zeros(len(starts), dtype=np.uint64)
    nonempty = lengths > 0
    if not nonempty.any():
        return out
    total = int(lengths.sum())
    pos = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    idx = np.repeat(starts, lengths) + pos
    terms = values[idx].astype(np.uint64) * _powers(base, int(lengths.max()))[pos]
    seg_starts = (np.cumsum(lengths) - lengths)[nonempty]
    out[nonempty] = np.add.reduceat(terms, seg_starts)
    return out


def hash_words(strings: pa.Array) -> np.ndarray:
    """hash_strings of each element, computed once per distinct value (words repeat a lot)."""
    if len(strings) == 0:
        return np.zeros(0, dtype=np.uint64)
    enc = pc.dictionary_encode(strings)
    return hash_strings(enc.dictionary)[enc.indices.to_numpy()]


def hash_strings(strings: pa.Array) -> np.ndarray:
    """64-bit hash of each string's UTF-8 bytes: fmix64(poly(bytes) ^ len * LEN_SALT)."""
    strings = strings.cast(pa.large_string()) if strings.type == pa.string() else strings
    n = len(strings)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    bufs = strings.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64, count=n + 1, offset=strings.offset * 8)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    h = _segment_poly(data, offsets[:-1], lengths, BYTE_BASE)
    return fmix64(h ^ (lengths.astype(np.uint64) * U64(LEN_SALT)))


def hash_string_py(s: str | bytes) -> int:
    b = s.encode("utf-8") if isinstance(s, str) else s
    h = 0
    p = 1
    for byte in b:
        h = (h + byte * p) & MASK64
        p = (p * BYTE_BASE) & MASK64
    return fmix64_py(h ^ ((len(b) * LEN_SALT) & MASK64))


def hash_sequences(word_hashes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """64-bit hash of each sequence of word hashes (a text's normalised content)."""
    starts = offsets[:-1]
    lengths = np.diff(offsets)
    h = _segment_poly(word_hashes, starts, lengths, SEQ_BASE)
    return fmix64(h ^ (lengths.astype(np.uint64) * U64(LEN_SALT)))


def hash_sequence_py(word_list: list[str]) -> int:
    h = 0
    p = 1
    for w in word_list:
        h = (h + hash_string_py(w) * p) & MASK64
        p = (p * SEQ_BASE) & MASK64
    return fmix64_py(h ^ ((len(word_list) * LEN_SALT) & MASK64))


def text_keys(texts: pa.Array) -> np.ndarray:
    """The exact-dedup key of each text: hash of its normalised word sequence."""
    flat, offsets = words(texts)
    return hash_sequences(hash_words(flat), offsets)
