"""`mixer tag` (run taggers over a workdir) and `mixer train-fasttext` (train a classifier)."""

from __future__ import annotations

import click

from mixer.commands.options import (
    executor_options,
    nest,
    parse_sets,
    quiet_option,
    set_option,
    workers_option,
)
from mixer.errors import MixerError


def parse_settings(items: tuple[str, ...]) -> dict[str, dict]:
    """["gopher.min_words=100", ...] -> {"gopher": {"min_words": 100}} (the one --set parser)."""
    return nest(parse_sets(items, "quality.model=model.bin", "TAGGER.KEY"))


def _split_list(value: str | None) -> list[str]:
    return [x.strip() for x in (value or "").split(",") if x.strip()]


@click.command("tag")
@click.argument("workdir", type=click.Path(file_okay=False))
@click.option(
    "--taggers",
    required=True,
    help="Comma-separated taggers, e.g. gopher,c4,fineweb,lang,quality,tokens.",
)
@workers_option
@executor_options
@click.option("--sources", default=None, help="Comma-separated sources to tag (default: all).")
@set_option(
    "A tagger setting, repeatable: --set quality.model=m.bin --set gopher.min_words=100.",
    metavar="TAGGER.KEY=VALUE",
)
@quiet_option
def tag_command(workdir, taggers, workers, executor, sources, sets, quiet):
    """Tag every document of WORKDIR: writes WORKDIR/attributes/<tagger>/<source>/part-*.parquet.

    Parts already tagged with the same settings and models are skipped.
    """
    from mixer.tag import tag_workdir

    names = _split_list(taggers)
    if not names:
        raise MixerError("--taggers is empty: name at least one tagger")
    try:
        summary = tag_workdir(
            workdir,
            names,
            settings=parse_settings(sets),
            workers=workers,
            sources=_split_list(sources) or None,
            progress=not quiet,
            executor=executor,
        )
    finally:
        executor.close()
    click.echo(
        f"tagged {summary['parts_tagged']} part(s), skipped {summary['parts_skipped']} up to date; "
        + ", ".join(f"{k}: {v} docs" for k, v in summary["rows"].items())
    )


@click.command("train-fasttext")
@click.argument("workdir", type=click.Path(file_okay=False))
@click.option(
    "--positive",
    default=None,
    help="SQL selecting positive documents, e.g. \"source = 'encyclopedic'\".",
)
@click.option("--negative", default=None, help="SQL selecting negative documents.")
@click.option(
    "--label",
    "label_sqls",
    multiple=True,
    metavar="NAME=SQL",
    help="Multi-class mode instead of --positive/--negative, repeatable: --label math=\"source = 'math'\".",
)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="Where to write the model (.bin)."
)
@click.option(
    "--label-positive", default="hq", show_default=True, help="Label name of positive documents."
)
@click.option(
    "--label-negative", default="lq", show_default=True, help="Label name of negative documents."
)
@click.option("--text-field", default="text", show_default=True, help="Column holding the text.")
@click.option(
    "--test-fraction",
    default=0.1,
    show_default=True,
    type=float,
    help="Held-out share for metrics.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Shuffle/split/training seed.")
@click.option(
    "--label-column",
    default=None,
    help="Multi-class mode: each document's value of this column is its label (e.g. source).",
)
@click.option(
    "--max-docs",
    default=None,
    type=int,
    help="At most this many documents per label (default 50,000 with the compact preset; 0: all).",
)
@click.option(
    "--preset",
    type=click.Choice(["compact", "dclm"]),
    default="compact",
    show_default=True,
    help="compact: 200k buckets, quantised model, bounded sample; dclm: 2M buckets, full float model.",
)
@click.option("--epoch", default=None, type=int, help="fastText epochs (default 5).")
@click.option("--lr", default=None, type=float, help="fastText learning rate (default 0.1).")
@click.option("--word-ngrams", default=None, type=int, help="fastText wordNgrams (default 2).")
@click.option("--dim", default=None, type=int, help="fastText vector size (default 100).")
@click.option(
    "--bucket", default=None, type=int, help="fastText n-gram hash buckets (default 2,000,000)."
)
@executor_options
def train_fasttext_command(
    workdir, positive, negative, label_sqls, out, label_positive, label_negative, text_field,
    test_fraction, seed, label_column, max_docs, preset, epoch, lr, word_ngrams, dim, bucket,
    executor,
):  # fmt: skip
    """Train a fastText classifier from WORKDIR's documents selected by SQL; print held-out
    precision/recall and write the model (DCLM-like bigram settings by default).

    Runs as the `train-fasttext.<model file name>` stage of `mixer run`: a rerun with the same
    documents, attributes, selections and settings is skipped."""
    from mixer.train_fasttext import run_train_fasttext

    labels = None
    if label_sqls:
        if positive or negative:
            raise MixerError("give either --label NAME=SQL or --positive/--negative, not both")
        labels = {}
        for item in label_sqls:
            name, sep, sql = item.partition("=")
            if not sep or not name.strip() or not sql.strip():
                raise MixerError(f"--label {item!r}: expected NAME=SQL")
            labels[name.strip()] = sql
    spec = {
        "positive": positive, "negative": negative, "labels": labels,
        "label_column": label_column, "preset": preset, "label_positive": label_positive,
        "label_negative": label_negative, "text_field": text_field,
        "test_fraction": test_fraction, "max_docs": max_docs, "epoch": epoch, "lr": lr,
        "word_ngrams": word_ngrams, "dim": dim, "bucket": bucket,
    }  # fmt: skip
    try:
        m, _ = run_train_fasttext(
            workdir, out, {k: v for k, v in spec.items() if v is not None}, seed,
            executor=executor, echo=click.echo,
        )  # fmt: skip
    finally:
        executor.close()
    sel = ", ".join(f"{k}: {v}" for k, v in m["selected"].items())
    click.echo(
        f"selected documents: {sel}; trained on {m['train']['examples']}, held out {m['test_docs']}"
    )
    for name in m["selected"]:
        if m["test_docs"]:
            click.echo(
                f"  {name:>12}  precision {m['precision'][name]:.3f}  recall {m['recall'][name]:.3f}"
                f"  F1 {m['f1'][name]:.3f}"
            )
    if m["test_docs"]:
        click.echo(f"  accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}")
    kind = "quantised" if m["train"].get("quantized") else "float"
    click.echo(f"model written to {m['model']} ({m['model_bytes'] / 1e6:.1f} MB, {kind})")
    click.echo(f"held-out metrics written to {m['metrics_file']}")


COMMANDS = [tag_command, train_fasttext_command]
