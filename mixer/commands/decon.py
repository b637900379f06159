"""`mixer decon-index`: build the n-gram index of evaluation sets for the `decon` tagger."""

from __future__ import annotations

import click

from mixer.commands.options import executor_options, state_workdir_option
from mixer.decon_index import DEFAULT_MIN_WORDS, DEFAULT_NGRAM


@click.command("decon-index")
@click.argument("eval_sets", nargs=-1, required=True)
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False), help="Index file to write."
)
@click.option(
    "--ngram", default=DEFAULT_NGRAM, show_default=True, type=int, help="Words per n-gram."
)
@click.option(
    "--fields",
    default=None,
    help="Comma-separated JSON fields holding the evaluation text "
    "(default: 'text' when a record has it, else question,answer,choices).",
)
@click.option(
    "--min-words",
    default=DEFAULT_MIN_WORDS,
    show_default=True,
    type=int,
    help="Evaluation texts shorter than --ngram words become one n-gram of their own length; "
    "texts shorter than this are skipped (a 1-word gram would match almost everything).",
)
@state_workdir_option("build")
@executor_options
def decon_index(eval_sets, out, ngram, fields, min_words, workdir, executor):
    """Build a decontamination index from evaluation JSONL files (.jsonl, .gz, .zst).

    EVAL_SETS are files, folders (every .jsonl inside) or globs. Text is lowercased,
    punctuation and symbols deleted and split on whitespace; every --ngram-word n-gram is
    hashed into a sorted uint64 array (8 bytes per n-gram) in one file at --out. Use it with
    `mixer tag WORKDIR --taggers decon --set decon.index=INDEX`. Runs as the `decon-index`
    stage of `mixer run`: a rebuild with the same files and settings is skipped.
    """
    from mixer.decon_index import run_decon_index

    settings = {"ngram": ngram, "fields": fields, "min_words": min_words}
    try:
        m, _ = run_decon_index(
            list(eval_sets), out, settings, workdir=workdir, executor=executor, echo=click.echo
        )
    finally:
        executor.close()
    click.echo(
        f"{out}: {m['ngrams']:,} {ngram}-grams from {m['records']:,} records in "
        f"{m['eval_files']} file(s); {m['short_texts']:,} short texts kept "
        f"whole, {m['skipped_short']:,} under {min_words} words and "
        f"{m['empty_texts']:,} empty skipped"
    )


COMMANDS = [decon_index]
