"""Repeated paragraphs (Dolma-style exact paragraph dedup): records per paragraph, spans to drop.

A paragraph is a line of the text (split on "\\n"). Its key is the hash of its normalised word
sequence (mixer.dedup.normalize), so paragraphs that differ only in case, punctuation, digits,
accents or spacing are the same; paragraphs with no words (blank lines, pure punctuation) are
ignored. Every occurrence of a key after its first in corpus order is flagged. A span is a
character range [start, end) of the original text that covers the paragraph and the newline
that ends it, so deleting the spans leaves the other paragraphs intact.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixer.dedup.normalize import hash_sequences, hash_words, normalize, split_words

SPAN_TYPE = pa.list_(pa.struct([("start", pa.int64()), ("end", pa.int64())]))


def paragraph_records(texts: pa.Array, normalized: pa.Array | None = None) -> dict[str, np.ndarray]:
    """row (index in `texts`), para (index in its text), start, end (chars) and key of each paragraph.

    `normalized`: normalize(texts) when the caller has it (normalisation keeps every newline).
    """
    t = pc.fill_null(texts, "")
    if normalized is None:
        normalized = normalize(t)
    split = pc.split_pattern(t, "\n")
    flat = pc.list_flatten(split)
    rows = pc.list_parent_indices(split).to_numpy().astype(np.int64)
    n = len(flat)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return {"row": empty, "para": empty, "start": empty, "end": empty, "key": empty}
    char_len = pc.utf8_length(flat).to_numpy().astype(np.int64)
    step = char_len + 1  # the paragraph and its newline
    cum = np.cumsum(step) - step
    first_of_doc = np.r_[True, rows[1:] != rows[:-1]]
    doc_first_idx = np.maximum.accumulate(np.where(first_of_doc, np.arange(n), 0))
    start = cum - cum[doc_first_idx]
    para = np.arange(n) - doc_first_idx
    doc_len = pc.utf8_length(t).to_numpy().astype(np.int64)
    end = np.minimum(start + step, doc_len[rows])
    norm_flat = pc.list_flatten(pc.split_pattern(normalized, "\n"))
    if len(norm_flat) != n:  # normalisation changed a line break: normalise paragraph by paragraph
        norm_flat = normalize(flat)
    flat_words, offsets = split_words(norm_flat)
    keys = hash_sequences(hash_words(flat_words), offsets).view(np.int64)
    has_words = np.diff(offsets) > 0
    return {
        "row": rows[has_words],
        "para": para[has_words],
        "start": start[has_words],
        "end": end[has_words],
        "key": keys[has_words],
    }


def spans_column(n_rows: int, rows: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """list<struct<start,end>> per row (empty list for rows without spans); rows sorted."""
    counts = np.bincount(rows, minlength=n_rows) if len(rows) else np.zeros(n_rows, dtype=np.int64)
    offsets = np.zeros(n_rows + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    values = pa.StructArray.from_arrays(
        [pa.array(starts, pa.int64()), pa.array(ends, pa.int64())], names=["start", "end"]
    )
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, type=SPAN_TYPE)


def remove_spans(text: str, spans: list[dict]) -> str:
    """The text without the given spans (what the mixer does with dedup__paragraph_spans)."""
    out, pos = [], 0
    for s in sorted(spans, key=lambda s: s["start"]):
        out.append(text[pos : s["start"]])
        pos = max(pos, s["end"])
    out.append(text[pos:])
    return "".join(out)
