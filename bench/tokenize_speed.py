"""Benchmark `mixer tokenize` against `dolma tokens` and the encode_batch floor.

Usage:
    .venv/bin/python bench/tokenize_speed.py [--mb 16] [--repeats 2] [--workers 1,2] [--dolma PATH]

The corpus is built at run time from text on this machine (Python standard library sources,
/usr/share/doc text files), never committed. The same documents go to mixer as a Parquet mix
and to dolma as .json.gz shards. Per worker count N, best of --repeats:

- floor: `Tokenizer.encode_batch` on all texts already in memory, N Rust threads, no I/O
  (and the same with `encode_batch_fast`, which skips offsets: what mixer calls);
- mixer command: `mixer tokenize --workers N` (read, encode, shuffle, pack, write; includes
  the interpreter start and the CLI's imports);
- mixer API: the `tokenize_mix(...)` call alone (includes starting the worker processes);
- dolma: `dolma tokens --processes N` (the command), from .venv-peers by default.

Each is reported as tokens per second of wall time and tokens per CPU-second (all processes
and threads): on a machine shared with other jobs the CPU figure is the steadier one. Rates
count the document tokens only (the EOS each tool appends is left out), so all are over the
same token count. The real GPT-NeoX tokenizer is read from ../shared/tokenizers (or
MIXER_SHARED_DIR); the benchmark stops if it is absent.
"""

from __future__ import annotations

import os
import sys

# This file is named tokenize.py: run as a script, its folder must not shadow the standard
# library's `tokenize` (which linecache, inspect and dataclasses import).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import glob  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MIXER_SHARED_DIR", ROOT.parent / "shared"))
NEOX = SHARED / "tokenizers" / "allenai_eleuther-ai-gpt-neox-20b-pii-special.json"
PY = ROOT / ".venv" / "bin" / "python"
MIXER = ROOT / ".venv" / "bin" / "mixer"
DOLMA = ROOT / ".venv-peers" / "bin" / "dolma"
MAX_DOC_CHARS = 40_000
PARTS = 8


def build_corpus(target_bytes: int) -> list[str]:
    """Real text from this machine: stdlib sources and documentation files, in sorted order."""
    paths = sorted(glob.glob("/usr/lib/python3*/**/*.py", recursive=True))
    docs_paths = sorted(glob.glob("/usr/share/doc/**/*", recursive=True))
    # Interleave code and prose so every part holds a mixture.
    merged = [p for pair in zip(paths, docs_paths, strict=False) for p in pair]
    texts, total = [], 0
    for p in merged:
        try:
            raw = gzip.open(p).read() if p.endswith(".gz") else Path(p).read_bytes()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError, EOFError):
            continue
        if not text.strip() or "\x00" in text:
            continue
        text = text[:MAX_DOC_CHARS]
        texts.append(text)
        total += len(text.encode("utf-8"))
        if total >= target_bytes:
            break
    return texts


def write_inputs(texts: list[str], work: Path) -> tuple[Path, Path]:
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
    return mix, dolma_in


FLOOR_CODE = """
import sys, time, pyarrow.parquet as pq, glob
from tokenizers import Tokenizer
texts = []
for p in sorted(glob.glob(sys.argv[1] + "/part-*.parquet")):
    texts += pq.read_table(p, columns=["text"]).column("text").to_pylist()
tok = Tokenizer.from_file(sys.argv[2])
tok.encode_special_tokens = True
w0, c0 = time.perf_counter(), time.process_time()
encs = getattr(tok, sys.argv[3])(texts, add_special_tokens=False)
w1, c1 = time.perf_counter(), time.process_time()
print(sum(len(e.ids) for e in encs), w1 - w0, c1 - c0)
"""

API_CODE = """
import resource, sys, time
from mixer.tokenization import tokenize_mix
def cpu():
    a, b = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime
w0, c0 = time.perf_counter(), cpu()
tokenize_mix(sys.argv[1], sys.argv[2], sys.argv[3], workers=int(sys.argv[4]), progress=False)
print(time.perf_counter() - w0, cpu() - c0)
"""


@dataclass
class Timing:
    wall: float = float("inf")  # seconds, best of the repeats
    cpu: float = float("inf")  # CPU seconds of all processes and threads, best of the repeats
    peak_mib: float = 0.0  # peak RSS of the largest process, worst of the repeats

    def add(self, wall: float, cpu: float, peak: float = 0.0) -> None:
        self.wall, self.cpu = min(self.wall, wall), min(self.cpu, cpu)
        self.peak_mib = max(self.peak_mib, peak)


def run_timed(cmd: list[str], env: dict | None = None) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + sys, children included), peak RSS MiB, stdout."""
    wrapped = ["/usr/bin/time", "-f", "%M %U %S", *cmd]
    t0 = time.perf_counter()
    r = subprocess.run(wrapped, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    peak_kib, user, system = r.stderr.strip().splitlines()[-1].split()
    return dt, float(user) + float(system), int(peak_kib) / 1024, r.stdout


def floor(mix: Path, threads: int, timing: Timing, method: str = "encode_batch") -> int:
    env = {"RAYON_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "true"}
    out = run_timed([str(PY), "-c", FLOOR_CODE, str(mix), str(NEOX), method], env)[3]
    n, wall, cpu = out.split()
    timing.add(float(wall), float(cpu))
    return int(n)


def mixer(mix: Path, out: Path, workers: int, command: Timing, api: Timing) -> int:
    """Run the command, then the API call; returns the document tokens (EOS left out)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(MIXER), "tokenize", str(mix), "--tokenizer", str(NEOX), "--out", str(out)]
    wall, cpu, peak, _ = run_timed([*cmd, "--workers", str(workers), "--quiet"])
    command.add(wall, cpu, peak)
    info = json.loads((out / "tokens.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    stdout = run_timed([str(PY), "-c", API_CODE, str(mix), str(NEOX), str(out), str(workers)])[3]
    api.add(*map(float, stdout.split()))
    return info["total_tokens"] - info["documents"]


def dolma(dolma_bin: str, dolma_in: Path, out: Path, workers: int, timing: Timing) -> int:
    """Run dolma tokens; returns the tokens it wrote (EOS included)."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        dolma_bin, "tokens",
        "--documents", str(dolma_in / "*.json.gz"),
        "--destination", str(out),
        "--tokenizer.name_or_path", str(NEOX),
        "--tokenizer.eos_token_id", "0",
        "--tokenizer.pad_token_id", "1",
        "--processes", str(workers),
        "--dtype", "uint16",
        "--tokenizer.encode_special_tokens",  # as mixer: "<|endoftext|>" in text stays text
    ]  # fmt: skip
    wall, cpu, peak, _ = run_timed(cmd)
    timing.add(wall, cpu, peak)
    return sum(p.stat().st_size for p in out.rglob("*.npy")) // 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=16.0, help="corpus size in MB of text")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--work", default="/tmp/mixer-bench-tokenize")
    ap.add_argument("--dolma", default=str(DOLMA), help="the dolma command ('' to skip)")
    args = ap.parse_args()
    if not NEOX.is_file():
        sys.exit(f"the GPT-NeoX tokenizer is not at {NEOX}: set MIXER_SHARED_DIR")
    if args.dolma and not Path(args.dolma).exists():
        sys.exit(f"dolma not found at {args.dolma}: run bench/setup_peers.sh or pass --dolma ''")
    work = Path(args.work)
    texts = build_corpus(int(args.mb * 1e6))
    mix, dolma_in = write_inputs(texts, work)
    size = sum(len(t.encode("utf-8")) for t in texts)
    print(f"corpus: {len(texts)} documents, {size / 1e6:.1f} MB of text, {os.cpu_count()} cores")
    results = []
    for w in [int(x) for x in args.workers.split(",")]:
        t = {k: Timing() for k in ("floor", "fast", "command", "api", "dolma")}
        for _ in range(args.repeats):
            n = floor(mix, w, t["floor"])
            assert floor(mix, w, t["fast"], "encode_batch_fast") == n
            assert mixer(mix, work / "mixer_out", w, t["command"], t["api"]) == n
            if args.dolma:
                n_dolma = dolma(args.dolma, dolma_in, work / "dolma_out", w, t["dolma"])
        results.append((w, n, t))
    print(f"tokens: {results[0][1]:,} (GPT-NeoX, EOS not counted); best of {args.repeats}")
    if args.dolma:
        print(f"dolma wrote {n_dolma:,} tokens, mixer {n + len(texts):,} (both with EOS)")
    for what in ("wall", "cpu"):
        unit = "tokens/s of wall time" if what == "wall" else "tokens per CPU-second"
        print(f"\n{unit}:\n")
        print(
            "| workers | floor encode_batch | floor encode_batch_fast | mixer command "
            "| mixer API | dolma command | mixer/floor (command, API) "
            "| mixer/floor_fast (command, API) | mixer/dolma (commands) |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for w, n, t in results:
            rate = {k: n / getattr(v, what) for k, v in t.items()}
            d = f"{rate['dolma']:,.0f}" if args.dolma else "-"
            vs = f"{rate['command'] / rate['dolma']:.2f}x" if args.dolma else "-"
            c, a = rate["command"], rate["api"]
            print(
                f"| {w} | {rate['floor']:,.0f} | {rate['fast']:,.0f} | {c:,.0f} | {a:,.0f} | {d} "
                f"| {c / rate['floor']:.2f}x, {a / rate['floor']:.2f}x "
                f"| {c / rate['fast']:.2f}x, {a / rate['fast']:.2f}x | {vs} |"
            )
    print("\npeak RSS (largest process), MiB:")
    for w, _, t in results:
        print(f"  workers {w}: mixer {t['command'].peak_mib:.0f}, dolma {t['dolma'].peak_mib:.0f}")


if __name__ == "__main__":
    main()
