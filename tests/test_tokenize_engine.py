"""The tiktoken engine gives HF tokenizers' ids exactly, or is not chosen."""

from __future__ import annotations

import json
import os
import random
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from mixer.errors import MixerError
from mixer.tokenization.engine import (
    HFEngine,
    TiktokenEngine,
    added_regex,
    choose_engine,
    engine_spec,
    load_engine,
)

SHARED = Path(os.environ.get("MIXER_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
REAL = {
    "dolma2": SHARED / "tokenizers" / "allenai_dolma2.json",
    "neox": SHARED / "tokenizers" / "allenai_eleuther-ai-gpt-neox-20b-pii-special.json",
}

EDGE_CASES = [
    "",
    " ",
    "a\t.\tb\t,\t;\t)\t\t(",  # tabs before punctuation (where tokie splits differently)
    "if x:\n\treturn\t-1\n",
    "line one\r\nline two\r\n\r\n\r\nthree\r",
    "数据处理と日本語のテキスト。한국어 문장입니다. 中文，标点！",
    "🙂👍🏽👨‍👩‍👧‍👦 🏳️‍🌈 emoji 🙂🙂🙂",
    "1234567890123456789012345678901234567890 3.14159 1,000,000 0x1F",
    "<|endoftext|> <|pad|><|padding|> <|im_start|>user<|im_end|> <|fim_prefix|>",
    "|||PHONE_NUMBER||| |||EMAIL_ADDRESS||||||IP_ADDRESS||| ||PHONE_NUMBER||",
    "<|extra_id_0|>text<|extra_id_0|>",
    "   \t  \n\n   \n \n",
    "a" + " " * 30 + "b" + " " * 24 + "c" + " " * 25 + "d  e   f",
    "e\u0301 A\u030a \ufb01 \u212b \u00c5 \u1e9b\u0323 ﬁ ﬂ ＡＢＣ ①②",  # NFC/NFD edge cases
    "\u00a0\u2003x\u3000y\u200bz\u2028w\u2029v\ufeff",
    "'S 'LL 'Re 's 't 've DON'T don't",
    "\x00\x01\x7f\x1b[0m",
    "a" * 3000,
    "=-" * 1500,
    "\n" * 40 + "x",
    "def f(x):\n    return {'k': [1, 2, 3]}  # comment\n\n\nclass A:\n        pass\n",
    "Ünïcödé ÀÉÎÕÜ ß ẞ ǅ ǈ ﬀ",
    "العربية עברית हिन्दी ไทย \ufffd",
    "\U0001d400\U0001d401 \U00010348 \U0001f600",
]


def varied_corpus(n_files: int = 120) -> list[str]:
    """Edge cases plus real code and prose from this machine's standard library."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))
    rng = random.Random(0)
    texts = list(EDGE_CASES)
    for p in rng.sample(files, min(n_files, len(files))):
        try:
            text = p.read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        a = rng.randrange(max(1, len(text) - 4000))
        texts.append(text[a : a + rng.choice([50, 400, 4000])])
        texts.append(text[a : a + 2000].replace("\n", "\r\n").replace("    ", "\t"))
    # Mixed pieces: every edge case glued to code.
    texts += [e + t[:300] + e for e, t in zip(EDGE_CASES, texts[len(EDGE_CASES) :], strict=False)]
    return texts


@pytest.mark.parametrize("name", sorted(REAL))
def test_tiktoken_ids_equal_hf_on_real_tokenizers(name):
    path = REAL[name]
    if not path.is_file():
        pytest.skip("shared tokenizers not present")
    assert choose_engine(path)[0] == "tiktoken"
    texts = varied_corpus()
    fast, ref = TiktokenEngine(path).encode(texts), HFEngine(path).encode(texts)
    for text, a, b in zip(texts, fast, ref, strict=True):
        assert a.dtype == np.uint32
        assert a.tolist() == b.tolist(), repr(text[:80])


def test_added_regex_is_leftmost_longest():
    tokens = [" " * n for n in range(2, 25)] + ["|||IP|||", "<x>", "<x><y>"]
    rx = added_regex(tokens)
    assert "{2,24}" in rx.pattern  # the run family becomes one greedy repetition
    assert [m.group() for m in rx.finditer("a" + " " * 30 + "<x><y><x>")] == [
        " " * 24,
        " " * 6,
        "<x><y>",
        "<x>",
    ]


def _permuted_ids_tokenizer(src: Path, dst: Path) -> None:
    """A tokenizer.json whose ids no longer follow the merge order (HF still encodes by the
    merges), so tiktoken's ranks must be mapped to ids."""
    data = json.loads(src.read_text())
    vocab = data["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    keep = [t for t in tokens if vocab[t] < 300]  # special tokens and the first merges stay
    moved = [t for t in tokens if vocab[t] >= 300]
    random.Random(1).shuffle(moved)
    data["model"]["vocab"] = {t: i for i, t in enumerate(keep + moved)}
    dst.write_text(json.dumps(data))


def test_remapped_ids_and_fallback(tmp_path):
    from test_tokenize import make_docs, write_mix

    from mixer.train_tokenizer import train_tokenizer

    mix = write_mix(tmp_path / "mix", make_docs(200, seed=2), parts=1)
    trained = tmp_path / "tok.json"
    train_tokenizer([mix], trained, vocab_size=600)
    permuted = tmp_path / "permuted.json"
    _permuted_ids_tokenizer(trained, permuted)
    texts = [d["text"] for d in make_docs(200, seed=9)] + EDGE_CASES
    for path in (trained, permuted):
        engine = TiktokenEngine(path)
        assert (engine._id_of is not None) == (path == permuted)
        got, want = engine.encode(texts), HFEngine(path).encode(texts)
        assert [g.tolist() for g in got] == [w.tolist() for w in want]
    # Something the construction does not cover: HF tokenizers runs, and says why.
    data = json.loads(trained.read_text())
    data["normalizer"] = {"type": "Lowercase"}
    lower = tmp_path / "lower.json"
    lower.write_text(json.dumps(data))
    name, why = choose_engine(lower)
    assert name == "hf" and "Lowercase" in why
    assert load_engine(lower).name == "hf"
    with pytest.raises(MixerError, match="cannot reproduce"):
        choose_engine(lower, "tiktoken")
    assert not engine_spec({"model": {"type": "WordPiece"}}).eligible
