"""`mixer dedup`: exact and MinHash-LSH near-duplicate clusters, keep flags, repeated paragraphs."""

from __future__ import annotations

import click

from mixer.commands.options import executor_options, quiet_option, workers_option
from mixer.dedup.clusters import DEFAULT_KEEP_RULE, KEEP_RULES
from mixer.dedup.minhash import SCHEMES
from mixer.dedup.stage import DEFAULT_MEMORY_LIMIT, DEFAULT_SEED, run_dedup
from mixer.errors import MixerError


def _sources(values: tuple[str, ...]) -> list[str] | None:
    names = [s.strip() for v in values for s in v.split(",") if s.strip()]
    return names or None


def print_dedup_summary(stats: dict) -> None:
    if stats.get("cached"):
        click.echo("dedup: up to date (same documents and settings); nothing redone")
    lsh = stats.get("lsh")
    if lsh:
        probe = ", ".join(f"J={k}: {v}" for k, v in lsh["p_candidate_at"].items())
        click.echo(
            f"LSH {lsh['bands']} bands x {lsh['rows']} rows (effective threshold {lsh['effective_threshold']}): "
            f"P(candidate) {probe}; false-positive area {lsh['false_positive_area']}, "
            f"false-negative area {lsh['false_negative_area']}"
        )
    pairs = [
        f"{k.replace('_', ' ')} {stats[k]:,}"
        for k in (
            "candidate_pairs",
            "signature_rejected",
            "verification_rejected",
            "verified_pairs",
        )
        if k in stats
    ]
    if pairs:
        click.echo("pairs: " + ", ".join(pairs))
    if "largest_cluster" in stats:
        click.echo(f"largest cluster: {stats['largest_cluster']:,} documents")
    click.echo(
        f"documents {stats['documents']:,}  kept {stats['kept']:,}  removed {stats['removed']:,}"
    )
    for source, s in stats["per_source"].items():
        click.echo(
            f"  {source}: {s['documents']:,} documents, {s['removed']:,} removed "
            f"({s['exact_duplicates']:,} exact duplicates)"
        )
    sizes = stats["clusters_by_size"]
    multi = {k: v for k, v in sizes.items() if k != "1"}
    if multi:
        click.echo("clusters by size: " + ", ".join(f"{k}: {v:,}" for k, v in multi.items()))
    for c in stats.get("largest_clusters", [])[:3]:
        click.echo(f"  cluster {c['cluster']}: {c['size']} documents, kept {c['kept_id']}")
    if "paragraphs" in stats:
        p = stats["paragraphs"]
        click.echo(
            f"repeated paragraphs flagged: {p['flagged']:,} ({p['chars']:,} chars) "
            f"in {p['documents_with_spans']:,} documents"
        )


@click.command("dedup")
@click.argument("workdir", type=click.Path(file_okay=False))
@click.option(
    "--sources",
    multiple=True,
    help="Sources taking part (comma list or repeated; default: all). Across them, a page is one cluster.",
)
@click.option(
    "--exact",
    is_flag=True,
    help="Exact dedup on the normalised text (alone unless --minhash is given too).",
)
@click.option(
    "--exact-field",
    default=None,
    metavar="FIELD",
    help="Also join documents whose metadata FIELD is equal (e.g. url): one kept per value.",
)
@click.option(
    "--minhash",
    is_flag=True,
    help="MinHash-LSH near-duplicates (alone unless --exact is given too). Neither flag: both.",
)
@click.option("--ngram", type=int, default=5, show_default=True, help="Words per shingle.")
@click.option(
    "--num-perm",
    type=int,
    default=None,
    help="Permutations per signature (default: 112, or bands x rows).",
)
@click.option(
    "--bands", type=int, default=None, help="LSH bands (with --rows; overrides --threshold)."
)
@click.option("--rows", type=int, default=None, help="Rows per band (with --bands).")
@click.option(
    "--threshold",
    type=float,
    default=0.8,
    show_default=True,
    help="Jaccard similarity to catch: picks bands x rows (P(candidate) >= 0.92 there) and the check floor. "
    "For low thresholds (0.6) add --verify.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Remove a document only when the exact Jaccard of its shingles with the kept one is >= the threshold "
    "(default: the signature estimate, within 3 standard errors).",
)
@click.option(
    "--no-signature-check",
    is_flag=True,
    help="Keep every LSH candidate pair (default: drop pairs whose full signatures estimate J well below the threshold).",
)
@click.option(
    "--paragraphs",
    is_flag=True,
    help="Also flag repeated paragraphs (after the first occurrence) as spans.",
)
@click.option(
    "--keep-rule",
    default=DEFAULT_KEEP_RULE,
    show_default=True,
    help=f"Which member of a cluster is kept: a comma list of {', '.join(KEEP_RULES)} (in order; corpus order breaks ties).",
)
@click.option(
    "--seed",
    type=int,
    default=DEFAULT_SEED,
    show_default=True,
    help="MinHash permutation seed (datasketch-compatible).",
)
@click.option(
    "--scheme",
    type=click.Choice(SCHEMES),
    default="affine32",
    show_default=True,
    help="datasketch MinHash scheme (affine32: datasketch >= 2.0; legacy: older).",
)
@click.option(
    "--memory-limit",
    default=DEFAULT_MEMORY_LIMIT,
    show_default=True,
    help="Memory for one grouping task: the band keys are split into as many partitions as needed to fit.",
)
@workers_option
@executor_options
@quiet_option
def dedup_command(
    workdir, sources, exact, exact_field, minhash, ngram, num_perm, bands, rows, threshold, verify,
    no_signature_check, paragraphs, keep_rule, seed, scheme, memory_limit, workers, executor,
    quiet,
):  # fmt: skip
    """Find exact and near-duplicate documents in WORKDIR/documents and write
    WORKDIR/attributes/dedup/<source>/part-*.parquet (dedup__exact_cluster,
    dedup__minhash_cluster, dedup__keep, ...), with stats in WORKDIR/state/dedup/stats.json.

    A document is removed only when it is similar to the document kept for it (no chains).
    A rerun with the same documents and settings does nothing; a killed run resumes.
    """
    if not exact and not minhash:
        exact = minhash = True
    if not 0.0 < threshold < 1.0:
        raise MixerError(f"--threshold must be between 0 and 1 (got {threshold})")
    from mixer.executor import use
    from mixer.stage import workdir_lock

    try:
        with workdir_lock(workdir), use(executor):
            stats = run_dedup(
                workdir,
                sources=_sources(sources),
                exact=exact,
                exact_field=exact_field,
                minhash=minhash,
                ngram=ngram,
                num_perm=num_perm,
                bands=bands,
                rows=rows,
                threshold=threshold,
                verify=verify,
                paragraphs=paragraphs,
                keep_rule=keep_rule,
                workers=workers,
                progress=not quiet,
                seed=seed,
                scheme=scheme,
                memory_limit=memory_limit,
                signature_check=not no_signature_check,
            )
    finally:
        executor.close()
    print_dedup_summary(stats)


COMMANDS = [dedup_command]
