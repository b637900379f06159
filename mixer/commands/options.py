"""Click options shared by the commands, and the one `--set KEY=VALUE` parser.

    @workers_option          --workers N
    @quiet_option            --quiet / -q
    @executor_options        --executor local|ray, --ray-address ADDR  (-> executor=Executor)
    @set_option(help)        --set KEY=VALUE, repeatable               (-> sets=tuple)

`parse_sets` reads every `--set` the same way (recipe keys, tagger settings, train keys):
KEY=VALUE with the value read as a YAML scalar (100 -> int, 0.5 -> float, true -> bool,
anything else a string). `nest` turns dotted keys into one level of sections, for
`--set quality.model=m.bin` -> {"quality": {"model": "m.bin"}}.
"""

from __future__ import annotations

import functools

import click

from mixer.errors import MixerError


def parse_value(raw: str):
    import yaml

    if not raw.strip():
        return ""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def parse_sets(items, example: str = "budget=1M", what: str = "KEY") -> dict:
    """["a.b=1", "c=x"] -> {"a.b": 1, "c": "x"}; MixerError naming the item when malformed."""
    out = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise MixerError(f"--set {item!r}: expected {what}=VALUE, e.g. {example}")
        out[key.strip()] = parse_value(raw)
    return out


def nest(flat: dict, what: str = "TAGGER.KEY", example: str = "quality.model=m.bin") -> dict:
    """{"quality.model": "m.bin"} -> {"quality": {"model": "m.bin"}}."""
    out: dict[str, dict] = {}
    for key, value in flat.items():
        head, dot, rest = key.partition(".")
        if not dot or not head or not rest:
            raise MixerError(f"--set {key!r}: expected {what}=VALUE, e.g. {example}")
        out.setdefault(head, {})[rest] = value
    return out


def _positive(ctx, param, value):
    if value is not None and value < 1:
        raise click.BadParameter(f"must be at least 1 (got {value})")
    return value


def workers_option(f):
    return click.option(
        "--workers",
        type=int,
        default=None,
        callback=_positive,
        help="Worker processes per stage (default: all cores).",
    )(f)


def quiet_option(f):
    return click.option(
        "--quiet", "-q", is_flag=True, help="No progress bars (the log still gets them)."
    )(f)


def set_option(help: str, metavar: str = "KEY=VALUE"):
    def deco(f):
        return click.option("--set", "sets", multiple=True, metavar=metavar, help=help)(f)

    return deco


def state_workdir_option(what: str):
    """`--workdir` of a command that writes one file (`--out`): where its state/ goes."""
    return click.option(
        "--workdir",
        default=None,
        type=click.Path(file_okay=False),
        help=f"Workdir whose state/ records the {what} (up-to-date checks, the lock); "
        "default: the folder of --out.",
    )


def executor_options(f):
    """Adds --executor and --ray-address; the command receives `executor` (an Executor object
    built with its --workers, when it has one)."""

    @click.option(
        "--executor",
        "executor_kind",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="Where tasks run: local processes, or Ray tasks spread over a cluster's nodes.",
    )
    @click.option(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="The Ray cluster to join, e.g. 10.0.0.1:6379 (default with --executor ray: "
        "a local Ray instance).",
    )
    @functools.wraps(f)
    def wrapper(*args, executor_kind, ray_address, **kwargs):
        from mixer.executor import make_executor

        if ray_address and executor_kind != "ray":
            raise MixerError("--ray-address needs --executor ray")
        kwargs["executor"] = make_executor(executor_kind, kwargs.get("workers"), ray_address)
        return f(*args, **kwargs)

    return wrapper


RECIPE_SET_HELP = (
    "Override a recipe key, KEY=VALUE with a dotted key (budget=2M, taggers.quality.model=q.bin) "
    "or a variable (data_root=DIR). Repeatable."
)
