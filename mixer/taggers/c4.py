"""C4 rules (Raffel et al. 2020, and the C4 reference code), one row per document.

C4 removes lines as well as documents. Line rules (a line is dropped when any holds): a word
longer than max_word_length characters; no terminal punctuation (. ? ! " ') or ending in an
ellipsis; fewer than min_words_per_line words; "javascript"; a policy phrase (terms of use,
cookies...). Document rules: "lorem ipsum" or a curly bracket in a kept line; fewer than
min_sentences sentences in the kept lines. Wikipedia-style citation marks ([1], [edit]) are
removed from lines first. The mixer does not rewrite text: it stores the decision `c4__keep`,
the first failing document rule `c4__reason`, and `c4__removed_chars`, the characters the line
rules (and citation removal) would take out of a kept document.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixer.taggers import text_stats as ts
from mixer.taggers.base import Tagger

CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY_PHRASES = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)

# A sentence ends at terminal punctuation (with closing quotes/brackets) followed by space and
# more text, unless the period ends a known abbreviation or a single initial ("J. Smith").
_SENTENCE_END = re.compile(
    r"""(?<![A-Z])(?<!\b(?:Mr|Ms|Dr|St|vs|Jr|Sr|no|No))(?<!\b(?:Mrs|etc|Inc|Ltd|e\.g|i\.e))(?<!\bProf)"""
    r"""(?:[.!?]+|…)["'”’)\]]*\s+(?=\S)"""
)

INT_FEATURES = ["lines", "kept_lines", "sentences", "removed_chars"]
FLOAT_FEATURES: list[str] = []
LINE_REASONS = ("too_long_word", "no_terminal_punct", "too_few_words", "javascript", "policy")


def count_sentences(line: str) -> int:
    """Sentences in one (stripped, non-empty) line."""
    return 1 + len(_SENTENCE_END.findall(line))


def c4_features(text: str, s: dict) -> dict:
    lines = text.splitlines()
    kept: list[str] = []
    sentences = 0
    reason = ""
    line_drops = dict.fromkeys(LINE_REASONS, 0)
    max_word = s["max_word_length"]
    min_words = s["min_words_per_line"]
    for raw in lines:
        line = raw.strip()
        words = line.split()
        if max_word is not None and max_word >= 0 and any(len(w) > max_word for w in words):
            line_drops["too_long_word"] += 1
            continue
        if s["remove_citations"] and "[" in line:
            line = CITATION.sub("", line)
        if s["filter_no_terminal_punct"] and (
            not line.endswith(END_PUNCTUATION) or line.endswith("...")
        ):
            line_drops["no_terminal_punct"] += 1
            continue
        if len(words) < min_words:
            line_drops["too_few_words"] += 1
            continue
        lower = line.lower()
        if s["filter_lorem_ipsum"] and "lorem ipsum" in lower:
            reason = "lorem_ipsum"
            break
        if s["filter_javascript"] and "javascript" in lower:
            line_drops["javascript"] += 1
            continue
        if s["filter_curly_bracket"] and "{" in line:
            reason = "curly_bracket"
            break
        if s["filter_policy"] and any(p in lower for p in POLICY_PHRASES):
            line_drops["policy"] += 1
            continue
        sentences += count_sentences(line)
        kept.append(line)
    if not reason and sentences < s["min_sentences"]:
        reason = "too_few_sentences"
    kept_text = "\n".join(kept).strip()
    return {
        "lines": len(lines),
        "kept_lines": len(kept),
        "sentences": sentences,
        "removed_chars": len(text) - len(kept_text) if not reason else len(text),
        "reason": reason,
        "keep": reason == "",
        **{f"dropped_{k}_lines": v for k, v in line_drops.items()},
    }


class C4Tagger(Tagger):
    name = "c4"
    version = 1
    defaults = {
        "remove_citations": True,
        "filter_no_terminal_punct": True,
        "min_sentences": 5,
        "min_words_per_line": 3,
        "max_word_length": 1000,
        "filter_lorem_ipsum": True,
        "filter_javascript": True,
        "filter_curly_bracket": True,
        "filter_policy": True,
    }

    def features(self, text: str) -> dict:
        return c4_features(text, self.settings)

    def tag(self, docs: pa.Table) -> pa.Table:
        feats = batch_features(ts.text_batch(docs), self.settings)
        cols: dict[str, pa.Array] = {}
        for f in INT_FEATURES + [f"dropped_{k}_lines" for k in LINE_REASONS]:
            cols[f"{self.name}__{f}"] = pa.array(feats[f], type=pa.int64())
        cols[f"{self.name}__reason"] = pa.array(feats["reason"], type=pa.string())
        cols[f"{self.name}__keep"] = pa.array(feats["keep"], type=pa.bool_())
        return pa.table(cols)


# ------------------------------------------------------------------ the batch (vectorised) path
#
# `c4_features` for a whole batch: every line of every document is classified at once with
# Arrow's string kernels (RE2), then each document keeps what comes before its first breaking
# line. Only the sentence count of kept lines (look-behinds, which RE2 lacks) stays in Python.
# tests/test_taggers_batch.py checks the two paths agree.

_CITATION_RE2 = r"\[\p{Nd}*\]|\[edit\]|\[citation needed\]"  # Python's \d is Unicode's Nd
# Lines that may hold a phrase (RE2's case-insensitive match finds every line whose str.lower()
# holds it, and a few more, e.g. with "ſ" for "s"): only these are checked in Python.
_PHRASES = ("lorem ipsum", "javascript", *POLICY_PHRASES)
_ANY_PHRASE = "(?i)(?:" + "|".join(p.replace(" ", "\\x20") for p in _PHRASES) + ")"
# Lines that may hold more than one sentence: _SENTENCE_END without its look-behinds, so a
# superset; only these are counted in Python.
_MAYBE_SENTENCE_END = f"(?:[.!?]+|…)[\"'”’)\\]]*{ts.WS_CLASS}+[^{ts.WS_CLASS[1:]}"
(KEPT, TOO_LONG, NO_PUNCT, FEW_WORDS, LOREM, JAVASCRIPT, CURLY, POLICY) = range(8)
_DROPS = dict(zip(LINE_REASONS, (TOO_LONG, NO_PUNCT, FEW_WORDS, JAVASCRIPT, POLICY), strict=True))


def _mask(arr, pattern: str) -> np.ndarray:
    return ts._np(pc.match_substring_regex(arr, pattern)).astype(bool)


def _take(arr: pa.Array, idx: np.ndarray) -> list[str]:
    return arr.take(pa.array(idx, type=pa.int64())).to_pylist()


def _fewer_words_than(lines: pa.Array, n: int) -> np.ndarray:
    """len(line.split()) < n for each (stripped) line."""
    if n <= 0:
        return np.zeros(len(lines), dtype=bool)
    word, space = f"[^{ts.WS_CLASS[1:]}+", f"{ts.WS_CLASS}+"
    if n > 1000:  # RE2 repeats at most 1000 times
        return ts._np(pc.count_substring_regex(lines, word)).astype(np.int64) < n
    return ~_mask(lines, f"^{word}(?:{space}{word}){{{n - 1}}}")


def batch_features(batch: ts.TextBatch, s: dict) -> dict[str, np.ndarray]:
    """c4_features of every document of a batch, one array per feature (and reason, keep)."""
    n_docs = batch.n
    lines = batch.splitlines
    n_lines = len(lines.values)
    stripped = pc.utf8_trim(lines.values, ts.WHITESPACE)
    few_words = _fewer_words_than(stripped, s["min_words_per_line"])
    cited = stripped
    if s["remove_citations"]:
        has_bracket = pc.match_substring(stripped, "[")
        (bracket,) = np.nonzero(ts._np(has_bracket).astype(bool))
        cited_some = pc.replace_substring_regex(
            stripped.take(pa.array(bracket, type=pa.int64())), _CITATION_RE2, ""
        )
        cited = pc.replace_with_mask(stripped, has_bracket, cited_some)
    max_word = s["max_word_length"]
    too_long = np.zeros(n_lines, dtype=bool)
    if max_word is not None and max_word >= 0:
        # only a line longer than the limit can hold a word that is
        (long,) = np.nonzero(ts._np(pc.utf8_length(stripped)) > max_word)
        for i, line in zip(long.tolist(), _take(stripped, long), strict=True):
            too_long[i] = any(len(w) > max_word for w in line.split())
    no_punct = np.zeros(n_lines, dtype=bool)
    if s["filter_no_terminal_punct"]:
        last = pc.utf8_slice_codeunits(cited, -1)
        no_punct = ~ts._np(pc.is_in(last, pa.array(END_PUNCTUATION))).astype(bool)
        no_punct |= ts._np(pc.ends_with(cited, "...")).astype(bool)
    lorem, javascript, policy = (np.zeros(n_lines, dtype=bool) for _ in range(3))
    (maybe,) = np.nonzero(_mask(cited, _ANY_PHRASE))
    for i, line in zip(maybe.tolist(), _take(cited, maybe), strict=True):
        lower = line.lower()
        lorem[i] = "lorem ipsum" in lower
        javascript[i] = "javascript" in lower
        policy[i] = any(p in lower for p in POLICY_PHRASES)
    curly = ts._np(pc.match_substring(cited, "{")).astype(bool)
    status = np.select(
        [
            too_long,
            no_punct,
            few_words,
            lorem & bool(s["filter_lorem_ipsum"]),
            javascript & bool(s["filter_javascript"]),
            curly & bool(s["filter_curly_bracket"]),
            policy & bool(s["filter_policy"]),
        ],
        [TOO_LONG, NO_PUNCT, FEW_WORDS, LOREM, JAVASCRIPT, CURLY, POLICY],
        KEPT,
    )
    # a document stops at its first lorem-ipsum or curly-bracket line
    breaks = np.flatnonzero((status == LOREM) | (status == CURLY))
    stop = np.full(n_docs, n_lines, dtype=np.int64)
    broken_docs, first = np.unique(lines.parent[breaks], return_index=True)
    stop[broken_docs] = breaks[first]
    active = np.arange(n_lines) < stop[lines.parent]
    kept = active & (status == KEPT)
    out: dict[str, np.ndarray] = {"lines": lines.per_doc(), "kept_lines": lines.per_doc(kept)}
    for reason, code in _DROPS.items():
        out[f"dropped_{reason}_lines"] = lines.per_doc(active & (status == code))
    kept_idx = np.flatnonzero(kept)
    kept_lines = cited.take(pa.array(kept_idx))
    counts = np.ones(len(kept_idx), dtype=np.int64)
    (multi,) = np.nonzero(_mask(kept_lines, _MAYBE_SENTENCE_END))
    counts[multi] = [count_sentences(line) for line in _take(kept_lines, multi)]
    sentences = np.bincount(lines.parent[kept_idx], weights=counts, minlength=n_docs).astype(
        np.int64
    )
    out["sentences"] = sentences
    # "\n".join(kept).strip(), measured
    kept_parent = lines.parent[kept_idx]
    offsets = np.zeros(n_docs + 1, dtype=np.int32)
    np.cumsum(np.bincount(kept_parent, minlength=n_docs), out=offsets[1:])
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), kept_lines), "\n")
    kept_chars = ts._np(pc.utf8_length(pc.utf8_trim(joined, ts.WHITESPACE))).astype(np.int64)
    reason = np.full(n_docs, "", dtype=object)
    reason[sentences < s["min_sentences"]] = "too_few_sentences"
    reason[broken_docs] = np.where(status[breaks[first]] == LOREM, "lorem_ipsum", "curly_bracket")
    out["removed_chars"] = np.where(reason == "", batch.n_chars - kept_chars, batch.n_chars)
    out["reason"] = reason
    out["keep"] = reason == ""
    return out
