"""Benchmark `mixer tokenize` against the HF encode_batch floor and `dolma tokens`.

Usage:
    python bench/tokenize_speed.py [--corpus FILE.jsonl.zst] [--mb 10] [--tokenizers dolma2,neox]
                                   [--workers 2] [--repeats 1] [--dolma PATH] [--no-hf]

Corpus: the realistic mixed corpus (bench/realistic_corpus.py; default
/work/bench_data/realistic_10mb.jsonl.zst when it exists), else text from this machine
(bench/corpus.py: standard-library sources and /usr/share/doc), `--mb` MB of it. The same
documents go to mixer as a Parquet mix and to dolma as .json.gz shards.

Per tokenizer (OLMo 2's dolma2, GPT-NeoX), run back to back:

- floor: HF `Tokenizer.encode_batch` over all texts already in memory, N Rust threads, no I/O;
- engine: mixer's tokenization engine over the same texts in memory, one process, one thread
  (tiktoken built from the tokenizer.json when the file allows it);
- mixer: `mixer tokenize --workers N` (read the mix, encode, check a sample against HF,
  shuffle, write .npy + index + csv.gz + tokens.json; interpreter start included);
- mixer --engine hf: the same command on HF tokenizers (what mixer did before the engine);
- dolma: `dolma tokens --processes N` from the peers' venv.

Rates are document tokens (EOS left out) per second of wall time; on a machine shared with other
jobs compare the ratios of runs made back to back, not the absolute numbers. Every mixer run
must write the floor's token count (same ids: the engine's sample check and the tests cover
identity; this catches a count difference on the whole corpus).
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder must not shadow anything of the standard library.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MIXER_SHARED_DIR", ROOT.parent / "shared"))
TOKENIZERS = {
    "dolma2": (SHARED / "tokenizers" / "allenai_dolma2.json", 100257, 100277, "uint32"),
    "neox": (
        SHARED / "tokenizers" / "allenai_eleuther-ai-gpt-neox-20b-pii-special.json",
        0,
        1,
        "uint16",
    ),
}
REALISTIC = Path("/work/bench_data/realistic_10mb.jsonl.zst")
PARTS = 8

FLOOR_CODE = """
import sys, time, json
from tokenizers import Tokenizer
texts = json.load(open(sys.argv[1]))
tok = Tokenizer.from_file(sys.argv[2])
tok.encode_special_tokens = True
t0, c0 = time.perf_counter(), time.process_time()
encs = tok.encode_batch(texts, add_special_tokens=False)
print(sum(len(e.ids) for e in encs), time.perf_counter() - t0, time.process_time() - c0)
"""

ENGINE_CODE = """
import sys, time, json
from mixer.tokenization.engine import load_engine
texts = json.load(open(sys.argv[1]))
engine = load_engine(sys.argv[2])
t0, c0 = time.perf_counter(), time.process_time()
ids = engine.encode(texts)
print(sum(len(e) for e in ids), time.perf_counter() - t0, time.process_time() - c0)
"""


def load_texts(corpus: Path | None, mb: float) -> list[str]:
    if corpus is not None:
        import zstandard

        with open(corpus, "rb") as f:
            raw = zstandard.ZstdDecompressor().stream_reader(f).read()
        return [json.loads(line)["text"] for line in raw.decode("utf-8").splitlines() if line]
    sys.path.insert(0, str(ROOT))
    from bench.corpus import iter_texts

    texts, total = [], 0
    for _path, t in iter_texts():  # (file, block of text)
        texts.append(t)
        total += len(t.encode("utf-8"))
        if total >= mb * 1e6:
            break
    return texts


def write_inputs(texts: list[str], work: Path) -> tuple[Path, Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    mix, dolma_in = work / "mix", work / "dolma_in"
    for d in (mix, dolma_in):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    per = -(-len(texts) // PARTS)
    for p in range(PARTS):
        chunk = texts[p * per : (p + 1) * per]
        ids = [f"bench-{p * per + i}" for i in range(len(chunk))]
        pq.write_table(
            pa.table({"id": ids, "text": chunk, "source": ["bench"] * len(chunk)}),
            mix / f"part-{p:05d}.parquet",
            compression="zstd",
        )
        with gzip.open(dolma_in / f"part-{p:05d}.json.gz", "wt", encoding="utf-8") as f:
            for i, t in zip(ids, chunk, strict=True):
                f.write(json.dumps({"id": i, "text": t, "source": "bench"}) + "\n")
    texts_json = work / "texts.json"
    texts_json.write_text(json.dumps(texts))
    return mix, dolma_in, texts_json


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds of the command and every process it waited for, stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    t0, c0 = time.perf_counter(), _children_cpu()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stdout[-1000:]}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t0, _children_cpu() - c0, r.stdout


def bench_one(name: str, args, mix: Path, dolma_in: Path, texts_json: Path, work: Path) -> dict:
    path, eos, pad, dtype = TOKENIZERS[name]
    py, w = sys.executable, args.workers
    best: dict[str, float] = {}  # wall seconds
    cpu: dict[str, float] = {}  # CPU seconds
    counts: dict[str, int] = {}

    def keep(key: str, wall: float, cpu_s: float) -> None:
        best[key] = min(best.get(key, 1e18), wall)
        cpu[key] = min(cpu.get(key, 1e18), cpu_s)

    for _ in range(args.repeats):
        out = run(
            [py, "-c", FLOOR_CODE, str(texts_json), str(path)],
            {"RAYON_NUM_THREADS": str(w), "TOKENIZERS_PARALLELISM": "true"},
        )[2].split()
        counts["floor"] = int(out[0])
        keep("floor", float(out[1]), float(out[2]))
        out = run([py, "-c", ENGINE_CODE, str(texts_json), str(path)])[2].split()
        counts["engine"] = int(out[0])
        keep("engine", float(out[1]), float(out[2]))
        engines = ["auto"] + ([] if args.no_hf else ["hf"])
        for engine in engines:
            dest = work / f"mixer_{engine}"
            shutil.rmtree(dest, ignore_errors=True)
            cmd = [py, "-m", "mixer", "tokenize", str(mix), "--tokenizer", str(path)]
            cmd += ["--out", str(dest), "--workers", str(w), "--quiet", "--engine", engine]
            wall, cpu_s, _ = run(cmd)
            info = json.loads((dest / "tokens.json").read_text())
            key = f"mixer_{engine}"
            counts[key] = info["total_tokens"] - info["documents"]
            keep(key, wall, cpu_s)
            shutil.rmtree(dest, ignore_errors=True)
        if args.dolma:
            dest = work / "dolma_out"
            shutil.rmtree(dest, ignore_errors=True)
            cmd = [
                args.dolma, "tokens",
                "--documents", str(dolma_in / "*.json.gz"),
                "--destination", str(dest),
                "--tokenizer.name_or_path", str(path),
                "--tokenizer.eos_token_id", str(eos),
                "--tokenizer.pad_token_id", str(pad),
                "--processes", str(w),
                "--dtype", dtype,
                "--tokenizer.encode_special_tokens",
            ]  # fmt: skip
            keep("dolma", *run(cmd)[:2])
            itemsize = 4 if dtype == "uint32" else 2
            written = sum(p.stat().st_size for p in dest.rglob("*.npy")) // itemsize
            counts["dolma"] = written - len(json.loads(texts_json.read_text()))
            shutil.rmtree(dest, ignore_errors=True)
    n = counts["floor"]
    for k in ("engine", "mixer_auto", "mixer_hf"):
        if k in counts and counts[k] != n:
            raise SystemExit(f"{name}: {k} wrote {counts[k]:,} tokens, the floor {n:,}")
    return {"tokens": n, "seconds": best, "cpu": cpu, "counts": counts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=str(REALISTIC) if REALISTIC.is_file() else "")
    ap.add_argument("--mb", type=float, default=10.0, help="MB of machine text without --corpus")
    ap.add_argument("--tokenizers", default="dolma2,neox")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--work", default="/tmp/mixer-bench-tokenize")
    peers = [
        Path(os.environ.get("MIXER_PEERS_VENV", ROOT / ".venv-peers")) / "bin" / "dolma",
        Path("/work/main/.venv-peers/bin/dolma"),
    ]
    found = next((str(p) for p in peers if p.exists()), "")
    ap.add_argument("--dolma", default=found, help="the dolma command ('' to skip)")
    ap.add_argument("--no-hf", action="store_true", help="skip `mixer tokenize --engine hf`")
    args = ap.parse_args()
    work = Path(args.work)
    texts = load_texts(Path(args.corpus) if args.corpus else None, args.mb)
    mix, dolma_in, texts_json = write_inputs(texts, work)
    size = sum(len(t.encode("utf-8")) for t in texts)
    print(
        f"corpus: {args.corpus or 'machine text (bench/corpus.py)'}: {len(texts):,} documents, "
        f"{size / 1e6:.1f} MB; {args.workers} workers; best of {args.repeats}"
    )
    rows = []
    for name in args.tokenizers.split(","):
        if not TOKENIZERS[name][0].is_file():
            sys.exit(f"{name}: tokenizer not found at {TOKENIZERS[name][0]}: set MIXER_SHARED_DIR")
        rows.append((name, bench_one(name, args, mix, dolma_in, texts_json, work)))
        print(f"{name}: done", flush=True)
    for what, unit in (("seconds", "tokens/s of wall time"), ("cpu", "tokens per CPU-second")):
        print(f"\n{unit} (floor and engine: encoding only; mixer and dolma: whole commands)\n")
        print(
            "| tokenizer | tokens | floor encode_batch | engine (1 core) | mixer tokenize "
            "| mixer --engine hf | dolma tokens | mixer/floor | mixer/dolma |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name, r in rows:
            n = r["tokens"]
            rate = {k: n / v for k, v in r[what].items()}

            def fmt(k, rate=rate):
                return f"{rate[k]:,.0f}" if k in rate else "-"

            vs = f"{rate['mixer_auto'] / rate['dolma']:.2f}x" if "dolma" in rate else "-"
            print(
                f"| {name} | {n:,} | {fmt('floor')} | {fmt('engine')} | {fmt('mixer_auto')} "
                f"| {fmt('mixer_hf')} | {fmt('dolma')} "
                f"| {rate['mixer_auto'] / rate['floor']:.2f}x | {vs} |"
            )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
