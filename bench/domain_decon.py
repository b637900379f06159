"""Benchmark: documents/s of the `domain` and `decon` taggers against the `gopher` tagger
(and, for decon, a plain-Python 13-gram set lookup, the way most decontamination scripts work)
on the same real documents, one process, batches of 1024 as the tag stage reads them.

Corpus (built at run time from this machine, never committed): the Python standard library's
modules (code documents), their docstrings (prose), and /usr/share/doc text files.
The decon index is built from 2,000 paragraphs of a held-out tenth of the corpus; 1% of the
tagged documents get one of those paragraphs pasted in (planted contamination).

    .venv/bin/python bench/domain_decon.py [--mb 20] [--repeat 3]

Domain quality (issue 16): macro-F1 of the rules alone, a fastText model trained on labelled
sources, and both combined, on real documents of five domains (code, reference, qa, math,
web; see `domain_eval_docs`), the test documents from files never seen in training:

    .venv/bin/python bench/domain_decon.py --quality 1500
"""

# ruff: noqa: E402  (the sys.path fix below must run before the other imports)
from __future__ import annotations

import sys
from pathlib import Path

# Keep bench/ itself off the import path, so its scripts never shadow standard modules.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import ast
import json
import random
import re
import sysconfig
import tempfile
import time

import pyarrow as pa

from bench.corpus import read_local_text

BATCH = 1024


def chunks(text: str, target: int = 4000) -> list[str]:
    """Split a long text into documents of about `target` characters at blank lines."""
    out, cur = [], []
    size = 0
    for para in text.split("\n\n"):
        cur.append(para)
        size += len(para) + 2
        if size >= target:
            out.append("\n\n".join(cur))
            cur, size = [], 0
    if size > 300:
        out.append("\n\n".join(cur))
    return out


def stdlib_documents(limit_bytes: int) -> list[str]:
    docs: list[str] = []
    size = 0
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if "test" in path.parts or "site-packages" in path.parts:
            continue
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (UnicodeDecodeError, SyntaxError, ValueError):
            continue
        docs.extend(chunks(source))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 200:
                    docs.append(doc)
        size = sum(len(d) for d in docs)
        if size > limit_bytes:
            break
    return docs


def usr_share_doc_documents(limit_bytes: int) -> list[str]:
    docs: list[str] = []
    size = 0
    for path in sorted(Path("/usr/share/doc").rglob("*")):
        if not path.is_file() or path.stat().st_size < 500:
            continue
        text = read_local_text(path)
        if text is None:
            continue
        for chunk in chunks(text):
            docs.append(chunk)
            size += len(chunk)
        if size > limit_bytes:
            break
    return docs


# ------------------------------------------------------------------ domain quality (issue 16)

EVAL_DOMAINS = ("code", "reference", "qa", "math", "web")
# The rule tagger's labels, mapped to the evaluation's domains.
RULE_TO_DOMAIN = {
    "code": "code",
    "math": "math",
    "qa_forum": "qa",
    "instruction": "qa",
    "web": "web",
    "reference": "reference",
    "encyclopedic": "reference",
    "academic": "reference",
    "other": "web",
}


def domain_eval_docs(per_domain: int = 1500, seed: int = 0) -> list[dict]:
    """Real documents of five domains from this machine (bench/realistic_corpus.py's readers,
    without its template-made questions): {text, domain, group}, the group being the file the
    text came from (train and test never share a file). At most `per_domain` per domain,
    taken from each reader of the domain in proportion to its share."""
    from bench import realistic_corpus as rc

    docs: list[dict] = []
    seen: set[str] = set()
    for domain, readers in rc.plan().items():
        for name, share, reader, lister in readers:
            if reader is rc.qa_derived:
                continue  # template questions: not real text
            want = max(1, round(per_domain * share))
            rng = random.Random(f"{seed}:{name}")
            files = list(lister())
            rng.shuffle(files)
            got = 0
            for doc in reader(files, rng, 0):
                if doc.derived or doc.text in seen or len(doc.text.strip()) < 20:
                    continue
                if "rust-by-example" in doc.path:  # pages that are mostly code listings
                    continue
                seen.add(doc.text)
                docs.append({"text": doc.text, "domain": domain, "group": doc.path})
                got += 1
                if got >= want:
                    break
    return docs


def split_by_group(docs: list[dict], test_fraction: float = 0.3, seed: int = 0):
    """(train, test): whole files go to one side, chosen by a hash of the file name."""
    import hashlib

    def side(group: str) -> bool:
        h = hashlib.blake2b(f"{seed}:{group}".encode(), digest_size=8).digest()
        return int.from_bytes(h, "big") / 2**64 < test_fraction

    test = [d for d in docs if side(d["group"])]
    train = [d for d in docs if not side(d["group"])]
    return train, test


def macro_f1(truth: list[str], predicted: list[str], labels=EVAL_DOMAINS) -> dict:
    """Per-label precision, recall, F1 and their macro average."""
    out: dict = {}
    for lab in labels:
        tp = sum(1 for t, p in zip(truth, predicted, strict=True) if t == lab and p == lab)
        pp = sum(1 for p in predicted if p == lab)
        ap = sum(1 for t in truth if t == lab)
        prec = tp / pp if pp else 0.0
        rec = tp / ap if ap else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out[lab] = {"precision": prec, "recall": rec, "f1": f1, "support": ap}
    out["macro_f1"] = sum(out[lab]["f1"] for lab in labels) / len(labels)
    return out


# The evaluation's domains as sources named like the tagger's labels, so that a model trained
# on them shares the rules' label set (combined mode then averages the two).
SOURCE_OF_DOMAIN = {"code": "code", "reference": "reference", "qa": "qa_forum", "math": "math",
                    "web": "web"}  # fmt: skip


def _write_workdir(docs: list[dict], wd: Path) -> None:
    import pyarrow.parquet as pq

    from mixer.schema import DOCUMENT_SCHEMA, documents_dir

    for domain, source in SOURCE_OF_DOMAIN.items():
        rows = [d for d in docs if d["domain"] == domain]
        n = len(rows)
        table = pa.table(
            {
                "id": [f"{domain}-{i}" for i in range(n)],
                "text": [d["text"] for d in rows],
                "source": [source] * n,
                "added": ["2026-11-30"] * n,
                "created": [None] * n,
                "metadata": [None] * n,
                "src_file": [d["group"] for d in rows],
                "src_line": [1] * n,
            },
            schema=DOCUMENT_SCHEMA,
        )
        path = documents_dir(wd, source) / "part-00000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)


def domain_quality(per_domain: int, seed: int = 0, epoch: int = 25) -> dict:
    """Macro-F1 of the domain tagger's rules, a fastText model trained on the sources (labels =
    sources, `train_from_workdir(label_column="source")`) and the two combined, on documents
    of files held out of training."""
    from mixer.taggers.domain import DomainTagger
    from mixer.train_fasttext import train_from_workdir

    t0 = time.perf_counter()
    docs = domain_eval_docs(per_domain, seed)
    train, test = split_by_group(docs, 0.3, seed)
    counts = {d: sum(1 for x in docs if x["domain"] == d) for d in EVAL_DOMAINS}
    print(f"evaluation: {len(docs):,} real documents {counts}; train {len(train):,}, "
          f"test {len(test):,} (split by file); built in {time.perf_counter() - t0:.0f}s")  # fmt: skip
    truth = [d["domain"] for d in test]
    table = pa.table({"text": pa.array([d["text"] for d in test], pa.string())})
    to_domain = {**RULE_TO_DOMAIN, **{v: k for k, v in SOURCE_OF_DOMAIN.items()}}
    results: dict = {"docs": counts, "train_docs": len(train), "test_docs": len(test)}
    with tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp) / "wd"
        _write_workdir(train, wd)
        model = Path(tmp) / "domain.bin"
        t0 = time.perf_counter()
        # small data (thousands of documents): more epochs and a higher learning rate than
        # fastText's defaults; a float model (quantising is slow on a loaded 2-core machine)
        m = train_from_workdir(
            wd, out=model, label_column="source", seed=seed, epoch=epoch, lr=0.5, dim=64,
            quantize=False,
        )  # fmt: skip
        results["training"] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "model_bytes": m["model_bytes"],
            "quantized": m["train"]["quantized"],
            "own_heldout_macro_f1": m["macro_f1"],
        }
        for mode in ("rules", "model", "combined"):
            tagger = (
                DomainTagger(model=str(model), mode=mode) if mode != "rules" else DomainTagger()
            )
            tagger.setup()
            labels = []
            for batch in table.to_batches(BATCH):
                out = tagger.tag(pa.Table.from_batches([batch]))
                labels += out.column("domain__label").to_pylist()
            pred = [to_domain.get(x, "web") for x in labels]
            results[mode] = macro_f1(truth, pred)
    print("| mode | macro-F1 | " + " | ".join(f"{d} F1 (P/R)" for d in EVAL_DOMAINS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in EVAL_DOMAINS) + " |")
    for mode in ("rules", "model", "combined"):
        r = results[mode]
        cells = " | ".join(
            f"{r[d]['f1']:.3f} ({r[d]['precision']:.2f}/{r[d]['recall']:.2f})" for d in EVAL_DOMAINS
        )
        print(f"| {mode} | {r['macro_f1']:.3f} | {cells} |")
    tr = results["training"]
    print(f"model: {tr['model_bytes'] / 1e6:.1f} MB ({'quantised' if tr['quantized'] else 'float'}), "
          f"trained in {tr['seconds']}s; its own held-out macro-F1 {tr['own_heldout_macro_f1']:.3f}")  # fmt: skip
    return results


def best_time(fn, repeat: int) -> tuple[float, float]:
    """Best-of-`repeat` (wall seconds, CPU seconds of this process) of fn(). CPU time is the
    steadier figure on a machine shared with other jobs."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def tag_all(tagger, table: pa.Table) -> None:
    for batch in table.to_batches(BATCH):
        tagger.tag(pa.Table.from_batches([batch]))


def python_ngram_set(eval_texts: list[str], n: int = 13):
    """The common baseline: a Python set of normalised 13-gram tuples, looked up per document
    (returns the function that scans a list of texts)."""
    punct = re.compile(r"[^\w\s]")

    def words(t: str) -> list[str]:
        return punct.sub("", t.lower()).split()

    grams = set()
    for t in eval_texts:
        w = words(t)
        grams.update(tuple(w[i : i + n]) for i in range(len(w) - n + 1))

    def scan(texts: list[str]) -> list[int]:
        out = []
        for t in texts:
            w = words(t)
            out.append(sum(tuple(w[i : i + n]) in grams for i in range(len(w) - n + 1)))
        return out

    return scan


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=20.0, help="corpus size in MB of text")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--quality",
        type=int,
        metavar="PER_DOMAIN",
        help="instead of speed: macro-F1 of rules / model / combined on real documents of five "
        "domains (at most PER_DOMAIN each)",
    )
    ap.add_argument("--json", help="write the quality results here too")
    args = ap.parse_args(argv)
    if args.quality:
        results = domain_quality(args.quality)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
        return 0

    from mixer.decon_index import build_index
    from mixer.taggers.decon import DeconTagger
    from mixer.taggers.domain import DomainTagger

    half = int(args.mb * 1e6 / 2)
    texts = stdlib_documents(half) + usr_share_doc_documents(half)
    rng = random.Random(0)
    rng.shuffle(texts)
    # Evaluation texts: paragraphs of documents held out of the tagged set; 1% of the tagged
    # documents get one of them pasted in (planted contamination).
    held_out, texts = texts[: len(texts) // 10], texts[len(texts) // 10 :]
    paragraphs = [p for t in held_out for p in t.split("\n\n") if len(p.split()) >= 13]
    eval_texts = rng.sample(paragraphs, min(2000, len(paragraphs)))
    for i in rng.sample(range(len(texts)), len(texts) // 100):
        texts[i] = texts[i] + "\n\n" + rng.choice(eval_texts)
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    table = pa.table({"text": pa.array(texts, pa.string())})
    print(f"corpus: {len(texts):,} documents, {mb:.1f} MB", file=sys.stderr)

    with tempfile.TemporaryDirectory() as tmp:
        eval_path = Path(tmp) / "eval.jsonl"
        eval_path.write_text("".join(json.dumps({"text": t}) + "\n" for t in eval_texts))
        index = Path(tmp) / "eval.decon"
        t0 = time.perf_counter()
        manifest = build_index([eval_path], index)
        build_s = time.perf_counter() - t0
        print(f"decon index: {manifest['ngrams']:,} 13-grams in {build_s:.2f}s", file=sys.stderr)

        taggers = {"domain": DomainTagger(), "decon": DeconTagger(index=str(index))}
        try:
            from mixer.taggers.gopher import GopherTagger

            taggers["gopher"] = GopherTagger()
        except ImportError:
            print("gopher tagger not available: no baseline", file=sys.stderr)
        timings = {}
        for name, tagger in taggers.items():
            tagger.setup()
            timings[name] = best_time(lambda t=tagger: tag_all(t, table), args.repeat)
        hits = int((DeconTagger(index=str(index)).count_hits(table.column("text"))[0] > 0).sum())
        scan = python_ngram_set(eval_texts)
        timings["python_13gram_set"] = best_time(lambda: scan(texts), args.repeat)

    print(
        f"\n{len(texts):,} documents, {mb:.1f} MB, batches of {BATCH}, one process, "
        f"best of {args.repeat}; documents hitting the decon index: {hits:,}"
    )
    print("| tagger | docs/s (wall) | docs/CPU-s | MB/CPU-s | vs gopher (CPU) |")
    print("| --- | --- | --- | --- | --- |")
    base = timings.get("gopher", (0, 0))[1]
    for name, (wall, cpu) in timings.items():
        ratio = f"{base / cpu:.2f}x" if base else "n/a"
        n = len(texts)
        print(f"| {name} | {n / wall:,.0f} | {n / cpu:,.0f} | {mb / cpu:.2f} | {ratio} |")
    r = timings["python_13gram_set"][1] / timings["decon"][1]
    print(f"decon vs plain-Python 13-gram set lookup (CPU): {r:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
