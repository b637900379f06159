"""Commands of the tokenize stage: tokenize, verify-tokens, train-tokenizer."""

from __future__ import annotations

import click

from mixer.commands.options import executor_options, state_workdir_option, workers_option


@click.command("tokenize")
@click.argument("mix_dir", type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--tokenizer", "tokenizer_path", required=True, help="A tokenizers JSON file (tokenizer.json)."
)
@click.option("--out", "out_dir", required=True, help="Output folder for the token arrays.")
@click.option(
    "--dtype",
    type=click.Choice(["auto", "uint16", "uint32"]),
    default="auto",
    show_default=True,
    help="auto: uint16 when the vocabulary has at most 65,536 ids, else uint32.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the global document shuffle."
)
@workers_option
@executor_options
@click.option(
    "--max-tokens-per-part",
    type=int,
    default=50_000_000,
    show_default=True,
    help="Most tokens in one part-NNNNN.npy (a document never spans two parts).",
)
@click.option("--eos", default=None, help='EOS token string (default "<|endoftext|>").')
@click.option("--eos-id", type=int, default=None, help="EOS token id, instead of --eos.")
@click.option(
    "--bos", default=None, help="BOS token string, put before every document (default none)."
)
@click.option("--bos-id", type=int, default=None, help="BOS token id, instead of --bos.")
@click.option("--no-shuffle", is_flag=True, help="Keep the mix order (no global shuffle).")
@click.option(
    "--per-source",
    is_flag=True,
    help="One folder of parts per source (OUT/<source>/part-NNNNN.npy), e.g. for OLMo-core's "
    "SourceMixtureDatasetConfig.",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "tiktoken", "hf"]),
    default="auto",
    show_default=True,
    help="auto: a tiktoken Encoding built from the tokenizer.json when it gives HF's ids "
    "(byte-level BPE), else HF tokenizers. Checked against HF on a sample of every run.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def tokenize_cmd(
    mix_dir,
    tokenizer_path,
    out_dir,
    dtype,
    seed,
    workers,
    executor,
    max_tokens_per_part,
    eos,
    eos_id,
    bos,
    bos_id,
    no_shuffle,
    per_source,
    engine,
    quiet,
):
    """Tokenize a mix into shuffled, packed token arrays that OLMo's memmap loader reads.

    Writes OUT/part-NNNNN.npy (raw little-endian, no header), part-NNNNN.csv.gz (OLMo-core's
    metadata: start,end,id,src,loc, no header), part-NNNNN.index.parquet (id, source, start,
    end) and tokens.json. EOS is appended to every document; literal
    special-token strings inside text are encoded as text. A rerun with the same mix,
    tokenizer and settings does nothing.
    """
    from mixer.tokenization import tokenize_mix

    try:
        info = tokenize_mix(
            mix_dir,
            tokenizer_path,
            out_dir,
            dtype=dtype,
            seed=seed,
            workers=workers,
            max_tokens_per_part=max_tokens_per_part,
            eos=eos,
            eos_id=eos_id,
            bos=bos,
            bos_id=bos_id,
            progress=not quiet,
            shuffle=not no_shuffle,
            per_source=per_source,
            engine=engine,
            echo=None if quiet else click.echo,
            executor=executor,
        )
    finally:
        executor.close()
    click.echo(
        f"{info['documents']:,} documents, {info['total_tokens']:,} tokens ({info['dtype']}, "
        f"EOS id {info['eos_id']} {info['eos_token']!r}) in {len(info['parts'])} parts -> {out_dir}"
        f" (engine: {info['engine']['name']})"
    )
    for source, n in info["tokens_per_source"].items():
        click.echo(f"  {source}: {n:,} tokens, {info['documents_per_source'][source]:,} documents")


@click.command("verify-tokens")
@click.argument("tokens_dir", type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--mix", "mix_dir", default=None, help="The mix folder (default: the one in tokens.json)."
)
@click.option(
    "--tokenizer",
    "tokenizer_path",
    default=None,
    help="Tokenizer file (default: the one in tokens.json).",
)
@click.option(
    "--samples",
    type=int,
    default=32,
    show_default=True,
    help="Documents decoded and compared with the mix text (0: none).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def verify_tokens_cmd(tokens_dir, mix_dir, tokenizer_path, samples, seed, quiet):
    """Check token arrays against their index and tokens.json; exit 2 on any mismatch.

    Checks sizes, sha256, offsets, EOS at every document end, ids below the vocabulary size
    and totals; decodes sampled documents and compares them with the mix text.
    """
    from mixer.verify_tokens import verify_tokens

    r = verify_tokens(tokens_dir, mix_dir, samples, tokenizer_path, seed, progress=not quiet)
    click.echo(
        f"ok: {r['parts']} parts, {r['documents']:,} documents, {r['total_tokens']:,} tokens; "
        f"{r['samples_compared']} sampled documents match the mix text"
    )
    if r["note"]:
        click.echo(r["note"])


@click.command("train-tokenizer")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=str))
@click.option("--out", "out_path", required=True, help="Where to write tokenizer.json.")
@click.option(
    "--vocab-size",
    type=int,
    default=8192,
    show_default=True,
    help="Vocabulary size (<= 65,536 fits uint16).",
)
@click.option(
    "--max-docs", type=int, default=None, help="Train on a seeded sample of this many documents."
)
@click.option("--max-bytes", type=int, default=None, help="Train on about this many bytes of text.")
@click.option(
    "--min-frequency", type=int, default=2, show_default=True, help="Least count of a merged pair."
)
@click.option(
    "--special-tokens",
    default="<|endoftext|>,<|pad|>",
    show_default=True,
    help="Comma-separated special tokens; they take ids 0, 1, ... in this order.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the document sample.")
@state_workdir_option("training")
@executor_options
def train_tokenizer_cmd(
    inputs, out_path, vocab_size, max_docs, max_bytes, min_frequency, special_tokens, seed,
    workdir, executor,
):  # fmt: skip
    """Train a byte-level BPE tokenizer from a mix folder, a workdir or Parquet files.

    INPUTS are part-*.parquet files or folders holding them (a workdir is read through its
    documents/ folder). Deterministic: the same documents and settings give the same file.
    Runs as the `tokenizer` stage of `mixer run`: unchanged inputs and settings are skipped.
    """
    from mixer.train_tokenizer import run_train_tokenizer

    settings = {
        "vocab_size": vocab_size, "max_docs": max_docs, "seed": seed,
        "min_frequency": min_frequency, "max_bytes": max_bytes, "special_tokens": special_tokens,
    }  # fmt: skip
    try:
        r, _ = run_train_tokenizer(
            list(inputs), out_path, settings, workdir=workdir, executor=executor, echo=click.echo
        )
    finally:
        executor.close()
    specials = ", ".join(f"{k}={v}" for k, v in r["special_tokens"].items())
    click.echo(
        f"{r['vocab_size']:,} ids ({specials}) from {r['documents']:,} documents -> {r['path']}"
    )


COMMANDS = [tokenize_cmd, verify_tokens_cmd, train_tokenizer_cmd]
