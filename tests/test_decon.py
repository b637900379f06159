"""Decontamination: the n-gram index of evaluation sets and the `decon` tagger."""

from __future__ import annotations

import json
import random

import numpy as np
import orjson
import pyarrow as pa
import pytest
from click.testing import CliRunner

from mixer import decon_index
from mixer.cli import main
from mixer.decon_index import (
    DeconIndex,
    GramHasher,
    build_index,
    gram_starts,
    record_text,
    word_hashes,
)
from mixer.errors import MixerError
from mixer.hashing import mix64
from mixer.taggers.decon import DeconTagger

VOCAB = (
    "the a of to and in is was for on that with as by at from it an be this which or are "
    "river city number train paper model value table light water energy market system house "
    "music garden school window letter planet engine forest story animal season bridge coffee "
    "seven blue quickly under between before after during people small large early late"
).split()


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


@pytest.fixture(scope="module")
def eval_set(tmp_path_factory):
    """An evaluation JSONL with questions/answers/choices, plain text records and short ones."""
    rng = random.Random(7)
    d = tmp_path_factory.mktemp("eval")
    records = []
    for i in range(40):
        records.append(
            {
                "question": f"Question {i}: " + _sentence(rng, 18) + "?",
                "answer": _sentence(rng, 4),
                "choices": [_sentence(rng, 3) for _ in range(4)],
            }
        )
    for _ in range(20):
        records.append({"text": _sentence(rng, 30) + "."})
    records.append({"question": "What is two plus two?", "answer": "four"})  # 6 words: one gram
    records.append({"text": "yes"})  # under min_words: skipped
    path = d / "eval.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    index = d / "eval.decon"
    manifest = build_index([path], index)
    return {"records": records, "path": path, "index": index, "manifest": manifest}


def _tag(index, texts, **settings):
    tagger = DeconTagger(index=str(index), **settings)
    tagger.setup()
    return tagger.tag(pa.table({"text": pa.array(texts, pa.string())})).to_pylist()


def _eval_texts(records):
    return [record_text(r, None) for r in records]


def test_gram_hasher_matches_direct_polynomial():
    rng = np.random.default_rng(0)
    words = rng.integers(0, 2**63, size=50, dtype=np.uint64)
    hasher = GramHasher(words)
    p, salt = int(decon_index._P), int(decon_index._LEN_SALT)
    for k in (1, 5, 13):
        fast = hasher.grams(np.arange(50 - k + 1), k)
        for i in (0, 7, 50 - k):
            poly = 0
            for w in words[i : i + k]:
                poly = (poly * p + int(w)) % (1 << 64)
            direct = mix64(np.array([(poly + k * salt) % (1 << 64)], dtype=np.uint64))
            assert fast[i] == direct[0]
    # order matters, length matters
    assert (
        hasher.grams(np.array([0]), 3)[0] != GramHasher(words[[1, 0, 2]]).grams(np.array([0]), 3)[0]
    )
    assert hasher.grams(np.array([0]), 3)[0] != hasher.grams(np.array([0]), 4)[0]


def test_normalisation_ignores_case_punctuation_and_spacing():
    a, _ = word_hashes(["Hello, World!  It's 3+4=7 -- ok"])
    b, _ = word_hashes(["hello world its 347 ok"])
    assert a.tolist() == b.tolist()
    h, offsets = word_hashes(["", "  ", None, " a  b ", "!!"])
    assert offsets.tolist() == [0, 0, 0, 0, 2, 2]


def test_gram_starts_stay_inside_each_text():
    starts, owner = gram_starts(np.array([0, 5, 6, 20]), 3)
    assert owner.tolist() == [0, 0, 0] + [2] * 12
    assert starts.tolist() == [0, 1, 2] + list(range(6, 18))


def test_manifest_counts(eval_set):
    m = eval_set["manifest"]
    assert m["records"] == 62 and m["ngram"] == 13
    assert m["short_texts"] == 1 and m["skipped_short"] == 1
    assert m["short_lengths"] == [6]
    assert m["ngrams"] > 40 * 10
    index = DeconIndex(eval_set["index"])
    assert np.all(np.diff(index.hashes.astype(np.uint64)) > 0)  # sorted, unique


def test_every_verbatim_copy_found_and_no_false_positives(eval_set):
    rng = random.Random(11)
    texts = _eval_texts(eval_set["records"][:60])
    planted = [f"{_sentence(rng, 40)}. {t} {_sentence(rng, 25)}." for t in texts]
    # unrelated documents: the same vocabulary, shuffled; the evaluation words out of order
    unrelated = [_sentence(rng, 120) for _ in range(200)]
    for t in texts[:30]:
        words = t.split()
        rng.shuffle(words)
        unrelated.append(" ".join(words))
    rows = _tag(eval_set["index"], planted + unrelated)
    for row in rows[: len(planted)]:
        assert row["decon__ngram_hits"] >= 1 and row["decon__keep"] is False
    for row in rows[len(planted) :]:
        assert row["decon__ngram_hits"] == 0 and row["decon__keep"] is True
        assert row["decon__matched_spans"] == "[]"


def test_copy_with_changed_case_and_punctuation_found(eval_set):
    q = eval_set["records"][3]["question"]
    words = q.split()
    mangled = " ".join(w.upper() if i % 2 else w.capitalize() for i, w in enumerate(words))
    mangled = mangled.replace(" ", ",  ", 3).replace("?", "!!!").replace(":", " -")
    doc = "Unrelated intro text here. " + mangled + " And an outro."
    (row,) = _tag(eval_set["index"], [doc])
    assert row["decon__ngram_hits"] >= len(words) - 13 + 1 - 1
    assert row["decon__keep"] is False


def test_matched_spans_cover_the_planted_copy(eval_set):
    q = eval_set["records"][5]["question"]
    prefix, suffix = "Some text before it. ", " and text after it"
    (row,) = _tag(eval_set["index"], [prefix + q + suffix])
    spans = orjson.loads(row["decon__matched_spans"])
    assert spans == [[len(prefix), len(prefix) + len(q)]]


def test_short_eval_text_is_one_gram(eval_set):
    rows = _tag(
        eval_set["index"],
        ["Quiz: WHAT is two plus two? Four! Right.", "what is two plus three four", "yes yes yes"],
    )
    assert [r["decon__ngram_hits"] for r in rows] == [1, 0, 0]
    assert orjson.loads(rows[0]["decon__matched_spans"]) == [[6, 33]]


def test_min_hits_and_fraction(eval_set):
    rng = random.Random(3)
    q = eval_set["records"][0]["question"]  # 20 words: 8 n-grams
    doc = q + " " + _sentence(rng, 400)
    (row,) = _tag(eval_set["index"], [doc], min_hits=20)
    assert row["decon__ngram_hits"] == 8 and row["decon__keep"] is True
    (row,) = _tag(eval_set["index"], [doc], min_fraction=0.5)
    assert 0 < row["decon__ngram_fraction"] < 0.5 and row["decon__keep"] is True
    (row,) = _tag(eval_set["index"], [q], min_fraction=0.5)
    assert row["decon__ngram_fraction"] == 1.0 and row["decon__keep"] is False


def test_fields_option_and_deterministic_bytes(eval_set, tmp_path):
    a, b = tmp_path / "a.decon", tmp_path / "b.decon"
    m = build_index([eval_set["path"]], a, fields="answer")
    build_index([eval_set["path"]], b, fields=["answer"])
    assert a.read_bytes() == b.read_bytes()
    assert m["fields"] == ["answer"]
    # only the 4-word answers (40 of them) and "four" (under min_words)
    assert m["ngrams"] == 40 and m["short_lengths"] == [4] and m["skipped_short"] == 1
    assert m["empty_texts"] == 21  # the records without an answer field


def test_tagger_settings_errors(tmp_path):
    with pytest.raises(MixerError, match="decon.index is required"):
        DeconTagger()
    with pytest.raises(MixerError, match="min_hits"):
        DeconTagger(index="x", min_hits=0)
    with pytest.raises(MixerError, match="not found"):
        DeconTagger(index=str(tmp_path / "missing")).setup()
    bad = tmp_path / "bad.decon"
    bad.write_bytes(b"not an index at all")
    with pytest.raises(MixerError, match="not a decon index"):
        DeconTagger(index=str(bad)).setup()


def test_cli_builds_index_and_reports_bad_lines(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"text": " ".join(VOCAB[:20])}) + "\n")
    out = tmp_path / "idx.decon"
    runner = CliRunner()
    result = runner.invoke(main, ["decon-index", str(good), "--out", str(out), "--ngram", "8"])
    assert result.exit_code == 0, result.output
    assert "13 8-grams" in result.output and DeconIndex(out).ngram == 8

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "ok"}) + "\n{broken\n")
    result = runner.invoke(main, ["decon-index", str(bad), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and f"{bad}:2" in result.output
    result = runner.invoke(
        main, ["decon-index", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "x")]
    )
    # the one input resolver's message, as `mixer run` gives for decon.eval_sets
    assert result.exit_code == 2 and "nope.jsonl': no such file" in result.output
    assert not (tmp_path / "x").exists()


def test_tag_stage_writes_decon_columns(eval_set, tmp_path):
    import pyarrow.parquet as pq
    from doc_parts import write_part

    from mixer.schema import attributes_dir
    from mixer.tag import tag_workdir

    texts = ["clean document " * 20, "copied: " + eval_set["records"][1]["question"]]
    write_part(tmp_path, "web", texts, ids=[f"d{i}" for i in range(len(texts))], added=None)
    tag_workdir(
        tmp_path, ["decon"], {"decon": {"index": str(eval_set["index"])}}, workers=1, progress=False
    )
    out = pq.read_table(attributes_dir(tmp_path, "decon", "web") / "part-00000.parquet")
    assert out.column("id").to_pylist() == ["d0", "d1"]
    assert out.column("decon__keep").to_pylist() == [True, False]


def test_sample_data_contamination_found_exactly(tmp_path):
    """On the sample corpus: every planted copy (verbatim or case/punctuation changed) of an
    evaluation question is flagged, and no other document of any source is."""
    sample_data = pytest.importorskip("mixer.sample_data")
    from mixer.io import iter_lines

    root = tmp_path / "sample"
    sample_data.generate(root, seed=5, scale=0.1)
    manifest = build_index(sorted((root / "eval").glob("*.jsonl")), tmp_path / "eval.decon")
    assert manifest["records"] > 0 and manifest["ngrams"] > 0
    truth = root / "ground_truth"
    contaminated = {
        orjson.loads(x)["id"] for x in (truth / "contamination.jsonl").read_text().splitlines()
    }
    known = {orjson.loads(x)["id"] for x in (truth / "labels.jsonl").read_text().splitlines()}
    ids, texts = [], []
    for source in sample_data.SOURCES:
        for shard in sorted((root / source).glob("*.jsonl*")):
            for _, line in iter_lines(shard):
                try:
                    r = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(r, dict) and r.get("id") in known and isinstance(r.get("text"), str):
                    ids.append(r["id"])
                    texts.append(r["text"])
    rows = _tag(tmp_path / "eval.decon", texts)
    flagged = {i for i, r in zip(ids, rows, strict=True) if not r["decon__keep"]}
    assert contaminated and contaminated <= set(ids)
    assert flagged == contaminated


def test_spans_of_several_copies_match_the_one_text_path(eval_set):
    from mixer.taggers.decon import matched_spans

    rng = random.Random(5)
    recs = eval_set["records"]
    docs = [
        f"{recs[0]['question']} {_sentence(rng, 30)}\n\n{recs[1]['question']}  tail",
        f"  \t{_sentence(rng, 10)} {recs[2]['question'].upper()} {recs[2]['question']}",
        _sentence(rng, 50),
        f"What is two plus two? four -- and {recs[60 - 1]['text']}",
    ]
    rows = _tag(eval_set["index"], docs)
    index = DeconIndex(eval_set["index"])
    for doc, row in zip(docs, rows, strict=True):
        assert orjson.loads(row["decon__matched_spans"]) == matched_spans(doc, index)
    first = orjson.loads(rows[0]["decon__matched_spans"])
    assert len(first) == 2
    assert docs[0][first[0][0] : first[0][1]] == recs[0]["question"]
    assert docs[0][first[1][0] : first[1][1]] == recs[1]["question"]
    # two back-to-back copies stay two spans (n-grams across the seam are not in the index)
    second = orjson.loads(rows[1]["decon__matched_spans"])
    assert len(second) == 2 and second[1][0] == second[0][1] + 1


def test_short_texts_at_document_edges_and_not_across_documents(eval_set):
    rows = _tag(
        eval_set["index"],
        [
            "ends with what is two plus two? Four",  # the short text at the very end
            "What is two plus two? four.",  # the whole document
            "so what is two",  # a head, then the rest in the next document
            "plus two four and more words here",
        ],
    )
    assert [r["decon__ngram_hits"] for r in rows] == [1, 1, 0, 0]


def test_fields_that_no_record_has_is_an_error(eval_set, tmp_path):
    with pytest.raises(MixerError, match="no record has any of the fields"):
        build_index([eval_set["path"]], tmp_path / "x.decon", fields="passage")
    truncated = tmp_path / "t.decon"
    truncated.write_bytes(eval_set["index"].read_bytes()[:-8])
    with pytest.raises(MixerError, match="truncated"):
        DeconIndex(truncated)


def test_truncated_compressed_eval_set_is_a_user_error(tmp_path):
    import zstandard

    data = zstandard.ZstdCompressor().compress(
        b"".join(
            json.dumps({"text": _sentence(random.Random(i), 20)}).encode() + b"\n"
            for i in range(200)
        )
    )
    path = tmp_path / "eval.jsonl.zst"
    path.write_bytes(data[: len(data) // 2])
    result = CliRunner().invoke(main, ["decon-index", str(path), "--out", str(tmp_path / "i")])
    assert result.exit_code == 2 and "truncated" in result.output
