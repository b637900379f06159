"""`mixer decon-index`: build the n-gram index of evaluation sets for the `decon` tagger."""

from __future__ import annotations

import click

from mixer.decon_index import DEFAULT_MIN_WORDS, DEFAULT_NGRAM, build_index


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
def decon_index(eval_sets, out, ngram, fields, min_words):
    """Build a decontamination index from evaluation JSONL files (.jsonl, .gz, .zst).

    EVAL_SETS are files, folders (every .jsonl inside) or globs. Text is lowercased,
    punctuation and symbols deleted and split on whitespace; every --ngram-word n-gram is
    hashed into a sorted uint64 array (8 bytes per n-gram) in one file at --out. Use it with
    `mixer tag WORKDIR --taggers decon --set decon.index=INDEX`.
    """
    manifest = build_index(eval_sets, out, ngram=ngram, fields=fields, min_words=min_words)
    click.echo(
        f"{out}: {manifest['ngrams']:,} {ngram}-grams from {manifest['records']:,} records in "
        f"{len(manifest['eval_files'])} file(s); {manifest['short_texts']:,} short texts kept "
        f"whole, {manifest['skipped_short']:,} under {min_words} words and "
        f"{manifest['empty_texts']:,} empty skipped"
    )


COMMANDS = [decon_index]
