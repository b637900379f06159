"""Gopher, C4 and FineWeb rule taggers: word splitting, each rule, the n-gram helpers against
naive references, and robustness on odd text."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from mixer.errors import MixerError
from mixer.taggers import make_tagger
from mixer.taggers import text_stats as ts
from mixer.taggers.c4 import C4Tagger
from mixer.taggers.fineweb import FineWebTagger
from mixer.taggers.gopher import GopherTagger, _covered_chars

PROSE = (
    "The committee met on Tuesday to discuss the budget for the coming year. Members agreed that "
    "the library should have longer opening hours, and that the park needs new benches. "
    "A local teacher asked whether the school could share the sports field with the community. "
    "After a long debate, the chair proposed a vote, and the motion passed with a clear majority. "
    "Residents who want to comment can write to the council office before the end of the month.\n"
)
PROSE2 = (
    "Scientists studying the river found that water quality has improved over the last decade. "
    "They measured oxygen levels at twelve sites and compared them with records from the past. "
    "Fish populations have returned to several stretches where they had not been seen for years.\n"
)


def _table(texts):
    return pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts})


@pytest.mark.parametrize(
    "text, words",
    [
        ("Don't stop.", ["Do", "n't", "stop", "."]),
        ("It's 3.14, see U.S. law", ["It", "'s", "3.14", ",", "see", "U.S.", "law"]),
        ("(https://example.com/a).", ["(", "https://example.com/a", ")", "."]),
        ("e-mail and/or x86_64 CVE-2024", ["e", "-", "mail", "and/or", "x86_64", "CVE-2024"]),
        ('"quoted" hello... 10% $5', ['"', "quoted", '"', "hello", "...", "10", "%", "$", "5"]),
        ("end.Next 4GB dont", ["end", ".", "Next", "4", "GB", "do", "nt"]),
        ("*** foo():", ["*", "*", "*", "foo", "(", "):"]),
    ],
)
def test_split_words_follows_spacy_english_rules(text, words):
    assert ts.split_words(text) == words


def test_gopher_keeps_prose_and_names_failing_rules():
    g = GopherTagger()
    assert g.features(PROSE + "\n" + PROSE2)["keep"]
    assert g.features("too short to count")["reason"] == "short_doc"
    hashes = " ".join(f"#tag{i} word" for i in range(60))
    assert g.features(hashes)["reason"] == "too_many_hashes"
    bullets = "\n".join(f"• item number {i} is a fine thing to have and to use" for i in range(30))
    assert g.features(bullets)["reason"] == "too_many_bullet_lines"
    no_stop = " ".join(["apple banana cherry durian elderberry fig grape"] * 10)
    assert g.features(no_stop)["reason"] in ("too_few_stop_words", "top_2gram")
    repeated = "\n".join(["The same line appears here again and again in the text."] * 20 + [PROSE])
    assert g.features(repeated)["reason"] == "dup_line_frac"
    assert g.features("")["reason"] == "empty"


def test_gopher_variants_differ_only_in_alpha_share_and_ngram_overlap():
    text = "Numbers, numbers: 1, 2, 3. " + PROSE
    paper = GopherTagger().features(text)
    dt = GopherTagger(variant="datatrove").features(text)
    assert paper["alpha_words_ratio"] > dt["alpha_words_ratio"]  # punctuation is not a word
    assert paper["words"] == dt["words"] and paper["stop_words"] == dt["stop_words"]
    with pytest.raises(MixerError):
        GopherTagger(variant="nope")
    with pytest.raises(MixerError, match="unknown setting gopher.min_word"):
        make_tagger("gopher", {"min_word": 3})


def test_gopher_thresholds_are_settings():
    assert not GopherTagger().features("word " * 40)["keep"]
    no_top = {f"max_top_{n}gram_char_frac": None for n in (2, 3, 4)}
    short_ok = GopherTagger(min_words=10, min_stop_words=0, **no_top)
    feats = short_ok.features("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu.")
    assert feats["reason"] == "" and feats["keep"]


def _naive_greedy(words, n):
    seen, i, total = set(), 0, 0
    while i < len(words) - n + 1:
        g = tuple(words[i : i + n])
        if g in seen:
            total += sum(len(w) for w in g)
            i += n
        else:
            seen.add(g)
            i += 1
    return total


def _naive_union(words, n):
    first, covered = {}, set()
    for i in range(len(words) - n + 1):
        g = tuple(words[i : i + n])
        if g in first:
            covered.update(range(i, i + n))
        else:
            first[g] = i
    return sum(len(words[i]) for i in covered)


def _naive_top(words, n):
    grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0
    best, count = Counter(grams).most_common(1)[0]
    return len(best) * count


@pytest.mark.parametrize("seed", range(6))
def test_ngram_helpers_match_naive_references(seed):
    rng = random.Random(seed)
    vocab = ["a", "bb", "ccc", "the", "cat", "sat", "x"]
    words = [rng.choice(vocab[: 2 + seed]) for _ in range(rng.randint(0, 120))]
    ids = ts.word_ids(words)
    lengths = np.array([len(w) for w in words], dtype=np.int64)
    keys = ids
    for n in range(2, 11):
        keys = ts.ngram_ids(ids, n, prev=keys)
        assert len(keys) == max(0, len(words) - n + 1)
        with_spaces = ts.ngram_char_lengths(lengths, n)
        assert ts.top_ngram_chars(keys, with_spaces) == _naive_top(words, n)
        assert ts.duplicate_ngram_chars(keys, with_spaces - (n - 1), n) == _naive_greedy(words, n)
        assert _covered_chars(keys, lengths, n) == _naive_union(words, n)


def test_c4_line_rules_and_removed_chars():
    c4 = C4Tagger()
    good = "\n".join(
        ["This line is a proper sentence. It has two sentences in it."] * 3
        + ["menu | home | login", "Enable JavaScript to see it."]
    )
    f = c4.features(good)
    assert f["keep"] and f["sentences"] == 6 and f["kept_lines"] == 3
    assert f["dropped_no_terminal_punct_lines"] == 1 and f["dropped_javascript_lines"] == 1
    assert (
        f["removed_chars"] == len("menu | home | login") + len("Enable JavaScript to see it.") + 2
    )
    assert c4.features(good + "\nLorem ipsum dolor sit amet, it says.")["reason"] == "lorem_ipsum"
    assert (
        c4.features(good + "\nA function body { is here } for sure.")["reason"] == "curly_bracket"
    )
    assert c4.features("One short sentence here.")["reason"] == "too_few_sentences"
    assert c4.features("We use cookies to improve things. " * 6)["kept_lines"] == 0


def test_fineweb_rules():
    fw = FineWebTagger()
    assert fw.features(PROSE + PROSE2)["keep"]
    assert (
        fw.features("no punctuation at all here in this line\nnor here in this one")["reason"]
        == "line_punct_ratio"
    )
    short = "\n".join(["Short one."] * 3 + [PROSE.strip()])
    assert fw.features(short)["reason"] in ("short_line_ratio", "char_dup_ratio")
    dup = PROSE + "A repeated line that is long enough to matter here.\n" * 3
    assert fw.features(dup)["reason"] == "char_dup_ratio"
    listy = "\n".join(f"Item number {i} of the list." for i in range(40)) + "\n" + PROSE
    assert fw.features(listy)["reason"] in ("list_ratio", "short_line_ratio")
    assert fw.features("\n\n")["reason"] == "empty"


ODD_TEXTS = [
    "",
    "   \n\t  \n",
    "#$%^&*()!@ ... ??? ///",
    "שלום עולם. זהו טקסט בעברית שנכתב מימין לשמאל. " * 5,
    "مرحبا بالعالم. هذا نص عربي. " * 5,
    "这是一个中文句子。我们测试分词。" * 10,
    "emoji 😀🎉👍 party 🎈 time! " * 10,
    "control \x00\x01\x07\x1b[0m chars\x0b\x0c here.",
    "replacement \ufffd\ufffd chars from lone surrogates \ufffd.",
    "\u2028line\u2029para\x85next",
]


@pytest.mark.parametrize("name", ["gopher", "c4", "fineweb"])
def test_rule_taggers_never_crash_and_give_finite_features(name):
    tagger = make_tagger(name)
    tagger.setup()
    out = tagger.tag(_table(ODD_TEXTS + [None]))
    assert out.num_rows == len(ODD_TEXTS) + 1
    assert out.column(f"{name}__keep").null_count == 0
    for col in out.column_names:
        if pa.types.is_floating(out.schema.field(col).type):
            assert all(math.isfinite(v) for v in out.column(col).to_pylist()), col


def test_ten_megabyte_document_is_tagged():
    big = (PROSE + "\n") * (10_000_000 // len(PROSE))
    table = _table([big])
    rows = {
        name: make_tagger(name).tag(table).to_pylist()[0] for name in ("gopher", "c4", "fineweb")
    }
    # the same paragraph 20k times is the textbook repetition case
    assert rows["gopher"]["gopher__reason"] == "long_doc"  # > 100,000 words comes first
    assert rows["gopher"]["gopher__dup_para_frac"] > 0.99
    assert rows["fineweb"]["fineweb__reason"] == "char_dup_ratio"
    assert rows["c4"]["c4__keep"] and rows["c4"]["c4__removed_chars"] < len(big)


def test_shared_word_cache_is_per_batch():
    a, b = _table([PROSE]), _table(["other words entirely here"])
    assert ts.cached_split_words(a)[0] == ts.split_words(PROSE)
    assert ts.cached_split_words(b)[0] == ["other", "words", "entirely", "here"]
