"""Text normalisation and vectorised hashing of words, shingles and word sequences.

Normalisation (the same for exact keys, MinHash shingles and paragraphs):
  1. Unicode NFKD, then combining marks (category Mn) dropped: accents stripped, ligatures split;
  2. lowercase;
  3. every decimal digit (any script) -> "0";
  4. punctuation and symbols (categories P*, S*) removed;
  5. whitespace folded: the text is split on runs of whitespace into words.

Everything runs on Arrow arrays (pyarrow.compute) and numpy over whole batches; there is no
Python object per document. `word_hashes`, the hot path of MinHash and exact keys, works on
the texts' UTF-8 bytes: ASCII bytes are normalised by byte comparisons, runs of other
characters by Arrow's Unicode kernels, words are the runs of non-whitespace bytes and their
hashes come from one cumulative sum per block, without building a string per word. Each function here has a plain-Python twin (`*_py`) that defines
the same value one item at a time: tests compare the two, and `shingle_hash32_py` is the
hash function to give datasketch's MinHash for identical signatures.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixer.hashing import utf8_spans

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


_U8 = np.uint8


def _ascii_keep(data: np.ndarray) -> np.ndarray:
    """_ASCII_KEEP[data] (True for bytes >= 128), by comparisons: several times faster than a
    table lookup, which numpy does with a 64-bit index per byte."""
    keep = data <= _U8(32)
    keep |= data >= _U8(127)
    keep |= (data - _U8(48)) <= _U8(9)  # digits (uint8 arithmetic wraps: one compare a range)
    keep |= ((data | _U8(0x20)) - _U8(97)) <= _U8(25)  # letters
    return keep


def _ascii_map(data: np.ndarray) -> np.ndarray:
    """_ASCII_MAP[data] for ASCII bytes: upper case to lower, digits to "0", by arithmetic."""
    out = data + ((data - _U8(65)) <= _U8(25)).view(np.uint8) * _U8(32)
    digit = out - _U8(48)
    out -= (digit <= _U8(9)).view(np.uint8) * digit
    return out


UNICODE_GAP = 16  # ASCII bytes between two non-ASCII runs that go through Arrow with them
SLICE_BYTES = 256 << 10  # texts are normalised, split and hashed this many bytes at a time


def numbers(arr: pa.Array, dtype) -> np.ndarray:
    """A fixed-width Arrow array without nulls as a zero-copy numpy view. (pyarrow's
    Array.to_numpy imports pandas on first use: 0.3-0.6 s of CPU in every worker process.)"""
    dtype = np.dtype(dtype)
    if arr.null_count or arr.type.bit_width != dtype.itemsize * 8:
        raise ValueError(f"numbers: {arr.type} with {arr.null_count} nulls is not {dtype}")
    buf = arr.buffers()[1]
    if buf is None:
        return np.zeros(0, dtype=dtype)
    return np.frombuffer(buf, dtype=dtype, count=len(arr), offset=arr.offset * dtype.itemsize)


def indices(values: np.ndarray) -> pa.Array:
    """An int64 Arrow array over a numpy array, zero-copy (pa.array imports pandas too)."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def fill_empty(texts: pa.Array) -> pa.Array:
    """Nulls of a large_string array as empty strings (without a Python scalar: see above)."""
    if not texts.null_count:
        return texts
    empty = pa.LargeStringArray.from_buffers(
        len(texts), pa.py_buffer(np.zeros(len(texts) + 1, np.int64)), pa.py_buffer(b"")
    )
    return pc.coalesce(texts, empty)


def _string_buffers(t: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes, offsets from 0) of a string array without nulls, zero-copy."""
    t = t.cast(pa.large_string()) if t.type != pa.large_string() else t
    n = len(t)
    bufs = t.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64, count=n + 1, offset=t.offset * 8)
    lo, hi = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(bufs[2], dtype=np.uint8)[lo:hi] if bufs[2] is not None else None
    return (data if data is not None else np.zeros(0, np.uint8)), offsets - lo


def _strings(offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    """A large_string array over these offsets and bytes. The bytes are copied into a buffer
    with zero padding: some Arrow kernels (utf8_split_whitespace) read a little past the last
    string, and past a bare numpy array that is whatever memory follows."""
    buf = np.zeros(len(data) + 64, dtype=np.uint8)
    buf[: len(data)] = data
    return pa.LargeStringArray.from_buffers(
        len(offsets) - 1, pa.py_buffer(offsets.astype(np.int64, copy=False)), pa.py_buffer(buf)
    )


def _texts(texts: pa.Array) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = texts if texts.type == pa.large_string() else texts.cast(pa.large_string())
    return fill_empty(texts)  # (only where there are nulls: it copies the whole buffer)


def _runs(flag: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) of the maximal runs of True in `flag`, cut at every text boundary."""
    if len(flag) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    inner = np.empty(len(flag), dtype=bool)  # flag[j] and flag[j - 1], in the same text
    inner[0] = False
    np.logical_and(flag[1:], flag[:-1], out=inner[1:])
    cuts = offsets[1:-1]
    inner[cuts[cuts < len(flag)]] = False
    starts = np.flatnonzero(flag & ~inner)
    inner[:-1] = inner[1:]  # now: flag[j + 1] continues the run of j
    inner[-1] = False
    ends = np.flatnonzero(flag & ~inner) + 1
    return starts, ends


def _ascii_buffer(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised bytes and offsets of pure-ASCII texts, by byte comparisons in numpy."""
    keep = _ascii_keep(data)
    dropped = np.flatnonzero(~keep)
    if len(dropped) == 0:
        return _ascii_map(data), offsets
    return _ascii_map(data[keep]), offsets - np.searchsorted(dropped, offsets)


def _mixed_buffer(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised bytes and offsets of texts with non-ASCII characters.

    Normalisation acts on each code point alone (NFKD reorders combining marks only between
    two starters, and every ASCII character is one), so a text can be cut at ASCII characters
    and normalised piece by piece: the runs of non-ASCII characters (with the ASCII gaps of up
    to UNICODE_GAP bytes between them) go through Arrow's Unicode kernels as short strings of
    their own, the ASCII bytes between them through the byte table; a mostly-ASCII text with
    one accented word then costs about what a pure-ASCII one does."""
    rs, re_ = _runs(data >= 0x80, offsets)
    if len(rs) == 0:
        return _ascii_buffer(data, offsets)
    text_of = np.searchsorted(offsets, rs, side="right")
    merge = (rs[1:] - re_[:-1] <= UNICODE_GAP) & (text_of[1:] == text_of[:-1])
    ss, se = rs[np.r_[True, ~merge]], re_[np.r_[~merge, True]]
    k = len(ss)
    # pieces: ASCII, segment, ASCII, ..., segment, ASCII (ASCII pieces may be empty)
    bounds = np.empty(2 * k + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, len(data)
    bounds[1:-1:2], bounds[2:-1:2] = ss, se
    pattern = np.zeros(2 * k + 1, dtype=bool)
    pattern[1::2] = True
    in_seg = np.repeat(pattern, np.diff(bounds))
    seg_off = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(se - ss, out=seg_off[1:])
    segs = _normalize_unicode(_strings(seg_off, data[in_seg])).cast(pa.large_string())
    keep = _ascii_keep(data)
    dropped = np.flatnonzero(~(keep | in_seg))  # ASCII punctuation and symbols (few)
    keep &= ~in_seg

    def kept_before(pos: np.ndarray) -> np.ndarray:  # (at piece bounds and text starts)
        return pos - seg_off[np.searchsorted(se, pos, side="right")] - np.searchsorted(dropped, pos)

    # the ASCII pieces start at 0 and at segment ends; the last one ends at the end
    ascii_pieces = _strings(kept_before(np.r_[bounds[0::2], len(data)]), _ascii_map(data[keep]))
    order = np.empty(2 * k + 1, dtype=np.int64)  # ASCII piece i is row i, segment j row k+1+j
    order[0::2] = np.arange(k + 1)
    order[1::2] = k + 1 + np.arange(k)
    out = pa.concat_arrays([ascii_pieces, segs]).take(indices(order))
    out_data, _ = _string_buffers(out)
    _, u_off = _string_buffers(segs)
    # a text starts in an ASCII piece or at a segment: kept ASCII bytes and whole segments before
    return out_data, kept_before(offsets) + u_off[np.searchsorted(ss, offsets)]


def _slices(offsets: np.ndarray, limit: int):
    """(lo, hi) ranges of consecutive texts of about `limit` bytes (a larger text alone)."""
    n, lo = len(offsets) - 1, 0
    while lo < n:
        hi = int(np.searchsorted(offsets, offsets[lo] + limit, side="right")) - 1
        hi = min(max(hi, lo + 1), n)
        yield lo, hi
        lo = hi


def _normalized_parts(t: pa.Array):
    """(pure ASCII?, rows, normalised bytes, offsets) for slices of about SLICE_BYTES of the
    texts: the pure-ASCII ones, then the others (normalised all at once: Arrow compiles its
    regexes on every call, so its Unicode kernels run once per batch). Rows are picked with
    numpy (Arrow's take of strings is slow on a subset of rows)."""
    is_ascii = numbers(pc.string_is_ascii(t).cast(pa.uint8()), np.uint8).view(bool)
    data, offsets = _string_buffers(t)
    for flag in (True, False):
        rows = np.flatnonzero(is_ascii == flag)
        if len(rows) == 0:
            continue
        d, o = data, offsets
        if len(rows) < len(t):
            lengths = np.diff(offsets)
            d = data[np.repeat(is_ascii == flag, lengths)]
            o = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(lengths[rows], out=o[1:])
        if not flag:
            d, o = _mixed_buffer(d, o)
        for lo, hi in _slices(o, SLICE_BYTES):
            sd = d[o[lo] : o[hi]]
            so = o[lo : hi + 1] - o[lo]
            yield flag, rows[lo:hi], *(_ascii_buffer(sd, so) if flag else (sd, so))


def normalize(texts: pa.Array) -> pa.Array:
    """Normalised text of each element (nulls become empty strings); whitespace kept as is.

    Whitespace (newlines included) passes through untouched, so a normalised text splits into
    the same lines as the original; words are split on whitespace runs afterwards. ASCII
    bytes take a byte-table path in numpy, runs of other characters Arrow's Unicode kernels
    (`_mixed_buffer`); the two agree on ASCII text, and the result equals
    `_normalize_unicode` of each whole text (tests check both).
    """
    t = _texts(texts)
    n = len(t)
    parts = list(_normalized_parts(t))
    lengths = np.zeros(n, dtype=np.int64)
    is_ascii = np.zeros(n, dtype=bool)
    for flag, rows, _, offsets in parts:
        lengths[rows] = np.diff(offsets)
        is_ascii[rows] = flag
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # the parts come in row order within each kind (ASCII first): each kind's bytes go to
    # the places of its rows
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    kinds = [
        np.concatenate([p[2] for p in parts if p[0] == flag] or [data[:0]])
        for flag in (True, False)
    ]
    if is_ascii.all() or not is_ascii.any():
        data = kinds[0] if is_ascii.all() else kinds[1]
    else:
        where = np.repeat(is_ascii, lengths)
        data[where] = kinds[0]
        data[~where] = kinds[1]
    return _strings(offsets, data)


# whitespace as Arrow's utf8_split_whitespace sees it, in normalised text: these ASCII bytes
# and four code points that normalisation keeps (U+0085, U+1680, U+2028, U+2029; the other
# Unicode spaces become U+0020 under NFKD); a test checks every code point
_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
_WS_SEQS = (b"\xc2\x85", b"\xe1\x9a\x80", b"\xe2\x80\xa8", b"\xe2\x80\xa9")


def word_spans(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Words of normalised texts given as bytes and offsets: the byte [start, end) of every
    word (a maximal run of non-whitespace within a text), and the word offsets of each text."""
    ws = (data - _U8(9)) <= _U8(4)  # _WS[data], by comparisons
    ws |= (data - _U8(28)) <= _U8(4)
    if len(data) and data.max() >= 0xC2:
        lead = np.flatnonzero((data == 0xC2) | (data == 0xE1) | (data == 0xE2))
        for seq in _WS_SEQS:
            at = lead[(data[lead] == seq[0]) & (lead + len(seq) <= len(data))]
            for i in range(1, len(seq)):
                at = at[data[at + i] == seq[i]]
            for i in range(len(seq)):
                ws[at + i] = True
    np.logical_not(ws, out=ws)
    starts, ends = _runs(ws, offsets)
    return starts, ends, np.searchsorted(starts, offsets)


_INV_BYTE_BASE = pow(BYTE_BASE, -1, 1 << 64)


def hash_spans(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """hash_strings of the byte spans data[start:end] (in order, not overlapping).

    With P[j] = sum(data[c+i] * BYTE_BASE**i for i < j) from the first span's start c (one
    cumulative sum), a span's polynomial is (P[end] - P[start]) * BYTE_BASE**-(start-c), all
    mod 2**64 (BYTE_BASE is odd, so it has an inverse). Blocks of about SLICE_BYTES."""
    n = len(starts)
    h = np.empty(n, dtype=np.uint64)
    lo = 0
    while lo < n:
        c = int(starts[lo])
        hi = max(int(np.searchsorted(ends, c + SLICE_BYTES, side="right")), lo + 1)
        e = int(ends[hi - 1])
        prefix = np.zeros(e - c + 1, dtype=np.uint64)
        np.cumsum(data[c:e] * _powers(BYTE_BASE, e - c), out=prefix[1:])
        s = starts[lo:hi] - c
        h[lo:hi] = (prefix[ends[lo:hi] - c] - prefix[s]) * _powers(_INV_BYTE_BASE, e - c)[s]
        lo = hi
    return fmix64(h ^ ((ends - starts).astype(np.uint64) * U64(LEN_SALT)))


def word_hashes(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """hash_words of the normalised words of every text, flattened, and the word offsets of
    each text (len n+1): hash_words(words(texts)[0]) without building the words."""
    t = _texts(texts)
    n = len(t)
    parts, counts = [], np.zeros(n, dtype=np.int64)
    for _, rows, data, offsets in _normalized_parts(t):
        starts, ends, woff = word_spans(data, offsets)
        parts.append((rows, woff, hash_spans(data, starts, ends)))
        counts[rows] = np.diff(woff)
    word_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=word_offsets[1:])
    out = np.empty(int(word_offsets[-1]), dtype=np.uint64)
    for rows, woff, h in parts:  # slices of consecutive rows land in place, the others spread
        c = np.diff(woff)
        dest = np.repeat(word_offsets[rows] - woff[:-1], c) + np.arange(len(h), dtype=np.int64)
        out[dest] = h
    return out, word_offsets


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
    if len(strings) == 0:
        return np.zeros(0, dtype=np.uint64)
    data, starts, lengths = utf8_spans(strings)  # read in place, string or large_string
    h = _segment_poly(data, starts, lengths, BYTE_BASE)
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
