"""Dedup resolution at scale: peak memory of the resolution tasks for R = 1 and R > 1.

    PYTHONPATH=. .venv/bin/python bench/dedup_resolve_scale.py --docs 1000000 --exact 0.3

Builds synthetic documents (50-150 words of a 50k-word vocabulary; a fraction `--exact` are
exact copies of an earlier document, 2% one-word edits of the previous one), runs the whole
dedup once on 2 workers, then reruns only the resolution stages (dedup.graph ... dedup.write)
in a fresh process with workers=1, so that the process's peak RSS is the largest resolution
task's (plus the interpreter): once with R from the default memory limit, once with R forced
to `--partitions` (ROW_BYTES scaled), on the same state.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def gen(args) -> None:
    import numpy as np

    from bench.dedup import write_workdir

    rng = np.random.default_rng(args.docs)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = [letters[i % 26] + letters[i // 26 % 26] + letters[i // 676 % 26] + letters[i // 17576]
             for i in range(50_000)]  # fmt: skip
    docs = []
    for i in range(args.docs):
        r = rng.random()
        if i > 0 and r < args.exact:
            docs.append((f"s{i}", docs[int(rng.integers(0, i))][1]))
            continue
        if i > 0 and r < args.exact + 0.02:
            words = docs[-1][1].split(" ")
            words[len(words) // 2] = "changed"
            docs.append((f"s{i}", " ".join(words)))
            continue
        ids = rng.integers(0, len(vocab), int(rng.integers(50, 150)))
        docs.append((f"s{i}", " ".join(vocab[j] for j in ids)))
    write_workdir(docs, Path(args.out), parts=max(8, args.docs // 50_000))


def full(args) -> None:
    from mixer.dedup import run_dedup

    t = time.perf_counter()
    stats = run_dedup(args.out, workers=2, progress=False)
    print(json.dumps({"seconds": time.perf_counter() - t, "removed": stats["removed"],
                      "edges": stats["verified_edges"],
                      "driver_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))  # fmt: skip


def resolution(args) -> None:
    import mixer.dedup.resolve as res
    from mixer.dedup import dedup_stages
    from mixer.executor import LocalExecutor
    from mixer.stage import RunContext, run_stage

    if args.row_bytes:  # R = ceil(rows * ROW_BYTES / memory limit): this row size gives R
        res.ROW_BYTES = int(args.row_bytes)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stages = [s for s in dedup_stages(args.out, {}) if s.name.split(".")[1] in
              ("graph", "components", "labels", "resolve", "clusters", "write")]  # fmt: skip
    ctx = RunContext(Path(args.out), LocalExecutor(1), False, lambda m: None,
                     frozenset(s.name for s in stages))  # fmt: skip
    t = time.perf_counter()
    out = None
    for s in stages:
        out = run_stage(s, ctx)
    print(json.dumps({"seconds": time.perf_counter() - t, "R": out["resolve_partitions"],
                      "rounds": out["components_rounds"], "removed": out["removed"],
                      "rss_before_mb": base,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--exact", type=float, default=0.3)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--step", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--row-bytes", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        {"gen": gen, "full": full, "resolution": resolution}[args.step](args)
        return

    def step(name: str, *extra: str) -> dict:
        cmd = [sys.executable, __file__, "--step", name, "--out", str(work),
               "--docs", str(args.docs), "--exact", str(args.exact), *extra]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(res.stderr[-3000:])
        return json.loads(res.stdout.strip().splitlines()[-1]) if name != "gen" else {}

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        work = Path(tmp) / "work"
        step("gen")
        f = step("full")
        print(f"{args.docs:,} documents, {args.exact:.0%} exact copies: full dedup {f['seconds']:.1f} s, "
              f"driver {f['driver_rss_mb']:.0f} MB, largest worker {f['worker_rss_mb']:.0f} MB, "
              f"removed {f['removed']:,}, verified edges {f['edges']:,}")  # fmt: skip
        from mixer.io import read_json

        graph = read_json(work / "state" / "stages" / "dedup.graph" / "stage.json")["result"]
        rows = graph["rows"]
        one = step("resolution", "--partitions", "1")
        # R = ceil(rows * ROW_BYTES / 2 GiB): the row size that makes R = --partitions
        rb = (args.partitions - 0.5) * (2 << 30) / max(rows, 1)
        many = step("resolution", "--partitions", str(args.partitions), "--row-bytes", str(int(rb)))
        for r in (one, many):
            print(f"  resolution stages alone, R = {r['R']:>3}, {r['rounds']} round(s): "
                  f"{r['seconds']:.1f} s, process peak {r['peak_rss_mb']:.0f} MB "
                  f"(after imports {r['rss_before_mb']:.0f} MB); graph rows {rows:,}")  # fmt: skip


if __name__ == "__main__":
    main()
