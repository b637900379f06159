"""The `mixer` command line: thin click commands that parse, call one function, print.

Each stage's commands live in mixer/commands/<stage>.py and are registered here.
"""

from __future__ import annotations

import importlib
import sys

import click

from mixer import __version__
from mixer.errors import MixerError

COMMAND_MODULES = (
    "ingest", "tag", "dedup", "decon", "mix", "tokenize", "train", "run", "ablate", "export",
)  # fmt: skip


class MixerGroup(click.Group):
    """Turns MixerError into one line on stderr and exit code 2; anything else exits 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MixerError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)


@click.group(cls=MixerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mixer")
def main():
    """mixer: curate pretraining data the OLMo 2 way.

    raw JSONL -> ingest -> tag -> dedup -> mix -> tokenize -> train
    """


for _name in COMMAND_MODULES:
    for _cmd in importlib.import_module(f"mixer.commands.{_name}").COMMANDS:
        main.add_command(_cmd)


if __name__ == "__main__":
    main()
