"""Gopher quality and repetition rules (Rae et al. 2021, appendix A), one row per document.

Every feature is a column; `gopher__keep` applies the thresholds and `gopher__reason` names the
first failing rule ("" when kept), in the order the paper lists them.

Two variants (setting `variant`), which differ only where the paper and datatrove differ:
- "paper" (default): the alphabetic-word share counts words, not punctuation marks; duplicate
  5-10-gram characters are the exact union of the repeated n-grams' characters (overlaps once).
- "datatrove": as datatrove's GopherQualityFilter/GopherRepetitionFilter (punctuation tokens
  count in the alphabetic share's denominator; repeated n-grams found by a greedy left-to-right
  scan that jumps n words after each repeat).
"""

from __future__ import annotations

import re
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixer.errors import MixerError
from mixer.taggers import text_stats as ts
from mixer.taggers.base import Tagger

TOP_NGRAMS = {2: 0.20, 3: 0.18, 4: 0.16}
DUP_NGRAMS = {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_LINE_BREAK = re.compile(r"\n+")

# (column, setting, direction, reason): the document fails when the value is below (min) or
# above (max) the setting. Order = the order in which rules are reported.
QUALITY_RULES = [
    ("words", "min_words", "min", "short_doc"),
    ("words", "max_words", "max", "long_doc"),
    ("mean_word_length", "min_mean_word_length", "min", "short_mean_word_length"),
    ("mean_word_length", "max_mean_word_length", "max", "long_mean_word_length"),
    ("hash_ratio", "max_symbol_word_ratio", "max", "too_many_hashes"),
    ("ellipsis_ratio", "max_symbol_word_ratio", "max", "too_many_ellipsis"),
    ("bullet_lines_ratio", "max_bullet_lines_ratio", "max", "too_many_bullet_lines"),
    ("ellipsis_lines_ratio", "max_ellipsis_lines_ratio", "max", "too_many_ellipsis_lines"),
    ("alpha_words_ratio", "min_alpha_words_ratio", "min", "too_few_alpha_words"),
    ("stop_words", "min_stop_words", "min", "too_few_stop_words"),
]
REPETITION_RULES = [
    ("dup_para_frac", "max_dup_para_frac", "max", "dup_para_frac"),
    ("dup_para_char_frac", "max_dup_para_char_frac", "max", "dup_para_char_frac"),
    ("dup_line_frac", "max_dup_line_frac", "max", "dup_line_frac"),
    ("dup_line_char_frac", "max_dup_line_char_frac", "max", "dup_line_char_frac"),
    *[
        (f"top_{n}gram_char_frac", f"max_top_{n}gram_char_frac", "max", f"top_{n}gram")
        for n in TOP_NGRAMS
    ],
    *[
        (f"dup_{n}gram_char_frac", f"max_dup_{n}gram_char_frac", "max", f"dup_{n}gram")
        for n in DUP_NGRAMS
    ],
]
RULES = QUALITY_RULES + REPETITION_RULES

FLOAT_FEATURES = [
    "mean_word_length",
    "hash_ratio",
    "ellipsis_ratio",
    "bullet_lines_ratio",
    "ellipsis_lines_ratio",
    "alpha_words_ratio",
    "dup_para_frac",
    "dup_para_char_frac",
    "dup_line_frac",
    "dup_line_char_frac",
    *[f"top_{n}gram_char_frac" for n in TOP_NGRAMS],
    *[f"dup_{n}gram_char_frac" for n in DUP_NGRAMS],
]
INT_FEATURES = ["words", "tokens", "stop_words"]


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def word_table(words: list[str]) -> dict:
    """Per-token arrays computed once per distinct word: ids, lengths, symbol-only, has-letter."""
    distinct, ids = ts.vocabulary(words)
    lengths = np.fromiter(map(len, distinct), dtype=np.int64, count=len(distinct))
    symbol = np.fromiter(map(ts.is_symbol_only, distinct), dtype=bool, count=len(distinct))
    alpha = np.fromiter(map(ts.has_alpha, distinct), dtype=bool, count=len(distinct))
    return {
        "distinct": distinct,
        "ids": ids,
        "lengths": lengths[ids],
        "symbol": symbol[ids],
        "alpha": alpha[ids],
    }


def quality_features(
    text: str, words: list[str], stop_words: frozenset, variant: str, table: dict | None = None
) -> dict:
    """Gopher quality features of one document, given its words (split_words)."""
    t = table or word_table(words)
    n_tokens = len(words)
    word_mask = ~t["symbol"]
    n_words = int(word_mask.sum())
    alpha = int(t["alpha"].sum())
    lines = text.splitlines()
    n_lines = len(lines) or 1
    bullets = sum(1 for line in lines if line.lstrip().startswith(("•", "-")))
    ellipsis_lines = sum(1 for line in lines if line.rstrip().endswith(("...", "…")))
    return {
        "words": n_words,
        "tokens": n_tokens,
        "mean_word_length": float(t["lengths"][word_mask].mean()) if n_words else 0.0,
        "hash_ratio": _ratio(text.count("#"), n_tokens),
        "ellipsis_ratio": _ratio(text.count("...") + text.count("…"), n_tokens),
        "bullet_lines_ratio": bullets / n_lines if lines else 0.0,
        "ellipsis_lines_ratio": ellipsis_lines / n_lines if lines else 0.0,
        "alpha_words_ratio": _ratio(alpha, n_words if variant == "paper" else n_tokens),
        "stop_words": len(stop_words.intersection(t["distinct"])),  # distinct stop words present
    }


def _covered_chars(keys: np.ndarray, word_lengths: np.ndarray, n: int) -> int:
    """Characters of the words covered by n-grams that repeat an earlier n-gram, each word
    counted once however many repeats overlap it."""
    if len(keys) == 0:
        return 0
    n_keys = len(keys)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    group_start = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    first_seen = np.empty(int(sorted_keys[-1]) + 1, dtype=np.int64)
    first_seen[sorted_keys[group_start]] = order[group_start]
    repeat_starts = np.flatnonzero(first_seen[keys] < np.arange(n_keys))
    if len(repeat_starts) == 0:
        return 0
    size = len(word_lengths) + 1
    delta = np.bincount(repeat_starts, minlength=size) - np.bincount(
        repeat_starts + n, minlength=size
    )
    covered = np.cumsum(delta[:-1]) > 0
    return int(word_lengths[covered].sum())


def repetition_features(
    text: str, words: list[str], variant: str, table: dict | None = None
) -> dict:
    """Gopher repetition features of one document."""
    n_chars = len(text)
    paragraphs = _PARAGRAPH_BREAK.split(text.strip())
    para_dups, para_dup_chars = ts.find_duplicates(paragraphs)
    lines = _LINE_BREAK.split(text)  # empty lines do not count as repeated lines
    line_dups, line_dup_chars = ts.find_duplicates(lines)
    out = {
        "dup_para_frac": _ratio(para_dups, len(paragraphs)),
        "dup_para_char_frac": _ratio(para_dup_chars, n_chars),
        "dup_line_frac": _ratio(line_dups, len(lines)),
        "dup_line_char_frac": _ratio(line_dup_chars, n_chars),
    }
    t = table or word_table(words)
    ids, lengths = t["ids"], t["lengths"]
    keys = ids
    all_distinct = False  # once every n-gram is distinct, every longer one is too
    for n in range(2, max(DUP_NGRAMS) + 1):
        count = max(0, len(ids) - n + 1)
        if all_distinct:
            keys = np.arange(count, dtype=np.int64)
        else:
            keys = ts.ngram_ids(ids, n, prev=keys)
            all_distinct = count == 0 or int(keys.max()) + 1 == count
        # the most frequent n-gram is measured with the spaces inside it, repeated n-grams
        # by their words' characters (as datatrove does)
        if n in TOP_NGRAMS:
            char_lengths = ts.ngram_char_lengths(lengths, n)
            out[f"top_{n}gram_char_frac"] = _ratio(ts.top_ngram_chars(keys, char_lengths), n_chars)
        if n in DUP_NGRAMS:
            if all_distinct:
                dup = 0
            elif variant == "paper":
                dup = _covered_chars(keys, lengths, n)
            else:
                word_chars = ts.ngram_char_lengths(lengths, n) - (n - 1)
                dup = ts.duplicate_ngram_chars(keys, word_chars, n)
            out[f"dup_{n}gram_char_frac"] = _ratio(dup, n_chars)
    return out


def first_failure(feats: dict, settings: dict, rules) -> str:
    for column, key, direction, reason in rules:
        limit = settings.get(key)
        if limit is None or limit is False:
            continue
        value = feats[column]
        if (direction == "min" and value < limit) or (direction == "max" and value > limit):
            return reason
    return ""


class GopherTagger(Tagger):
    name = "gopher"
    version = 1
    defaults = {
        "variant": "paper",
        "min_words": 50,
        "max_words": 100_000,
        "min_mean_word_length": 3,
        "max_mean_word_length": 10,
        "max_symbol_word_ratio": 0.1,
        "max_bullet_lines_ratio": 0.9,
        "max_ellipsis_lines_ratio": 0.3,
        "min_alpha_words_ratio": 0.8,
        "min_stop_words": 2,
        "stop_words": list(ts.STOP_WORDS),
        "max_dup_line_frac": 0.3,
        "max_dup_para_frac": 0.3,
        "max_dup_line_char_frac": 0.2,
        "max_dup_para_char_frac": 0.2,
        **{f"max_top_{n}gram_char_frac": v for n, v in TOP_NGRAMS.items()},
        **{f"max_dup_{n}gram_char_frac": v for n, v in DUP_NGRAMS.items()},
    }
    columns: ClassVar[list[str]] = INT_FEATURES + FLOAT_FEATURES

    def __init__(self, **settings):
        super().__init__(**settings)
        if self.settings["variant"] not in ("paper", "datatrove"):
            raise MixerError(
                f"gopher.variant must be 'paper' or 'datatrove', not {self.settings['variant']!r}"
            )
        sw = self.settings["stop_words"]
        if isinstance(sw, str):
            sw = [w.strip() for w in sw.split(",") if w.strip()]
        self._stop_words = frozenset(sw)

    def features(self, text: str, words: list[str] | None = None) -> dict:
        if words is None:
            words = ts.split_words(text)
        variant = self.settings["variant"]
        table = word_table(words)
        feats = quality_features(text, words, self._stop_words, variant, table)
        feats.update(repetition_features(text, words, variant, table))
        feats["reason"] = first_failure(feats, self.settings, RULES) if text else "empty"
        feats["keep"] = feats["reason"] == ""
        return feats

    def tag(self, docs: pa.Table) -> pa.Table:
        batch = ts.text_batch(docs)
        feats = batch_features(batch, self._stop_words, self.settings["variant"])
        reasons = batch_first_failure(feats, self.settings, RULES)
        reasons[batch.n_chars == 0] = "empty"
        cols: dict[str, pa.Array] = {}
        for f in INT_FEATURES:
            cols[f"{self.name}__{f}"] = pa.array(feats[f], type=pa.int64())
        for f in FLOAT_FEATURES:
            cols[f"{self.name}__{f}"] = pa.array(feats[f], type=pa.float64())
        cols[f"{self.name}__reason"] = pa.array(list(reasons), type=pa.string())
        cols[f"{self.name}__keep"] = pa.array(np.asarray(reasons) == "", type=pa.bool_())
        return pa.table(cols)


# ------------------------------------------------------------------ the batch (vectorised) path
#
# The same features as `quality_features` + `repetition_features`, computed for a whole batch
# at once: the words of every document are concatenated and encoded once (Arrow's hash kernel,
# ids in order of first appearance), n-gram ids are built for all documents together, and only
# positions whose (n-1)-gram repeats can hold a repeated n-gram, so longer n-grams are computed
# on ever fewer positions. Per document, only the line and paragraph splits stay in Python.
# tests/test_taggers_rules.py checks the two paths give identical values.


_factorize = ts.factorize
_BULLET_LINE = f"^{ts.WS_CLASS}*[•\\-]"  # line.lstrip().startswith(("•", "-"))
_ELLIPSIS_LINE = f"(?:\\.\\.\\.|…){ts.WS_CLASS}*$"  # line.rstrip().endswith(("...", "…"))


def _ratio_arr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros(len(a)), where=b != 0)


def batch_features(
    batch: ts.TextBatch, stop_words: frozenset, variant: str
) -> dict[str, np.ndarray]:
    """Gopher quality and repetition features of a batch, one array per feature."""
    n_docs = batch.n
    wb = batch.words
    lens, starts, ids = wb.lens, wb.starts, wb.ids
    n_tok = int(starts[-1])
    doc = np.repeat(np.arange(n_docs, dtype=np.int64), lens)
    wlen, is_word = wb.length, ~wb.symbol
    n_words = np.bincount(doc[is_word], minlength=n_docs)
    word_chars = np.bincount(doc[is_word], weights=wlen[is_word], minlength=n_docs)
    alpha = np.bincount(doc[wb.alpha], minlength=n_docs)
    stop_ids = [i for i in map(wb.id_of, stop_words) if i is not None]
    stop_at = np.isin(ids, stop_ids) if stop_ids else np.zeros(n_tok, dtype=bool)
    n_ids = max(len(wb.vocabulary), 1)
    stop_pairs = np.unique(doc[stop_at] * n_ids + ids[stop_at])
    stop = np.bincount(stop_pairs // n_ids, minlength=n_docs)

    # lines and paragraphs: split by Arrow for the whole batch
    n_chars = batch.n_chars
    lines = batch.splitlines
    n_lines = lines.per_doc()
    bullets = lines.per_doc(lines.matches(_BULLET_LINE))
    ell_lines = lines.per_doc(lines.matches(_ELLIPSIS_LINE))
    paragraphs = ts.Pieces.from_lists(
        pc.split_pattern_regex(pc.utf8_trim(batch.arr, ts.WHITESPACE), "\n{2,}")
    )
    n_paras = paragraphs.per_doc()
    para_dups, para_dup_chars = paragraphs.duplicates()
    # re.split("\n+", text): the "\n" pieces without the empty ones between two breaks
    pieces = batch.newline_split
    first = np.r_[True, pieces.parent[1:] != pieces.parent[:-1]]
    last = np.r_[pieces.parent[1:] != pieces.parent[:-1], True]
    split_lines = pieces.filter(first | last | (pieces.lengths > 0))
    n_split = split_lines.per_doc()
    line_dups, line_dup_chars = split_lines.duplicates()
    lines_or_1 = np.maximum(n_lines, 1)
    out: dict[str, np.ndarray] = {
        "words": n_words,
        "tokens": lens,
        "mean_word_length": _ratio_arr(word_chars, n_words),
        "hash_ratio": _ratio_arr(batch.count("#"), lens),
        "ellipsis_ratio": _ratio_arr(batch.count("...") + batch.count("…"), lens),
        "bullet_lines_ratio": np.where(n_lines > 0, bullets / lines_or_1, 0.0),
        "ellipsis_lines_ratio": np.where(n_lines > 0, ell_lines / lines_or_1, 0.0),
        "alpha_words_ratio": _ratio_arr(alpha, n_words if variant == "paper" else lens),
        "stop_words": stop,
        "dup_para_frac": _ratio_arr(para_dups, n_paras),
        "dup_para_char_frac": _ratio_arr(para_dup_chars, n_chars),
        "dup_line_frac": _ratio_arr(line_dups, n_split),
        "dup_line_char_frac": _ratio_arr(line_dup_chars, n_chars),
    }

    # n-grams of all documents at once; a unigram id is (document, word), so equal n-grams of
    # different documents never share an id
    csum = np.zeros(n_tok + 1, dtype=np.int64)
    np.cumsum(wlen, out=csum[1:])
    pos_in_doc = np.arange(n_tok, dtype=np.int64) - starts[doc]
    room = lens[doc] - pos_in_doc  # words from each position to its document's end
    uni = _factorize(doc * n_ids + ids)
    base = int(uni.max()) + 1 if n_tok else 1
    prev = uni.copy()  # (n-1)-gram id at each position (meaningful at the candidates only)
    # positions that may start a repeated n-gram: a bigram can repeat only where both its words
    # do (the n-grams left out occur once, which no feature needs to know beyond their absence)
    repeated = np.zeros(n_tok + 1, dtype=bool)
    if n_tok:
        repeated[:n_tok] = np.bincount(uni)[uni] > 1
    cand = np.flatnonzero((room >= 2) & repeated[:n_tok] & repeated[1:])
    for n in range(2, max(DUP_NGRAMS) + 1):
        codes = _factorize(prev[cand] * base + uni[cand + n - 1])
        counts = np.bincount(codes) if len(codes) else np.zeros(0, dtype=np.int64)
        cnt = counts[codes]
        cand_doc = doc[cand]
        if n in TOP_NGRAMS:
            # the most frequent n-gram (first seen on ties) and its characters with spaces;
            # a document whose candidates all occur once: its first n-gram, once
            best = np.zeros(n_docs, dtype=np.int64)
            np.maximum.at(best, cand_doc, cnt)
            first = starts[:-1].copy()
            hit = np.flatnonzero((cnt == best[cand_doc]) & (cnt > 1))
            hit_docs, where = np.unique(cand_doc[hit], return_index=True)
            first[hit_docs] = cand[hit[where]]
            best = np.where(lens >= n, np.maximum(best, 1), 0)
            chars = np.where(
                best > 0,
                csum[np.minimum(first + n, n_tok)] - csum[np.minimum(first, n_tok)] + n - 1,
                0,
            )
            out[f"top_{n}gram_char_frac"] = _ratio_arr(chars * best, n_chars)
        if n in DUP_NGRAMS:
            dup = np.zeros(n_docs, dtype=np.float64)
            if variant == "paper":
                cm = np.maximum.accumulate(codes) if len(codes) else codes
                rep = cand[1:][codes[1:] <= cm[:-1]]
                if len(rep):
                    delta = np.bincount(rep, minlength=n_tok + 1) - np.bincount(
                        rep + n, minlength=n_tok + 1
                    )
                    covered = np.cumsum(delta[:n_tok]) > 0
                    dup = np.bincount(doc[covered], weights=wlen[covered], minlength=n_docs)
            else:
                sel = np.flatnonzero(cnt > 1)
                if len(sel):
                    pos, ks, ds = cand[sel], codes[sel], cand_doc[sel]
                    gram_chars = csum[pos + n] - csum[pos]
                    bounds = np.flatnonzero(np.r_[True, ds[1:] != ds[:-1], True])
                    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                        dup[ds[a]] = ts.greedy_duplicate_chars(
                            pos[a:b].tolist(), ks[a:b].tolist(), gram_chars[a:b].tolist(), n
                        )
            out[f"dup_{n}gram_char_frac"] = _ratio_arr(dup, n_chars)
        # an (n+1)-gram can repeat only where the n-grams at p and p+1 both repeat
        repeated = np.zeros(n_tok + 1, dtype=bool)
        repeated[cand[cnt > 1]] = True
        prev[cand] = codes
        nxt = cand[repeated[cand] & repeated[cand + 1]]
        cand = nxt[room[nxt] >= n + 1]
    return out


def batch_first_failure(feats: dict[str, np.ndarray], settings: dict, rules) -> np.ndarray:
    """`first_failure` for a batch: the first failing rule's reason per document, or ""."""
    n = len(feats["words"])
    reasons = np.full(n, "", dtype=object)
    for column, key, direction, reason in rules:
        limit = settings.get(key)
        if limit is None or limit is False:
            continue
        value = feats[column]
        failed = value < limit if direction == "min" else value > limit
        reasons[(reasons == "") & failed] = reason
    return reasons
