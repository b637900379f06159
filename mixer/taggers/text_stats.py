"""Shared text helpers for the rule taggers: a fast word splitter, line helpers, n-gram ids.

The Gopher/FineWeb rules are defined over "words". datatrove splits English words with spaCy's
rule-based tokenizer; `split_words` follows the same scheme (split on whitespace; peel prefix
and suffix punctuation off each chunk; split some infixes; keep URLs, e-mail addresses,
initialisms and a few abbreviations whole; split contractions "don't" -> "do", "n't") with
regular expressions of our own, and takes a fast path for plain alphanumeric chunks, which are
most of any text. docs/taggers.md gives its measured agreement with spaCy.
"""

from __future__ import annotations

import re
from functools import cached_property
from itertools import chain, compress

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# The characters that make a word "only symbols": all Unicode punctuation and symbols (what is
# neither a word character nor a space) plus "_".
_SYMBOL_ONLY = re.compile(r"^[\W_]+$")
_HAS_ALPHA = re.compile(r"[^\W\d_]")

_ICONS = "\u00a6\u00a9\u00ae\u00b0\u2100-\u214f\u2190-\u21ff\u2300-\u23ff\u2460-\u27bf\u2900-\u2bff\U0001f000-\U0001faff"
_QUOTES = "'\"”“`‘´’‚„»«「」『』（）〔〕【】《》〈〉⟦⟧"
_PUNCT = ",:;!?¿؟¡()\\[\\]{}<>_#*&。？！，、；：～·।،۔؛٪…"
_CURRENCY = "$£€¥฿₽﷼₴₠-₿"
_UNITS = "km²|km³|km|m²|m³|dm|cm|mm|µm|nm|mi|ft|in|yd|kg|mg|µg|g|t|lb|oz|m/s|km/h|kmh|mph|hPa|Pa|mbar|mb|MB|kb|KB|gb|GB|tb|TB|T|G|M|K|ha|m"
# Peeled off the start of a chunk, one at a time.
_PREFIX = re.compile(
    rf"(?:\.\.+|……|\+(?![0-9])|[§%=—–{_PUNCT}{_QUOTES}{_CURRENCY}{_ICONS}]|US\$|C\$|A\$)"
)
# Peeled off the end of a chunk.
_SUFFIX = re.compile(
    rf"(?:\.\.+|……|['’](?:s|S)|—|–|[{_PUNCT}{_QUOTES}{_ICONS}%]"
    rf"|(?<=[0-9])\+|(?<=[0-9])[{_CURRENCY}]"
    rf"|(?<=[0-9])(?:{_UNITS})"
    rf"|(?<=[^\W_A-Z%°'\"”’`)\]}}])\.|(?<=[%°'\"”’`)\]}}])\.|(?<=[A-Z][A-Z])\.)$"
)
# Split inside what is left.
_INFIX = re.compile(
    rf"(\.\.+|…|[{_ICONS}]|(?<=[0-9])[+\-*^](?=[0-9-])|(?<=[a-zß-ÿ'\"])\.(?=[A-Z'\"])"
    r"|(?<=[^\W\d_]),(?=[^\W\d_])|(?<=[^\W_])(?:---|--|——|-|–|—|~)(?=[^\W\d_])"
    r"|(?<=[^\W_])[:<>=/](?=[^\W\d_]))"
)
_URL = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9+.-]*://|www\.)\S+$|[\w.+-]+@[\w-]+(?:\.[\w-]+)+$"
    r"|(?:[a-z0-9\u00a1-\uffff][a-z0-9\u00a1-\uffff_-]*\.)+[a-z\u00a1-\uffff]{2,63}(?::\d+)?(?:[/?#]\S*)?$"
)
# Chunks kept whole although they end in a period or hold punctuation.
_KEEP_WHOLE = frozenset(
    "Mr. Mrs. Ms. Dr. St. Jr. Sr. Inc. Ltd. Co. Corp. vs. e.g. i.e. a.m. p.m. Jan. Feb. Mar. Apr. "
    "Jun. Jul. Aug. Sep. Sept. Oct. Nov. Dec. Mt. Gov. Gen. Rep. Sen. Rev. Bros. Ph.D. "
    "and/or :) :( :-) :-( ): (: ;) :P :D :p :* 8) =] =) :] :/ (= -= '' 's ’s n't".split()
)
_NUMBER_UNIT = re.compile(rf"(\d+)({_UNITS})$")
_INITIALISM = re.compile(r"(?:[^\W\d_]\.)+$")
_CONTRACTION = re.compile(r"(?i)(n['’]t|['’](?:s|m|d|ll|re|ve))$")
# Contractions written without the apostrophe that spaCy still splits ("dont" -> "do", "nt"),
# only where the result is not an ordinary word ("its", "well", "here" stay whole).
_NEG = "ai are ca could did does do had has have is may might must need ought sha should was were wo would"
_PRON_SUFFIXES = {
    "i": "d m ve", "you": "d ll re ve", "he": "d s", "she": "s", "it": "d ll", "we": "d ve",
    "they": "d ll re ve", "that": "d ll s", "there": "d ll re s ve", "these": "d ll re ve",
    "this": "d ll s", "those": "d ll re ve", "what": "d ll re s ve", "when": "d ll re s ve",
    "where": "d ll re s ve", "why": "d ll re s ve", "how": "d ll re s ve", "who": "d ll s ve",
}  # fmt: skip
_BARE_CONTRACTIONS: dict[str, tuple[str, ...]] = {
    stem + "nt": (stem, "nt") for stem in _NEG.split()
}
for _stem, _sufs in _PRON_SUFFIXES.items():
    _BARE_CONTRACTIONS.update({_stem + x: (_stem, x) for x in _sufs.split()})
_BARE_CONTRACTIONS.update(
    {"cannot": ("can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta")}
)
for _k, _v in list(_BARE_CONTRACTIONS.items()):
    _BARE_CONTRACTIONS[_k.capitalize()] = (_v[0].capitalize(), *_v[1:])


# What an infix match starts with (a cheap test before the split with its look-behinds).
_INFIX_START = re.compile(f"[.…{_ICONS}+\\-*^,—–~:<>=/]")


def _infix_split(s: str) -> list[str]:
    if _INFIX_START.search(s) is None:
        return [s]
    return [x for x in _INFIX.split(s) if x]


def _split_chunk(chunk: str) -> list[str]:
    """spaCy-like split of one whitespace-free chunk that is not plain alphanumeric."""
    if chunk in _KEEP_WHOLE:
        return [chunk]
    first = chunk[0]
    if first != "." and chunk.count(first) == len(chunk) and _PREFIX.match(first):
        return list(chunk)  # "=====" or "*****": one token per mark, without quadratic peeling
    prefixes: list[str] = []
    suffixes: list[str] = []
    s = chunk
    while s:
        if s in _KEEP_WHOLE or (len(s) > 1 and "." in s and _INITIALISM.match(s)):
            break
        m = _PREFIX.match(s)
        if m and m.end() < len(s) + 1 and m.end() > 0:
            prefixes.append(m.group())
            s = s[m.end() :]
            continue
        m = _SUFFIX.search(s, max(0, len(s) - 6))  # suffixes are short: look at the end only
        if m and m.start() > 0:
            suffixes.append(m.group())
            s = s[: m.start()]
            continue
        if m and m.start() == 0:
            prefixes.append(s)
            s = ""
        break
    middle: list[str] = []
    if s:
        # (each regex runs only where the characters it needs are present)
        if (
            s in _KEEP_WHOLE
            or ("." in s and _INITIALISM.match(s))
            or (("." in s or "@" in s or ":" in s) and _URL.match(s))
        ):
            middle = [s]
        elif s in _BARE_CONTRACTIONS:
            middle = list(_BARE_CONTRACTIONS[s])
        else:
            c = _CONTRACTION.search(s) if ("'" in s or "’" in s) else None
            if c and c.start() > 0:
                middle = _infix_split(s[: c.start()]) + [c.group()]
            else:
                middle = _infix_split(s)
    suffixes.reverse()
    parts = prefixes + middle + suffixes
    # spaCy re-joins split pieces that spell a special case, e.g. ")" ":" -> "):"
    i = 0
    while i < len(parts) - 1:
        if parts[i] + parts[i + 1] in _KEEP_WHOLE:
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        else:
            i += 1
    return parts


def _split_alnum(chunk: str) -> list[str]:
    if chunk in _BARE_CONTRACTIONS:
        return list(_BARE_CONTRACTIONS[chunk])
    if chunk[0].isdigit() and (m := _NUMBER_UNIT.match(chunk)):
        return list(m.groups())
    return [chunk]


# The commonest chunks that are not plain alphanumeric are an ASCII word ("name", "snake_case",
# "42") between marks that _split_chunk peels off one at a time whatever their neighbours: "(a",
# "a,", '"a":', "__init__", "end.)". For them the peeling loop's outcome is known: every mark a
# token of its own and the word split as a plain chunk. The conditions: the shape below; no
# special case of _KEEP_WHOLE inside the chunk (nothing is kept whole or re-joined); no "…" or
# "+" (two-character and context rules); a period never twice in a row, only after what the
# suffix rule peels a period after, and never after a one-character word (an initialism, "a.").
# `simple_splits` finds them for many chunks at once with Arrow's regex engine; tests compare
# its results with _split_chunk's.
_LEAD = f"§%=—–{_PUNCT.replace('…', '')}{_QUOTES}{_CURRENCY}{_ICONS}"
_TRAIL = f"—–%.{_PUNCT.replace('…', '')}{_QUOTES}{_ICONS}"
_WORD = "[A-Za-z]+(?:_+[A-Za-z]+)*"
# the word may be a call or a dotted name ("f(x", "os.path"): no rule splits those ("." only
# splits before a capital)
_CORE = (
    rf"{_WORD}(?:\({_WORD}|\.[a-z][A-Za-z]*(?:_+[A-Za-z]+)*)*|[0-9]+"
    # or words joined by marks the infix rule splits at between letters ("a-b", "x=y", "a/b")
    rf"|{_WORD}(?:[-~:<>=/]{_WORD})+"
)
_JOINED = re.compile(r"([-~:<>=/])")
_SIMPLE = f"^(?P<lead>[{_LEAD}]*)(?P<core>{_CORE})(?P<trail>[{_TRAIL}]*)$"
_INITIALS = re.compile(r"(?:[A-Za-z]\.)*[A-Za-z]")
_KEEP_WHOLE_INSIDE = "|".join(
    "".join(f"\\x{{{ord(c):x}}}" for c in w) for w in sorted(_KEEP_WHOLE, key=len)
)
_PERIOD_AFTER = frozenset("abcdefghijklmnopqrstuvwxyz0123456789%'\"”’`)]}")
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def simple_splits(arr: pa.Array) -> list[list[str] | None]:
    """_split_chunk's result for each chunk (Arrow strings) of the simple shape above, None for
    the others."""
    out: list[list[str] | None] = [None] * len(arr)
    if not len(arr):
        return out
    ok = pc.and_(
        pc.match_substring_regex(arr, _SIMPLE),
        pc.invert(pc.match_substring_regex(arr, _KEEP_WHOLE_INSIDE)),
    )
    idx = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
    if len(idx) == 0:
        return out
    parts = pc.extract_regex(arr.take(pa.array(idx)), _SIMPLE)
    leads, cores, trails = (parts.field(k).to_pylist() for k in ("lead", "core", "trail"))
    for i, lead, core, trail in zip(idx.tolist(), leads, cores, trails, strict=True):
        if "." in trail and not _periods_peel(core, trail):
            continue
        if core.isalnum():
            middle = _split_alnum(core)
        elif _JOINED.search(core):
            middle = _JOINED.split(core)
        else:
            middle = [core]
        out[i] = [*lead, *middle, *trail]
    return out


def _periods_peel(core: str, trail: str) -> bool:
    if ".." in trail or len(core) < 2 or (trail[0] == "." and _INITIALS.fullmatch(core)):
        return False  # "a.b." is an initialism
    for j, ch in enumerate(trail):
        if ch != ".":
            continue
        before = trail[j - 1] if j else core[-1]
        if before not in _PERIOD_AFTER and not (
            j == 0 and core[-1] in _UPPER and core[-2] in _UPPER
        ):
            return False
    return True


def _split_any(chunk: str) -> list[str]:
    """The words of one whitespace-free chunk."""
    if chunk.isalnum():
        return _split_alnum(chunk)
    return _split_chunk(chunk)


def split_words(text: str) -> list[str]:
    """Words and punctuation tokens of `text`, in order (spaCy-like English splitting).

    Every distinct chunk is split once and memoised; a text's words are then its chunks'
    memoised splits chained together, which runs at C speed (set difference, map, chain)."""
    chunks = text.split()
    cache = _chunk_cache
    missing = set(chunks).difference(cache)
    if missing:
        if len(cache) + len(missing) > _CHUNK_CACHE_SIZE:
            cache.clear()
            missing = set(chunks)
        for chunk in missing:
            cache[chunk] = _split_any(chunk)
    return list(chain.from_iterable(map(cache.__getitem__, chunks)))


# Chunks ("the", "word,", "(the", "end.") repeat a lot: their splits are memoised.
_CHUNK_CACHE_SIZE = 500_000
_chunk_cache: dict[str, list[str]] = {}


STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


# Sentence-ending marks of every script: the Unicode punctuation named full stop, question or
# exclamation mark, danda or interrobang, without the Spanish inverted (sentence-initial) ones.
# Generated with unicodedata (Unicode 15) and written out so importing costs nothing.
TERMINAL_PUNCTUATION = tuple(
    "!.?\u037e\u055c\u055e\u0589\u061f\u06d4\u0701\u0702\u07f9\u0964\u0965\u1362\u1367"
    "\u166e\u1803\u1809\u1944\u1945\u203c\u203d\u2047\u2048\u2049\u2cf9\u2cfa\u2cfb\u2cfe"
    "\u2e2e\u2e3c\u2e53\u2e54\u3002\ua4ff\ua60e\ua60f\ua6f3\ua6f7\ua8ce\ua8cf\uaa5d\uaa5e"
    "\uaa5f\ufe12\ufe15\ufe16\ufe52\ufe56\ufe57\uff01\uff0e\uff1f\uff61\U00010a56"
    "\U00010a57\U00011047\U00011048\U000110c0\U000110c1\U00011141\U00011142\U00011143"
    "\U000111c5\U000111c6\U00011238\U00011239\U0001144b\U0001144c\U000115c2\U000115c3"
    "\U00011641\U00011642\U00011944\U00011c41\U00011c42\U00016a6e\U00016a6f\U00016af5"
    "\U00016e98\U0001bc9f\U0001da88"
)


def is_symbol_only(word: str) -> bool:
    return _SYMBOL_ONLY.match(word) is not None


def has_alpha(word: str) -> bool:
    return _HAS_ALPHA.search(word) is not None


def find_duplicates(items: list[str]) -> tuple[int, int]:
    """(number of items equal to an earlier item, total characters of those items)."""
    seen: set[str] = set()
    dup_items = dup_chars = 0
    for x in items:
        if x in seen:
            dup_items += 1
            dup_chars += len(x)
        else:
            seen.add(x)
    return dup_items, dup_chars


def word_ids(words: list[str]) -> np.ndarray:
    """Dense integer ids of words (equal words share an id), in order."""
    return vocabulary(words)[1]


def vocabulary(words: list[str]) -> tuple[list[str], np.ndarray]:
    """(distinct words in order of first appearance, id of each word). C-speed dict work."""
    distinct = list(dict.fromkeys(words))
    index = {w: i for i, w in enumerate(distinct)}
    return distinct, np.fromiter(map(index.__getitem__, words), dtype=np.int64, count=len(words))


def ngram_ids(ids: np.ndarray, n: int, prev: np.ndarray | None = None) -> np.ndarray:
    """Dense ids of the n-grams starting at each position (len(ids) - n + 1 of them).

    Exact (no hashing): the (n-1)-gram id and the next word id are combined and re-ranked.
    Pass the (n-1)-gram ids as `prev` to build 2..N-grams incrementally.
    """
    count = len(ids) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return ids
    if prev is None:
        prev = ngram_ids(ids, n - 1)
    base = int(ids.max()) + 1 if len(ids) else 1
    combined = prev[:count] * base + ids[n - 1 : n - 1 + count]
    _, inverse = np.unique(combined, return_inverse=True)
    return inverse.astype(np.int64, copy=False)


def ngram_char_lengths(word_lengths: np.ndarray, n: int) -> np.ndarray:
    """Characters of each n-gram joined with single spaces."""
    count = len(word_lengths) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    csum = np.concatenate(([0], np.cumsum(word_lengths, dtype=np.int64)))
    return csum[n : n + count] - csum[:count] + (n - 1)


def top_ngram_chars(keys: np.ndarray, char_lengths: np.ndarray) -> int:
    """Characters of the most frequent n-gram times its count (ties: the one seen first)."""
    if len(keys) == 0:
        return 0
    counts = np.bincount(keys)
    best = counts.max()
    # first position whose n-gram has the top count
    first = int(np.argmax(counts[keys] == best))
    return int(char_lengths[first]) * int(best)


def duplicate_ngram_chars(keys: np.ndarray, char_lengths: np.ndarray, n: int) -> int:
    """Characters in repeated n-grams, scanning left to right and skipping past each repeat.

    At each position: if its n-gram was seen before, count its characters and jump n words
    ahead (so overlapping repeats count once); otherwise remember it and step one word.
    Only positions whose n-gram occurs more than once can matter, so the loop visits those.
    """
    if len(keys) == 0:
        return 0
    counts = np.bincount(keys)
    repeated_pos = np.flatnonzero(counts[keys] > 1)
    if len(repeated_pos) == 0:
        return 0
    return greedy_duplicate_chars(
        repeated_pos.tolist(), keys[repeated_pos].tolist(), char_lengths[repeated_pos].tolist(), n
    )


def greedy_duplicate_chars(positions, keys, chars, n: int) -> int:
    """The left-to-right scan of `duplicate_ngram_chars` over candidate positions (ascending),
    their n-gram keys and character lengths."""
    seen: set[int] = set()
    next_visit = total = 0
    for p, k, c in zip(positions, keys, chars, strict=True):
        if p < next_visit:
            continue
        if k in seen:
            total += c
            next_visit = p + n
        else:
            seen.add(k)
    return total


# ---------------------------------------------------------------------------- batch helpers
#
# A batch's texts are split once (words, lines) and what several taggers need is computed once
# per batch and shared through `text_batch(docs)`: gopher and fineweb both need the words and
# the "\n" lines. Everything below is exact: tests/test_taggers_batch.py compares it with the
# per-document functions above.

# The characters str.isspace() accepts (what str.strip() removes) and those str.splitlines()
# breaks at ("\r\n" counts as one break); tests check both against Python itself.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
LINE_BREAKS = "\n\x0b\x0c\r\x1c\x1d\x1e\x85\u2028\u2029"


def re2_class(chars: str) -> str:
    """An RE2 character class (Arrow's regex engine) of exactly `chars`."""
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"


WS_CLASS = re2_class(WHITESPACE)
SPLITLINES_PATTERN = "\\r\\n|" + re2_class(LINE_BREAKS)


class Pieces:
    """Strings cut out of each document of a batch (lines, paragraphs), flattened in document
    order: `values` (Arrow strings) and `parent` (the document of each piece)."""

    def __init__(self, values: pa.Array, parent: np.ndarray, n_docs: int):
        self.values, self.parent, self.n_docs = values, parent, n_docs

    @classmethod
    def from_lists(cls, lists: pa.ListArray) -> Pieces:
        offsets = lists.offsets.to_numpy()
        lens = np.diff(offsets)
        parent = np.repeat(np.arange(len(lists), dtype=np.int64), lens)
        values = lists.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        return cls(values, parent, len(lists))

    def filter(self, mask: np.ndarray) -> Pieces:
        return Pieces(self.values.filter(pa.array(mask)), self.parent[mask], self.n_docs)

    def per_doc(self, mask: np.ndarray | None = None, weights=None) -> np.ndarray:
        """Per document: how many pieces (where `mask`), or the sum of `weights`."""
        parent = self.parent if mask is None else self.parent[mask]
        if weights is not None and mask is not None:
            weights = weights[mask]
        out = np.bincount(parent, weights=weights, minlength=self.n_docs)
        return out.astype(np.int64) if weights is not None else out

    @property
    def lengths(self) -> np.ndarray:
        """Characters of each piece."""
        return _np(pc.utf8_length(self.values)).astype(np.int64, copy=False)

    def matches(self, pattern: str) -> np.ndarray:
        return _np(pc.match_substring_regex(self.values, pattern)).astype(bool, copy=False)

    def repeats(self) -> np.ndarray:
        """True where a piece equals an earlier piece of the same document (find_duplicates)."""
        n = len(self.values)
        dup = np.zeros(n, dtype=bool)
        if n < 2:
            return dup
        ids = _np(pc.dictionary_encode(self.values).indices).astype(np.int64)
        codes = factorize(self.parent * (int(ids.max()) + 1) + ids)
        # codes count up in order of first appearance: a piece is a repeat when its code is not
        # above every code before it
        dup[1:] = codes[1:] <= np.maximum.accumulate(codes)[:-1]
        return dup

    def duplicates(self) -> tuple[np.ndarray, np.ndarray]:
        """find_duplicates per document: (repeated pieces, their characters)."""
        dup = self.repeats()
        return self.per_doc(dup), self.per_doc(dup, self.lengths)


def _np(arr) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.to_numpy(zero_copy_only=False)


def factorize(values: np.ndarray) -> np.ndarray:
    """Dense ids of `values`, numbered in order of first appearance (0, 1, 2, ...)."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    if values.dtype == np.int64 and 0 <= values.min() and values.max() < 2**31:
        values = values.astype(np.int32)  # Arrow hashes 32-bit keys several times faster
    enc = pc.dictionary_encode(pa.array(values))
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def split_whitespace(texts: pa.Array) -> pa.ListArray:
    """The whitespace chunks of every text, as str.split() gives them, plus an empty piece where
    a text starts or ends with whitespace (Arrow's whitespace is str.isspace(): tests check it).

    Arrow's utf8_split_whitespace (pyarrow 26) decodes one character past the end of a trailing
    whitespace run; after the last text of the data buffer that is padding, and where the
    padding is not valid UTF-8 the run stays in the chunk ("word "). A sentinel text after the
    last one gives it a valid character to read."""
    with_sentinel = pa.concat_arrays([texts.cast(pa.string()), pa.array(["x"], pa.string())])
    return pc.utf8_split_whitespace(with_sentinel).slice(0, len(texts))


class WordBatch:
    """split_words of every document of a batch as integer ids: `ids` (every token of every
    document, in order; equal words share an id), `starts` (document offsets into `ids`,
    n_docs + 1) and per token its `length`, whether it is only symbols (`symbol`) and whether it
    has a letter (`alpha`). Ids index `vocabulary` (the word strings)."""

    def __init__(self, texts: pa.Array):
        memo = _memo
        if memo.too_big():
            memo.clear()
        chunks = Pieces.from_lists(split_whitespace(texts))
        chunks = chunks.filter(_np(pc.binary_length(chunks.values)) > 0)
        enc = pc.dictionary_encode(chunks.values)
        local = enc.indices.to_numpy(zero_copy_only=False)
        distinct = enc.dictionary.to_pylist()
        memo.add_chunks(distinct, enc.dictionary)
        global_id = np.fromiter(
            map(memo.chunk_index.__getitem__, distinct), dtype=np.int64, count=len(distinct)
        )
        cids = global_id[local]
        counts = memo.chunk_count.view()[cids]
        ccum = np.zeros(len(cids) + 1, dtype=np.int64)
        np.cumsum(counts, out=ccum[1:])
        n_tok = int(ccum[-1])
        # the words of chunk occurrence c are chunk_words[chunk_start[c] : + counts[c]]
        src = np.repeat(memo.chunk_start.view()[cids] - ccum[:-1], counts)
        src += np.arange(n_tok, dtype=np.int64)
        self.ids = memo.chunk_words.view()[src]
        chunk_bounds = np.searchsorted(chunks.parent, np.arange(len(texts) + 1))
        self.starts = ccum[chunk_bounds]
        self.lens = np.diff(self.starts)
        self.vocabulary = memo.words
        self.length = memo.word_length.view()[self.ids]
        self.symbol = memo.word_symbol.view()[self.ids]
        self.alpha = memo.word_alpha.view()[self.ids]
        self._index = memo.word_index

    def id_of(self, word: str) -> int | None:
        return self._index.get(word)

    def words(self, i: int) -> list[str]:
        """The words of document i (as split_words gives them)."""
        v = self.vocabulary
        return [v[j] for j in self.ids[self.starts[i] : self.starts[i + 1]].tolist()]


class _Grow:
    """A numpy array that grows by appending."""

    def __init__(self, dtype):
        self.a = np.zeros(1024, dtype=dtype)
        self.n = 0

    def extend(self, values) -> None:
        values = np.asarray(values, dtype=self.a.dtype)
        need = self.n + len(values)
        if need > len(self.a):
            grown = np.zeros(max(need, 2 * len(self.a)), dtype=self.a.dtype)
            grown[: self.n] = self.a[: self.n]
            self.a = grown
        self.a[self.n : need] = values
        self.n = need

    def view(self) -> np.ndarray:
        return self.a[: self.n]


class _SplitMemo:
    """Every whitespace chunk seen (up to a size) -> the ids of its words, and every word -> its
    id and properties, so a chunk is split and a word classified once per process."""

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.chunk_index: dict[str, int] = {}
        self.chunk_start, self.chunk_count = _Grow(np.int64), _Grow(np.int64)
        self.chunk_words = _Grow(np.int64)
        self.word_index: dict[str, int] = {}
        self.words: list[str] = []
        self.word_length, self.word_symbol, self.word_alpha = (
            _Grow(np.int64),
            _Grow(bool),
            _Grow(bool),
        )

    def too_big(self) -> bool:
        return len(self.chunk_index) > _CHUNK_CACHE_SIZE or len(self.words) > _CHUNK_CACHE_SIZE

    def add_chunks(self, chunks: list[str], arr: pa.Array | None = None) -> None:
        """Split and number the chunks not seen yet (`chunks`: distinct; `arr`: the same as
        Arrow strings, if at hand)."""
        index, word_index = self.chunk_index, self.word_index
        is_new = [c not in index for c in chunks]
        new = list(compress(chunks, is_new))
        if not new:
            return
        plain = [c.isalnum() for c in new]
        if arr is None:
            arr = pa.array(chunks, type=pa.string())
        others = arr.filter(pa.array(is_new)).filter(pa.array([not p for p in plain]))
        simple = simple_splits(others)[::-1]
        splits = [
            _split_alnum(c) if p else simple.pop() or _split_chunk(c)
            for c, p in zip(new, plain, strict=True)
        ]
        new_words = [w for w in dict.fromkeys(chain.from_iterable(splits)) if w not in word_index]
        first = len(self.words)
        word_index.update(zip(new_words, range(first, first + len(new_words)), strict=True))
        self.words.extend(new_words)
        self.word_length.extend(np.fromiter(map(len, new_words), np.int64, len(new_words)))
        self.word_symbol.extend([is_symbol_only(w) for w in new_words])
        self.word_alpha.extend([has_alpha(w) for w in new_words])
        counts = np.fromiter(map(len, splits), np.int64, len(splits))
        starts = self.chunk_words.n + np.concatenate(([0], np.cumsum(counts)[:-1]))
        flat = list(chain.from_iterable(splits))
        self.chunk_words.extend(np.fromiter(map(word_index.__getitem__, flat), np.int64, len(flat)))
        self.chunk_start.extend(starts)
        self.chunk_count.extend(counts)
        first = len(index)
        index.update(zip(new, range(first, first + len(new)), strict=True))


_memo = _SplitMemo()


class TextBatch:
    """The texts of one batch (nulls as "") and what taggers derive from them, each computed on
    first use: Python strings, character counts, words, lines split on "\n" and as
    str.splitlines() splits them."""

    def __init__(self, texts):
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks() if texts.num_chunks else pa.array([], type=pa.string())
        if isinstance(texts, pa.Array):
            if texts.type != pa.string():  # e.g. large_string: one batch is far below 2 GB
                texts = texts.cast(pa.string())
            self.arr = pc.fill_null(texts, "")
            self._py = None
        else:
            self._py = ["" if t is None else t for t in texts]
            self.arr = pa.array(self._py, type=pa.string())
        self.n = len(self.arr)

    @property
    def py(self) -> list[str]:
        if self._py is None:
            self._py = self.arr.to_pylist()
        return self._py

    @cached_property
    def n_chars(self) -> np.ndarray:
        return _np(pc.utf8_length(self.arr)).astype(np.int64)

    @cached_property
    def words(self) -> WordBatch:
        return WordBatch(self.arr)

    def count(self, substring: str) -> np.ndarray:
        """Non-overlapping occurrences of `substring` in each text (str.count)."""
        return _np(pc.count_substring(self.arr, substring)).astype(np.int64)

    @cached_property
    def newline_split(self) -> Pieces:
        """text.split("\n") of every text."""
        return Pieces.from_lists(pc.split_pattern(self.arr, "\n"))

    @cached_property
    def splitlines(self) -> Pieces:
        """text.splitlines() of every text: the pieces between line breaks, without the empty
        piece after a final break."""
        p = Pieces.from_lists(pc.split_pattern_regex(self.arr, SPLITLINES_PATTERN))
        last = np.r_[p.parent[1:] != p.parent[:-1], True]
        return p.filter(~(last & (p.lengths == 0)))


def text_batch(docs: pa.Table) -> TextBatch:
    """The TextBatch of a table's `text` column, shared by the taggers that run on the same
    batch in one process (the last batch is kept)."""
    column = docs.column("text")
    key = _column_key(column)
    if _split_cache[0] == key and _split_cache[1] is not None:
        return _split_cache[2]
    tb = TextBatch(column)
    _split_cache[:] = [key, column, tb]
    return tb


def texts_of(docs: pa.Table) -> list[str]:
    """The `text` column as Python strings (null -> "")."""
    return ["" if t is None else t for t in docs.column("text").to_pylist()]


_split_cache: list = [None, None, None]  # [buffer key, the text column (kept alive), batch]


def _column_key(column: pa.ChunkedArray) -> tuple:
    return tuple(
        (len(c), c.offset, *(b.address if b is not None else 0 for b in c.buffers()))
        for c in column.chunks
    )


def cached_split_words(docs: pa.Table) -> list[list[str]]:
    """split_words of every document (from the batch's shared WordBatch)."""
    wb = text_batch(docs).words
    return [wb.words(i) for i in range(len(wb.lens))]


def rows_to_table(
    name: str, rows: list[dict], int_features, float_features, str_features=("reason",)
) -> pa.Table:
    """Feature dicts -> a table with columns '<name>__<feature>' (ints, floats, strings, keep)."""
    cols: dict[str, pa.Array] = {}
    for f in int_features:
        cols[f"{name}__{f}"] = pa.array([r[f] for r in rows], type=pa.int64())
    for f in float_features:
        cols[f"{name}__{f}"] = pa.array([r[f] for r in rows], type=pa.float64())
    for f in str_features:
        cols[f"{name}__{f}"] = pa.array([r[f] for r in rows], type=pa.string())
    cols[f"{name}__keep"] = pa.array([r["keep"] for r in rows], type=pa.bool_())
    return pa.table(cols)
