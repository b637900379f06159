"""`mixer plan` and `mixer mix`: what a recipe would select, and the selection itself."""

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
from mixer.errors import MixerError

_SET_HELP = RECIPE_SET_HELP  # kept for importers


@click.command("plan")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    help="Workdir to plan from (default: the recipe's).",
)
@set_option(RECIPE_SET_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON instead of tables.")
@quiet_option
def plan_cmd(recipe, workdir, sets, as_json, quiet):
    """Print what RECIPE would select, per source: documents and tokens available, after each
    filter, target tokens, repetition factor and share of the mix. Writes nothing.

    Missing inputs and sources not yet ingested or tagged are listed; such sources are planned
    from their `expected_tokens` when the recipe gives it. Exits 2 when a target can't be met.
    """
    from mixer.mix import plan
    from mixer.recipe import load_recipe

    r = load_recipe(recipe, parse_sets(sets), check_inputs=False)
    p = plan(r, workdir, progress=not quiet and not as_json)
    if as_json:
        click.echo(json.dumps(p.to_dict(), indent=2))
    else:
        click.echo(p.table())
    if p.errors:
        raise MixerError(
            p.errors[0] + (f" (and {len(p.errors) - 1} more above)" if len(p.errors) > 1 else "")
        )


@click.command("mix")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option(
    "--workdir", type=click.Path(file_okay=False), help="Workdir (default: the recipe's)."
)
@set_option(RECIPE_SET_HELP)
@workers_option
@executor_options
@quiet_option
def mix_cmd(recipe, workdir, sets, workers, executor, quiet):
    """Select the documents of RECIPE's mix from the ingested, tagged workdir: write
    WORKDIR/mixes/<name>/part-*.parquet and WORKDIR/mixes/<name>.manifest.json (stages
    mix.stats and mix.select). Reruns with the same inputs skip.
    """
    from mixer.mix import run_mix
    from mixer.recipe import format_tokens, load_recipe

    r = load_recipe(recipe, parse_sets(sets), check_inputs=False)
    if workers is None and r.mix.get("workers"):
        executor.workers = r.mix["workers"]
    try:
        m = run_mix(r, workdir, progress=not quiet, executor=executor)
    finally:
        executor.close()
    state = "unchanged (skipped)" if m.get("skipped") else "written"
    click.echo(
        f"mix {m['mix']}: {m['total_selected_docs']:,} documents, "
        f"{format_tokens(m['total_selected_tokens'])} tokens in {len(m['parts'])} parts: {state}"
    )
    for name in r.sources:
        s = m["sources"][name]
        rep = s["achieved_repetition"]
        line = (
            f"  {name}: {s['selected_tokens']:,} of {s['target_tokens']:,} target tokens, "
            f"{'-' if rep is None else f'{rep:.3f}x'}"
        )
        if s.get("cause"):
            line += f"  ({s['cause']})"
        click.echo(line)


COMMANDS = [plan_cmd, mix_cmd]
