"""`mixer run`: the whole recipe, stage by stage, each cached by its configuration and inputs.

Stages run in order: ingest -> tokenizer -> decon-index -> tag -> train-fasttext -> tag
(classifiers) -> dedup -> mix -> tokenize -> train -> report. A stage is skipped when its
cache key (a hash of its settings and of the files it reads: names, sizes, mtimes) matches the
one recorded in state/pipeline/<stage>.json; inside a stage, finished parts are skipped too, so a
killed run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from mixer.errors import MixerError
from mixer.io import config_hash, read_json, write_json_atomic
from mixer.schema import attributes_dir, documents_dir, mix_dir, state_dir, tokens_dir

STAGES = ("ingest", "tokenizer", "decon", "tag", "dedup", "mix", "tokenize", "train", "report")
log = logging.getLogger("mixer")


def tree_fingerprint(*paths: Path) -> list:
    """Names, sizes and mtimes of every finished file under `paths` (cheap, no content reads)."""
    out = []
    for root in paths:
        root = Path(root)
        if root.is_file():
            files = [root]
        elif root.is_dir():
            files = sorted(
                p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")
            )
        else:
            files = []
        for p in files:
            st = p.stat()
            out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


@dataclass
class Context:
    recipe: object
    workdir: Path
    workers: int | None
    progress: bool
    echo: Callable[[str], None]
    force: frozenset = frozenset()

    @property
    def tokenizer_path(self) -> Path:
        path = self.recipe.tokenizer.get("path")
        return Path(path) if path else self.workdir / "tokenizer.json"

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

    @property
    def decon_index_path(self) -> Path:
        """A prebuilt index the recipe names, else the one this run builds from eval_sets."""
        given = (self.recipe.decon or {}).get("index")
        return Path(given) if given else self.workdir / "decon" / "index"


def _cached(
    ctx: Context, stage: str, key_parts: dict, outputs: list[Path], work: Callable[[], dict | None]
):
    """Run `work` unless the stage's cache key and outputs show it is already done."""
    path = state_dir(ctx.workdir) / "pipeline" / f"{stage}.json"
    key = config_hash(key_parts)
    done = read_json(path)
    forced = any(stage == f or stage.startswith(f + "-") for f in ctx.force)
    if not forced and done and done.get("key") == key and all(Path(o).exists() for o in outputs):
        ctx.echo(f"[{stage}] up to date, skipped")
        return done.get("result")
    start = time.perf_counter()
    ctx.echo(f"[{stage}] running")
    result = work()
    seconds = time.perf_counter() - start
    # The key is computed again after the work: outputs written under inputs it reads change it.
    write_json_atomic(
        path, {"key": config_hash(key_parts), "result": result, "seconds": round(seconds, 3)}
    )
    ctx.echo(f"[{stage}] done in {seconds:.1f}s")
    return result


# ------------------------------------------------------------------------ stages


def stage_ingest(ctx: Context) -> None:
    from mixer.ingest import FieldMap, ingest

    for name, spec in ctx.recipe.sources.items():
        fields = FieldMap(**{k.removesuffix("_field"): v for k, v in (spec.ingest or {}).items()})

        def work(name=name, spec=spec, fields=fields):
            s = ingest(
                spec.inputs,
                ctx.workdir,
                source=name,
                fields=fields,
                workers=ctx.workers,
                progress=ctx.progress,
            )
            return {
                k: s[k] for k in ("lines_read", "ingested", "quarantined", "quarantine_reasons")
            }

        _cached(
            ctx,
            f"ingest-{name}",
            {"inputs": inputs_fingerprint(spec.inputs), "fields": dataclasses.asdict(fields)},
            [documents_dir(ctx.workdir, name)],
            work,
        )
    from mixer.ingest import summarize

    write_json_atomic(state_dir(ctx.workdir) / "ingest.json", summarize(ctx.workdir))


def inputs_fingerprint(inputs: list[str]) -> list:
    """Like tree_fingerprint, for recipe inputs that may be globs or object-storage URLs."""
    from mixer.io import file_fingerprint, glob_urls, is_url

    out = []
    for item in inputs:
        if is_url(item):
            out += [[u, file_fingerprint(u, with_hash=False)] for u in glob_urls(item)]
        else:
            out += tree_fingerprint(*_expand(item))
    return out


def _expand(item: str) -> list[Path]:
    import glob

    return (
        [Path(p) for p in sorted(glob.glob(item))]
        if any(c in item for c in "*?[")
        else [Path(item)]
    )


def stage_tokenizer(ctx: Context) -> None:
    tok = ctx.recipe.tokenizer
    if tok.get("path"):
        if not Path(tok["path"]).is_file():
            raise MixerError(f"tokenizer.path: file not found: {tok['path']}")
        return
    from mixer.tokenization import train_tokenizer

    settings = {"seed": ctx.recipe.seed, **(tok.get("train") or {})}
    out = ctx.tokenizer_path

    def work():
        return train_tokenizer([str(documents_dir(ctx.workdir))], str(out), **settings)

    _cached(
        ctx,
        "tokenizer",
        {"settings": settings, "docs": tree_fingerprint(documents_dir(ctx.workdir))},
        [out],
        work,
    )


DECON_INDEX_KEYS = ("ngram", "fields", "min_words")  # the rest of `decon:` configures the tagger


def stage_decon_index(ctx: Context) -> None:
    decon = ctx.recipe.decon
    if not decon:
        return
    if not decon.get("eval_sets"):
        if not ctx.decon_index_path.exists():
            raise MixerError(f"decon.index: file not found: {ctx.decon_index_path}")
        return
    from mixer.decon_index import build_index

    evals = [p for item in decon["eval_sets"] for p in _expand(item)]
    settings = {k: decon[k] for k in DECON_INDEX_KEYS if decon.get(k) is not None}

    def work():
        return build_index([str(p) for p in evals], str(ctx.decon_index_path), **settings)

    _cached(
        ctx,
        "decon-index",
        {"evals": tree_fingerprint(*evals), "settings": settings},
        [ctx.decon_index_path],
        work,
    )


def _tag(ctx: Context, stage: str, only: Callable[[str], bool]) -> None:
    from mixer.tag import tag_workdir

    settings = ctx.tagger_settings()
    by_taggers: dict[tuple, list[str]] = {}
    for name, spec in ctx.recipe.sources.items():
        taggers = tuple(t for t in spec.taggers if only(t))
        if taggers:
            by_taggers.setdefault(taggers, []).append(name)
    for taggers, sources in by_taggers.items():
        s = {t: settings.get(t, {}) for t in taggers}
        model_files = [
            Path(v)
            for t in s.values()
            for k, v in t.items()
            if k in ("model", "tokenizer", "index") and v
        ]

        def work(taggers=taggers, sources=sources, s=s):
            return tag_workdir(
                ctx.workdir,
                list(taggers),
                s,
                workers=ctx.workers,
                sources=sources,
                progress=ctx.progress,
            )

        _cached(
            ctx,
            f"{stage}-{'+'.join(sources)}",
            {
                "taggers": taggers,
                "settings": s,
                "models": tree_fingerprint(*model_files),
                "docs": tree_fingerprint(*(documents_dir(ctx.workdir, src) for src in sources)),
            },
            [attributes_dir(ctx.workdir, t, src) for t in taggers for src in sources],
            work,
        )


def _trained_models(ctx: Context) -> set[str]:
    return set(ctx.recipe.train_fasttext or {})


def stage_tag(ctx: Context) -> None:
    trained = _trained_models(ctx)
    _tag(ctx, "tag", lambda t: t not in trained)
    if not trained:
        return
    from mixer.train_fasttext import train_from_workdir

    for tagger, spec in ctx.recipe.train_fasttext.items():
        out = ctx.tagger_settings().get(tagger, {}).get("model")
        if not out:
            raise MixerError(
                f"train_fasttext.{tagger}: set taggers.{tagger}.model to where the model goes"
            )

        def work(spec=spec, out=out):
            return train_from_workdir(ctx.workdir, out=out, seed=ctx.recipe.seed, **spec)

        _cached(
            ctx,
            f"fasttext-{tagger}",
            {"spec": spec, "docs": tree_fingerprint(documents_dir(ctx.workdir))},
            [Path(out)],
            work,
        )
    _tag(ctx, "tag-classifiers", lambda t: t in trained)


def stage_dedup(ctx: Context) -> None:
    dedup = ctx.recipe.dedup
    if not dedup:
        return
    from mixer.dedup import run_dedup

    settings = dict(dedup)

    def work():
        return run_dedup(ctx.workdir, workers=ctx.workers, progress=ctx.progress, **settings)

    _cached(
        ctx,
        "dedup",
        {
            "settings": settings,
            "docs": tree_fingerprint(documents_dir(ctx.workdir)),
            "quality": tree_fingerprint(attributes_dir(ctx.workdir, "quality")),
        },
        [attributes_dir(ctx.workdir, "dedup")],
        work,
    )


def stage_mix(ctx: Context) -> None:
    from mixer.mix import run_mix

    out = mix_dir(ctx.workdir, ctx.recipe.name)

    def work():
        manifest = run_mix(ctx.recipe, ctx.workdir, progress=ctx.progress)
        return {
            "total_tokens": manifest.get("total_tokens") if isinstance(manifest, dict) else None
        }

    _cached(
        ctx,
        "mix",
        {
            "recipe": ctx.recipe.raw,
            "attributes": tree_fingerprint(documents_dir(ctx.workdir), attributes_dir(ctx.workdir)),
        },
        [out / "manifest.json"],
        work,
    )


def stage_tokenize(ctx: Context) -> None:
    from mixer.tokenization import tokenize_mix
    from mixer.verify_tokens import verify_tokens

    tok = ctx.recipe.tokenizer
    src, out = mix_dir(ctx.workdir, ctx.recipe.name), tokens_dir(ctx.workdir, ctx.recipe.name)
    options = {k: tok.get(k) for k in ("eos", "eos_id", "bos", "bos_id") if tok.get(k) is not None}
    # The recipe's tokenize section may override the run's seed and workers.
    options = {
        "seed": ctx.recipe.seed,
        "workers": ctx.workers,
        **options,
        **(ctx.recipe.tokenize or {}),
    }

    def work():
        info = tokenize_mix(
            str(src),
            str(ctx.tokenizer_path),
            str(out),
            dtype=tok.get("dtype", "auto"),
            progress=ctx.progress,
            workdir=str(ctx.workdir),  # stage records in WORKDIR/state/stages/tokenize.*
            echo=ctx.echo,
            **options,
        )
        # Check what was written against its index and the mix text before anyone trains on it.
        checked = verify_tokens(
            str(out), str(src), samples=16, seed=ctx.recipe.seed, progress=False
        )
        ctx.echo(
            f"[tokenize] verified {checked['parts']} part(s), {checked['documents']:,} documents, "
            f"{checked['total_tokens']:,} tokens"
        )
        return {"total_tokens": info.get("total_tokens"), "dtype": info.get("dtype")}

    _cached(
        ctx,
        "tokenize",
        {
            "options": {k: v for k, v in options.items() if k != "workers"},
            "mix": tree_fingerprint(src),
            "tokenizer": tree_fingerprint(ctx.tokenizer_path),
        },
        [out / "tokens.json"],
        work,
    )


def stage_train(ctx: Context) -> None:
    if not ctx.recipe.train:
        return
    try:
        import torch  # noqa: F401
    except ImportError:
        ctx.echo(
            "[train] skipped: the trainer needs the `train` extra (pip install 'mixer[train]')"
        )
        return
    from mixer.train import train

    data = tokens_dir(ctx.workdir, ctx.recipe.name)
    out = ctx.workdir / "runs" / ctx.recipe.name
    config = dict(ctx.recipe.train.get("config") or {})

    def work():
        summary = train(str(data), str(out), config=config, progress=ctx.progress)
        ctx.echo(
            f"[train] loss {summary.get('first_loss', float('nan')):.3f} -> {summary.get('last_loss', float('nan')):.3f}"
            f", validation loss {summary.get('val_loss', float('nan')):.3f}"
        )
        return summary

    _cached(ctx, "train", {"config": config, "data": tree_fingerprint(data)}, [out], work)


def stage_report(ctx: Context) -> None:
    from mixer.report import build_report

    paths = build_report(ctx.workdir, recipe=ctx.recipe)
    ctx.echo(f"[report] {paths['html']}")


STAGE_FUNCS = {
    "ingest": stage_ingest,
    "tokenizer": stage_tokenizer,
    "decon": stage_decon_index,
    "tag": stage_tag,
    "dedup": stage_dedup,
    "mix": stage_mix,
    "tokenize": stage_tokenize,
    "train": stage_train,
    "report": stage_report,
}


def run_recipe(
    recipe_path: str,
    workdir: str | None = None,
    workers: int | None = None,
    until: str | None = None,
    force: tuple[str, ...] = (),
    progress: bool = True,
    quiet: bool = False,
    overrides: dict | None = None,
) -> Path:
    """Run every stage of a recipe (up to `until`). Returns the workdir."""
    from mixer.recipe import load_recipe

    recipe = load_recipe(recipe_path, overrides)
    for stage in (until, *force):
        if stage and stage not in STAGES:
            raise MixerError(f"unknown stage {stage!r} (stages: {', '.join(STAGES)})")
    wd = Path(workdir) if workdir else Path(recipe.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    _setup_log(wd)
    echo = (lambda msg: log.info(msg)) if quiet else (lambda msg: (log.info(msg), click.echo(msg)))
    # Forcing a stage reruns everything after it too.
    forced = set()
    for stage in force:
        forced.update(STAGES[STAGES.index(stage) :])
    ctx = Context(
        recipe, wd, workers or os.cpu_count(), progress and not quiet, echo, frozenset(forced)
    )
    echo(f"recipe {recipe_path} -> {wd}")
    for stage in STAGES:
        STAGE_FUNCS[stage](ctx)
        if stage == until:
            break
    return wd


def _setup_log(workdir: Path) -> None:
    handler = logging.FileHandler(workdir / "mixer.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
