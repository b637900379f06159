"""The domain tagger: rule signals, labels, the fastText/combined modes, and per-label
precision/recall on held-out sample data (macro-F1 >= 0.9)."""

from __future__ import annotations

import collections
import random

import orjson
import pyarrow as pa
import pytest

from mixer.errors import MixerError
from mixer.io import iter_lines
from mixer.taggers.domain import DEFAULT_LABELS, DomainTagger
from mixer.taggers.domain_signals import text_signals

sample_data = pytest.importorskip("mixer.sample_data")


def _load(root):
    """(texts, true domains) of every document of a generated sample corpus."""
    truth = {}
    for line in (root / "ground_truth" / "labels.jsonl").read_text().splitlines():
        r = orjson.loads(line)
        truth[r["id"]] = r["domain"]
    texts, labels = [], []
    for source in sample_data.SOURCES:
        for shard in sorted((root / source).glob("*.jsonl*")):
            for _, line in iter_lines(shard):
                try:
                    r = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # the planted bad lines
                if isinstance(r, dict) and r.get("id") in truth and isinstance(r.get("text"), str):
                    texts.append(r["text"])
                    labels.append(truth[r["id"]])
    return texts, labels


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Two corpora from different seeds: one to train a classifier on, one held out."""
    out = {}
    for name, seed in (("train", 11), ("heldout", 12)):
        root = tmp_path_factory.mktemp(name)
        sample_data.generate(root, seed=seed, scale=0.1)
        out[name] = _load(root)
    return out


def per_label_scores(truth: list[str], pred: list[str]) -> dict[str, tuple[float, float, float]]:
    conf = collections.Counter(zip(truth, pred, strict=True))
    scores = {}
    for label in sorted(set(truth)):
        tp = conf[(label, label)]
        fp = sum(v for (t, p), v in conf.items() if p == label and t != label)
        fn = sum(v for (t, p), v in conf.items() if t == label and p != label)
        precision = tp / max(tp + fp, 1)
        recall = tp / max(tp + fn, 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        scores[label] = (precision, recall, f1)
    return scores


def _report(name, scores):
    print(f"\n{name}: label precision recall F1")
    for label, (p, r, f) in scores.items():
        print(f"  {label:13s} {p:.3f} {r:.3f} {f:.3f}")
    macro = sum(f for _, _, f in scores.values()) / len(scores)
    print(f"  macro-F1 {macro:.3f}")
    return macro


def _predict(tagger, texts):
    tagger.setup()
    return (
        tagger.tag(pa.table({"text": pa.array(texts, pa.string())}))
        .column("domain__label")
        .to_pylist()
    )


def test_rules_macro_f1_on_heldout_sample(corpora):
    texts, truth = corpora["heldout"]
    assert set(truth) == {
        "web",
        "math",
        "code",
        "academic",
        "qa_forum",
        "instruction",
        "encyclopedic",
    }
    scores = per_label_scores(truth, _predict(DomainTagger(), texts))
    macro = _report("rules", scores)
    assert macro >= 0.9
    assert all(f >= 0.8 for _, _, f in scores.values()), scores


@pytest.fixture(scope="module")
def domain_model(corpora, tmp_path_factory):
    from mixer import fasttext_model

    pairs = list(zip(*corpora["train"], strict=True))
    random.Random(0).shuffle(pairs)  # fastText's SGD reads in order: mix the labels
    texts, labels = zip(*pairs, strict=True)
    path = tmp_path_factory.mktemp("model") / "domain.bin"
    fasttext_model.train(texts, labels, path, epoch=10, lr=0.5, dim=32, bucket=200_000)
    return path


@pytest.mark.parametrize("mode", ["model", "combined"])
def test_model_and_combined_macro_f1_on_heldout_sample(corpora, domain_model, mode):
    texts, truth = corpora["heldout"]
    tagger = DomainTagger(model=str(domain_model), mode=mode)
    scores = per_label_scores(truth, _predict(tagger, texts))
    assert _report(mode, scores) >= 0.9


def test_columns_and_types():
    tagger = DomainTagger()
    texts = [
        "def f(x):\n    return x + 1\n",
        "",
        None,
        "Plain words about a walk in the park today.",
    ]
    out = tagger.tag(pa.table({"text": pa.array(texts, pa.string())}))
    names = out.column_names
    for col in (
        "domain__label",
        "domain__score",
        "domain__latex_density",
        "domain__math_symbol_density",
        "domain__code_density",
        "domain__code_lang",
        "domain__qa_markers",
        "domain__instruction_markers",
        "domain__citation_markers",
    ):
        assert col in names
    assert out.schema.field("domain__label").type == pa.string()
    assert out.schema.field("domain__code_lang").type == pa.string()
    assert out.column("domain__label").to_pylist() == ["code", "other", "other", "web"]
    assert all(0 < s <= 1 for s in out.column("domain__score").to_pylist())
    empty = tagger.tag(pa.table({"text": pa.array([], pa.string())}))
    assert empty.num_rows == 0 and empty.schema == out.schema


def test_configured_labels_map_the_rest_to_a_fallback():
    tagger = DomainTagger(labels=["web", "code"])
    texts = ["def f(x):\n    return x + 1\n", "Let $x^2 = \\frac{1}{2}$. Prove the theorem."]
    assert _predict(tagger, texts)[0] == "code"
    assert _predict(tagger, texts)[1] in ("web", "code")


def test_settings_are_checked():
    with pytest.raises(MixerError, match="domain.mode"):
        DomainTagger(mode="magic")
    with pytest.raises(MixerError, match="needs domain.model"):
        DomainTagger(mode="model")
    with pytest.raises(MixerError, match="unknown setting"):
        DomainTagger(threshold=1)
    with pytest.raises(MixerError, match="duplicate"):
        DomainTagger(labels=["web", "web"])
    assert DomainTagger().mode == "rules"
    assert DomainTagger(model="m.bin").mode == "combined"
    assert DomainTagger().labels == DEFAULT_LABELS


def test_missing_model_is_a_user_error(tmp_path):
    with pytest.raises(MixerError, match="not found"):
        DomainTagger(model=str(tmp_path / "none.bin")).setup()


# ---------------------------------------------------------------------------- signals


def test_latex_and_math_symbols():
    s = text_signals(r"We have $\frac{a}{b} + \sqrt{2} \leq \pi$ for every integer $n$.")
    assert s["latex_density"] > 0.3
    assert s["math_symbol_density"] > 0.05
    assert s["math_word_density"] > 0
    assert text_signals("A walk in the park with my dog.")["latex_density"] == 0
    # escapes inside code strings are not LaTeX
    assert text_signals(r"x = '\xe9\n\t'")["latex_density"] == 0


@pytest.mark.parametrize(
    ("code", "lang"),
    [
        ("import os\n\ndef main():\n    if x is None:\n        return 1\n", "python"),
        ("const x = 1;\nfunction f(a) {\n  console.log(a);\n}\n", "javascript"),
        ('#include <stdio.h>\nint main() {\n  printf("hi");\n  return 0;\n}\n', "c"),
        ("package main\n\nfunc main() {\n\tx := 1\n\tfmt.Println(x)\n}\n", "go"),
        ('fn main() {\n    let mut v = Vec::new();\n    println!("{}", 1);\n}\n', "rust"),
    ],
)
def test_code_density_and_language(code, lang):
    s = text_signals(code)
    assert s["code_density"] >= 0.5
    assert s["code_lang"] == lang
    assert text_signals("Just some prose about cooking dinner tonight.")["code_lang"] == ""


def test_markers():
    qa = "Question: How do I undo a commit?\nAsked by someone · 12 votes\n\nAnswer (3 votes):\nUse git revert."
    assert text_signals(qa)["qa_markers"] >= 4
    instr = "### Instruction:\nSummarize the text.\n\n### Response:\nA short summary."
    assert text_signals(instr)["instruction_markers"] >= 3
    paper = "Abstract\n\nIn this paper we propose a model [1, 2]. Smith et al. (2020) showed it (Lee, 2019)."
    assert text_signals(paper)["citation_markers"] >= 4
    wiki = "Paris\n\nParis is a city in the northern part of France. It was founded in the 3rd century.\n\nSee also"
    assert text_signals(wiki)["encyclopedic_markers"] >= 3
    plain = "We went to the market and bought apples, then walked home in the rain."
    s = text_signals(plain)
    assert s["qa_markers"] == s["instruction_markers"] == s["citation_markers"] == 0
