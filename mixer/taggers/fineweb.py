"""FineWeb quality rules (Penedo et al. 2024), as datatrove's FineWebQualityFilter defaults.

Over the non-empty lines (split on "\\n"), a document is removed when (first failing rule in
`fineweb__reason`; "empty" when it has no non-empty line):
- line_punct_ratio: the share of lines ending in terminal punctuation is < 0.12;
- short_line_ratio: the share of lines of at most 30 characters is > 0.67;
- char_dup_ratio: characters in repeated lines / non-newline characters > 0.01;
- list_ratio: newlines / words > 0.3.
Terminal punctuation: the sentence-ending marks of all scripts (. ! ? and e.g. 。 । ؟), as in
datatrove >= 0.4 (FineWeb's first release also counted lines ending in a quote: set
`stop_chars` to ".'\"!?" for that).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mixer.taggers import text_stats as ts
from mixer.taggers.base import Tagger

STOP_CHARS = ts.TERMINAL_PUNCTUATION
INT_FEATURES = ["lines", "words"]
FLOAT_FEATURES = ["line_punct_ratio", "short_line_ratio", "char_dup_ratio", "newline_ratio"]


def fineweb_features(
    text: str, n_words: int, s: dict, stop_chars: tuple[str, ...] = STOP_CHARS
) -> dict:
    lines = [line for line in text.split("\n") if line.strip()]
    n_lines = len(lines)
    limit = s["short_line_length"]
    punct = sum(1 for line in lines if line.endswith(stop_chars))
    short = sum(1 for line in lines if len(line) <= limit)
    newlines = text.count("\n")
    chars_no_newline = len(text) - newlines
    feats = {
        "lines": n_lines,
        "words": n_words,
        "line_punct_ratio": punct / n_lines if n_lines else 0.0,
        "short_line_ratio": short / n_lines if n_lines else 0.0,
        "char_dup_ratio": ts.find_duplicates(lines)[1] / chars_no_newline
        if chars_no_newline
        else 0.0,
        "newline_ratio": newlines / max(n_words, 1),
    }
    reason = ""
    ratio = feats["line_punct_ratio"]
    if not n_lines:
        reason = "empty"
    elif ratio < s["line_punct_thr"] and not (ratio == 0 and s["line_punct_exclude_zero"]):
        reason = "line_punct_ratio"
    elif feats["short_line_ratio"] > s["short_line_thr"]:
        reason = "short_line_ratio"
    elif feats["char_dup_ratio"] > s["char_duplicates_ratio"]:
        reason = "char_dup_ratio"
    elif feats["newline_ratio"] > s["new_line_ratio"]:
        reason = "list_ratio"
    feats["reason"] = reason
    feats["keep"] = reason == ""
    return feats


class FineWebTagger(Tagger):
    name = "fineweb"
    version = 1
    defaults = {
        "line_punct_thr": 0.12,
        "line_punct_exclude_zero": False,
        "short_line_thr": 0.67,
        "short_line_length": 30,
        "char_duplicates_ratio": 0.01,
        "new_line_ratio": 0.3,
        "stop_chars": None,  # None: every script's sentence-ending marks
    }

    def __init__(self, **settings):
        super().__init__(**settings)
        chars = self.settings["stop_chars"]
        self._stop_chars = tuple(chars) if chars else STOP_CHARS

    def features(self, text: str, words: list[str] | None = None) -> dict:
        if words is None:
            words = ts.split_words(text)
        return fineweb_features(text, len(words), self.settings, self._stop_chars)

    def tag(self, docs: pa.Table) -> pa.Table:
        feats = batch_features(ts.text_batch(docs), self.settings, self._stop_chars)
        cols: dict[str, pa.Array] = {}
        for f in INT_FEATURES:
            cols[f"{self.name}__{f}"] = pa.array(feats[f], type=pa.int64())
        for f in FLOAT_FEATURES:
            cols[f"{self.name}__{f}"] = pa.array(feats[f], type=pa.float64())
        cols[f"{self.name}__reason"] = pa.array(feats["reason"], type=pa.string())
        cols[f"{self.name}__keep"] = pa.array(feats["keep"], type=pa.bool_())
        return pa.table(cols)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros(len(a)), where=b != 0)


def batch_features(
    batch: ts.TextBatch, s: dict, stop_chars: tuple[str, ...] = STOP_CHARS
) -> dict[str, np.ndarray]:
    """`fineweb_features` of a whole batch, one array per feature (and reason, keep), from
    the batch's shared "\\n" split and word counts."""
    pieces = batch.newline_split
    lines = pieces.filter(pieces.matches(f"[^{ts.WS_CLASS[1:-1]}]"))  # line.strip() != ""
    n_lines = lines.per_doc()
    n_words = batch.words.lens
    ends = "|".join("".join(f"\\x{{{ord(ch):x}}}" for ch in c) for c in stop_chars)
    punct = lines.per_doc(lines.matches(f"(?:{ends})$"))
    short = lines.per_doc(lines.lengths <= s["short_line_length"])
    newlines = batch.count("\n")
    chars_no_newline = batch.n_chars - newlines
    feats = {
        "lines": n_lines,
        "words": n_words,
        "line_punct_ratio": _ratio(punct, n_lines),
        "short_line_ratio": _ratio(short, n_lines),
        "char_dup_ratio": _ratio(lines.duplicates()[1], chars_no_newline),
        "newline_ratio": newlines / np.maximum(n_words, 1),
    }
    ratio = feats["line_punct_ratio"]
    conditions = [
        n_lines == 0,
        (ratio < s["line_punct_thr"]) & ~((ratio == 0) & bool(s["line_punct_exclude_zero"])),
        feats["short_line_ratio"] > s["short_line_thr"],
        feats["char_dup_ratio"] > s["char_duplicates_ratio"],
        feats["newline_ratio"] > s["new_line_ratio"],
    ]
    reasons = ["empty", "line_punct_ratio", "short_line_ratio", "char_dup_ratio", "list_ratio"]
    feats["reason"] = np.select(conditions, reasons, "").astype(object)
    feats["keep"] = feats["reason"] == ""
    return feats
