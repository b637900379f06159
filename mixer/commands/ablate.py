"""`mixer ablate`: compare mixes with small proxy runs, per held-out domain (docs/ablate.md)."""

from __future__ import annotations

import click


@click.command("ablate")
@click.argument("recipes", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--proxy",
    default="tiny",
    show_default=True,
    help="tiny or small (trained from scratch), or a checkpoint PATH to anneal from.",
)
@click.option(
    "--tokens",
    type=str,
    default=None,
    help="Training tokens per run, e.g. 200K (default: per proxy).",
)
@click.option(
    "--seeds", type=int, default=3, show_default=True, help="Runs per mix (seeds 0..K-1)."
)
@click.option(
    "--name", default=None, help="Name of the ablation (default: the mix names joined by -vs-)."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder (default: WORKDIR/ablate/NAME).",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Run every recipe in this workdir.",
)
@click.option(
    "--eval",
    "evalsets",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Also evaluate on this JSONL set (repeatable; e.g. the decontamination sets).",
)
@click.option(
    "--eval-fields",
    default=None,
    help="Fields of --eval records that make the text (default: text, else question/choices/answer...).",
)
@click.option(
    "--eval-tokens",
    type=str,
    default="16K",
    show_default=True,
    help="Evaluation tokens per domain.",
)
@click.option(
    "--heldout-fraction",
    type=float,
    default=None,
    help="Fraction of every source held out of every mix (default: the recipes', else 0.02).",
)
@click.option(
    "--heldout-seed",
    type=int,
    default=None,
    help="Seed of the held-out split (default: the recipes', else 0).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a train key of the proxy, e.g. --set lr=1e-2 --set moe.experts=8.",
)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
@click.option(
    "--workers", type=int, default=None, help="Pipeline workers and parallel CPU training runs."
)
@click.option("--force", is_flag=True, help="Train every run again, even the recorded ones.")
@click.option("--quiet", is_flag=True, help="Print only the summary.")
def ablate_cmd(recipes, proxy, tokens, seeds, name, out, workdir, evalsets, eval_fields, eval_tokens,
               heldout_fraction, heldout_seed, sets, device, workers, force, quiet):  # fmt: skip
    """Build each RECIPE's mix (or reuse it), train the same proxy on each with the same seeds
    and tokens, and compare them on held-out data per domain: ablate/NAME/results.json and
    report.html."""
    from mixer.ablate.run import ablate
    from mixer.train.config import parse_sets

    overrides = parse_sets(sets)  # --set moe.experts=8 works too (mixer.train.config)
    res = ablate(
        list(recipes),
        proxy=proxy,
        tokens=_tokens(tokens, "--tokens") if tokens else None,
        seeds=seeds,
        name=name,
        out=out,
        workdir=workdir,
        evalsets=evalsets,
        eval_fields=tuple(f.strip() for f in eval_fields.split(",") if f.strip())
        if eval_fields
        else None,
        eval_tokens=_tokens(eval_tokens, "--eval-tokens"),
        heldout_fraction=heldout_fraction,
        heldout_seed=heldout_seed,
        train_overrides=overrides,
        workers=workers,
        device=device,
        force=force,
        progress=not quiet,
        quiet=quiet,
        echo=(lambda m: None) if quiet else click.echo,
    )
    click.echo(summary_text(res["summary"]))
    click.echo(f"results: {res['results']}\nreport:  {res['html']}")


def _tokens(value: str, what: str) -> int:
    from mixer.errors import MixerError
    from mixer.recipe import parse_tokens

    try:
        return parse_tokens(value, what)
    except ValueError as e:
        raise MixerError(str(e)) from None


def summary_text(res: dict) -> str:
    """The winners table as text."""
    lines = [f"{'domain':<24} {'winner':<20} {'bpb':>8} {'margin':>18}  verdict"]
    for dom, w in res["winners"].items():
        mean = res["results"][w["winner"]][dom]["bpb"]["mean"]
        if "margin" not in w:
            lines.append(f"{dom:<24} {w['winner']:<20} {mean:>8.4f}")
            continue
        ci = w["margin_ci95"]
        margin = f"{w['margin']:.4f}" + (f" +- {ci:.4f}" if ci is not None else "")
        verdict = (
            "one seed" if ci is None else ("> seed noise" if w["significant"] else "within noise")
        )
        lines.append(f"{dom:<24} {w['winner']:<20} {mean:>8.4f} {margin:>18}  {verdict}")
    return "\n".join(lines)


COMMANDS = [ablate_cmd]
