"""`mixer run`: a recipe becomes a list of Stage objects, and `run_stage` runs each in turn.

    ingest -> tokenizer -> decon-index -> tag -> train-fasttext.<tagger>
      -> tag-classifiers -> dedup.* -> mix.stats -> mix.select -> tokenize.* -> train -> report

`build_stages(recipe, workdir)` lists them (docs/pipeline.md: where each one lives). Every
stage has a name and a group (`ingest`, `train-fasttext`, `mix`, ...): `--until` and `--force`
select stages by exact name or group, nothing else. Caching and resume are the runner's
(mixer/stage.py): a stage whose fingerprint and outputs are recorded in state/stages/ is
skipped, and inside a stage every finished task is. A changed output of one stage changes the
fingerprint of the stages that read it, so they run again without being forced.

Steps whose stages can only be configured from what earlier steps write (tokenize reads the
mix and the tokenizer of this run) are `StagesLater`: built when the run reaches them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mixer.errors import MixerError
from mixer.executor import Executor, LocalExecutor
from mixer.schema import (
    attributes_dir,
    documents_dir,
    mix_dir,
    report_dir,
    tokens_dir,
)
from mixer.stage import RunContext, Stage, Task, run_stage, tree_fingerprint, workdir_lock

# The steps of `mixer run`, in order: the names `--until` and `--force` accept besides the
# stage names themselves (ingest.web, mix.select, ...).
STAGES = (
    "ingest",
    "tokenizer",
    "decon-index",
    "tag",
    "train-fasttext",
    "tag-classifiers",
    "dedup",
    "mix",
    "tokenize",
    "train",
    "report",
)
log = logging.getLogger("mixer")


# ------------------------------------------------------------------ what a recipe implies


@dataclasses.dataclass
class RecipePaths:
    """Paths and settings derived from a recipe that several stages share."""

    recipe: Any
    workdir: Path

    @property
    def tokenizer_path(self) -> Path:
        path = self.recipe.tokenizer.get("path")
        return Path(path) if path else self.workdir / "tokenizer.json"

    @property
    def decon_index_path(self) -> Path:
        """A prebuilt index the recipe names, else the one this run builds from eval_sets."""
        given = (self.recipe.decon or {}).get("index")
        return Path(given) if given else self.workdir / "decon" / "index"

    def tagger_settings(self) -> dict[str, dict]:
        settings = {name: dict(s) for name, s in self.recipe.taggers.items()}
        settings.setdefault("tokens", {}).setdefault("tokenizer", str(self.tokenizer_path))
        if self.recipe.decon:
            decon = settings.setdefault("decon", {})
            decon.setdefault("index", str(self.decon_index_path))
            for key in ("min_hits", "min_fraction"):
                if self.recipe.decon.get(key) is not None:
                    decon.setdefault(key, self.recipe.decon[key])
        return settings


class StagesLater(Stage):
    """A step whose stage objects can only be built once the stages before it have run (their
    factory checks inputs, such as the mix folder, that do not exist yet). `run_recipe` calls
    `factory()` when the step is reached and runs the stages it returns. `--force`/`--until`
    name it by its name (its stages' group) or one of its stages as `<name>.<stage>`."""

    def __init__(self, name: str, factory: Callable[[], list[Stage]]):
        super().__init__(Path("."), None)
        self.name = self.group = name
        self.factory = factory


# ------------------------------------------------------------------ one-task stages


class TokenizerStage(Stage):
    """Train the run's BPE tokenizer on its documents (one task) unless the recipe names one.
    `mixer train-tokenizer` gives `inputs` (Parquet files or folders) instead of documents/."""

    name = group = "tokenizer"

    def __init__(self, workdir, out: Path, settings: dict, inputs: list[str] | None = None):
        super().__init__(workdir, settings)
        self.out = Path(out)
        self.inputs = [str(documents_dir(self.workdir))] if inputs is None else list(inputs)

    def input_fingerprint(self):
        from mixer.train_tokenizer import find_parquet_inputs

        return tree_fingerprint(*find_parquet_inputs(self.inputs))

    def outputs(self):
        return [self.out]

    def tasks(self):
        return [Task("train", fingerprint=self.input_fingerprint(), outputs=(str(self.out),))]

    def run_task(self, task):
        from mixer.train_tokenizer import train_tokenizer

        return train_tokenizer(self.inputs, str(self.out), **self.config)

    def finish(self, results):
        return results[0]


class TrainFastTextStage(Stage):
    """Train one fastText classifier from labelled documents of the workdir (one task).
    `mixer train-fasttext` runs it too, named after its model file."""

    group = "train-fasttext"

    def __init__(self, workdir, tagger: str, out: Path, spec: dict, seed: int, taggers: list[str]):
        super().__init__(workdir, {"spec": dict(spec), "seed": seed, "out": str(out)})
        self.name = f"train-fasttext.{tagger}"
        self.out = Path(out)
        self.read_taggers = sorted(taggers)  # the attributes its SQL may read

    def input_fingerprint(self):
        return tree_fingerprint(
            documents_dir(self.workdir),
            *(attributes_dir(self.workdir, t) for t in self.read_taggers),
        )

    def outputs(self):
        from mixer.train_fasttext import metrics_path_for

        return [self.out, metrics_path_for(self.out)]

    def tasks(self):
        outputs = tuple(str(p) for p in self.outputs())
        return [Task("train", fingerprint=self.input_fingerprint(), outputs=outputs)]

    def run_task(self, task):
        from mixer.train_fasttext import train_from_workdir

        m = train_from_workdir(
            self.workdir, out=self.out, seed=self.config["seed"], **self.config["spec"]
        )
        return {k: m[k] for k in ("accuracy", "test_docs") if k in m}

    def finish(self, results):
        return results[0]


class TrainStage(Stage):
    """The bundled trainer on the run's token arrays (on the driver: it uses its threads/GPU)."""

    name = group = "train"

    def __init__(self, workdir, data: Path, out: Path, config: dict):
        super().__init__(workdir, config)
        self.data, self.out = Path(data), Path(out)
        self._ctx = None

    def input_fingerprint(self):
        return tree_fingerprint(self.data)

    def outputs(self):
        return [self.out]

    def setup(self, ctx):
        self._ctx = ctx

    def finish(self, results):
        from mixer.train import train

        ctx = self._ctx
        summary = train(str(self.data), str(self.out), config=self.config, progress=ctx.progress)
        nan = float("nan")
        ctx.echo(
            f"[train] loss {summary.get('first_loss', nan):.3f} -> "
            f"{summary.get('last_loss', nan):.3f}, validation loss {summary.get('val_loss', nan):.3f}"
        )
        return summary


class ReportStage(Stage):
    """report/report.json and report.html from what the stages wrote (always rebuilt)."""

    name = group = "report"

    def __init__(self, workdir, recipe):
        super().__init__(workdir, None)
        self.recipe = recipe
        self._ctx = None

    def setup(self, ctx):
        self._ctx = ctx

    def input_fingerprint(self):
        return tree_fingerprint(self.workdir / "state", self.workdir / "mixes")

    def outputs(self):
        return [report_dir(self.workdir) / "report.html"]

    def finish(self, results):
        from mixer.report import build_report

        paths = build_report(self.workdir, recipe=self.recipe)
        self._ctx.echo(f"[report] {paths['html']}")
        return {"html": str(paths["html"])}


# ------------------------------------------------------------------ the recipe's stages


def _field_map(field_map, spec):
    return field_map(**{k.removesuffix("_field"): v for k, v in (spec.ingest or {}).items()})


def build_stages(recipe, workdir: Path) -> list[Stage]:
    """Every stage of `mixer run` for this recipe, in order."""
    rp = RecipePaths(recipe, Path(workdir))
    wd = rp.workdir
    stages: list[Stage] = []

    from mixer.ingest import FieldMap, IngestSource, IngestStage

    sources = [
        IngestSource(name, list(spec.inputs), _field_map(FieldMap, spec))
        for name, spec in recipe.sources.items()
    ]
    stages.append(IngestStage(wd, sources, prune="sources"))  # a task per shard or unit

    tok = recipe.tokenizer
    if tok.get("path"):
        if not Path(tok["path"]).is_file():
            raise MixerError(f"tokenizer.path: file not found: {tok['path']}")
    else:
        stages.append(
            TokenizerStage(wd, rp.tokenizer_path, {"seed": recipe.seed, **(tok.get("train") or {})})
        )

    decon = recipe.decon
    if decon and decon.get("eval_sets"):
        from mixer.decon_index import DeconIndexStage

        settings = {k: decon[k] for k in DECON_INDEX_KEYS if decon.get(k) is not None}
        stages.append(DeconIndexStage(wd, decon["eval_sets"], rp.decon_index_path, settings))
    elif decon and not rp.decon_index_path.exists():
        raise MixerError(f"decon.index: file not found: {rp.decon_index_path}")

    from mixer.tag import TagStage

    trained = set(recipe.train_fasttext or {})
    settings = rp.tagger_settings()
    first = {s: [t for t in spec.taggers if t not in trained] for s, spec in recipe.sources.items()}
    later = {s: [t for t in spec.taggers if t in trained] for s, spec in recipe.sources.items()}
    if any(first.values()):
        stages.append(TagStage(wd, first, settings, name="tag"))
    for tagger, spec in (recipe.train_fasttext or {}).items():
        out = settings.get(tagger, {}).get("model")
        if not out:
            raise MixerError(
                f"train_fasttext.{tagger}: set taggers.{tagger}.model to where the model goes"
            )
        read = sorted({t for ts in first.values() for t in ts})
        stages.append(TrainFastTextStage(wd, tagger, Path(out), spec, recipe.seed, read))
    if any(later.values()):
        stages.append(TagStage(wd, later, settings, name="tag-classifiers"))

    if recipe.dedup:
        from mixer.dedup import dedup_stages

        stages += dedup_stages(wd, dict(recipe.dedup))  # signatures, candidates, clusters, writes

    from mixer.mix import mix_stages

    stages += mix_stages(recipe, wd)

    # built when reached: tokenize_stages checks that the mix exists
    stages.append(StagesLater("tokenize", lambda: _tokenize_stages(rp)))

    if recipe.train:
        try:
            import torch  # noqa: F401

            stages.append(
                TrainStage(
                    wd,
                    tokens_dir(wd, recipe.name),
                    wd / "runs" / recipe.name,
                    dict(recipe.train.get("config") or {}),
                )
            )
        except ImportError:
            log.info("[train] skipped: the trainer needs the `train` extra")
    stages.append(ReportStage(wd, recipe))
    return stages


DECON_INDEX_KEYS = ("ngram", "fields", "min_words")  # the rest of `decon:` configures the tagger


def _tokenize_stages(rp: RecipePaths) -> list[Stage]:
    from mixer.tokenization import tokenize_stages

    recipe, wd = rp.recipe, rp.workdir
    tok = recipe.tokenizer
    options = {k: tok.get(k) for k in ("eos", "eos_id", "bos", "bos_id") if tok.get(k) is not None}
    options = {"seed": recipe.seed, "dtype": tok.get("dtype", "auto"), **options}
    options.update({k: v for k, v in (recipe.tokenize or {}).items() if k != "workers"})
    src, out = mix_dir(wd, recipe.name), tokens_dir(wd, recipe.name)
    # encoding per part, then the seeded shuffle and packing; then a check of what was written
    return [
        *tokenize_stages(src, rp.tokenizer_path, out, workdir=wd, **options),
        VerifyTokensStage(wd, {"src": str(src), "out": str(out), "seed": recipe.seed}),
    ]


class VerifyTokensStage(Stage):
    """Checks what tokenize wrote against its index and the mix text before anyone trains on
    it (sampled documents per part, decoded and compared with their text)."""

    name, group = "tokenize.verify", "tokenize"

    def input_fingerprint(self):
        return tree_fingerprint(self.config["out"])

    def setup(self, ctx: RunContext) -> None:
        self._echo = ctx.echo

    def finish(self, results):  # sampled reads only: small enough for the driver
        from mixer.verify_tokens import verify_tokens

        c = self.config
        checked = verify_tokens(c["out"], c["src"], samples=16, seed=c["seed"], progress=False)
        self._echo(
            f"[tokenize] verified {checked['parts']} part(s), {checked['documents']:,} "
            f"documents, {checked['total_tokens']:,} tokens"
        )
        return {k: checked[k] for k in ("parts", "documents", "total_tokens")}


# ------------------------------------------------------------------ selection and the run


def select(stages: list[Stage], names: tuple[str, ...], what: str) -> set[str]:
    """Stage names matching each of `names` exactly (a stage name or a group): an unknown name
    is an error that lists the choices."""
    chosen: set[str] = set()
    later = {s.name for s in stages if isinstance(s, StagesLater)}
    for n in names:
        hit = {s.name for s in stages if n in (s.name, s.group)}
        if not hit and n.split(".")[0] in later:  # a stage its factory will build
            hit = {n}
        if not hit:
            if n in STAGES:  # a step this recipe does not have (no dedup section, ...)
                continue
            choices = sorted({*STAGES, *(s.name for s in stages)})
            raise MixerError(f"{what} {n!r}: no such stage (stages: {', '.join(choices)})")
        chosen |= hit
    return chosen


def run_recipe(
    recipe_path: str,
    workdir: str | None = None,
    workers: int | None = None,
    until: str | None = None,
    force: tuple[str, ...] = (),
    progress: bool = True,
    quiet: bool = False,
    overrides: dict | None = None,
    executor: Executor | None = None,
) -> Path:
    """Run every stage of a recipe (up to `until`). Returns the workdir."""
    from mixer.recipe import load_recipe

    recipe = load_recipe(recipe_path, overrides)
    wd = Path(workdir) if workdir else Path(recipe.workdir)
    remote = _remote_workdir(recipe, workdir or recipe.workdir)
    if remote is not None:  # stages work on a local mirror of the URL
        wd = remote.mirror
    wd.mkdir(parents=True, exist_ok=True)
    with workdir_lock(wd):
        _setup_log(wd)
        echo = (
            (lambda msg: log.info(msg)) if quiet else (lambda msg: (log.info(msg), click.echo(msg)))
        )
        if remote is not None:
            echo(f"workdir {remote.url}: mirrored in {wd}")
            remote.pull()  # build_stages reads what earlier runs wrote (the tokenizer, ...)
        stages = build_stages(recipe, wd)
        forced = select(stages, tuple(force), "--force")
        last = None
        if until:
            hit = select(stages, (until,), "--until")
            later = {s.name for s in stages if isinstance(s, StagesLater)}
            hit |= {n.split(".")[0] for n in hit} & later  # a stage of a later step: the step
            last = max((i for i, s in enumerate(stages) if s.name in hit), default=None)
            if last is None:  # a step this recipe lacks: stop before the next step that exists
                after = STAGES[STAGES.index(until) + 1 :]
                last = next(
                    (i - 1 for i, s in enumerate(stages) if (s.group or s.name) in after),
                    len(stages) - 1,
                )
        ctx = RunContext(
            wd,
            executor or LocalExecutor(workers),
            progress and not quiet,
            echo,
            frozenset(forced),
            remote=remote,
        )
        echo(f"recipe {recipe_path} -> {wd}")
        try:
            for i, stage in enumerate(stages):
                if isinstance(stage, StagesLater):
                    for sub in stage.factory():
                        run_stage(sub, ctx)
                else:
                    run_stage(stage, ctx)
                if last is not None and i >= last:
                    break
        finally:
            if executor is None:
                ctx.executor.close()
            if remote is not None:
                remote.push(only=("mixer.log",))
    return wd


def _remote_workdir(recipe, workdir):
    """A RemoteWorkdir when the workdir is a URL (s3://bucket/run); the recipe's paths under
    that URL (a model the run trains into its workdir) then point into the mirror."""
    from mixer.remote_workdir import RemoteWorkdir, map_paths, workdir_url

    url = workdir_url(workdir)
    if url is None:
        return None
    remote = RemoteWorkdir(url)
    for name in ("taggers", "tokenizer", "decon", "train_fasttext"):
        value = getattr(recipe, name)
        if value is not None:
            setattr(recipe, name, map_paths(value, url, remote.mirror))
    return remote


def _setup_log(workdir: Path) -> None:
    handler = logging.FileHandler(workdir / "mixer.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
