"""Ingest throughput against the floor of plain zstd decompression + orjson parsing of the same
shards, run back to back (floor, then mixer) several times; the best ratio is reported.

    # the realistic corpus (bench/realistic_corpus.py), as one source and as its own sources
    python -m bench.ingest --realistic /work/bench_data/realistic_50mb.jsonl.zst --sources one
    python -m bench.ingest --realistic /work/bench_data/realistic_50mb.jsonl.zst --sources own
    # 2 workers need 2+ shards: the file is cut into --shards zstd shards first (cached)
    python -m bench.ingest --realistic /work/bench_data/realistic_50mb.jsonl.zst --shards 4 --workers 2
    # the older corpus (bench/corpus.py: ~4 KB documents of one source)
    python -m bench.ingest --mb 200 --shards 4 --workers 1,2

Start-up is excluded on both sides: the floor's process pool and mixer's executor are started
and warmed (imports done) before the clock starts. "wall" is elapsed time; with 1 worker the
CPU time of this process (all its threads) is printed too, which is steadier than wall time on
a shared, busy machine. Printed: each back-to-back pair, the best pair's ratio, and the ratio
of the fastest floor to the fastest mixer run (steadier when other jobs come and go).

    # the shard code alone (ingest_shard per shard, in this process: no stage, no executor)
    python -m bench.ingest --realistic /work/bench_data/realistic_200mb.jsonl.zst --shard-only
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import orjson
import zstandard

from mixer.executor import LocalExecutor
from mixer.ingest import FieldMap, IngestSource, IngestStage, ingest_shard
from mixer.io import iter_line_blocks, iter_lines
from mixer.stage import RunContext, run_stage


def floor_one(path: str) -> int:
    """Decompress and parse every line with mixer's own line reader (the floor every ratio
    here has used since round 1); return the raw bytes seen."""
    n = 0
    for _, line in iter_lines(path):
        orjson.loads(line)
        n += len(line) + 1
    return n


def floor_stream(path: str) -> int:
    """The strictest floor found: zstd decompressed by a stream reader into a 1 MiB buffer
    that stays in cache, lines read from it by io.BufferedReader, each parsed by orjson. No
    checks at all (a truncated frame ends the stream silently), so it is a floor, not a
    reader mixer could use as is."""
    n = 0
    with open(path, "rb") as raw:
        if raw.read(4) == b"\x28\xb5\x2f\xfd":
            raw.seek(0)
            stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        else:
            raw.seek(0)
            stream = raw
        for line in io.BufferedReader(stream, 1 << 20):
            orjson.loads(line)
            n += len(line)
    return n


def reshard(path: Path, shards: int, out_dir: Path) -> list[Path]:
    """Cut one .jsonl.zst into `shards` zstd shards of about equal bytes (cached)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        out_dir / f"{path.name.split('.')[0]}-{i:02d}-of-{shards:02d}.jsonl.zst"
        for i in range(shards)
    ]
    if all(p.exists() for p in paths):
        return paths
    lines = [line for _, block, _ in iter_line_blocks(path) for line in block]
    if len(lines) < shards:
        raise SystemExit(f"{path}: {len(lines)} lines can't make {shards} shards")
    ends = np.cumsum([len(x) + 1 for x in lines])
    # shard k ends at the first line reaching (k + 1) / shards of the bytes, one line at least
    k = np.arange(1, shards)
    cuts = np.searchsorted(ends, ends[-1] * k / shards) + 1
    cuts = np.maximum.accumulate(np.maximum(cuts, k) - k) + k  # strictly increasing
    cuts = np.minimum(cuts, len(lines) - shards + k)  # and room left for the shards after
    bounds = [0, *cuts.tolist(), len(lines)]
    cctx = zstandard.ZstdCompressor(level=3)
    for i, out in enumerate(paths):
        out.write_bytes(cctx.compress(b"\n".join(lines[bounds[i] : bounds[i + 1]]) + b"\n"))
    return paths


SHAPES = {
    "as-built": None,
    # keys sorted: metadata before source and text (serde_json without preserve_order)
    "sorted": lambda rec: rec,
    # Python's json.dumps defaults: spaces after ":" and ",", non-ASCII as \u escapes
    "spaced": lambda rec: rec,
    # a key beyond the Dolma fields on every line, kept in metadata by ingest
    "extra-field": lambda rec: {**rec, "url": f"https://example.com/{rec['id']}"},
    # dolma's Rust tools: sorted keys and a "version" key
    "dolma-rs": lambda rec: {**rec, "version": "v0"},
    # web crawls: top-level keys of any JSON type beyond the Dolma fields (a url, nested WARC
    # info, a float score), metadata last
    "web-extras": lambda rec: {
        **{k: v for k, v in rec.items() if k != "metadata"},
        "url": f"https://example.com/{rec['id']}",
        "warcinfo": {"ip": "10.0.0.1", "lens": [len(rec["text"]), 0.5]},
        "fasttext_score": len(rec["text"]) / 1e5,
        "metadata": rec.get("metadata"),
    },
}


def reshape(path: Path, shape: str, out_dir: Path) -> Path:
    """The corpus rewritten with its records in another shape (cached): same documents."""
    change = SHAPES[shape]
    if change is None:
        return path
    out = out_dir / f"{path.name.split('.')[0]}-{shape}.jsonl.zst"
    if out.exists():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for _, block, _ in iter_line_blocks(path):
        for line in block:
            rec = change(orjson.loads(line))
            if shape == "spaced":
                lines.append(json.dumps(rec).encode())
            elif shape in ("sorted", "dolma-rs"):
                lines.append(orjson.dumps(rec, option=orjson.OPT_SORT_KEYS))
            else:
                lines.append(orjson.dumps(rec))
    out.write_bytes(zstandard.ZstdCompressor(level=3).compress(b"\n".join(lines) + b"\n"))
    return out


def _timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def run_shards(shards: list[Path], source: str | None, repeat: int) -> dict:
    """Floor, then `ingest_shard` over every shard, in this process, `repeat` times."""
    files = [str(s) for s in shards]
    warm = Path(tempfile.mkdtemp(prefix="mixer-bench-ingest-warm-"))
    (warm / "w.jsonl").write_bytes(b'{"id": "a", "text": "b"}\n')
    ingest_shard(str(warm), str(warm / "w.jsonl"), 0, source, FieldMap())
    shutil.rmtree(warm)
    rows, sources, strict = [], set(), []
    raw = 0
    for _ in range(repeat):
        raw, fw, fc = _timed(lambda: sum(map(floor_one, files)))
        _, sw, sc = _timed(lambda: sum(map(floor_stream, files)))
        strict.append(sc)
        wd = Path(tempfile.mkdtemp(prefix="mixer-bench-ingest-"))

        def shard_all(wd=wd):
            return [ingest_shard(str(wd), f, i, source, FieldMap()) for i, f in enumerate(files)]

        stats, mw, mc = _timed(shard_all)
        for st in stats:
            assert st["lines_read"] == st["ingested"] + st["quarantined"]
            sources.update(st["per_source"])
        shutil.rmtree(wd)
        rows.append((fw, fc, mw, mc))
    best = max(rows, key=lambda r: r[0] / r[2])
    return {"raw": raw, "rows": rows, "best": best, "sources": len(sources), "strict": strict}


def run(shards: list[Path], workers: int, source: str | None, repeat: int) -> dict:
    files = [str(s) for s in shards]
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    executor = LocalExecutor(workers)
    warm = Path(tempfile.mkdtemp(prefix="mixer-bench-ingest-warm-"))
    (warm / "w").mkdir()
    for i in range(max(2, workers)):
        (warm / "w" / f"{i}.jsonl").write_bytes(b'{"id": "a", "text": "b"}\n')
    run_stage(
        IngestStage(warm / "wd", [IngestSource(source, [str(warm / "w")])]),
        RunContext(warm / "wd", executor, progress=False, echo=lambda _m: None),
    )
    if pool is not None:
        list(pool.map(floor_one, [str(p) for p in sorted((warm / "w").iterdir())]))
    rows = []
    raw = 0
    for _ in range(repeat):
        if pool is None:
            raw, fw, fc = _timed(lambda: sum(map(floor_one, files)))
        else:
            raw, fw, fc = _timed(lambda: sum(pool.map(floor_one, files)))
        wd = Path(tempfile.mkdtemp(prefix="mixer-bench-ingest-"))
        stage = IngestStage(wd, [IngestSource(source, files)])
        ctx = RunContext(wd, executor, progress=False, echo=lambda _m: None)
        summary, mw, mc = _timed(lambda stage=stage, ctx=ctx: run_stage(stage, ctx))
        assert summary["lines_read"] == summary["ingested"] + summary["quarantined"]
        shutil.rmtree(wd)
        rows.append((fw, fc, mw, mc))
    executor.close()
    if pool is not None:
        pool.shutdown()
    shutil.rmtree(warm)
    best = max(rows, key=lambda r: r[0] / r[2])
    return {"raw": raw, "rows": rows, "best": best, "sources": len(summary["sources"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--realistic", help="a realistic corpus file (bench/realistic_corpus.py)")
    ap.add_argument(
        "--mb", type=int, default=200, help="size of the older corpus (bench/corpus.py)"
    )
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--corpus", default="work/bench/ingest-corpus")
    ap.add_argument(
        "--shape",
        choices=list(SHAPES),
        default="as-built",
        help="the realistic corpus's records rewritten another way (cached under --corpus)",
    )
    ap.add_argument("--workers", default="1,2")
    ap.add_argument(
        "--sources",
        choices=["one", "own"],
        default="one",
        help="one: --source bench (the issue's setting); own: each document's source",
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--shard-only",
        action="store_true",
        help="time ingest_shard alone, in this process (1 worker; no stage, no executor)",
    )
    args = ap.parse_args()
    if args.realistic:
        path = reshape(Path(args.realistic), args.shape, Path(args.corpus))
        shards = [path] if args.shards == 1 else reshard(path, args.shards, Path(args.corpus))
        name = path.name
    else:
        from bench.corpus import write_corpus

        shards = write_corpus(args.corpus, args.mb << 20, max(1, args.shards))
        name = f"bench/corpus.py {args.mb} MB"
    source = "bench" if args.sources == "one" else None
    for workers in [1] if args.shard_only else [int(w) for w in args.workers.split(",")]:
        if args.shard_only:
            r = run_shards(shards, source, args.repeat)
        else:
            r = run(shards, workers, source, args.repeat)
        mb = r["raw"] / 1e6
        print(
            f"{name}: {mb:.0f} MB raw JSON in {len(shards)} shard(s), {r['sources']} source(s), "
            f"{workers} worker(s)"
        )
        for fw, fc, mw, mc in r["rows"]:
            cpu = f"; cpu {fc:.2f}s vs {mc:.2f}s = {fc / mc:.2f}x" if workers == 1 else ""
            print(
                f"  floor {fw:.2f}s ({mb / fw:.0f} MB/s), mixer {mw:.2f}s ({mb / mw:.0f} MB/s): "
                f"{fw / mw:.2f}x{cpu}"
            )
        fw, fc, mw, mc = r["best"]
        fastest = min(x[0] for x in r["rows"]) / min(x[2] for x in r["rows"])
        cpu = ""
        if workers == 1:
            cpu = f"; CPU {min(x[1] for x in r['rows']) / min(x[3] for x in r['rows']):.2f}x"
        print(
            f"  best pair: {fw / mw:.2f}x the floor (wall); fastest floor / fastest mixer: "
            f"{fastest:.2f}x{cpu}"
        )
        if r.get("strict"):
            sc, mc = min(r["strict"]), min(x[3] for x in r["rows"])
            print(
                f"  strict floor (floor_stream): {mb / sc:.0f} MB/s of CPU; fastest mixer / it: "
                f"{sc / mc:.2f}x (CPU)"
            )


if __name__ == "__main__":
    main()
