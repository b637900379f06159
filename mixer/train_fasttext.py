"""Train a fastText classifier from the documents of a workdir, labelled by SQL selections.

Each label is a DuckDB boolean expression over the documents table joined (by source and id)
with every attribute table that exists, e.g. "source = 'encyclopedic'" or
"gopher__keep AND source = 'web'". A document matching several selections takes the first
label that matches. Documents are shuffled deterministically (md5 of seed and id), capped at
`max_docs` per label, and a `test_fraction` of them is held out to report precision/recall.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb

from mixer import fasttext_model
from mixer.errors import MixerError
from mixer.schema import attributes_dir, documents_dir, list_taggers
from mixer.sql_views import safe_connect

FETCH_ROWS = 4096
MAX_TEST_DOCS = 100_000


def _sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _connect(workdir: Path) -> duckdb.DuckDBPyConnection:
    docs_glob = documents_dir(workdir) / "*" / "part-*.parquet"
    if not any(documents_dir(workdir).glob("*/part-*.parquet")):
        raise MixerError(f"no documents under {documents_dir(workdir)}: run `mixer ingest` first")
    # recipe SQL runs here: files outside documents/ and attributes/ are out of reach
    con = safe_connect([documents_dir(workdir), attributes_dir(workdir)])
    # joined on the folder (a source string may have a derived folder name: schema.source_dir_name)
    con.execute(
        "CREATE VIEW documents AS SELECT * EXCLUDE (filename), "
        f"regexp_extract(filename, '([^/]+)/part-[0-9]+[.]parquet$', 1) AS source_dir "
        f"FROM read_parquet({_sql_str(docs_glob)}, filename = true)"
    )
    joins = []
    for i, tagger in enumerate(list_taggers(workdir)):
        if not any(attributes_dir(workdir, tagger).glob("*/part-*.parquet")):
            continue
        pattern = attributes_dir(workdir, tagger) / "*" / "part-*.parquet"
        con.execute(
            f"CREATE VIEW attr_{i} AS SELECT * EXCLUDE (filename), "
            f"regexp_extract(filename, '([^/]+)/part-[0-9]+[.]parquet$', 1) AS source_dir "
            f"FROM read_parquet({_sql_str(pattern)}, filename = true)"
        )
        joins.append(f"LEFT JOIN attr_{i} USING (source_dir, id)")
    con.execute("CREATE VIEW docs AS SELECT * FROM documents " + " ".join(joins))
    return con


def _split_value(seed: int, doc_id: str) -> float:
    h = hashlib.blake2b(f"{seed}\x00{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def train_from_workdir(
    workdir: str | Path,
    positive: str | None = None,
    negative: str | None = None,
    out: str | Path = "model.bin",
    *,
    labels: dict[str, str] | None = None,
    label_positive: str = "hq",
    label_negative: str = "lq",
    text_field: str = "text",
    test_fraction: float = 0.1,
    seed: int = 0,
    max_docs: int | None = None,
    lr: float | None = None,
    dim: int | None = None,
    epoch: int | None = None,
    word_ngrams: int | None = None,
    min_count: int | None = None,
    bucket: int | None = None,
    loss: str | None = None,
    thread: int | None = None,
) -> dict:
    """Train and save a classifier; returns metrics (per-label precision/recall on held-out docs).

    Either `positive` and `negative` SQL (binary: labels label_positive / label_negative) or
    `labels` {name: SQL} for several classes.
    """
    workdir = Path(workdir)
    if labels is None:
        if not positive or not negative:
            raise MixerError(
                "give --positive and --negative selections (or --label NAME=SQL, repeated)"
            )
        labels = {label_positive: positive, label_negative: negative}
    if len(labels) < 2:
        raise MixerError("need at least two labels to train a classifier")
    if not 0.0 <= test_fraction < 1.0:
        raise MixerError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    names = list(labels)
    for name in names:
        fasttext_model._label(name)  # validates the name

    con = _connect(workdir)
    cols = {r[0] for r in con.execute("DESCRIBE docs").fetchall()}
    if text_field not in cols:
        raise MixerError(
            f"--text-field {text_field!r} is not a column (columns: {', '.join(sorted(cols))})"
        )
    case = " ".join(f"WHEN ({sql}) THEN {i}" for i, sql in enumerate(labels.values()))
    limit = (
        f"QUALIFY row_number() OVER (PARTITION BY label ORDER BY shuffle) <= {int(max_docs)}"
        if max_docs
        else ""
    )
    query = f"""
        SELECT id, label, text FROM (
            SELECT id, CAST("{text_field}" AS VARCHAR) AS text, CASE {case} END AS label,
                   md5({_sql_str(str(seed))} || id) AS shuffle
            FROM docs)
        WHERE label IS NOT NULL {limit}
        ORDER BY shuffle, id
    """
    try:
        reader = con.sql(query).to_arrow_reader(FETCH_ROWS)
    except duckdb.Error as e:
        msg = str(e).splitlines()[0]
        raise MixerError(f"bad selection SQL: {msg}") from None

    test: list[tuple[str, int]] = []
    selected = dict.fromkeys(names, 0)

    def batches():
        try:
            yield from reader
        except duckdb.Error as e:  # errors found while the query runs
            raise MixerError(f"bad selection SQL: {str(e).splitlines()[0]}") from None

    def training_pairs():
        for batch in batches():
            d = batch.to_pydict()
            for doc_id, label, text in zip(d["id"], d["label"], d["text"], strict=True):
                selected[names[label]] += 1
                if (
                    test_fraction
                    and len(test) < MAX_TEST_DOCS
                    and _split_value(seed, doc_id) < test_fraction
                ):
                    test.append((text or "", label))
                else:
                    yield text or "", names[label]

    # fastText settings left as None keep fasttext_model.DEFAULT_HYPER.
    hyper = {"lr": lr, "dim": dim, "epoch": epoch, "word_ngrams": word_ngrams, "min_count": min_count,
             "bucket": bucket, "loss": loss, "thread": thread}  # fmt: skip
    hyper = {k: v for k, v in hyper.items() if v is not None}
    info = fasttext_model.train_pairs(training_pairs(), out, **{"seed": seed, **hyper})
    metrics = evaluate(out, test, names)
    return {"model": str(out), "selected": selected, "train": info, **metrics}


def evaluate(model_path: str | Path, test: list[tuple[str, int]], names: list[str]) -> dict:
    """Precision and recall per label on held-out (text, label index) pairs."""
    if not test:
        return {"test_docs": 0, "precision": {}, "recall": {}}
    model = fasttext_model.load(model_path)
    predicted, _ = fasttext_model.predict(model, [t for t, _ in test], k=1)
    pred = [
        names.index(p[0].removeprefix(fasttext_model.LABEL_PREFIX)) if p else -1 for p in predicted
    ]
    precision, recall = {}, {}
    for i, name in enumerate(names):
        tp = sum(1 for p, (_, y) in zip(pred, test, strict=True) if p == i and y == i)
        pp = sum(1 for p in pred if p == i)
        ap = sum(1 for _, y in test if y == i)
        precision[name] = tp / pp if pp else 0.0
        recall[name] = tp / ap if ap else 0.0
    accuracy = sum(1 for p, (_, y) in zip(pred, test, strict=True) if p == y) / len(test)
    return {"test_docs": len(test), "accuracy": accuracy, "precision": precision, "recall": recall}
