"""`mixer run`, `mixer report`, `mixer sql`, `mixer explain`: the whole pipeline and inspection."""

from __future__ import annotations

import json

import click

from mixer.commands.options import (
    RECIPE_SET_HELP,
    executor_options,
    parse_sets,
    quiet_option,
    set_option,
    workers_option,
)
from mixer.pipeline import STAGES, run_recipe


@click.command("run")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--workdir", default=None, help="Workdir (default: the recipe's `workdir`).")
@workers_option
@executor_options
@click.option(
    "--until",
    default=None,
    metavar="STAGE",
    help=f"Stop after this stage: a step ({', '.join(STAGES)}) or a stage name (ingest.web, "
    "mix.select, ...).",
)
@click.option(
    "--force",
    multiple=True,
    metavar="STAGE",
    help="Rerun this stage (a step or a stage name, exactly) even if it is up to date; the "
    "stages that read its outputs rerun as their inputs changed. Repeatable.",
)
@set_option(RECIPE_SET_HELP)
@quiet_option
def run_cmd(recipe, workdir, workers, executor, until, force, sets, quiet):
    """Run a recipe end to end: ingest, tag, dedup, mix, tokenize (and train), then the report.

    Every stage is cached by its settings and inputs: a rerun with nothing changed does no work,
    and a killed run resumes where it stopped. One run at a time per workdir."""
    wd = run_recipe(
        recipe,
        workdir=workdir,
        workers=workers,
        until=until,
        force=tuple(force),
        quiet=quiet,
        overrides=parse_sets(sets),
        executor=executor,
    )
    if not quiet:
        from mixer.remote_workdir import workdir_url

        where = f"{workdir_url(workdir)}, mirror {wd}" if workdir_url(workdir) else wd
        click.echo(f"done: {where}  (log: {wd / 'mixer.log'})")


@click.command("report")
@click.argument("workdir", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--recipe",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="The recipe, to include its mix and tokens.",
)
def report_cmd(workdir, recipe):
    """Rebuild WORKDIR/report/report.json and report.html from what the stages wrote
    (the mix and its tokens too: the recipe's, or the workdir's only mix)."""
    from mixer.recipe import load_recipe
    from mixer.report import build_report

    paths = build_report(workdir, recipe=load_recipe(recipe) if recipe else None)
    click.echo(f"report: {paths['html']}")


@click.command("sql")
@click.argument("workdir", type=click.Path(file_okay=False, exists=True))
@click.argument("query")
@click.option("--limit", type=int, default=50, show_default=True, help="Rows to print (0: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
@click.option(
    "--allow-external",
    is_flag=True,
    help="Let the query read and write files outside the workdir, ATTACH, INSTALL and LOAD.",
)
def sql_cmd(workdir, query, limit, as_json, allow_external):
    """Run DuckDB SQL over a workdir. Views: documents, docs (documents joined with every
    attribute column), one view per tagger (e.g. gopher, dedup), mix_<name>, quarantine.

    A local inspection tool: the query may read and write files only inside WORKDIR (COPY to
    another folder, ATTACH, INSTALL, LOAD and reading other files are refused) unless
    --allow-external is given."""
    from mixer.sql_views import run_sql

    names, rows = run_sql(workdir, query, limit or None, allow_external=allow_external)
    if as_json:
        for r in rows:
            click.echo(
                json.dumps(dict(zip(names, r, strict=True)), default=str, ensure_ascii=False)
            )
        return
    click.echo("\t".join(names))
    for r in rows:
        click.echo("\t".join(_cell(v) for v in r))


def _cell(v) -> str:
    s = str(v)
    return s if len(s) <= 80 else s[:77] + "..."


@click.command("explain")
@click.argument("workdir", type=click.Path(file_okay=False, exists=True))
@click.argument("doc_id")
@click.option(
    "--recipe",
    default=None,
    type=click.Path(dir_okay=False, exists=True),
    help="Show each of this recipe's filters' verdict.",
)
def explain_cmd(workdir, doc_id, recipe):
    """Print every attribute of one document and each filter's verdict on it."""
    from mixer.errors import MixerError
    from mixer.sql_views import explain_document

    filters = None
    if recipe:
        from mixer.recipe import load_recipe

        r = load_recipe(recipe)
        filters = {name: list(spec.filters) for name, spec in r.sources.items()}
    records = explain_document(workdir, doc_id, filters)
    if not records:
        raise MixerError(f"no document with id {doc_id!r} in {workdir}")
    for rec in records:
        verdicts = rec.pop("filters")
        click.echo(f"== {rec['id']} (source {rec['source']}, part {rec['part']}, row {rec['row']})")
        for k, v in rec.items():
            if k != "text":
                click.echo(f"  {k}: {_cell(v)}")
        click.echo(f"  text: {_cell(rec.get('text', ''))!s}")
        for expr, ok in verdicts.items():
            click.echo(
                f"  filter {'PASS' if ok is True else 'FAIL' if ok is False else ok}: {expr}"
            )


COMMANDS = [run_cmd, report_cmd, sql_cmd, explain_cmd]
