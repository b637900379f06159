"""`mixer export olmo-core`: hand a mix's token arrays to OLMo-core."""

from __future__ import annotations

import click


@click.group("export")
def export_group():
    """Write configs that other tools read the mix's token arrays with."""


@export_group.command("olmo-core")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option(
    "--out", "out", default=None, help="Write here (.py, .yaml/.yml or .txt); default stdout."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["python", "yaml", "mix"]),
    default=None,
    help="python (both configs), yaml (one config, for Config.from_yaml) or mix "
    "(OLMo-core's label,path lines). Default: from the suffix of --out, else python.",
)
@click.option(
    "--dataset",
    type=click.Choice(["single", "mixture"]),
    default=None,
    help="For yaml: one dataset over every part, or the per-source mixture "
    "(default: mixture when the arrays are per source).",
)
@click.option("--sequence-length", type=int, default=4096, show_default=True)
@click.option(
    "--global-batch-size",
    type=int,
    default=None,
    help="Tokens per batch, a multiple of the sequence length "
    "(default: 512 sequences, fewer when the mix is smaller).",
)
@click.option(
    "--prefix",
    default=None,
    help="Replace the tokens folder in the paths (e.g. s3://bucket/tokens/mix after a copy).",
)
@click.option(
    "--pad-id",
    type=int,
    default=None,
    help="Padding id (default: the tokenizer's pad token, else EOS).",
)
@click.option(
    "--tokenizer-id",
    default=None,
    help="TokenizerConfig.identifier (default: the tokenizer's path).",
)
@click.option(
    "--work-dir", default=None, help="OLMo-core's dataset work_dir (its cache of indices)."
)
@click.option(
    "--seed", type=int, default=None, help="Seed of the source mixture (default: tokens.json's)."
)
def olmo_core_cmd(
    path,
    out,
    fmt,
    dataset,
    sequence_length,
    global_batch_size,
    prefix,
    pad_id,
    tokenizer_id,
    work_dir,
    seed,
):
    """A ready OLMo-core data config for the mix as it was built.

    PATH is a tokens folder (with tokens.json), WORKDIR/mixes/<mix>, or a workdir with one
    tokenized mix. The Python form defines `dataset` (NumpyFSLDatasetConfig over every part) and,
    for per-source arrays, `source_mixture` and `mixture_dataset` (target ratios and maximum
    repetition from the mix manifest)."""
    from mixer.olmo_core import export_olmo_core

    text, export = export_olmo_core(
        path, out=out, fmt=fmt, dataset=dataset, sequence_length=sequence_length,
        global_batch_size=global_batch_size, prefix=prefix, pad_id=pad_id,
        tokenizer_id=tokenizer_id, work_dir=work_dir, seed=seed,
    )  # fmt: skip
    if out is None:
        click.echo(text, nl=False)
    else:
        n = len(export["sources"] or [])
        what = f"{n} sources" if n else "one mixed set of parts"
        click.echo(
            f"{len(export['paths'])} parts ({what}), {export['requested_tokens']:,} tokens -> {out}"
        )


COMMANDS = [export_group]
