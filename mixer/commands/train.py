"""`mixer train`, `mixer eval`, `mixer soup`: the bundled minimal trainer (needs torch)."""

from __future__ import annotations

import json

import click

from mixer.errors import MixerError


@click.command("train")
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Tokens folder (mixer tokenize output: part-NNNNN.npy + tokens.json).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Run folder: checkpoints, metrics.jsonl, loss plot, model.pt, summary.json.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="YAML of train keys (flat, or a recipe's train: {config: ...} section).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one train key, e.g. --set steps=300 --set schedule=anneal (repeatable).",
)
@click.option(
    "--preset",
    default=None,
    help="Model size: demo (default, CPU), tiny, 20m, 100m, 150m (GPU).",
)
@click.option(
    "--val-data",
    type=click.Path(file_okay=False),
    default=None,
    help="Separate tokens folder for validation (default: a held-out split of --data).",
)
@click.option("--restart", is_flag=True, help="Discard what --out holds and start over.")
@click.option(
    "--stop-after",
    type=int,
    default=None,
    help="Stop after this many steps, as a kill would; rerun the same command to resume.",
)
@click.option("--quiet", is_flag=True, help="No per-step log lines; print only the summary.")
def train_cmd(data_dir, out_dir, config_file, sets, preset, val_data, restart, stop_after, quiet):
    """Train the bundled OLMo 2-style model on a tokens folder (CPU, or CUDA when present).

    Rerunning on the same --out resumes from its latest checkpoint with the same loss curve.
    Config keys, presets and outputs: docs/train.md.
    """
    from mixer.commands.options import parse_sets
    from mixer.train import train
    from mixer.train.config import load_config_file

    config = load_config_file(config_file) if config_file else {}
    if preset:
        config["preset"] = preset
    config.update(parse_sets(sets))
    summary = train(
        data_dir,
        out_dir,
        config,
        progress=not quiet,
        val_data=val_data,
        restart=restart,
        stop_after=stop_after,
    )
    click.echo(json.dumps(summary, indent=2))


@click.command("eval")
@click.option(
    "--ckpt",
    required=True,
    type=click.Path(),
    help="A checkpoint file (model.pt, step-N.pt, a soup) or a run folder.",
)
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Tokens folder to evaluate on.",
)
@click.option(
    "--split",
    type=click.Choice(["auto", "all", "val"]),
    default="auto",
    show_default=True,
    help="val: the run's held-out instances of its own data; all: every instance; "
    "auto: val when --data is the folder the checkpoint trained on.",
)
@click.option(
    "--max-instances",
    type=int,
    default=None,
    help="Evaluate a seeded sample of at most N instances.",
)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
def eval_cmd(ckpt, data_dir, split, max_instances, batch_size, device):
    """Validation loss (nats/token) and perplexity of a checkpoint, printed as JSON.

    Train the same small model on two mixes and evaluate both on one held-out tokens folder to
    compare the mixes (a data ablation).
    """
    from mixer.train import evaluate

    if batch_size < 1 or (max_instances is not None and max_instances < 1):
        raise MixerError("--batch-size and --max-instances must be >= 1")
    result = evaluate(
        ckpt,
        data_dir,
        split=split,
        max_instances=max_instances,
        batch_size=batch_size,
        device=device,
    )
    click.echo(json.dumps(result, indent=2))


@click.command("soup")
@click.argument("ckpts", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="The averaged model file to write.")
def soup_cmd(ckpts, out):
    """Average the parameters of checkpoints (OLMo 2's model soup).

    CKPTS are checkpoint files or run folders of one architecture, e.g. anneal runs of the same
    mix with different data-order seeds. Mismatched keys or shapes are refused.
    """
    from mixer.train import soup

    click.echo(json.dumps(soup(list(ckpts), out), indent=2))


COMMANDS = [train_cmd, eval_cmd, soup_cmd]
