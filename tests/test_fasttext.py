"""fastText helpers, `train_from_workdir`, and the `mixer tag` / `mixer train-fasttext` commands."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from doc_parts import write_part

from mixer import fasttext_model
from mixer.cli import main
from mixer.errors import MixerError
from mixer.schema import attributes_dir, documents_dir
from mixer.train_fasttext import train_from_workdir

GOOD = (
    "The report describes the experiment, the method and the results in careful detail, case {i}."
)
BAD = "click here now buy cheap pills free prize winner deal {i} !!!"
OTHER = "Solve the equation x squared plus {i} equals zero and show each algebra step."


def _workdir(tmp_path, n=60):
    """A workdir with three sources of n documents each, two parts for 'web'."""
    wd = tmp_path / "wd"
    rows = {
        "encyclopedic": [GOOD.format(i=i) for i in range(n)],
        "web": [BAD.format(i=i) for i in range(n)],
        "math": [OTHER.format(i=i) for i in range(n)],
    }
    for source, texts in rows.items():
        parts = [texts[: n // 2], texts[n // 2 :]] if source == "web" else [texts]
        start = 0
        for p, chunk in enumerate(parts):
            ids = [f"{source}-{start + i}" for i in range(len(chunk))]
            write_part(wd, source, chunk, index=p, ids=ids)
            start += len(chunk)
    return wd


def test_normalise_and_predict_work_under_numpy2(tmp_path):
    assert fasttext_model.normalise_for_fasttext("a\nb\t c\x00d\u2028e  ") == "a b c d e"
    assert fasttext_model.normalise_for_fasttext("lone \ud800 surrogate") == "lone \ufffd surrogate"
    assert fasttext_model.normalise_for_fasttext(None) == ""
    model_path = tmp_path / "m.bin"
    info = fasttext_model.train([GOOD.format(i=i) for i in range(50)] + [BAD.format(i=i) for i in range(50)],
                                ["hq"] * 50 + ["lq"] * 50, model_path, epoch=5, dim=16, bucket=10_000)  # fmt: skip
    assert info["examples"] == 100 and info["labels"] == {"__label__hq": 50, "__label__lq": 50}
    model = fasttext_model.load(model_path)
    labels, probs = fasttext_model.predict(
        model, ["The report describes\nthe method.", "", "buy pills \ud800"]
    )
    assert [ls[0] for ls in labels] == ["__label__hq", "__label__lq", "__label__lq"] or labels[0][
        0
    ] == "__label__hq"
    for p in probs:
        assert len(p) == 2 and abs(float(p.sum()) - 1.0) < 1e-3 and p[0] >= p[1]
    with pytest.raises(MixerError):
        fasttext_model.train(["a"], ["only"], tmp_path / "x.bin")
    with pytest.raises(MixerError):
        fasttext_model.load(tmp_path / "missing.bin")


def test_training_is_deterministic(tmp_path):
    texts = [GOOD.format(i=i) for i in range(40)] + [BAD.format(i=i) for i in range(40)]
    labels = ["hq"] * 40 + ["lq"] * 40
    fasttext_model.train(texts, labels, tmp_path / "a.bin", dim=16, bucket=10_000)
    fasttext_model.train(texts, labels, tmp_path / "b.bin", dim=16, bucket=10_000)
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    assert not list(tmp_path.glob(".tmp-*"))


def test_train_from_workdir_binary_and_multilabel(tmp_path):
    wd = _workdir(tmp_path)
    m = train_from_workdir(
        wd,
        "source = 'encyclopedic'",
        "source = 'web'",
        tmp_path / "q.bin",
        dim=16,
        bucket=10_000,
        epoch=10,
    )
    assert m["selected"] == {"hq": 60, "lq": 60}
    assert m["test_docs"] > 0 and m["precision"]["hq"] == 1.0 and m["recall"]["hq"] == 1.0
    train_from_workdir(
        wd,
        "source = 'encyclopedic'",
        "source = 'web'",
        tmp_path / "q2.bin",
        dim=16,
        bucket=10_000,
        epoch=10,
    )
    assert (tmp_path / "q.bin").read_bytes() == (tmp_path / "q2.bin").read_bytes()
    multi = train_from_workdir(
        wd, out=tmp_path / "d.bin", labels={"ency": "source = 'encyclopedic'", "math": "source = 'math'", "web": "true"},
        max_docs=20, dim=16, bucket=10_000, epoch=10,
    )  # fmt: skip
    assert multi["selected"] == {"ency": 20, "math": 20, "web": 20}
    with pytest.raises(MixerError, match="bad selection SQL"):
        train_from_workdir(wd, "no_such_column = 1", "true", tmp_path / "x.bin")


def test_tag_and_train_fasttext_commands(tmp_path):
    wd = _workdir(tmp_path)
    runner = CliRunner()
    tag_args = [
        "tag",
        str(wd),
        "--taggers",
        "gopher,c4,fineweb",
        "--set",
        "gopher.min_words=5",
        "--quiet",
    ]
    r = runner.invoke(
        main,
        tag_args,
    )
    assert r.exit_code == 0, r.output
    assert "tagged 4 part(s)" in r.output
    docs = pq.read_table(documents_dir(wd, "web") / "part-00001.parquet")
    attrs = pq.read_table(attributes_dir(wd, "gopher", "web") / "part-00001.parquet")
    assert attrs.column("id").to_pylist() == docs.column("id").to_pylist()
    assert {"gopher__keep", "gopher__reason", "gopher__words"} <= set(attrs.column_names)
    r = runner.invoke(main, tag_args)
    assert "skipped 12 up to date" in r.output

    # a classifier trained on attribute columns joined with the documents
    out = tmp_path / "q.bin"
    r = runner.invoke(
        main,
        ["train-fasttext", str(wd), "--positive", "source = 'encyclopedic' AND gopher__words > 5",
         "--negative", "source = 'web'", "--out", str(out), "--dim", "16", "--bucket", "10000", "--epoch", "10"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "precision" in r.output and "recall" in r.output and out.exists()
    r = runner.invoke(
        main, ["tag", str(wd), "--taggers", "quality", "--set", f"quality.model={out}", "--quiet"]
    )
    assert r.exit_code == 0, r.output
    scores = pq.read_table(attributes_dir(wd, "quality", "encyclopedic") / "part-00000.parquet")
    assert min(scores.column("quality__score").to_pylist()) > 0.5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--taggers", "nope"], "unknown tagger"),
        (["--taggers", "gopher", "--set", "gopher.bogus=1"], "unknown setting gopher.bogus"),
        (["--taggers", "gopher", "--set", "novalue"], "expected TAGGER.KEY=VALUE"),
        (["--taggers", "gopher", "--set", "c4.min_sentences=2"], "not in --taggers"),
        (["--taggers", "quality"], "quality.model is required"),
        (["--taggers", "gopher", "--sources", "missing"], "no documents for source"),
    ],
)
def test_tag_command_user_errors_are_one_line(tmp_path, args, message):
    wd = _workdir(tmp_path, n=4)
    r = CliRunner().invoke(main, ["tag", str(wd), *args, "--quiet"])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_train_fasttext_user_errors(tmp_path):
    wd = _workdir(tmp_path, n=4)
    runner = CliRunner()
    r = runner.invoke(
        main,
        [
            "train-fasttext",
            str(wd),
            "--positive",
            "source = 'web'",
            "--out",
            str(tmp_path / "m.bin"),
        ],
    )
    assert r.exit_code == 2 and "--negative" in r.output
    r = runner.invoke(
        main,
        [
            "train-fasttext",
            str(wd),
            "--positive",
            "nonsense ((",
            "--negative",
            "true",
            "--out",
            "m.bin",
        ],
    )
    assert r.exit_code == 2 and "bad selection SQL" in r.output
    r = runner.invoke(
        main,
        [
            "train-fasttext",
            str(tmp_path / "empty"),
            "--positive",
            "true",
            "--negative",
            "true",
            "--out",
            "m.bin",
        ],
    )
    assert r.exit_code == 2 and "no documents" in r.output


def test_recipe_style_entry_point_takes_snake_case_settings(tmp_path):
    wd = _workdir(tmp_path, n=20)
    m = train_from_workdir(
        wd, "source = 'encyclopedic'", "source = 'web'", tmp_path / "r.bin",
        word_ngrams=1, min_count=1, dim=8, bucket=1000, epoch=3, seed=1,
    )  # fmt: skip
    assert m["train"]["hyper"]["wordNgrams"] == 1 and m["train"]["hyper"]["minCount"] == 1
    with pytest.raises(MixerError, match="unknown fastText setting"):
        fasttext_model.train(["a", "b"], ["x", "y"], tmp_path / "z.bin", nonsense=1)


def test_labels_from_the_source_column_with_f1_stored_beside_the_model(tmp_path):
    wd = _workdir(tmp_path, n=80)
    out = tmp_path / "models" / "domain.bin"
    m = train_from_workdir(wd, out=out, label_column="source", dim=16, epoch=10, test_fraction=0.25)
    assert m["labels"] == ["encyclopedic", "math", "web"]
    assert m["selected"] == {"encyclopedic": 80, "math": 80, "web": 80}
    assert set(m["f1"]) == {"encyclopedic", "math", "web"} and m["macro_f1"] == 1.0
    assert m["test_docs"] == sum(m["support"].values()) > 0
    stored = json.loads((tmp_path / "models" / "domain.metrics.json").read_text())
    assert stored["macro_f1"] == m["macro_f1"] and stored["f1"] == m["f1"]
    # the domain tagger uses the model's own labels (the sources)
    from mixer.taggers.domain import DomainTagger

    texts = [GOOD.format(i=999), BAD.format(i=999), OTHER.format(i=999)]
    for mode in ("model", "combined"):
        tagger = DomainTagger(model=str(out), mode=mode)
        tagger.setup()
        table = tagger.tag(pa.table({"text": texts}))
        assert table.column("domain__label").to_pylist() == ["encyclopedic", "web", "math"]
    assert "domain__rule_label" not in table.column_names  # domain names: averaged with rules
    # labels of its own (not domain names): the model's label, the rules' where it is unsure
    own = tmp_path / "models" / "own.bin"
    sqls = {"wiki": "source = 'encyclopedic'", "spam": "source = 'web'", "alg": "source = 'math'"}
    train_from_workdir(wd, out=own, labels=sqls, dim=16, epoch=10)
    tagger = DomainTagger(model=str(own), mode="combined")
    table = tagger.tag(pa.table({"text": texts}))
    assert table.column("domain__label").to_pylist() == ["wiki", "spam", "alg"]
    assert table.column("domain__rule_label").to_pylist()[2] == "math"
    sure = DomainTagger(model=str(own), mode="combined", min_model_score=1.01)
    assert sure.tag(pa.table({"text": texts})).column("domain__label").to_pylist() == (
        table.column("domain__rule_label").to_pylist()
    )
    with pytest.raises(MixerError, match="label_column 'nope'"):
        train_from_workdir(wd, out=out, label_column="nope")
    with pytest.raises(MixerError, match="label_column or label selections"):
        train_from_workdir(wd, "true", "true", out, label_column="source")


def test_default_training_is_bounded_and_compact(tmp_path):
    wd = _workdir(tmp_path, n=60)
    small = train_from_workdir(wd, out=tmp_path / "s.bin", label_column="source", max_docs=25,
                               dim=16, epoch=5)  # fmt: skip
    assert small["selected"] == {"encyclopedic": 25, "math": 25, "web": 25}
    # the default preset: 200k buckets, quantised (200k rows x 16 dims would be 12.8 MB)
    m = train_from_workdir(wd, out=tmp_path / "c.bin", label_column="source", epoch=5, dim=16)
    assert m["max_docs"] == 50_000 and m["train"]["hyper"]["bucket"] == 200_000
    assert m["train"]["quantized"] and m["model_bytes"] < 3_000_000
    assert m["macro_f1"] == 1.0
    full = train_from_workdir(wd, out=tmp_path / "f.bin", label_column="source", epoch=5,
                              preset="dclm", dim=8)  # fmt: skip
    assert full["train"]["hyper"]["bucket"] == 2_000_000 and not full["train"]["quantized"]
    assert full["model_bytes"] > 2_000_000 * 8 * 4 and full["max_docs"] is None
    with pytest.raises(MixerError, match="preset"):
        train_from_workdir(wd, out=tmp_path / "x.bin", label_column="source", preset="huge")


def test_recipe_train_fasttext_by_source_column(tmp_path):
    from mixer.recipe import load_recipe

    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "a.jsonl").write_text('{"id": "1", "text": "x"}\n')
    base = f"""\
name: d
budget: 1M
sources:
  web: {{inputs: ["{tmp_path}/web"], taggers: [domain]}}
groups:
  all: {{share: 1.0, sources: {{web: {{weight: 1}}}}}}
taggers:
  domain: {{model: {tmp_path}/domain.bin}}
"""
    ok = base + "train_fasttext:\n  domain: {label_column: source, preset: dclm, max_docs: 0}\n"
    (tmp_path / "r.yaml").write_text(ok)
    r = load_recipe(tmp_path / "r.yaml", check_inputs=False)
    assert r.train_fasttext["domain"]["label_column"] == "source"
    by_sql = base + "train_fasttext:\n  domain: {labels: {a: 'source = 1', b: 'true'}}\n"
    (tmp_path / "r.yaml").write_text(by_sql)
    assert load_recipe(tmp_path / "r.yaml", check_inputs=False).train_fasttext["domain"]["labels"]
    for bad, msg in (
        ("{}", "missing required key 'positive'"),
        ("{label_column: source, bogus: 1}", "unknown key"),
    ):
        (tmp_path / "r.yaml").write_text(base + f"train_fasttext:\n  domain: {bad}\n")
        with pytest.raises(MixerError, match=msg):
            load_recipe(tmp_path / "r.yaml", check_inputs=False)
