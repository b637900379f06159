"""Ingest throughput (MB/s of raw JSON) on 1 and 2 workers, against the floor of plain zstd
decompression + orjson parsing of the same shards.

    .venv/bin/python bench/ingest.py [--mb 200] [--shards 4]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import orjson

from bench.corpus import write_corpus
from mixer.ingest import ingest
from mixer.io import iter_lines


def floor_one(path: str) -> int:
    """Decompress and parse every line; return the raw bytes seen."""
    n = 0
    for _, line in iter_lines(path):
        orjson.loads(line)
        n += len(line) + 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--corpus", default="work/bench/ingest-corpus")
    args = ap.parse_args()
    shards = write_corpus(args.corpus, args.mb << 20, args.shards)
    raw = 0
    t = time.perf_counter()
    for s in shards:
        raw += floor_one(str(s))
    floor1 = raw / (time.perf_counter() - t) / 1e6
    t = time.perf_counter()
    with ProcessPoolExecutor(2) as ex:
        list(ex.map(floor_one, map(str, shards)))
    floor2 = raw / (time.perf_counter() - t) / 1e6
    results = {}
    for workers in (1, 2):
        wd = Path(tempfile.mkdtemp(prefix="mixer-bench-ingest-"))
        t = time.perf_counter()
        ingest([str(s) for s in shards], wd, workers=workers, progress=False)
        results[workers] = raw / (time.perf_counter() - t) / 1e6
        shutil.rmtree(wd)
    print(f"raw JSON: {raw / 1e6:.0f} MB in {len(shards)} zstd shards")
    print(f"floor (zstd + orjson), 1 process: {floor1:.0f} MB/s; 2 processes: {floor2:.0f} MB/s")
    print(
        f"mixer ingest, 1 worker: {results[1]:.0f} MB/s = {results[1] / floor1:.2f}x the 1-process floor"
    )
    print(
        f"mixer ingest, 2 workers: {results[2]:.0f} MB/s = {results[2] / results[1]:.2f}x 1 worker, {results[2] / floor2:.2f}x the 2-process floor"
    )


if __name__ == "__main__":
    main()
