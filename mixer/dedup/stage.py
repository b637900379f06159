"""`run_dedup`: the dedup stages (mixer.dedup.stages) run in order on one executor.

A thin wrapper kept for the command line, the pipeline and the tests: it builds a RunContext
with a LocalExecutor (or the executor given) and runs `dedup_stages(workdir, settings)`; the
last stage's finish returns the stats dict. A rerun with the same documents, quality
attributes and settings skips every stage (stats["cached"] is then True).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from mixer.dedup.clusters import DEFAULT_KEEP_RULE
from mixer.dedup.paragraphs import SPAN_TYPE
from mixer.dedup.stages import (
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_SEED,
    dedup_stages,
    signature_floor,
)
from mixer.executor import Executor, LocalExecutor, _current, current_executor
from mixer.io import read_json
from mixer.schema import state_dir
from mixer.stage import RunContext, run_stage

POOL_MIN_BYTES = 16 << 20  # below this much documents Parquet, one process beats a pool


def _documents_bytes(workdir: Path) -> int:
    root = Path(workdir) / "documents"
    return sum(p.stat().st_size for p in root.rglob("part-*.parquet")) if root.is_dir() else 0


def run_dedup(
    workdir,
    sources=None,
    exact: bool = True,
    minhash: bool = True,
    ngram: int = 5,
    exact_field: str | None = None,
    num_perm: int | None = None,
    bands: int | None = None,
    rows: int | None = None,
    threshold: float = 0.8,
    verify: bool = False,
    paragraphs: bool = False,
    keep_rule: str = DEFAULT_KEEP_RULE,
    workers: int | None = None,
    progress: bool = True,
    seed: int = DEFAULT_SEED,
    scheme: str = "affine32",
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    signature_check: bool = True,
    task_bytes: int | None = None,
) -> dict:
    """Deduplicate the documents of `workdir`; write attributes/dedup and return the stats.

    Its keyword arguments are the recipe's `dedup:` keys; `execute_dedup` takes an executor."""
    settings = dict(
        sources=sources, exact=exact, minhash=minhash, ngram=ngram, exact_field=exact_field,
        num_perm=num_perm, bands=bands, rows=rows, threshold=threshold, verify=verify,
        paragraphs=paragraphs, keep_rule=keep_rule, seed=seed, scheme=scheme,
        memory_limit=memory_limit, signature_check=signature_check,
    )  # fmt: skip
    if task_bytes is not None:
        settings["task_bytes"] = task_bytes
    return execute_dedup(workdir, settings, workers=workers, progress=progress)


def execute_dedup(
    workdir,
    settings: dict,
    executor: Executor | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Run dedup_stages(workdir, settings) on `executor` (default: a LocalExecutor of
    `workers`, or Ray under `mixer --executor ray`) and return the stats."""
    stages = dedup_stages(workdir, settings)

    def echo(msg: str) -> None:
        if progress:
            tqdm.write(msg, file=sys.stderr)

    own = None
    if executor is None:
        given = current_executor(workers)  # `mixer dedup --executor ...` sets it through use()
        small = (
            isinstance(given, LocalExecutor)
            and given._pool is None
            and given.workers > 1
            and _documents_bytes(workdir) < POOL_MIN_BYTES
        )  # starting workers costs more than they save on a small corpus
        executor = LocalExecutor(1) if small else given
        if small or given is not _current[0]:
            own = executor
    ctx = RunContext(Path(workdir), executor, progress, echo)
    try:
        stats = None
        for stage in stages:
            stats = run_stage(stage, ctx)
    finally:
        if own is not None:
            own.close()
    stats = dict(stats)
    # every stage, and every round dedup.components chained, skipped as up to date
    stats["cached"] = all(v["skipped"] for v in ctx.stats.values())
    write = read_json(state_dir(Path(workdir)) / "stages" / "dedup.write" / "stage.json") or {}
    seconds = dict(stats.get("seconds") or {})
    seconds["write"] = write.get("seconds")
    seconds["total"] = round(sum(v for v in seconds.values() if v and v > 0), 3)
    stats["seconds"] = seconds
    return stats


__all__ = [
    "run_dedup",
    "execute_dedup",
    "DEFAULT_KEEP_RULE",
    "SPAN_TYPE",
    "signature_floor",
    "DEFAULT_SEED",
]
