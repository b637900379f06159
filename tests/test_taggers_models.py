"""lang, quality and tokens taggers: offline language id, fastText models, exact token counts."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from mixer import fasttext_model
from mixer.errors import MixerError
from mixer.taggers import make_tagger

SHARED = Path(os.environ.get("MIXER_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
TOKENIZERS = SHARED / "tokenizers"

EN = "The weather was lovely yesterday and we walked along the river for hours before dinner."
FR = "Le temps était magnifique hier et nous avons marché le long de la rivière pendant des heures."
DE = "Das Wetter war gestern herrlich und wir sind stundenlang am Fluss entlang spaziert."


def _table(texts):
    return pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts})


def test_lang_default_is_offline_and_labels_iso_codes():
    t = make_tagger("lang")
    t.setup()
    out = t.tag(_table([EN, FR, DE, "", "12345 !!!", "这是一个中文句子。", None])).to_pydict()
    assert out["lang__label"][:3] == ["en", "fr", "de"]
    assert all(s > 0.5 for s in out["lang__score"][:3])
    assert out["lang__label"][3:5] == ["und", "und"] and out["lang__score"][3] == 0.0
    assert out["lang__label"][5] == "zh"


def test_lang_with_a_fasttext_model(tmp_path):
    texts = [EN.replace("river", w) for w in ("river", "park", "lake", "beach")] * 25
    texts += [FR.replace("rivière", w) for w in ("rivière", "plage", "forêt", "ville")] * 25
    labels = ["en"] * 100 + ["fr"] * 100
    model = tmp_path / "lid.bin"
    fasttext_model.train(texts, labels, model, epoch=10, dim=16, bucket=10_000)
    t = make_tagger("lang", {"model": str(model)})
    t.setup()
    out = t.tag(_table([EN, FR, ""])).to_pydict()
    assert out["lang__label"] == ["en", "fr", "und"]
    assert "model_sha256" in t.fingerprint()


def _quality_model(tmp_path) -> Path:
    good = [
        f"The study measured results carefully and explained method number {i} in detail."
        for i in range(150)
    ]
    bad = [f"click here buy now cheap deal free prize winner {i} !!!" for i in range(150)]
    model = tmp_path / "quality.bin"
    fasttext_model.train(
        good + bad, ["hq"] * 150 + ["lq"] * 150, model, epoch=10, dim=16, bucket=10_000
    )
    return model


def test_quality_scores_the_configured_label(tmp_path):
    model = _quality_model(tmp_path)
    t = make_tagger("quality", {"model": str(model)})
    t.setup()
    scores = t.tag(
        _table(["The study explained the method in detail.", "click here buy now free prize", ""])
    )
    s = scores.column("quality__score").to_pylist()
    assert s[0] > 0.8 and s[1] < 0.2 and 0.0 <= s[2] <= 1.0
    lq = make_tagger("quality", {"model": str(model), "label": "lq"})
    lq.setup()
    assert (
        lq.tag(_table(["click here buy now free prize"])).column("quality__score")[0].as_py() > 0.8
    )
    with pytest.raises(MixerError, match="not one of the model's labels"):
        make_tagger("quality", {"model": str(model), "label": "nope"}).setup()
    with pytest.raises(MixerError, match="quality.model is required"):
        make_tagger("quality")
    with pytest.raises(MixerError, match="not found"):
        make_tagger("quality", {"model": str(tmp_path / "missing.bin")}).fingerprint()


def _tiny_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {
        "[UNK]": 0,
        "<|endoftext|>": 1,
        "hello": 2,
        "world": 3,
        "<": 4,
        "|": 5,
        ">": 6,
        "endoftext": 7,
    }
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(str(path))
    return path


def test_tokens_counts_special_strings_as_text(tmp_path):
    path = _tiny_tokenizer(tmp_path / "tok.json")
    t = make_tagger("tokens", {"tokenizer": str(path)})
    t.setup()
    out = (
        t.tag(_table(["hello world", "hello <|endoftext|> world", "", None]))
        .column("tokens__count")
        .to_pylist()
    )
    assert out[0] == 2 and out[2] == 0 and out[3] == 0
    assert out[1] > 3  # the literal special token is plain text, never the single special id
    with pytest.raises(MixerError, match="tokens.tokenizer is required"):
        make_tagger("tokens")
    bad = tmp_path / "bad.json"
    bad.write_text("{not a tokenizer")
    with pytest.raises(MixerError, match="cannot load"):
        make_tagger("tokens", {"tokenizer": str(bad)}).setup()


@pytest.mark.skipif(not TOKENIZERS.is_dir(), reason="shared tokenizers not available")
def test_tokens_match_real_tokenizer_exactly():
    from tokenizers import Tokenizer

    path = TOKENIZERS / "allenai_dolma2.json"
    texts = ["Hello world! <|endoftext|> and more.", "数学 emoji 😀 " * 20, "", "x" * 5000]
    t = make_tagger("tokens", {"tokenizer": str(path)})
    t.setup()
    got = t.tag(_table(texts)).column("tokens__count").to_pylist()
    ref = Tokenizer.from_file(str(path))
    ref.encode_special_tokens = True
    assert got == [len(ref.encode(x, add_special_tokens=False).ids) for x in texts]
