"""Parity of mixer's gopher / c4 / fineweb taggers with datatrove's own filters.

Runs datatrove's GopherQualityFilter, GopherRepetitionFilter, C4QualityFilter and
FineWebQualityFilter (default settings, in the peers' environment .venv-peers, made by
bench/setup_peers.sh) and mixer's taggers on the same documents, and prints, per filter, the
share of documents with the same keep decision, the agreement per datatrove rule, and the
disagreeing ids.

mixer's gopher tagger follows the Gopher paper where datatrove differs (variant "paper"); it
is also run as variant "datatrove". Disagreements that the paper variant has and the datatrove
variant does not are the paper differences: they are counted apart (see docs/taggers.md).

    .venv/bin/python bench/parity_datatrove.py [CORPUS] [--mb 20] [--show 10]

CORPUS: a directory (or file) of JSONL / JSONL.zst records with "id" and "text"; without it a
corpus of real text is built from this machine's files (see build_corpus).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/ holds modules named like stdlib ones (tokenize.py): never import from it as a top level
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import ast  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sysconfig  # noqa: E402
import tempfile  # noqa: E402
from collections import Counter  # noqa: E402

PEERS_PYTHON = os.environ.get("PEERS_PYTHON", str(ROOT / ".venv-peers" / "bin" / "python"))
FILTERS = ("gopher_quality", "gopher_repetition", "c4", "fineweb")

# ---------------------------------------------------------------------------- the corpus


def _read_text(path: Path) -> str | None:
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError):
        return None
    if b"\x00" in raw[:4096]:
        return None
    return raw.decode("utf-8", errors="replace")


def _chunks(text: str, rng: random.Random) -> list[str]:
    """Cut a file into documents of 300..20000 characters along paragraph breaks."""
    paras = [p for p in text.split("\n\n") if p.strip()]
    docs, cur, size = [], [], 0
    target = min(20000, max(300, int(rng.lognormvariate(7.5, 1.0))))
    for p in paras:
        cur.append(p)
        size += len(p)
        if size >= target:
            docs.append("\n\n".join(cur))
            cur, size, target = [], 0, min(20000, max(300, int(rng.lognormvariate(7.5, 1.0))))
    if cur:
        docs.append("\n\n".join(cur))
    return docs


def _stdlib_docstrings() -> list[str]:
    out = []
    for p in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            tree = ast.parse(p.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        kinds = (ast.Module, ast.ClassDef, ast.FunctionDef)
        docs = [d for n in ast.walk(tree) if isinstance(n, kinds) and (d := ast.get_docstring(n))]
        if docs:
            out.append("\n\n".join(docs))
    return out


def _sample_web_pages(seed: int) -> list[str]:
    """The web pages of mixer's own sample corpus (good prose, spam, lists, boilerplate...)."""
    try:
        import orjson
        import zstandard

        from mixer.sample_data import generate
    except ImportError:
        return []
    texts = []
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, seed=seed, scale=0.3)
        for shard in sorted(Path(tmp, "web").glob("*.jsonl.zst")):
            data = zstandard.ZstdDecompressor().stream_reader(shard.open("rb")).read()
            for line in data.splitlines():
                try:  # the sample shards plant a few broken lines for ingest tests
                    texts.append(str(orjson.loads(line)["text"]))
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue
    return texts


def build_corpus(
    out_dir: str | Path, mb: float = 20.0, seed: int = 0, with_web: bool = True
) -> Path:
    """Write out_dir/corpus-0000.jsonl.zst ({id, text}) with about `mb` MB of real text:
    mixer's sample web pages, Python docstrings, and /usr/share/doc files cut into documents."""
    import orjson
    import zstandard

    rng = random.Random(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = [("web", t) for t in (_sample_web_pages(seed) if with_web else [])]
    for doc in _stdlib_docstrings():
        texts.extend(("pydoc", d) for d in _chunks(doc, rng))
    files = sorted(
        p for p in Path("/usr/share/doc").rglob("*") if p.is_file() and not p.is_symlink()
    )
    rng.shuffle(files)
    budget = mb * 1e6
    total = sum(len(t) for _, t in texts)
    for f in files:
        if total >= budget:
            break
        text = _read_text(f) if f.stat().st_size > 200 else None
        for d in _chunks(text or "", rng):
            texts.append(("doc", d))
            total += len(d)
    rng.shuffle(texts)
    lines, size = [], 0
    for i, (kind, t) in enumerate(texts):
        lines.append(orjson.dumps({"id": f"{kind}-{i:06d}", "text": t}))
        size += len(t)
        if size >= budget:
            break
    path = out / "corpus-0000.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor(level=3).compress(b"\n".join(lines) + b"\n"))
    return path


def read_corpus(path: str | Path) -> list[dict]:
    """Records {id, text} of every .jsonl(.zst) file under `path` (or the file itself)."""
    import orjson
    import zstandard

    p = Path(path)
    files = (
        [p]
        if p.is_file()
        else sorted(x for x in p.rglob("*") if x.name.endswith((".jsonl", ".jsonl.zst")))
    )
    docs = []
    for f in files:
        raw = f.read_bytes()
        if f.name.endswith(".zst"):
            raw = zstandard.ZstdDecompressor().stream_reader(raw).read()
        for line in raw.splitlines():
            if line.strip():
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                docs.append({"id": str(rec.get("id")), "text": str(rec.get("text") or "")})
    return docs


# ---------------------------------------------------------------------------- datatrove side


def datatrove_worker(corpus: str, out: str) -> None:
    """(Runs in .venv-peers.) One JSON line per document: each filter's (keep, reason)."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    filters = {
        "gopher_quality": GopherQualityFilter(),
        "gopher_repetition": GopherRepetitionFilter(),
        "c4": C4QualityFilter(),
        "fineweb": FineWebQualityFilter(),
    }
    with open(out, "w") as f:
        for d in read_corpus(corpus):
            row = {"id": d["id"]}
            for name, flt in filters.items():
                try:
                    r = flt.filter(Document(text=d["text"], id=d["id"]))
                except Exception as e:  # noqa: BLE001 - a crash is a result too
                    r = (False, f"crash:{type(e).__name__}")
                keep, reason = (r, "") if isinstance(r, bool) else (bool(r[0]), str(r[1]))
                row[name] = [keep, "" if keep else reason]
            f.write(json.dumps(row) + "\n")


# ---------------------------------------------------------------------------- mixer side

# mixer rule names -> datatrove reason names, to compare rule by rule
GOPHER_REASONS = {
    "empty": "empty",
    "short_doc": "gopher_short_doc",
    "long_doc": "gopher_long_doc",
    "short_mean_word_length": "gopher_below_avg_threshold",
    "long_mean_word_length": "gopher_above_avg_threshold",
    "too_many_hashes": "gopher_too_many_hashes",
    "too_many_ellipsis": "gopher_too_many_ellipsis",
    "too_many_bullet_lines": "gopher_too_many_bullets",
    "too_many_ellipsis_lines": "gopher_too_many_end_ellipsis",
    "too_few_alpha_words": "gopher_below_alpha_threshold",
    "too_few_stop_words": "gopher_enough_stop_words",
    "dup_para_frac": "dup_para_frac",
    "dup_para_char_frac": "dup_para_char_frac",
    "dup_line_frac": "dup_line_frac",
    "dup_line_char_frac": "dup_line_char_frac",
    **{f"top_{n}gram": f"top_{n}_gram" for n in (2, 3, 4)},
    **{f"dup_{n}gram": f"duplicated_{n}_n_grams" for n in range(5, 11)},
}


def mixer_decisions(docs: list[dict], variant: str) -> dict[str, dict]:
    """Per document id: each filter's (keep, reason) from mixer's taggers."""
    import pyarrow as pa

    from mixer.taggers.c4 import C4Tagger
    from mixer.taggers.fineweb import FineWebTagger
    from mixer.taggers.gopher import QUALITY_RULES, REPETITION_RULES, GopherTagger, first_failure

    gopher, c4, fineweb = GopherTagger(variant=variant), C4Tagger(), FineWebTagger()
    out = {}
    for start in range(0, len(docs), 1024):
        batch = docs[start : start + 1024]
        table = pa.table({"id": [d["id"] for d in batch], "text": [d["text"] for d in batch]})
        g = gopher.tag(table).to_pylist()
        c = c4.tag(table).to_pylist()
        fw = fineweb.tag(table).to_pylist()
        for d, gr, cr, fr in zip(batch, g, c, fw, strict=True):
            feats = {k.removeprefix("gopher__"): v for k, v in gr.items()}
            q = first_failure(feats, gopher.settings, QUALITY_RULES) if d["text"] else "short_doc"
            r = first_failure(feats, gopher.settings, REPETITION_RULES) if d["text"] else "empty"
            out[d["id"]] = {
                "gopher_quality": [q == "", GOPHER_REASONS.get(q, q)],
                "gopher_repetition": [r == "", GOPHER_REASONS.get(r, r)],
                "c4": [cr["c4__keep"], cr["c4__reason"]],
                "fineweb": [fr["fineweb__keep"], fr["fineweb__reason"]],
            }
    return out


def compare(theirs: dict, ours: dict, paper: dict, show: int) -> dict:
    """Agreement per filter and per datatrove rule; paper differences counted apart."""
    report = {}
    ids = [i for i in theirs if i in ours]
    for name in FILTERS:
        same = paper_diff = 0
        per_rule: Counter = Counter()
        per_rule_agree: Counter = Counter()
        disagree = []
        for i in ids:
            t_keep, t_reason = theirs[i][name]
            o_keep, o_reason = ours[i][name]
            p_keep = paper[i][name][0] if paper else o_keep
            # a rule "fires" on a document when either side removes it for that rule
            for reason in {t_reason, o_reason} - {""}:
                per_rule[reason] += 1
                per_rule_agree[reason] += t_reason == o_reason
            if t_keep == o_keep:
                same += 1
                if p_keep != t_keep:
                    paper_diff += 1
            else:
                disagree.append((i, t_reason or "keep", o_reason or "keep"))
        n = len(ids) or 1
        report[name] = {
            "docs": len(ids),
            "agreement": same / n,
            "disagree": len(disagree),
            "paper_differences": paper_diff,
            "rules": {
                r: {"fired": per_rule[r], "agreement": 1 - (per_rule[r] - per_rule_agree[r]) / n}
                for r in sorted(per_rule)
            },
            "examples": disagree[:show],
        }
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("corpus", nargs="?", help="JSONL(.zst) file or directory; default: build one")
    ap.add_argument("--mb", type=float, default=20.0, help="size of the built corpus")
    ap.add_argument("--show", type=int, default=10, help="disagreeing ids to print per filter")
    ap.add_argument("--json", help="also write the full report here")
    ap.add_argument(
        "--datatrove-worker", nargs=2, metavar=("CORPUS", "OUT"), help=argparse.SUPPRESS
    )
    a = ap.parse_args(argv)
    if a.datatrove_worker:
        datatrove_worker(*a.datatrove_worker)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        corpus = a.corpus or str(build_corpus(Path(tmp) / "corpus", a.mb))
        docs = read_corpus(corpus)
        if not Path(PEERS_PYTHON).exists():
            print(f"no peers' python at {PEERS_PYTHON}: run bench/setup_peers.sh", file=sys.stderr)
            return 2
        out = Path(tmp) / "datatrove.jsonl"
        subprocess.run(
            [PEERS_PYTHON, __file__, "--datatrove-worker", corpus, str(out)],
            check=True,
            cwd=str(ROOT),
        )
        theirs = {}
        for line in out.read_text().splitlines():
            row = json.loads(line)
            theirs[row.pop("id")] = row
    compat = mixer_decisions(docs, "datatrove")
    paper = mixer_decisions(docs, "paper")
    report = compare(theirs, compat, paper, a.show)
    paper_vs = compare(theirs, paper, {}, a.show)
    print(f"{len(docs)} documents, {sum(len(d['text']) for d in docs) / 1e6:.1f} MB")
    for name in FILTERS:
        r = report[name]
        pr = paper_vs[name]
        print(
            f"\n{name}: keep agreement {r['agreement']:.4f} ({r['disagree']} disagree)"
            + (
                f"; paper variant {pr['agreement']:.4f}, {r['paper_differences']} paper differences counted apart"
                if name.startswith("gopher")
                else ""
            )
        )
        for rule, v in r["rules"].items():
            print(f"  {rule:<32} fired {v['fired']:>6}  agreement {v['agreement']:.4f}")
        for i, t, o in r["examples"]:
            print(f"    {i}: datatrove {t}, mixer {o}")
    if a.json:
        Path(a.json).write_text(
            json.dumps({"datatrove_variant": report, "paper_variant": paper_vs}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
