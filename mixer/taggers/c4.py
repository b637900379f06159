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

import pyarrow as pa

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
        rows = [self.features(t) for t in ts.texts_of(docs)]
        ints = INT_FEATURES + [f"dropped_{k}_lines" for k in LINE_REASONS]
        return ts.rows_to_table(self.name, rows, ints, FLOAT_FEATURES)
