"""Benchmark of `mixer dedup` against datatrove's 4-stage MinHash and a datasketch MinHashLSH loop.

    .venv/bin/python bench/dedup.py compare --docs 20000 --workers 2   # same docs, P/R for each
    .venv/bin/python bench/dedup.py scale --sizes 100000,300000,1000000 # time + peak RSS growth

`compare` builds a corpus at run time from text found on this machine (lines of the Python
standard library sources and of /usr/share/doc), plants exact and near duplicates (2% of the
words replaced) and runs each tool end to end on the same documents, from documents to keep
flags. Precision and recall are measured on documents: a removed document is right when it
belongs to a planted cluster; recall is removed planted copies / (cluster size - 1) summed.
datatrove runs in .venv-peers (bench/setup_peers.sh) with its defaults (MinhashConfig():
5-grams, 14 buckets x 8 hashes, sha1 32-bit). The datasketch loop runs in one process, with
the same bands x rows as mixer, the same normalisation and 5-gram shingles.

`scale` times mixer alone on synthetic short documents (50-150 words) and records the peak
resident memory of the whole run (parent and workers).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import unicodedata
from pathlib import Path

from bench.corpus import read_local_text

ROOT = Path(__file__).resolve().parents[1]
PEERS_PY = Path(os.environ.get("DEDUP_BENCH_PEERS_PYTHON", ROOT / ".venv-peers" / "bin" / "python"))

WORD = re.compile(r"[A-Za-z][A-Za-z'\-]+")


# ---------------------------------------------------------------------------- corpus


def text_lines(limit_bytes: int = 40 << 20) -> list[str]:
    """Distinct lines of prose-ish text (>= 6 words) from stdlib sources and /usr/share/doc."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    files += sorted(p for p in Path("/usr/share/doc").rglob("*") if p.is_file())
    seen, out, total = set(), [], 0
    for f in files:
        text = read_local_text(f)
        if text is None:
            continue
        for line in text.splitlines():
            line = line.strip(" #*\t-")
            if len(WORD.findall(line)) >= 6 and line not in seen:
                seen.add(line)
                out.append(line)
                total += len(line)
        if total > limit_bytes:
            break
    return out


def build_corpus(n_docs: int, seed: int = 0, dup_fraction: float = 0.1):
    """Documents (id, text) and planted clusters {id: cluster}."""
    rng = random.Random(seed)
    lines = text_lines()
    n_base = int(n_docs / (1 + dup_fraction * 1.5))
    docs, truth = [], {}
    for i in range(n_base):
        k = rng.randint(8, 30)
        docs.append((f"d{i}", "\n".join(lines[rng.randrange(len(lines))] for _ in range(k))))
    for c, (doc_id, text) in enumerate(rng.sample(docs, int(n_base * dup_fraction))):
        truth[doc_id] = c
        for j in range(rng.choice([1, 1, 2])):
            if rng.random() < 0.5:
                copy = text
            else:
                words = text.split(" ")
                for w in rng.sample(range(len(words)), max(1, len(words) // 50)):
                    words[w] = rng.choice(lines).split(" ")[0]
                copy = " ".join(words)
            docs.append((f"c{c}_{j}", copy))
            truth[f"c{c}_{j}"] = c
    rng.shuffle(docs)
    return docs, truth


def doc_scores(removed: set[str], truth: dict[str, int]) -> tuple[float, float]:
    sizes: dict[int, int] = {}
    for c in truth.values():
        sizes[c] = sizes.get(c, 0) + 1
    right = sum(1 for d in removed if d in truth)
    per_cluster: dict[int, int] = {}
    for d in removed:
        if d in truth:
            per_cluster[truth[d]] = per_cluster.get(truth[d], 0) + 1
    caught = sum(min(n, sizes[c] - 1) for c, n in per_cluster.items())
    precision = right / len(removed) if removed else 1.0
    return precision, caught / sum(s - 1 for s in sizes.values())


# ---------------------------------------------------------------------------- runners


def write_workdir(docs, workdir: Path, parts: int, source: str = "web") -> None:
    import pyarrow as pa

    from mixer.io import write_parquet_atomic
    from mixer.schema import DOCUMENT_SCHEMA, documents_dir, part_name

    per = (len(docs) + parts - 1) // parts
    for p in range(parts):
        chunk = docs[p * per : (p + 1) * per]
        cols = {
            "id": [d[0] for d in chunk],
            "text": [d[1] for d in chunk],
            "source": [source] * len(chunk),
            "added": [None] * len(chunk),
            "created": [None] * len(chunk),
            "metadata": [None] * len(chunk),
            "src_file": ["bench"] * len(chunk),
            "src_line": list(range(len(chunk))),
        }
        write_parquet_atomic(
            documents_dir(workdir, source) / part_name(p), pa.table(cols, schema=DOCUMENT_SCHEMA)
        )


def run_mixer(workdir: Path, workers: int, **kw) -> tuple[float, set[str], dict]:
    import pyarrow.parquet as pq

    from mixer.dedup import run_dedup

    shutil.rmtree(workdir / "state", ignore_errors=True)
    shutil.rmtree(workdir / "attributes", ignore_errors=True)
    t = time.perf_counter()
    stats = run_dedup(workdir, workers=workers, progress=False, **kw)
    elapsed = time.perf_counter() - t
    removed = set()
    for p in sorted((workdir / "attributes" / "dedup").glob("*/part-*.parquet")):
        tab = pq.read_table(p, columns=["id", "dedup__keep"]).to_pydict()
        removed.update(i for i, k in zip(tab["id"], tab["dedup__keep"], strict=True) if not k)
    return elapsed, removed, stats


_PUNCT = re.compile(r"[^\w\s]+")
_DIGIT = re.compile(r"\d")


def simple_words(text: str) -> list[str]:
    """Plain-Python normalisation for the datasketch loop: the same rules as mixer's."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return _DIGIT.sub("0", _PUNCT.sub("", text).replace("_", "")).split()


def run_datasketch(docs, bands: int, rows: int) -> tuple[float, set[str]]:
    """The plain loop: per document a MinHash over its 5-gram shingles, query the LSH, insert."""
    from datasketch import MinHash, MinHashLSH

    t = time.perf_counter()
    index = MinHashLSH(num_perm=bands * rows, params=(bands, rows))
    removed = set()
    for doc_id, text in docs:
        w = simple_words(text)
        shingles = {" ".join(w[i : i + 5]) for i in range(max(1, len(w) - 4))}
        m = MinHash(num_perm=bands * rows, seed=1)
        m.update_batch([s.encode("utf-8") for s in shingles])
        if index.query(m):
            removed.add(doc_id)  # a near copy of a document seen before
        else:
            index.insert(doc_id, m)
    return time.perf_counter() - t, removed


DATATROVE_SCRIPT = r"""
import sys, time, json
from datatrove.executor.local import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.jsonl import JsonlWriter

def main():
    inp, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    config = MinhashConfig()
    t = time.perf_counter()
    LocalPipelineExecutor(pipeline=[JsonlReader(inp), MinhashDedupSignature(output_folder=f"{out}/sigs", config=config)],
                          tasks=workers, workers=workers, logging_dir=f"{out}/logs/1").run()
    LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(input_folder=f"{out}/sigs", output_folder=f"{out}/buckets", config=config)],
                          tasks=config.num_buckets, workers=workers, logging_dir=f"{out}/logs/2").run()
    LocalPipelineExecutor(pipeline=[MinhashDedupCluster(input_folder=f"{out}/buckets", output_folder=f"{out}/remove", config=config)],
                          tasks=1, logging_dir=f"{out}/logs/3").run()
    LocalPipelineExecutor(pipeline=[JsonlReader(inp), MinhashDedupFilter(input_folder=f"{out}/remove", exclusion_writer=JsonlWriter(f"{out}/removed"))],
                          tasks=workers, workers=workers, logging_dir=f"{out}/logs/4").run()
    print(json.dumps({"seconds": time.perf_counter() - t, "config": repr(config)}))

if __name__ == "__main__":
    main()
"""


def run_datatrove(docs, tmp: Path, workers: int) -> tuple[float, set[str], str] | None:
    if not PEERS_PY.exists():
        return None
    inp = tmp / "jsonl"
    inp.mkdir(parents=True, exist_ok=True)
    per = (len(docs) + workers - 1) // workers
    for w in range(workers):
        with open(inp / f"part-{w}.jsonl", "w") as f:
            for doc_id, text in docs[w * per : (w + 1) * per]:
                f.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    script = tmp / "dt.py"
    script.write_text(DATATROVE_SCRIPT)
    res = subprocess.run([str(PEERS_PY), str(script), str(inp), str(tmp / "dt"), str(workers)],
                         capture_output=True, text=True)  # fmt: skip
    if res.returncode != 0:
        print(res.stderr[-3000:], file=sys.stderr)
        return None
    info = json.loads(res.stdout.strip().splitlines()[-1])
    removed = set()
    for f in (tmp / "dt" / "removed").rglob("*"):
        if f.is_file():
            raw = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
            removed.update(
                json.loads(line)["id"] for line in raw.decode().splitlines() if line.strip()
            )
    return info["seconds"], removed, info["config"]


# ---------------------------------------------------------------------------- commands


def compare(args) -> dict:
    docs, truth = build_corpus(args.docs, seed=args.seed)
    mb = sum(len(t.encode()) for _, t in docs) / 1e6
    print(
        f"corpus: {len(docs):,} documents, {mb:.1f} MB, {len(set(truth.values())):,} planted clusters"
    )
    results = {"documents": len(docs), "mb": round(mb, 2), "workers": args.workers, "tools": {}}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp_s:
        tmp = Path(tmp_s)
        write_workdir(docs, tmp / "work", parts=max(args.workers * 2, 4))
        for label, w, kw in (
            (f"mixer ({args.workers} workers)", args.workers, {}),
            ("mixer (1 worker)", 1, {}),
            (f"mixer --verify ({args.workers} workers)", args.workers, {"verify": True}),
        ):
            secs, removed, stats = run_mixer(tmp / "work", w, **kw)
            bands, rows = stats["lsh"]["bands"], stats["lsh"]["rows"]
            results["tools"][label] = (secs, *doc_scores(removed, truth))
        if not args.skip_datasketch:
            secs, removed = run_datasketch(docs, bands, rows)
            results["tools"][f"datasketch loop ({bands}x{rows}, 1 process)"] = (
                secs,
                *doc_scores(removed, truth),
            )
        if not args.skip_datatrove:
            dt = run_datatrove(docs, tmp, args.workers)
            if dt is None:
                print("datatrove: not available (run bench/setup_peers.sh)")
            else:
                secs, removed, cfg = dt
                results["tools"][f"datatrove 4-stage ({args.workers} workers)"] = (
                    secs,
                    *doc_scores(removed, truth),
                )
                results["datatrove_config"] = cfg
    base = next(iter(results["tools"].values()))[0]
    print(
        f"{'tool':45s} {'seconds':>8s} {'docs/s':>9s} {'MB/s':>6s} {'mixer x':>8s} {'P':>6s} {'R':>6s}"
    )
    for label, (secs, p, r) in results["tools"].items():
        print(
            f"{label:45s} {secs:8.2f} {len(docs) / secs:9.0f} {mb / secs:6.2f} {secs / base:8.2f} {p:6.3f} {r:6.3f}"
        )
    return results


def scale(args) -> dict:
    out = {}
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp_s:
            work = Path(tmp_s) / "work"
            gen = subprocess.run([sys.executable, __file__, "_scale_gen", "--docs", str(n), "--out", str(work)],
                                 capture_output=True, text=True)  # fmt: skip
            if gen.returncode != 0:
                print(gen.stderr[-2000:], file=sys.stderr)
                break
            mb = float(gen.stdout.strip().splitlines()[-1])
            # a fresh process runs the stage alone, so its peak memory is the stage's
            res = subprocess.run([sys.executable, __file__, "_scale_run", "--out", str(work), "--workers", str(args.workers)],
                                 capture_output=True, text=True)  # fmt: skip
        if res.returncode != 0:
            print(res.stderr[-2000:], file=sys.stderr)
            break
        row = json.loads(res.stdout.strip().splitlines()[-1])
        row["mb"] = mb
        out[n] = row
        print(f"{n:>9,} docs  {mb:8.1f} MB  {row['seconds']:7.1f} s  {n / row['seconds']:8.0f} docs/s  "
              f"{mb / row['seconds']:6.2f} MB/s  peak RSS: stage process {row['parent_rss_mb']:.0f} MB, "
              f"largest worker {row['child_rss_mb']:.0f} MB  phases {row['phases']}")  # fmt: skip
    return out


def _scale_gen(args) -> None:
    """Synthetic short documents (50-150 words of a 50k-word vocabulary), 2% near copies."""
    import numpy as np

    rng = np.random.default_rng(args.docs)
    letters = "abcdefghijklmnopqrstuvwxyz"
    # letters only: digits would all fold to 0 under the normalisation
    vocab = [
        letters[i % 26] + letters[i // 26 % 26] + letters[i // 676 % 26] + letters[i // 17576]
        for i in range(50_000)
    ]
    n = args.docs
    lengths = rng.integers(50, 150, n)
    docs, mb = [], 0
    for i in range(n):
        ids = rng.integers(0, len(vocab), int(lengths[i]))
        text = " ".join(vocab[j] for j in ids)
        if i % 50 == 1:
            words = docs[-1][1].split(" ")
            words[len(words) // 2] = "changed"
            text = " ".join(words)
        docs.append((f"s{i}", text))
        mb += len(text) / 1e6
    write_workdir(docs, Path(args.out), parts=max(8, n // 50_000))
    print(mb)


def _scale_run(args) -> None:
    secs, removed, stats = run_mixer(Path(args.out), args.workers)
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"seconds": secs, "removed": len(removed), "parent_rss_mb": parent,
                      "child_rss_mb": child, "phases": stats["seconds"]}))  # fmt: skip


def sample_compare(args) -> dict:
    """The three tools on the sample corpus's web pages (prose), scored on its ground truth."""
    import pyarrow.parquet as pq

    from mixer.ingest import ingest
    from mixer.sample_data import generate

    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="mixer-dedup-sample-"))
    generate(tmp / "data", seed=args.seed, scale=args.scale)
    ingest([str(tmp / "data" / "web")], tmp / "ingested", progress=False)
    t = pq.read_table(tmp / "ingested" / "documents" / "web", columns=["id", "text"]).to_pydict()
    docs = list(zip(t["id"], t["text"], strict=True))
    truth = {}
    for line in (tmp / "data" / "ground_truth" / "duplicates.jsonl").read_text().splitlines():
        rec = json.loads(line)
        truth[rec["id"]] = rec["cluster"]
    write_workdir(docs, tmp / "wd", 4)
    results = {}
    elapsed, removed, _ = run_mixer(tmp / "wd", args.workers)
    results["mixer"] = (elapsed, *doc_scores(removed, truth))
    elapsed, removed = run_datasketch(docs, 14, 8)
    results["datasketch loop (14x8)"] = (elapsed, *doc_scores(removed, truth))
    dt = run_datatrove(docs, tmp, args.workers)
    if dt:
        results["datatrove 4-stage"] = (dt[0], *doc_scores(dt[1], truth))
    print(
        f"sample web pages: {len(docs):,} documents, {len(set(truth.values())):,} planted clusters"
    )
    for name, (sec, p, r) in results.items():
        print(f"{name:28s} {sec:8.2f} s  precision {p:.4f}  recall {r:.4f}")
    return {
        k: dict(zip(("seconds", "precision", "recall"), v, strict=True)) for k, v in results.items()
    }


PLANTED_RUNS = {
    "default (0.8)": {},
    "default --verify": {"verify": True},
    "0.6 --verify": {"threshold": 0.6, "verify": True},
    "0.6 (signature estimate)": {"threshold": 0.6},
}


def planted(args) -> dict:
    """Planted near-duplicates at Jaccard 0.5-1.0 in real prose and code (bench/dedup_planted.py)."""
    import pickle

    import pyarrow.parquet as pq

    from bench.dedup_planted import build, score

    t = time.perf_counter()
    cache = Path(args.cache) if args.cache else None
    if cache and cache.exists():
        docs, cluster, pairs = pickle.loads(cache.read_bytes())
    else:
        docs, cluster, pairs = build(args.base, args.seed, args.corpus, clean=not args.raw)
        if cache:
            cache.write_bytes(pickle.dumps((docs, cluster, pairs)))
    mb = sum(len(x.encode()) for _, x in docs) / 1e6
    print(f"corpus: {len(docs):,} documents, {mb:.1f} MB, {len(pairs):,} planted pairs "
          f"(built in {time.perf_counter() - t:.0f} s)")  # fmt: skip
    texts = dict(docs)
    results = {"documents": len(docs), "mb": round(mb, 2), "pairs": len(pairs), "runs": {}}
    runs = {k: v for k, v in PLANTED_RUNS.items() if not args.runs or k in args.runs.split(",")}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp_s:
        work = Path(tmp_s) / "work"
        write_workdir(docs, work, parts=args.parts)
        for label, kw in runs.items():
            secs, _, stats = run_mixer(work, args.workers, **kw)
            attrs = {}
            for p in sorted((work / "attributes" / "dedup" / "web").glob("part-*.parquet")):
                tab = pq.read_table(p).to_pydict()
                for i, k, c, d in zip(tab["id"], tab["dedup__keep"], tab["dedup__minhash_cluster"],
                                      tab["dedup__duplicate_of"], strict=True):  # fmt: skip
                    attrs[i] = (k, c, d)
            res = score(attrs, cluster, pairs, texts)
            res["seconds"] = round(secs, 2)
            res["largest_cluster"] = max(
                (c["size"] for c in stats.get("largest_clusters", [])), default=1
            )
            for k in ("candidate_pairs", "signature_rejected", "verification_rejected"):
                if k in stats:
                    res[k] = stats[k]
            results["runs"][label] = res
            r = res["recall"]
            print(f"{label:26s} {secs:6.1f} s  P {res['precision']:.4f} (similar {res['precision_similar']:.4f}, "
                  f"{res['unplanted_removals']} unplanted)  R J>=0.8 {r.get('all J>=0.8', 0):.3f}  "
                  f"J>=0.6 {r.get('all J>=0.6', 0):.3f}  J 0.5-0.6 {r.get('all J>=0.5<0.6', 0):.3f}  "
                  f"largest cluster {res['largest_cluster']}")  # fmt: skip
            print("    recall " + ", ".join(f"{k}: {v}" for k, v in r.items()))
    return results


def _cpu_seconds() -> float:
    """User + system CPU of this process and of its finished children (pool workers, peers)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def realistic(args) -> dict:
    """mixer (one source; the same documents as their many sources) vs datatrove, end to end
    from documents to keep flags, on a realistic corpus (bench/realistic_corpus.py's output)."""
    import orjson

    from mixer.io import iter_lines

    corpus = Path(args.corpus)
    docs, sources = [], []
    for _, raw in iter_lines(corpus):
        rec = orjson.loads(raw)
        docs.append((str(rec["id"]), rec["text"]))
        sources.append(str(rec.get("source") or "unknown"))
    mb = sum(len(t.encode()) for _, t in docs) / 1e6
    out = {"corpus": str(corpus), "documents": len(docs), "mb": round(mb, 1), "runs": {}}
    print(f"{corpus.name}: {len(docs):,} documents, {mb:.1f} MB, {len(set(sources))} sources")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp_s:
        tmp = Path(tmp_s)
        # as ingest lays the shard out: one part for one source, one part per source string
        for label, by_source in (("one source", False), ("many sources", True)):
            work = tmp / label.replace(" ", "_")
            groups: dict[str, list] = {}
            for d, src in zip(docs, sources, strict=True):
                groups.setdefault(
                    re.sub(r"[^A-Za-z0-9._-]", "_", src) if by_source else "bench", []
                ).append(d)
            for name, chunk in groups.items():
                write_workdir(chunk, work, parts=1, source=name)
            parts = len(list((work / "documents").glob("*/part-*.parquet")))
            cpu = _cpu_seconds()
            secs, removed, stats = run_mixer(work, args.workers)
            cpu = _cpu_seconds() - cpu
            out["runs"][f"mixer, {label}"] = {"seconds": round(secs, 2), "cpu": round(cpu, 2),
                                               "removed": len(removed), "parts": parts,
                                               "stages": stats["seconds"]}  # fmt: skip
            print(f"mixer, {label:12s}: {secs:7.2f} s  cpu {cpu:7.2f} s  {mb / secs:6.2f} MB/s  "
                  f"{parts} parts  removed {len(removed):,}  stages {stats['seconds']}")  # fmt: skip
        if not args.skip_datatrove:
            # (wall time only: datatrove's pool workers are not waited for, so their CPU
            # does not reach RUSAGE_CHILDREN)
            dt = run_datatrove(docs, tmp, args.workers)
            if dt is None:
                print("datatrove: not available")
            else:
                secs, removed, _ = dt
                out["runs"]["datatrove 4-stage"] = {
                    "seconds": round(secs, 2),
                    "removed": len(removed),
                }
                one = out["runs"]["mixer, one source"]["seconds"]
                many = out["runs"]["mixer, many sources"]["seconds"]
                print(f"datatrove 4-stage     : {secs:7.2f} s  {mb / secs:6.2f} MB/s  removed "
                      f"{len(removed):,}  -> mixer {secs / one:.1f}x (one source), "
                      f"{secs / many:.1f}x (many sources); many/one {many / one:.2f}")  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare", help="mixer vs datatrove vs datasketch on the same documents")
    c.add_argument("--docs", type=int, default=20_000)
    c.add_argument("--workers", type=int, default=2)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--skip-datatrove", action="store_true")
    c.add_argument("--skip-datasketch", action="store_true")
    c.add_argument("--json", help="write the results here")
    c.add_argument("--tmp", default=None)
    m = sub.add_parser("sample", help="the three tools on the sample corpus's web pages")
    m.add_argument("--scale", type=float, default=1.0)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--workers", type=int, default=2)
    m.add_argument("--json", help="write the results here")
    m.add_argument("--tmp", default=None)
    s = sub.add_parser("scale", help="mixer time and peak memory from 100k to 1M short documents")
    s.add_argument("--sizes", default="100000,300000,1000000")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--json", help="write the results here")
    s.add_argument("--tmp", default=None)
    pl = sub.add_parser("planted", help="precision/recall at planted Jaccard 0.5-1.0, real text")
    pl.add_argument("--base", type=int, default=6000, help="base documents (half code)")
    pl.add_argument("--corpus", default=None, help="a realistic .jsonl.zst to draw them from")
    pl.add_argument("--parts", type=int, default=8)
    pl.add_argument("--raw", action="store_true", help="keep real text's own near-duplicates")
    pl.add_argument("--cache", default=None, help="keep the built corpus in this file")
    pl.add_argument("--runs", default=None, help="comma list of run labels (default: all)")
    pl.add_argument("--workers", type=int, default=2)
    pl.add_argument("--seed", type=int, default=0)
    pl.add_argument("--json", help="write the results here")
    pl.add_argument("--tmp", default=None)
    rl = sub.add_parser("realistic", help="mixer (one vs many sources) vs datatrove, real corpus")
    rl.add_argument("--corpus", default="/work/bench_data/realistic_200mb.jsonl.zst")
    rl.add_argument("--workers", type=int, default=2)
    rl.add_argument("--skip-datatrove", action="store_true")
    rl.add_argument("--json", help="write the results here")
    rl.add_argument("--tmp", default=None)
    g = sub.add_parser("_scale_gen")
    g.add_argument("--docs", type=int)
    g.add_argument("--out")
    r = sub.add_parser("_scale_run")
    r.add_argument("--out")
    r.add_argument("--workers", type=int)
    args = ap.parse_args()
    if args.cmd in ("_scale_gen", "_scale_run"):
        (_scale_gen if args.cmd == "_scale_gen" else _scale_run)(args)
        return
    res = {
        "compare": compare,
        "sample": sample_compare,
        "scale": scale,
        "planted": planted,
        "realistic": realistic,
    }[args.cmd](args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
