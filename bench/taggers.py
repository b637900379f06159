"""Throughput of mixer's gopher + c4 + fineweb taggers against datatrove's four filters
(GopherQualityFilter, GopherRepetitionFilter, C4QualityFilter, FineWebQualityFilter) on the
same documents, with 1 and 2 worker processes. Prints documents/s, MB/s and the ratios.

    .venv/bin/python bench/taggers.py [CORPUS] [--mb 10] [--workers 1,2]

datatrove runs in the peers' environment (.venv-peers, bench/setup_peers.sh; or PEERS_PYTHON).
Both sides are timed in wall-clock seconds and in CPU seconds of their worker processes: on a
machine shared with other jobs the CPU figures are the fairer comparison.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/ holds modules named like stdlib ones (tokenize.py): never import from it as a top level
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402

from bench.parity_datatrove import PEERS_PYTHON, build_corpus, read_corpus  # noqa: E402

BATCH = 1024


def _mixer_part(texts: list[str]) -> float:
    """Tag one share of the documents; returns the CPU seconds it took."""
    import pyarrow as pa

    from mixer.taggers.c4 import C4Tagger
    from mixer.taggers.fineweb import FineWebTagger
    from mixer.taggers.gopher import GopherTagger

    taggers = [GopherTagger(), C4Tagger(), FineWebTagger()]
    for t in taggers:  # warm up (lazy imports, e.g. pyarrow's of pandas), as datatrove's below
        t.tag(pa.table({"text": ["Warm up."]}))
    start = time.process_time()
    for i in range(0, len(texts), BATCH):
        table = pa.table({"text": texts[i : i + BATCH]})
        for t in taggers:
            t.tag(table)
    return time.process_time() - start


def _datatrove_part(texts: list[str]) -> float:
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    filters = [
        GopherQualityFilter(),
        GopherRepetitionFilter(),
        C4QualityFilter(),
        FineWebQualityFilter(),
    ]
    for f in filters:
        f.filter(Document(text="Warm up.", id="warm-up"))
    start = time.process_time()
    for i, text in enumerate(texts):
        for f in filters:  # every filter sees every document, as mixer's taggers do
            f.filter(Document(text=text, id=str(i)))
    return time.process_time() - start


def per_tagger(texts: list[str]) -> dict[str, float]:
    """CPU seconds of each step, one process, batches of BATCH: the shared word split, then
    each tagger's `tag` (gopher and fineweb reuse the split and the batch's lines)."""
    import pyarrow as pa

    from mixer.taggers import text_stats as ts
    from mixer.taggers.c4 import C4Tagger
    from mixer.taggers.domain import DomainTagger
    from mixer.taggers.fineweb import FineWebTagger
    from mixer.taggers.gopher import GopherTagger
    from mixer.taggers.lang import LangTagger

    tables = [pa.table({"text": texts[i : i + BATCH]}) for i in range(0, len(texts), BATCH)]
    taggers = {"gopher": GopherTagger(), "fineweb": FineWebTagger(), "c4": C4Tagger(),
               "lang": LangTagger(), "domain": DomainTagger()}  # fmt: skip
    for t in taggers.values():
        t.setup()
        t.tag(pa.table({"text": ["Warm up."]}))
    out = dict.fromkeys(["split", *taggers], 0.0)
    for table in tables:
        start = time.process_time()
        _ = ts.text_batch(table).words
        out["split"] += time.process_time() - start
        for name, tagger in taggers.items():
            start = time.process_time()
            tagger.tag(table)
            out[name] += time.process_time() - start
    return out


def run(side: str, texts: list[str], workers: int) -> dict:
    fn = _mixer_part if side == "mixer" else _datatrove_part
    shares = [texts[i::workers] for i in range(workers)]
    start = time.perf_counter()
    if workers == 1:
        cpu = [fn(texts)]
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
            cpu = list(ex.map(fn, shares))
    wall = time.perf_counter() - start
    return {"wall_s": wall, "cpu_s": sum(cpu), "cpu_max_s": max(cpu)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("corpus", nargs="?", help="JSONL(.zst) file or directory; default: build one")
    ap.add_argument("--mb", type=float, default=10.0)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument(
        "--per-tagger",
        action="store_true",
        help="only mixer: CPU seconds of the word split and of each tagger (gopher, fineweb, c4, "
        "lang, domain), one process",
    )
    ap.add_argument("--peer", nargs=3, metavar=("CORPUS", "WORKERS", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.peer:
        texts = [d["text"] for d in read_corpus(a.peer[0])]
        Path(a.peer[2]).write_text(json.dumps(run("datatrove", texts, int(a.peer[1]))))
        return 0

    if a.per_tagger:
        texts = [d["text"] for d in read_corpus(a.corpus)]
        mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        secs = per_tagger(texts)
        print(f"{len(texts)} documents, {mb:.1f} MB; CPU seconds, one process:")
        print("  " + ", ".join(f"{k} {v:.2f}" for k, v in secs.items()))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        corpus = a.corpus or str(build_corpus(Path(tmp) / "corpus", a.mb))
        texts = [d["text"] for d in read_corpus(corpus)]
        mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        print(
            f"{len(texts)} documents, {mb:.1f} MB; {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}"
        )
        results = {}
        for w in [int(x) for x in a.workers.split(",")]:
            mine = run("mixer", texts, w)
            theirs = None
            if Path(PEERS_PYTHON).exists():
                out = Path(tmp) / f"peer-{w}.json"
                subprocess.run(
                    [PEERS_PYTHON, __file__, "--peer", corpus, str(w), str(out)], check=True
                )
                theirs = json.loads(out.read_text())
            results[w] = {"mixer": mine, "datatrove": theirs}
            for side, r in (("mixer", mine), ("datatrove", theirs)):
                if r:
                    print(
                        f"workers={w} {side:<9} wall {r['wall_s']:7.1f}s  {len(texts) / r['wall_s']:8.0f} docs/s "
                        f"{mb / r['wall_s']:6.2f} MB/s | cpu {r['cpu_s']:7.1f}s  {mb / r['cpu_s']:6.2f} MB/s per core"
                    )
            if theirs:
                print(
                    f"workers={w} ratio mixer/datatrove: wall {theirs['wall_s'] / mine['wall_s']:.1f}x, "
                    f"cpu {theirs['cpu_s'] / mine['cpu_s']:.1f}x"
                )
    if a.json:
        Path(a.json).write_text(
            json.dumps({"docs": len(texts), "mb": mb, "results": results}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
