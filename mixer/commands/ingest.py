"""`mixer ingest`: raw JSONL shards -> documents Parquet."""

from __future__ import annotations

import click

from mixer.commands.options import executor_options, quiet_option, workers_option
from mixer.ingest import GROUP_BELOW_BYTES, FieldMap, ingest
from mixer.recipe_schema import parse_size


def _group_below(ctx, param, value) -> int:
    if str(value).strip() == "0":
        return 0
    size = parse_size(int(value) if str(value).isdigit() else value)
    if size is None:
        raise click.BadParameter(f"{value!r} is not a size (bytes, or like 8MB; 0: off)")
    return size


def print_ingest_summary(summary: dict) -> None:
    click.echo(
        f"lines read {summary['lines_read']:,}  ingested {summary['ingested']:,}  "
        f"quarantined {summary['quarantined']:,}  "
        f"(shards: {summary['shards_ingested']} ingested, {summary['shards_skipped']} unchanged and skipped)"
    )
    for reason, n in summary["quarantine_reasons"].items():
        click.echo(f"  quarantined {reason}: {n:,}")
    for err in summary.get("stream_errors", []):
        click.echo(
            f"  damaged stream {err['file']}: decoding failed at byte {err['offset']:,} "
            f"(line {err['line']:,}); every line before it was kept"
        )
    for src, c in summary["sources"].items():
        dup = f", {c['duplicate_ids']:,} duplicate ids" if c.get("duplicate_ids") else ""
        click.echo(
            f"  source {src}: {c.get('ingested', 0):,} ingested, {c.get('quarantined', 0):,} quarantined{dup}"
        )


@click.command("ingest")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--out",
    "workdir",
    required=True,
    type=click.Path(file_okay=False),
    help="The workdir to write documents/ into.",
)
@click.option(
    "--source",
    default=None,
    help="Source for every record, any string (default: each record's `source`, else the "
    "folder name). Stored as written; its folder under documents/ is derived safely.",
)
@workers_option
@executor_options
@click.option(
    "--id-field", default="id", show_default=True, help="Input field holding the document id."
)
@click.option(
    "--text-field", default="text", show_default=True, help="Input field holding the text."
)
@click.option("--source-field", default="source", show_default=True)
@click.option("--added-field", default="added", show_default=True)
@click.option("--created-field", default="created", show_default=True)
@click.option("--metadata-field", default="metadata", show_default=True)
@click.option(
    "--group-below",
    default=f"{GROUP_BELOW_BYTES >> 20}MB",
    show_default=True,
    callback=_group_below,
    help="Shards smaller than this (on disk) are ingested together, consecutive ones of a "
    "source up to 4x this per task, into one part per source: many small files make a few "
    "parts, not one each. 0: a task and a part per shard.",
)
@quiet_option
def ingest_cmd(
    inputs,
    workdir,
    source,
    workers,
    executor,
    id_field,
    text_field,
    source_field,
    added_field,
    created_field,
    metadata_field,
    group_below,
    quiet,
):
    """Stream JSONL shards (.jsonl, .json.gz, .jsonl.gz, .jsonl.zst; files, folders or globs) into
    WORKDIR/documents/<source>/part-NNNNN.parquet. Bad lines go to WORKDIR/quarantine/ with
    their file, line and reason; unchanged shards are skipped on rerun (small shards are
    ingested, and skipped, together: --group-below)."""
    fields = FieldMap(
        id_field, text_field, source_field, added_field, created_field, metadata_field
    )
    from mixer.errors import MixerError
    from mixer.executor import use
    from mixer.stage import workdir_lock

    try:
        lock = workdir_lock(workdir)
        lock.__enter__()
    except OSError as e:  # the workdir (or a folder above it) can't be made: one line, exit 2
        raise MixerError(f"output {workdir}: not writable ({e.strerror})") from None
    try:
        with use(executor):
            summary = ingest(
                list(inputs),
                workdir,
                source=source,
                fields=fields,
                workers=workers,
                progress=not quiet,
                group_below=group_below,
            )
    finally:
        executor.close()
        lock.__exit__(None, None, None)
    print_ingest_summary(summary)


COMMANDS = [ingest_cmd]
