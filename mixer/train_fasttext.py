"""Train a fastText classifier from the documents of a workdir, labelled by SQL selections
or by a column (e.g. each document's source).

Each label is a DuckDB boolean expression over the documents table joined (by source and id)
with every attribute table that exists, e.g. "source = 'encyclopedic'" or
"gopher__keep AND source = 'web'". A document matching several selections takes the first
label that matches. With `label_column` (e.g. "source") every document is labelled by that
column's value: a multi-class domain classifier whose labels are the sources themselves.

Documents are shuffled deterministically (md5 of seed and id), capped at `max_docs` per label
(DEFAULT_MAX_DOCS unless the recipe says otherwise; 0 = no cap), and a `test_fraction` of them
is held out: per-label precision, recall and F1 and the macro-F1 are returned, printed by the
command and stored as JSON beside the model (<model>.metrics.json).

Model size: the default preset "compact" trains with 200,000 hash buckets and quantises the
model (product quantisation, the 100,000 largest-norm rows kept: a few MB instead of the
1-2 GB of a 2M-bucket float model). preset "dclm" keeps DCLM's settings (2M buckets, no
quantisation, no cap on documents unless max_docs is given).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb

from mixer import fasttext_model
from mixer.errors import MixerError
from mixer.schema import attributes_dir, documents_dir, list_taggers
from mixer.sql_views import file_list, safe_connect

FETCH_ROWS = 4096
MAX_TEST_DOCS = 100_000
DEFAULT_MAX_DOCS = 50_000  # per label; 0 = every selected document
PRESETS = {
    # bounded and small by default
    "compact": {"bucket": 200_000, "quantize": True, "cutoff": 100_000},
    # DCLM's fastText quality classifier settings, in full
    "dclm": {"bucket": 2_000_000, "quantize": False, "cutoff": 0},
}


def _sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _document_parts(workdir: Path) -> list[Path]:
    docs = sorted(documents_dir(workdir).glob("*/part-*.parquet"))  # exact paths: no globbing
    if not docs:
        raise MixerError(f"no documents under {documents_dir(workdir)}: run `mixer ingest` first")
    return docs


def _connect(workdir: Path) -> duckdb.DuckDBPyConnection:
    docs = _document_parts(workdir)
    # recipe SQL runs here: files outside documents/ and attributes/ are out of reach
    con = safe_connect([documents_dir(workdir), attributes_dir(workdir)])
    # joined on the folder (a source string may have a derived folder name: schema.source_dir_name)
    con.execute(
        "CREATE VIEW documents AS SELECT * EXCLUDE (filename), "
        f"regexp_extract(filename, '([^/]+)/part-[0-9]+[.]parquet$', 1) AS source_dir "
        f"FROM read_parquet({file_list(docs)}, filename = true)"
    )
    joins = []
    for i, tagger in enumerate(list_taggers(workdir)):
        parts = sorted(attributes_dir(workdir, tagger).glob("*/part-*.parquet"))
        if not parts:
            continue
        con.execute(
            f"CREATE VIEW attr_{i} AS SELECT * EXCLUDE (filename), "
            f"regexp_extract(filename, '([^/]+)/part-[0-9]+[.]parquet$', 1) AS source_dir "
            f"FROM read_parquet({file_list(parts)}, filename = true, union_by_name = true)"
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
    label_column: str | None = None,
    label_positive: str = "hq",
    label_negative: str = "lq",
    text_field: str = "text",
    test_fraction: float = 0.1,
    seed: int = 0,
    max_docs: int | None = None,
    preset: str = "compact",
    quantize: bool | None = None,
    cutoff: int | None = None,
    lr: float | None = None,
    dim: int | None = None,
    epoch: int | None = None,
    word_ngrams: int | None = None,
    min_count: int | None = None,
    bucket: int | None = None,
    loss: str | None = None,
    thread: int | None = None,
) -> dict:
    """Train and save a classifier; returns metrics (per-label precision/recall/F1 and macro-F1
    on held-out docs), also written to <model>.metrics.json.

    Either `positive` and `negative` SQL (binary: labels label_positive / label_negative),
    `labels` {name: SQL} for several classes, or `label_column` (each document's value of that
    column is its label, e.g. "source").
    """
    workdir = Path(workdir)
    if preset not in PRESETS:
        raise MixerError(f"preset must be one of {', '.join(PRESETS)} (got {preset!r})")
    settings = dict(PRESETS[preset])
    if quantize is not None:
        settings["quantize"] = bool(quantize)
    if cutoff is not None:
        settings["cutoff"] = int(cutoff)
    if bucket is None:
        bucket = settings["bucket"]
    if max_docs is None:
        max_docs = DEFAULT_MAX_DOCS if preset == "compact" else 0
    if max_docs < 0:
        raise MixerError(f"max_docs must be >= 0 (0: no cap), got {max_docs}")
    if label_column is not None:
        if labels is not None or positive or negative:
            raise MixerError("give label_column or label selections (positive/negative, labels)")
        return _train(
            workdir, out, None, label_column, text_field, test_fraction, seed, max_docs,
            settings, lr, dim, epoch, word_ngrams, min_count, bucket, loss, thread,
        )  # fmt: skip
    if labels is None:
        if not positive or not negative:
            raise MixerError(
                "give --positive and --negative selections (or --label NAME=SQL, repeated)"
            )
        labels = {label_positive: positive, label_negative: negative}
    if len(labels) < 2:
        raise MixerError("need at least two labels to train a classifier")
    return _train(
        workdir, out, labels, None, text_field, test_fraction, seed, max_docs,
        settings, lr, dim, epoch, word_ngrams, min_count, bucket, loss, thread,
    )  # fmt: skip


def _label_name(value) -> str:
    """A column value as a fastText label: whitespace becomes '_'."""
    return "_".join(str(value).split()) or "_"


def _train(
    workdir, out, labels, label_column, text_field, test_fraction, seed, max_docs,
    settings, lr, dim, epoch, word_ngrams, min_count, bucket, loss, thread,
) -> dict:  # fmt: skip
    if not 0.0 <= test_fraction < 1.0:
        raise MixerError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    con = _connect(workdir)
    cols = {r[0] for r in con.execute("DESCRIBE docs").fetchall()}
    if text_field not in cols:
        raise MixerError(
            f"--text-field {text_field!r} is not a column (columns: {', '.join(sorted(cols))})"
        )
    if label_column is not None:
        if label_column not in cols:
            raise MixerError(
                f"label_column {label_column!r} is not a column (columns: {', '.join(sorted(cols))})"
            )
        values = [
            r[0]
            for r in con.execute(
                f'SELECT DISTINCT CAST("{label_column}" AS VARCHAR) AS v FROM docs '
                "WHERE v IS NOT NULL ORDER BY v"
            ).fetchall()
        ]
        names = list(dict.fromkeys(_label_name(v) for v in values))
        if len(names) < 2:
            raise MixerError(
                f"label_column {label_column!r} has {len(names)} distinct value(s): need two or more"
            )
        index = {v: names.index(_label_name(v)) for v in values}
        case = " ".join(f"WHEN {_sql_str(v)} THEN {i}" for v, i in index.items())
        label_sql = f'CASE CAST("{label_column}" AS VARCHAR) {case} END'
    else:
        names = list(labels)
        for name in names:
            fasttext_model._label(name)  # validates the name
        label_sql = (
            "CASE "
            + " ".join(f"WHEN ({sql}) THEN {i}" for i, sql in enumerate(labels.values()))
            + " END"
        )
    limit = (
        f"QUALIFY row_number() OVER (PARTITION BY label ORDER BY shuffle) <= {int(max_docs)}"
        if max_docs
        else ""
    )
    query = f"""
        SELECT id, label, text FROM (
            SELECT id, CAST("{text_field}" AS VARCHAR) AS text, {label_sql} AS label,
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
    quant = {"cutoff": settings["cutoff"]} if settings["quantize"] else None
    info = fasttext_model.train_pairs(
        training_pairs(), out, quantize=quant, **{"seed": seed, **hyper}
    )
    metrics = evaluate(out, test, names)
    result = {
        "model": str(out),
        "model_bytes": Path(out).stat().st_size,
        "labels": names,
        "label_column": label_column,
        "max_docs": max_docs or None,
        "selected": selected,
        "train": info,
        **metrics,
    }
    metrics_path = metrics_path_for(out)
    # beside the model, which it names by file name: the same bytes in any workdir
    stored = {**result, "model": Path(out).name}
    metrics_path.write_text(json.dumps(stored, indent=1, default=str) + "\n")
    result["metrics_file"] = str(metrics_path)
    return result


def metrics_path_for(model: str | Path) -> Path:
    """Where the held-out metrics of a model are stored: beside it, <stem>.metrics.json."""
    model = Path(model)
    return model.with_name(model.stem + ".metrics.json")


def evaluate(model_path: str | Path, test: list[tuple[str, int]], names: list[str]) -> dict:
    """Precision, recall and F1 per label on held-out (text, label index) pairs; macro-F1."""
    if not test:
        return {"test_docs": 0, "precision": {}, "recall": {}, "f1": {}, "macro_f1": None}
    model = fasttext_model.load(model_path)
    predicted, _ = fasttext_model.predict(model, [t for t, _ in test], k=1)
    index = {name: i for i, name in enumerate(names)}
    pred = [index.get(p[0].removeprefix(fasttext_model.LABEL_PREFIX), -1) if p else -1
            for p in predicted]  # fmt: skip
    truth = [y for _, y in test]
    precision, recall, f1, support = {}, {}, {}, {}
    for i, name in enumerate(names):
        tp = sum(1 for p, y in zip(pred, truth, strict=True) if p == i and y == i)
        pp = sum(1 for p in pred if p == i)
        ap = sum(1 for y in truth if y == i)
        precision[name] = tp / pp if pp else 0.0
        recall[name] = tp / ap if ap else 0.0
        both = precision[name] + recall[name]
        f1[name] = 2 * precision[name] * recall[name] / both if both else 0.0
        support[name] = ap
    present = [n for n in names if support[n]]
    accuracy = sum(1 for p, y in zip(pred, truth, strict=True) if p == y) / len(test)
    return {
        "test_docs": len(test),
        "accuracy": accuracy,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
        "macro_f1": sum(f1[n] for n in present) / len(present) if present else None,
    }


def run_train_fasttext(
    workdir: str | Path,
    out: str | Path,
    spec: dict,
    seed: int = 0,
    executor=None,
    echo=None,
) -> tuple[dict, bool]:
    """`mixer train-fasttext`: run TrainFastTextStage (the `train-fasttext.<name>` stage of
    `mixer run`, named after the model file) on `executor` (default: one local process) under
    the workdir lock; `spec` holds train_from_workdir's keywords. An unchanged retraining (same
    documents, attributes, selections and settings) is skipped. Returns (the held-out metrics
    stored beside the model, skipped)."""
    import re

    from mixer.pipeline import TrainFastTextStage
    from mixer.stage import run_command_stages

    workdir = Path(workdir)
    _document_parts(workdir)  # none: one line, before the lock creates state/
    name = re.sub(r"[^A-Za-z0-9_-]", "_", Path(out).stem) or "model"
    stage = TrainFastTextStage(workdir, name, Path(out), spec, seed, list_taggers(workdir))
    _, skipped = run_command_stages([stage], workdir, executor, echo=echo)
    metrics = json.loads(metrics_path_for(out).read_text())
    metrics["metrics_file"] = str(metrics_path_for(out))
    return metrics, skipped
