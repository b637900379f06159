"""The vectorised batch paths of the gopher and lang taggers give the same values as the
per-document reference implementations, on a varied corpus the test builds (prose, code,
repeated lines and n-grams, lists, symbols, empty and one-word documents, other scripts)."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

from mixer.taggers import text_stats as ts
from mixer.taggers.gopher import FLOAT_FEATURES, INT_FEATURES, GopherTagger, batch_features
from mixer.taggers.lang import LangTagger

WORDS = (
    "the of and to in is was for on that with as by at from it be this are have an which or "
    "river budget council library school water quality measure result (see) e.g. U.S. don't "
    "x=1; foo(bar) {a} [1] -- ... … • # ## 3.14 10% $5 http://example.com/a CVE-2024 ünïcödé"
).split()
CODE = '''def f(x):
    """Return x squared."""
    if x is None:
        return 0
    return x * x


class A:
    def g(self):
        return [f(i) for i in range(10)]
'''


def _corpus(seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = ["", "a", "a a", "word " * 300, "x y x y x y x y x y x y", CODE, CODE * 3]
    docs += ["## heading\n\n## heading\n\n- item\n- item\n• bullet...\n", "!!! ??? ...", "\n\n\n"]
    docs += ["这是一个中文句子。这是另一个句子。", "Привет мир. Это тест.\nПривет мир. Это тест."]
    for _ in range(300):
        n = rng.choice([3, 20, 80, 400, 2000])
        vocab = WORDS[: rng.randint(5, len(WORDS))]
        words = [rng.choice(vocab) for _ in range(n)]
        # repeated spans, lines and paragraphs at random
        if rng.random() < 0.5 and n > 20:
            i = rng.randrange(n - 10)
            span = words[i : i + rng.randint(2, 10)]
            words[rng.randrange(n) : 0] = span * rng.randint(1, 4)
        seps = [rng.choice([" ", " ", " ", "\n", "\n\n"]) for _ in words]
        docs.append("".join(w + s for w, s in zip(words, seps, strict=True)))
    return docs


ODD = [
    "",
    " ",
    "\n",
    "\n\n\n",
    "a\r\nb\rc\x0bd\x0ce\x1cf\x1dg\x1eh\x85i\u2028j\u2029k\n",
    "  • item\n\u3000- dash\n\x1f-x\ttab...\nend …\u00a0\nlast...",
    "para one\n\n\npara one\n\npara two\n \npara two\n\n",
    "line\nline\n\nline\nother line that is long enough to be counted as long.\n",
    "¡Hola! ¿Qué tal? 你好。\nशुभ रात्रि।\nend\n",
    "".join(f"Line {i} is a sentence long enough to count, and it ends well.\n" for i in range(9)),
    "A long sentence that ends with a period, said twice.\n" * 2 + "And once more here.\n",
    "".join(f"Supercalifragilisticexpialidocious antidisestablishment{i}.\n" for i in range(9)),
]


@pytest.mark.parametrize("variant", ["paper", "datatrove"])
def test_gopher_batch_equals_per_document_features(variant):
    texts = _corpus() + ODD
    tagger = GopherTagger(variant=variant)
    words = [ts.split_words(t) for t in texts]
    rows = [tagger.features(t, w) for t, w in zip(texts, words, strict=True)]
    for size in (1, 7, len(texts)):  # batch boundaries must not matter
        got: dict[str, list] = {}
        for i in range(0, len(texts), size):
            f = batch_features(ts.TextBatch(texts[i : i + size]), tagger._stop_words, variant)
            for k, v in f.items():
                got.setdefault(k, []).append(v)
        for k in INT_FEATURES + FLOAT_FEATURES:
            ref = np.array([r[k] for r in rows])
            assert np.array_equal(ref, np.concatenate(got[k])), (variant, size, k)
    table = tagger.tag(pa.table({"text": texts}))
    assert table.column("gopher__reason").to_pylist() == [r["reason"] for r in rows]
    assert table.column("gopher__keep").to_pylist() == [r["keep"] for r in rows]
    # the corpus exercises the repetition rules, not only the trivial cases
    reasons = {r["reason"] for r in rows}
    assert {"", "empty", "short_doc"} <= reasons and len(reasons) >= 6


def test_split_words_cache_gives_the_same_words():
    texts = _corpus(1)
    first = [ts.split_words(t) for t in texts]
    ts._chunk_cache.clear()
    assert [ts.split_words(t) for t in reversed(texts)] == first[::-1]
    assert ts.split_words("Don't stop.") == ["Do", "n't", "stop", "."]


def test_lang_batch_equals_py3langid():
    tagger = LangTagger()
    tagger.setup()
    texts = _corpus(2) + [
        "Le temps était magnifique hier et nous avons marché le long de la rivière.",
        "Das Wetter war gestern herrlich und wir sind am Fluss entlang spaziert.",
        "EL TIEMPO FUE MARAVILLOSO AYER",  # all upper case: lower-cased first, as langid
        "x" * 5000,
    ]
    texts = [t for t in texts if t]
    labels, scores = tagger._batch.classify(texts)
    for text, label, score in zip(texts, labels, scores, strict=True):
        ref_label, ref_score = tagger._langid.classify(text)
        assert label == ref_label, text[:60]
        assert abs(score - ref_score) < 1e-4
    assert {"fr", "de", "zh", "ru", "en", "es"} <= set(labels)


@pytest.mark.parametrize(
    "settings", [{}, {"stop_chars": ".'\"!?", "line_punct_exclude_zero": True}]
)
def test_fineweb_batch_equals_per_document_features(settings):
    from mixer.taggers.fineweb import FineWebTagger

    texts = _corpus(3) + ODD
    tagger = FineWebTagger(**settings)
    rows = [tagger.features(t) for t in texts]
    table = tagger.tag(pa.table({"text": texts}))
    for k in ["lines", "words", "line_punct_ratio", "short_line_ratio", "char_dup_ratio",
              "newline_ratio", "reason", "keep"]:  # fmt: skip
        assert table.column(f"fineweb__{k}").to_pylist() == [r[k] for r in rows], k
    assert len({r["reason"] for r in rows}) >= 4


def test_batch_words_and_lines_equal_python_splits():
    texts = _corpus(4) + ODD + ["x" * 3 + " é" * 5, "tab\tsep\u3000ideographic\u2003em"]
    for size in (1, 5, len(texts)):
        for i in range(0, len(texts), size):
            batch = ts.TextBatch(texts[i : i + size])
            wb = batch.words
            for j, text in enumerate(texts[i : i + size]):
                assert wb.words(j) == ts.split_words(text)
            for pieces, split in (
                (batch.splitlines, str.splitlines),
                (batch.newline_split, lambda t: t.split("\n")),
            ):
                got = [[] for _ in range(batch.n)]
                for v, p in zip(pieces.values.to_pylist(), pieces.parent.tolist(), strict=True):
                    got[p].append(v)
                assert got == [split(t) for t in texts[i : i + size]]
    # the word splitter's memo may be cleared between batches without changing the words
    ts._memo.clear()
    assert ts.TextBatch(["Don't stop."]).words.words(0) == ["Do", "n't", "stop", "."]


def test_whitespace_and_line_break_tables_match_python():
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    assert ts.WHITESPACE == "".join(c for c in chars if c.isspace())
    assert ts.LINE_BREAKS == "".join(c for c in chars if len(f"a{c}b".splitlines()) == 2)


def test_words_of_a_last_text_ending_in_whitespace_before_invalid_bytes():
    # Arrow's utf8_split_whitespace reads one character past a trailing whitespace run; after
    # the data buffer's end that may be anything (here invalid UTF-8)
    data = pa.py_buffer(b"the water \xff\xfe")
    offsets = pa.py_buffer(np.array([0, 4, 10], dtype=np.int32).tobytes())
    arr = pa.Array.from_buffers(pa.string(), 2, [None, offsets, data])
    batch = ts.TextBatch(arr)
    assert [batch.words.words(i) for i in range(2)] == [["the"], ["water"]]


def test_simple_chunk_splits_equal_the_peeling_rules():
    rng = random.Random(5)
    marks = list("()[]{}<>,:;!?\"'`_#*&%=§$£.…+-/@") + ["”", "’", "—", "–", "©", "①", "ℂ", "。"]
    cores = ["a", "ab", "Ab", "aB", "AB", "Mr", "Dr", "Co", "vs", "e", "s", "P", "D", "dont"]
    cores += ["Cannot", "x_y", "snake_case_name", "8", "42", "5km", "km", "http", "www", "its"]
    cores += ["os.path", "np.Array", "a.b", "x.y.z", "f(g", "self.x", "www.example.com", "a__b"]
    cores += ["f(x.y", "e.g", "Ph.D", "a.m", "A.B", "obj.Attr.x", "f(Dr", "well-known", "a-b-c"]
    cores += ["x=y", "and/or", "a:b", "k<v>w", "a~b", "dont-x", "a-9", "f(a-b", "x_y-z", "A-B"]
    chunks = {"(:P", "'s", "Mr.", "e.g.", "U.S.", "a.", "ab..", "AB.", "aB.", "8)", ":)"}
    for _ in range(20_000):
        lead = "".join(rng.choices(marks, k=rng.choice([0, 0, 1, 1, 2, 3])))
        trail = "".join(rng.choices(marks, k=rng.choice([0, 1, 1, 2, 3])))
        chunks.add(lead + rng.choice(cores) + trail)
    chunks = sorted(c for c in chunks if not c.isalnum())
    got = ts.simple_splits(pa.array(chunks))
    simple = [(c, g) for c, g in zip(chunks, got, strict=True) if g is not None]
    assert len(simple) > len(chunks) // 5  # the fast path is taken often
    for chunk, words in simple:
        assert words == ts._split_chunk(chunk), chunk


C4_ODD = [
    "First sentence here. Second one follows! Third? Yes. Fourth and fifth. Sixth.\n" * 2,
    "Intro line with words.\nlorem ipsum dolor sit amet.\nMore words after it here.\n",
    "Some words here. More.\nfunction() { return 1; } ends.\nNever seen after the break.\n",
    "We use cookies on this site.\nThe JavaScript must be on.\nSee the Privacy Policy now.\n",
    "Cited fact [1] here. Also [edit] this [citation needed] one.\n[2] Leading citation goes.\n",
    "A JAVASCRİPT line with a dotted capital I here.\nUſes cookies with a long s here.\n",
    "Short.\nno terminal punctuation here\nwaits... and trails off...\nok then, fine, good.\n",
    "word " * 10
    + "x" * 1200
    + " end.\n"
    + "Mr. Smith went to Washington. He saw J. Doe there. Fine.\n",
    "  \u3000 Leading whitespace line here. \u00a0\n\n\r\nWindows line, ends here.\r\n",
]


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"filter_no_terminal_punct": False, "min_words_per_line": 0, "min_sentences": 1},
        {"remove_citations": False, "max_word_length": None, "filter_curly_bracket": False},
        {"filter_lorem_ipsum": False, "filter_javascript": False, "filter_policy": False},
        {"min_words_per_line": 1, "max_word_length": 5},
        {"min_words_per_line": 1200, "min_sentences": 0},
    ],
)
def test_c4_batch_equals_per_document_features(settings):
    from mixer.taggers.c4 import INT_FEATURES, LINE_REASONS, C4Tagger

    texts = _corpus(6)[:120] + ODD + C4_ODD + [PROSE_PAGE]
    tagger = C4Tagger(**settings)
    rows = [tagger.features(t) for t in texts]
    for size in (1, 7, len(texts)):
        got: list = []
        for i in range(0, len(texts), size):
            got += tagger.tag(pa.table({"text": texts[i : i + size]})).to_pylist()
        cols = INT_FEATURES + [f"dropped_{k}_lines" for k in LINE_REASONS] + ["reason", "keep"]
        for c in cols:
            assert [g[f"c4__{c}"] for g in got] == [r[c] for r in rows], (size, c)
    if not settings:  # every document rule and every line rule fires somewhere
        assert {"", "too_few_sentences", "lorem_ipsum", "curly_bracket"} <= {
            r["reason"] for r in rows
        }
        for k in LINE_REASONS:
            assert sum(r[f"dropped_{k}_lines"] for r in rows) > 0, k


PROSE_PAGE = (
    "The council met on Tuesday. It agreed on the budget. The library will open longer. "
    "The park gets new benches. Residents can write in. The vote passed.\n"
    "Another paragraph follows with more sentences. It has two of them.\n"
)


@pytest.mark.parametrize(
    "column",
    [
        pa.chunked_array([], pa.string()),
        pa.array(["Hello world. This is it.  ", None, ""], pa.large_string()),
        pa.array([None, None], pa.string()),
        pa.chunked_array([["a b c.", "x "], ["more text here.\n\nmore text here.\n"]]),
        pa.array(["zero", "one two three. four five six. ", "two  "]).slice(1, 2),
    ],
    ids=["no-chunks", "large-string", "all-null", "two-chunks", "sliced"],
)
def test_batch_paths_take_any_text_column_layout(column):
    from mixer.taggers import make_tagger

    table = pa.table({"text": column})
    texts = ["" if t is None else t for t in table.column("text").to_pylist()]
    for name in ("gopher", "c4", "fineweb"):
        tagger = make_tagger(name)
        out = tagger.tag(table)
        ref = [tagger.features(t) for t in texts]
        for col in out.column_names:
            feature = col.split("__", 1)[1]
            assert out.column(col).to_pylist() == [r[feature] for r in ref], (name, col)
