"""The `decon` tagger: overlap of each document with the evaluation sets of a decon index.

Columns:
  decon__ngram_hits      int: the document's word n-grams found in the index (every
                         occurrence counts; an evaluation text shorter than n words counts
                         once per place the whole text occurs)
  decon__ngram_fraction  float: hits / the document's n-grams (at least 1), capped at 1
  decon__matched_spans   JSON text: [[start, end], ...] character offsets of the matched
                         regions, overlapping matches merged ("[]" when none)
  decon__keep            bool: false when hits >= min_hits (and, when min_fraction is set,
                         fraction >= min_fraction)
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import orjson
import pyarrow as pa

from mixer.decon_index import DeconIndex, GramHasher, gram_starts, word_hashes, words_with_pieces
from mixer.errors import MixerError
from mixer.taggers.base import Tagger

# str.isspace for every code point that can be whitespace (none lies above U+3000).
_SPACE = np.array([chr(i).isspace() for i in range(0x3001)] + [False])


def _piece_bounds(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Start and end character offsets of the pieces of text.split() (same whitespace rule)."""
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    space = _SPACE[np.minimum(codes, 0x3001)]
    edges = np.diff(np.concatenate([[True], space, [True]]).astype(np.int8))
    return np.flatnonzero(edges == -1), np.flatnonzero(edges == 1)


def _merge(spans: list[tuple[int, int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return merged


def matched_spans_batch(texts: list[str], index: DeconIndex) -> list[list[list[int]]]:
    """Character spans of each text covered by n-grams of the index (overlaps merged).

    Words are the whitespace-separated pieces of the raw text, normalised as for counting, so
    a span runs from the first character of its first word to the last of its last word
    (punctuation attached to those words included).
    """
    starts_c: list[int] = []
    ends_c: list[int] = []
    pieces: list[str] = []
    doc_pieces = [0]
    for text in texts:
        s, e = _piece_bounds(text)
        starts_c.extend(s.tolist())
        ends_c.extend(e.tolist())
        pieces.extend(text.split())
        doc_pieces.append(len(pieces))
    out: list[list[tuple[int, int]]] = [[] for _ in texts]
    if not pieces:
        return [[] for _ in texts]
    hashes, piece_words = word_hashes(pieces)
    piece_of_word = np.repeat(np.arange(len(pieces)), np.diff(piece_words))
    doc_words = piece_words[np.asarray(doc_pieces)]
    starts_c_a, ends_c_a = np.asarray(starts_c), np.asarray(ends_c)
    hasher = GramHasher(hashes)
    for k in index.lengths:
        starts, owner = gram_starts(doc_words, k)
        hit = index.contains(hasher.grams(starts, k))
        first = starts_c_a[piece_of_word[starts[hit]]]
        last = ends_c_a[piece_of_word[starts[hit] + k - 1]]
        for d, s, e in zip(owner[hit].tolist(), first.tolist(), last.tolist(), strict=True):
            out[d].append((s, e))
    return [_merge(spans) for spans in out]


def matched_spans(text: str, index: DeconIndex) -> list[list[int]]:
    """Character spans of one text covered by n-grams of the index."""
    return matched_spans_batch([text], index)[0]


class DeconTagger(Tagger):
    name: ClassVar[str] = "decon"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {"index": None, "min_hits": 1, "min_fraction": None}
    file_settings: ClassVar[tuple[str, ...]] = ("index",)

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        if not self.settings["index"]:
            raise MixerError(
                "decon.index is required: build one with `mixer decon-index EVAL.jsonl --out INDEX`"
            )
        min_hits = self.settings["min_hits"]
        if not isinstance(min_hits, int) or isinstance(min_hits, bool) or min_hits < 1:
            raise MixerError(f"decon.min_hits must be an integer >= 1 (got {min_hits!r})")
        frac = self.settings["min_fraction"]
        if frac is not None and (not isinstance(frac, (int, float)) or not 0 <= frac <= 1):
            raise MixerError(
                f"decon.min_fraction must be a number in [0, 1] or null (got {frac!r})"
            )
        self.index: DeconIndex | None = None

    def setup(self) -> None:
        self.index = DeconIndex(self.settings["index"])

    def _scan(self, texts) -> dict:
        """Hits per text and where they are (flat word positions of found n-grams)."""
        if self.index is None:
            self.setup()
        words, offsets, piece_index, pieces = words_with_pieces(texts)
        n_texts = len(offsets) - 1
        hits = np.zeros(n_texts, dtype=np.int64)
        hasher = GramHasher(words)
        found_at = []

        def record(k, owner, starts):
            found = self.index.contains(hasher.grams(starts, k))
            hits[:] += np.bincount(owner[found], minlength=n_texts)
            found_at.append((k, owner[found], starts[found]))

        starts, owner = gram_starts(offsets, self.index.ngram)
        record(self.index.ngram, owner, starts)
        if self.index.short_lengths:
            # Short evaluation texts are looked for only where one of their heads (first
            # min_words words) occurs: one pass instead of one per length.
            h = self.index.head_words
            starts, owner = gram_starts(offsets, h)
            at_head = self.index.heads.contains(hasher.grams(starts, h))
            starts, owner = starts[at_head], owner[at_head]
            ends = offsets[1:][owner]
            for k in self.index.short_lengths:
                fits = starts + k <= ends
                record(k, owner[fits], starts[fits])
        grams = np.maximum(np.diff(offsets) - self.index.ngram + 1, 0)
        return {
            "hits": hits,
            "grams": grams,
            "found_at": found_at,
            "piece_index": piece_index,
            "pieces": pieces,
        }

    def count_hits(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """(hits per text, n-grams per text) for an Arrow/list column of texts."""
        scan = self._scan(texts)
        return scan["hits"], scan["grams"]

    def _spans(self, texts: pa.ChunkedArray | pa.Array, scan: dict) -> np.ndarray:
        """JSON spans per text: the found n-grams' first and last words mapped to characters."""
        n = len(scan["hits"])
        out = np.full(n, "[]", dtype=object)
        rows = np.flatnonzero(scan["hits"])
        if not len(rows):
            return out
        # Character bounds of every piece of the hit texts, concatenated; base[d] = where text
        # d's pieces start (-1: its whitespace split differs from Arrow's, redo it alone).
        base = np.full(n, -1, dtype=np.int64)
        all_s, all_e, size = [], [], 0
        for r in rows.tolist():
            text = texts[r].as_py() or ""
            s, e = _piece_bounds(text)
            if len(s) == scan["pieces"][r]:
                base[r] = size
                size += len(s)
                all_s.append(s)
                all_e.append(e)
            else:
                out[r] = orjson.dumps(matched_spans(text, self.index)).decode()
        if not all_s:
            return out
        starts_c, ends_c = np.concatenate(all_s), np.concatenate(all_e)
        pidx = scan["piece_index"]
        owners, firsts, lasts = [], [], []
        for k, owner, starts in scan["found_at"]:
            ok = base[owner] >= 0
            owner, starts = owner[ok], starts[ok]
            owners.append(owner)
            firsts.append(starts_c[base[owner] + pidx[starts]])
            lasts.append(ends_c[base[owner] + pidx[starts + k - 1]])
        owner, first, last = np.concatenate(owners), np.concatenate(firsts), np.concatenate(lasts)
        order = np.lexsort((first, owner))
        owner, first, last = owner[order], first[order], last[order]
        # Merge overlaps within each text: running max of ends (texts are in ascending order,
        # so a key of (owner, end) keeps the running max inside the current text).
        key = (owner << 40) | last
        reach = np.maximum.accumulate(key)
        new = np.ones(len(owner), dtype=bool)
        new[1:] = (owner[1:] != owner[:-1]) | (first[1:] > (reach[:-1] & ((1 << 40) - 1)))
        seg = np.flatnonzero(new)
        span_owner = owner[seg]
        span_start = first[seg]
        span_end = np.maximum.reduceat(last, seg)
        bounds = np.flatnonzero(np.diff(np.concatenate([[-1], span_owner, [-1]])))
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            spans = np.stack([span_start[a:b], span_end[a:b]], axis=1)
            out[span_owner[a]] = orjson.dumps(spans.tolist()).decode()
        return out

    def tag(self, docs: pa.Table) -> pa.Table:
        texts = docs.column("text")
        scan = self._scan(texts)
        hits, grams = scan["hits"], scan["grams"]
        fraction = np.minimum(hits / np.maximum(grams, 1), 1.0)
        contaminated = hits >= self.settings["min_hits"]
        if self.settings["min_fraction"] is not None:
            contaminated &= fraction >= self.settings["min_fraction"]
        spans = self._spans(texts, scan)
        return pa.table(
            {
                "decon__ngram_hits": pa.array(hits, pa.int64()),
                "decon__ngram_fraction": pa.array(fraction, pa.float64()),
                "decon__matched_spans": pa.array(spans.tolist(), pa.string()),
                "decon__keep": pa.array(~contaminated, pa.bool_()),
            }
        )
