"""Time `plan` and `mix` over many synthetic attribute rows (docs/bench_mix.md).

    .venv/bin/python -m bench.mix_scale --rows 10000000 --parts 20 --workdir /tmp/mixbench
    .venv/bin/python -m bench.mix_scale --rows 1000000 --parts 8 --workdir /tmp/mixbench1m \
        --dolma .venv-peers/bin/dolma          # also time `dolma mix` on the same documents

A synthetic workdir: one web source of ROWS documents (tiny texts: this measures planning and
selection, not text I/O) with tokens, quality and dedup attributes, and a small math source
that is upsampled. The recipe filters web on quality and dedup and downsamples it to a token
target. With --dolma, the same documents and attributes are written in Dolma's JSONL.gz
format and `dolma mix` applies the same two filters (dolma has no token-budget sampling: it
only filters, so the comparison is filter-only versus our filter + budgeted selection).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixer.io import write_parquet_atomic
from mixer.mix import plan, run_mix
from mixer.recipe import load_recipe
from mixer.schema import attributes_dir, documents_dir, part_name

RECIPE = """\
name: bench
workdir: {workdir}
seed: 1
budget: {budget}
sources:
  web:
    inputs: ["{workdir}"]
    taggers: [quality, tokens]
    filters:
      - quality__score >= 0.3
      - dedup__keep
  math:
    inputs: ["{workdir}"]
    max_repetition: 4
dedup: {{sources: [web]}}
groups:
  web: {{share: 0.8, sources: {{web: {{weight: 1}}}}}}
  domain: {{share: 0.2, sources: {{math: {{weight: 1}}}}}}
"""


def _ids(prefix: str, start: int, n: int) -> pa.Array:
    nums = pc.cast(pa.array(np.arange(start, start + n)), pa.string())
    return pc.binary_join_element_wise(pa.scalar(prefix), nums, "")


def build(workdir: Path, rows: int, parts: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    totals = {"web": 0, "math": 0}
    for source, n_rows, n_parts in (
        ("web", rows, parts),
        ("math", max(rows // 50, 1), max(parts // 4, 1)),
    ):
        per = -(-n_rows // n_parts)
        for index in range(n_parts):
            start = index * per
            n = max(0, min(per, n_rows - start))
            ids = _ids(f"{source}-", start, n)
            text = pa.repeat(pa.scalar("short text"), n)
            write_parquet_atomic(
                documents_dir(workdir, source) / part_name(index),
                pa.table({"id": ids, "text": text, "source": pa.repeat(pa.scalar(source), n)}),
            )
            tokens = rng.integers(50, 2000, n).astype(np.int32)
            totals[source] += int(tokens.sum()) + n
            write_parquet_atomic(
                attributes_dir(workdir, "tokens", source) / part_name(index),
                pa.table({"id": ids, "tokens__count": tokens}),
            )
            if source == "web":
                write_parquet_atomic(
                    attributes_dir(workdir, "quality", source) / part_name(index),
                    pa.table({"id": ids, "quality__score": rng.random(n)}),
                )
                write_parquet_atomic(
                    attributes_dir(workdir, "dedup", source) / part_name(index),
                    pa.table({"id": ids, "dedup__keep": rng.random(n) > 0.2}),
                )
    return totals


def write_dolma(workdir: Path, out: Path) -> None:
    """The same web documents and attributes as Dolma JSONL.gz (documents/ + attributes/bench/)."""
    import pyarrow.parquet as pq

    for sub in ("documents", "attributes/bench"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for part in sorted(documents_dir(workdir, "web").glob("part-*.parquet")):
        docs = pq.read_table(part).to_pydict()
        q = (
            pq.read_table(attributes_dir(workdir, "quality", "web") / part.name)
            .column("quality__score")
            .to_pylist()
        )
        k = (
            pq.read_table(attributes_dir(workdir, "dedup", "web") / part.name)
            .column("dedup__keep")
            .to_pylist()
        )
        name = part.name.replace(".parquet", ".jsonl.gz")
        with gzip.open(out / "documents" / name, "wt", compresslevel=1) as f:
            for i, t in zip(docs["id"], docs["text"], strict=True):
                f.write(
                    json.dumps({"id": i, "text": t, "source": "web", "added": "", "created": ""})
                    + "\n"
                )
        with gzip.open(out / "attributes" / "bench" / name, "wt", compresslevel=1) as f:
            for i, qs, ks in zip(docs["id"], q, k, strict=True):
                attrs = {
                    "bench__quality": [[0, 1, qs]],
                    "bench__dedup_drop": [[0, 1, 0.0 if ks else 1.0]],
                }
                f.write(json.dumps({"id": i, "attributes": attrs}) + "\n")


def run_dolma(dolma: str, out: Path, processes: int) -> float:
    config = {
        "streams": [
            {
                "name": "web",
                "documents": [str(out / "documents" / "*.jsonl.gz")],
                "attributes": ["bench"],
                # small output shards: dolma works on one shard per process
                "output": {"path": str(out / "mixed"), "max_size_in_bytes": 1 << 20},
                # dolma's jq syntax: several times faster than its JSONPath filters here
                "filter": {
                    "syntax": "jq",
                    "include": [".attributes.bench__quality[0][2] >= 0.3"],
                    "exclude": [".attributes.bench__dedup_drop[0][2] >= 0.5"],
                },
            }
        ],
        "work_dir": {"input": str(out / "tmp-in"), "output": str(out / "tmp-out")},
        "processes": processes,
    }
    cfg = out / "mix.json"
    cfg.write_text(json.dumps(config))
    shutil.rmtree(out / "mixed", ignore_errors=True)
    t0 = time.perf_counter()
    subprocess.run([dolma, "-c", str(cfg), "mix"], check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--parts", type=int, default=20)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/mixbench"))
    ap.add_argument("--dolma", help="path of the `dolma` CLI to compare with (filter-only)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    shutil.rmtree(args.workdir, ignore_errors=True)
    t0 = time.perf_counter()
    totals = build(args.workdir, args.rows, args.parts)
    t_build = time.perf_counter() - t0
    # web keeps ~56% of its tokens after the filters; ask for about a third of its tokens
    budget = int(totals["web"] * 0.3 / 0.8)
    recipe_path = args.workdir / "bench.yaml"
    recipe_path.write_text(RECIPE.format(workdir=args.workdir, budget=budget))
    recipe = load_recipe(recipe_path, {"mix.workers": args.workers}, check_inputs=False)

    t0 = time.perf_counter()
    p = plan(recipe)
    t_plan = time.perf_counter() - t0
    assert not p.errors, p.errors
    t0 = time.perf_counter()
    m = run_mix(recipe, progress=False)
    t_mix = time.perf_counter() - t0
    total_rows = args.rows + max(args.rows // 50, 1)
    result = {
        "rows": total_rows,
        "parts": args.parts,
        "workers": args.workers,
        "build_s": round(t_build, 2),
        "plan_s": round(t_plan, 2),
        "mix_s": round(t_mix, 2),
        "plan_rows_per_s": round(total_rows / t_plan),
        "mix_rows_per_s": round(total_rows / t_mix),
        "selected_docs": m["total_selected_docs"],
        "web_within": round(
            abs(m["sources"]["web"]["selected_tokens"] / m["sources"]["web"]["target_tokens"] - 1),
            6,
        ),
        "math_within": round(
            abs(
                m["sources"]["math"]["selected_tokens"] / m["sources"]["math"]["target_tokens"] - 1
            ),
            6,
        ),
    }
    if args.dolma:
        out = args.workdir / "dolma"
        t0 = time.perf_counter()
        write_dolma(args.workdir, out)
        result["dolma_convert_s"] = round(time.perf_counter() - t0, 2)
        # our mix of the web source alone, filter + select, for the same rows
        only_web = {
            "mix.workers": args.workers,
            "name": "bench_web",
            "budget": p.sources["web"].target_tokens,
            "sources": {"web": recipe.raw["sources"]["web"]},
            "groups": {"web": {"share": 1.0, "sources": {"web": {"weight": 1}}}},
        }
        web_only = load_recipe(recipe_path, only_web, check_inputs=False)
        t0 = time.perf_counter()
        run_mix(web_only, progress=False)
        result["mixer_mix_s"] = round(time.perf_counter() - t0, 2)
        result["dolma_mix_s"] = round(run_dolma(args.dolma, out, args.workers), 2)
        kept = 0
        for shard in sorted((out / "mixed").glob("*.gz")):
            with gzip.open(shard, "rb") as f:
                kept += sum(1 for _ in f)
        result["dolma_kept_docs"] = kept
        result["mixer_docs_after_filters"] = p.sources["web"].eligible_docs
        result["dolma_over_mixer"] = round(result["dolma_mix_s"] / result["mixer_mix_s"], 2)
    print(json.dumps(result, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
