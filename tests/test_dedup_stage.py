"""The dedup stage end to end: quality on ground truth, verification, exact, cross-source,
determinism, caching, keep rule, paragraphs, the command line."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from mixer.cli import main
from mixer.dedup import run_dedup
from mixer.dedup.paragraphs import remove_spans
from mixer.io import iter_lines, write_parquet_atomic
from mixer.schema import DOCUMENT_SCHEMA, attributes_dir, documents_dir, part_name, state_dir


def write_documents(workdir: Path, source: str, index: int, docs: list[tuple[str, str]]) -> Path:
    """Write (id, text) pairs as documents/<source>/part-<index>.parquet."""
    rows = {name: [] for name in DOCUMENT_SCHEMA.names}
    for line, (doc_id, text) in enumerate(docs, 1):
        for k, v in (
            ("id", doc_id), ("text", text), ("source", source), ("added", None), ("created", None),
            ("metadata", None), ("src_file", f"{source}.jsonl"), ("src_line", line),
        ):  # fmt: skip
            rows[k].append(v)
    path = documents_dir(workdir, source) / part_name(index)
    write_parquet_atomic(path, pa.table(rows, schema=DOCUMENT_SCHEMA))
    return path


def load_sample_source(data_dir: Path, workdir: Path, source: str) -> int:
    """Documents of sample_data/<source>/*.jsonl.zst (well-formed lines only), one part per shard."""
    n = 0
    for index, shard in enumerate(sorted((data_dir / source).glob("*.jsonl*"))):
        docs = []
        for _, raw in iter_lines(shard):
            try:
                rec = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if (
                isinstance(rec, dict)
                and isinstance(rec.get("id"), str)
                and isinstance(rec.get("text"), str)
            ):
                docs.append((rec["id"], rec["text"]))
        write_documents(workdir, source, index, docs)
        n += len(docs)
    return n


VOCAB = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "su", "ta", "ro", "vi") for b in range(400)]


def _text(rng: random.Random, n: int = 120) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n)) + "."


def _edit(rng: random.Random, text: str, fraction: float) -> str:
    words = text.split(" ")
    for i in rng.sample(range(len(words)), max(1, round(len(words) * fraction))):
        words[i] = rng.choice(VOCAB)
    return " ".join(words)


def _attrs(workdir: Path, source: str, index: int = 0) -> dict:
    return pq.read_table(attributes_dir(workdir, "dedup", source) / part_name(index)).to_pydict()


def _clusters(workdir: Path, sources: list[str]) -> dict[str, int]:
    out = {}
    for s in sources:
        for p in sorted((attributes_dir(workdir, "dedup", s)).glob("part-*.parquet")):
            t = pq.read_table(p, columns=["id", "dedup__minhash_cluster"]).to_pydict()
            out.update(zip(t["id"], t["dedup__minhash_cluster"], strict=True))
    return out


def _pairs(groups: dict) -> set[tuple[str, str]]:
    members: dict = {}
    for doc, c in groups.items():
        members.setdefault(c, []).append(doc)
    return {p for m in members.values() for p in itertools.combinations(sorted(m), 2)}


@pytest.fixture(scope="module")
def sample_workdir(tmp_path_factory) -> tuple[Path, Path]:
    sample_data = pytest.importorskip("mixer.sample_data")
    root = tmp_path_factory.mktemp("dedup_sample")
    sample_data.generate(root / "data", seed=3, scale=0.25)
    for source in ("web", "math", "encyclopedic"):
        load_sample_source(root / "data", root / "work", source)
    return root / "data", root / "work"


def test_precision_recall_on_sample_ground_truth(sample_workdir):
    data, work = sample_workdir
    stats = run_dedup(work, workers=1, progress=False)
    truth_rows = [
        orjson.loads(line)
        for line in (data / "ground_truth/duplicates.jsonl").read_bytes().splitlines()
    ]
    truth = _pairs({d["id"]: d["cluster"] for d in truth_rows})
    predicted = _pairs(_clusters(work, ["web", "math", "encyclopedic"]))
    true_positives = len(predicted & truth)
    precision = true_positives / max(1, len(predicted))
    recall = true_positives / len(truth)
    assert len(truth) > 100
    assert precision >= 0.98, (precision, sorted(predicted - truth)[:5])
    assert recall >= 0.9, (recall, sorted(truth - predicted)[:5])
    # every cluster keeps exactly one member; the stats add up
    assert stats["documents"] == stats["kept"] + stats["removed"]
    assert stats["removed"] == sum(stats["removed_per_source"].values())
    assert stats["largest_clusters"] and all(c["size"] >= 2 for c in stats["largest_clusters"])
    by_cluster: dict = {}
    for path in sorted(attributes_dir(work, "dedup").glob("*/part-*.parquet")):
        a = pq.read_table(path).to_pydict()
        for c, k in zip(a["dedup__minhash_cluster"], a["dedup__keep"], strict=True):
            by_cluster[c] = by_cluster.get(c, 0) + k
    assert set(by_cluster.values()) == {1}
    assert (state_dir(work) / "dedup" / "stats.json").exists()


def test_every_part_gets_rows_in_order(tmp_path):
    rng = random.Random(1)
    docs0 = [(f"a{i}", _text(rng)) for i in range(30)]
    write_documents(tmp_path, "web", 0, docs0)
    write_documents(tmp_path, "web", 1, [])  # an empty part still gets its attributes part
    write_documents(tmp_path, "web", 2, [("z", ""), ("y", None), ("x", docs0[3][1])])
    run_dedup(tmp_path, workers=1, progress=False)
    assert _attrs(tmp_path, "web", 0)["id"] == [d for d, _ in docs0]
    assert _attrs(tmp_path, "web", 1)["id"] == []
    last = _attrs(tmp_path, "web", 2)
    assert last["id"] == ["z", "y", "x"]
    assert last["dedup__keep"] == [
        True,
        False,
        False,
    ]  # empty texts are exact duplicates; x copies a3
    assert last["dedup__duplicate_of"] == [None, "z", "a3"]
    schema = pq.read_schema(attributes_dir(tmp_path, "dedup", "web") / part_name(0))
    for col in (
        "dedup__exact_cluster",
        "dedup__minhash_cluster",
        "dedup__keep",
        "dedup__cluster_size",
    ):
        assert col in schema.names


def test_exact_dedup_normalises_and_keeps_one(tmp_path):
    rng = random.Random(2)
    base = _text(rng)
    docs = [
        ("orig", base),
        ("upper", base.upper()),
        ("punct", base.replace(" ", ",  ") + "!!"),
        ("other", _text(rng)),
        ("edited", _edit(rng, base, 0.02)),
    ]
    write_documents(tmp_path, "web", 0, docs)
    run_dedup(tmp_path, minhash=False, workers=1, progress=False)
    a = _attrs(tmp_path, "web")
    ex = dict(zip(a["id"], a["dedup__exact_cluster"], strict=True))
    assert ex["orig"] == ex["upper"] == ex["punct"]
    assert (
        len({ex["orig"], ex["other"], ex["edited"]}) == 3
    )  # exact mode does not catch near copies
    keep = dict(zip(a["id"], a["dedup__keep"], strict=True))
    assert sum(keep[d] for d in ("orig", "upper", "punct")) == 1
    assert keep["other"] and keep["edited"]


def test_cross_source_is_one_cluster(tmp_path):
    rng = random.Random(3)
    page = _text(rng, 200)
    write_documents(tmp_path, "web", 0, [("w1", page), ("w2", _text(rng))])
    write_documents(tmp_path, "wiki", 0, [("k1", _edit(rng, page, 0.01)), ("k2", _text(rng))])
    stats = run_dedup(tmp_path, workers=1, progress=False)
    web, wiki = _attrs(tmp_path, "web"), _attrs(tmp_path, "wiki")
    assert web["dedup__minhash_cluster"][0] == wiki["dedup__minhash_cluster"][0]
    assert web["dedup__keep"][0] + wiki["dedup__keep"][0] == 1
    assert stats["removed"] == 1
    # restricted to one source, the copy in the other is not seen
    stats = run_dedup(tmp_path, sources=["web"], workers=1, progress=False)
    assert stats["removed"] == 0
    assert not attributes_dir(tmp_path, "dedup", "wiki").exists()  # stale cross-source clusters go


def _lsh_false_positive_corpus(workdir: Path) -> None:
    """Pairs at Jaccard about 0.4-0.5: banding with 2-row bands makes them candidates."""
    rng = random.Random(4)
    docs = []
    for i in range(20):
        t = _text(rng, 150)
        docs += [(f"p{i}a", t), (f"p{i}b", _edit(rng, t, 0.12))]
    write_documents(workdir, "web", 0, docs)


def test_verification_removes_planted_lsh_false_positives(tmp_path):
    _lsh_false_positive_corpus(tmp_path)
    loose = dict(bands=20, rows=2, threshold=0.8, signature_check=False, workers=1, progress=False)
    stats = run_dedup(tmp_path, verify=False, **loose)
    assert stats["removed"] >= 15  # banding alone merges most planted pairs
    stats = run_dedup(tmp_path, verify=True, **loose)
    assert stats["candidate_pairs"] >= 15 and stats["verified_pairs"] == 0
    assert stats["removed"] == 0
    # the default signature check drops them too (estimated J far below the threshold)
    stats = run_dedup(tmp_path, bands=20, rows=2, workers=1, progress=False)
    assert stats["removed"] == 0


def test_verification_keeps_true_near_duplicates(tmp_path):
    rng = random.Random(5)
    docs = []
    for i in range(15):
        t = _text(rng, 200)
        docs += [(f"d{i}a", t), (f"d{i}b", _edit(rng, t, 0.005))]
    write_documents(tmp_path, "web", 0, docs)
    stats = run_dedup(tmp_path, verify=True, workers=1, progress=False)
    assert stats["removed"] == 15


def test_deterministic_and_cached(tmp_path):
    rng = random.Random(6)
    docs = []
    for i in range(40):
        t = _text(rng)
        docs.append((f"d{i}", t))
        if i % 3 == 0:
            docs.append((f"c{i}", _edit(rng, t, 0.01)))
    outs = []
    for name in ("one", "two"):
        wd = tmp_path / name
        write_documents(wd, "web", 0, docs)
        write_documents(wd, "web", 1, docs[:10])
        run_dedup(wd, paragraphs=True, workers=1, progress=False)
        outs.append(
            [(attributes_dir(wd, "dedup", "web") / part_name(i)).read_bytes() for i in (0, 1)]
        )
    assert outs[0] == outs[1]
    wd = tmp_path / "one"
    before = (attributes_dir(wd, "dedup", "web") / part_name(0)).stat().st_mtime_ns
    stats = run_dedup(wd, paragraphs=True, workers=1, progress=False)
    assert stats["cached"] is True
    assert (attributes_dir(wd, "dedup", "web") / part_name(0)).stat().st_mtime_ns == before
    stats = run_dedup(wd, paragraphs=True, threshold=0.7, workers=1, progress=False)
    assert stats["cached"] is False


def test_keep_rule_quality_then_longest(tmp_path):
    rng = random.Random(7)
    t = _text(rng, 200)
    docs = [("short", t), ("long", t + " extra words here"), ("best", t + " x")]
    write_documents(tmp_path, "web", 0, docs)
    run_dedup(tmp_path, workers=1, progress=False)
    a = _attrs(tmp_path, "web")
    assert dict(zip(a["id"], a["dedup__keep"], strict=True)) == {
        "short": False,
        "long": True,
        "best": False,
    }
    write_parquet_atomic(
        attributes_dir(tmp_path, "quality", "web") / part_name(0),
        pa.table({"id": ["short", "long", "best"], "quality__score": [0.1, 0.2, 0.9]}),
    )
    run_dedup(tmp_path, workers=1, progress=False)  # the quality attribute invalidates the cache
    a = _attrs(tmp_path, "web")
    assert dict(zip(a["id"], a["dedup__keep"], strict=True)) == {
        "short": False,
        "long": False,
        "best": True,
    }
    run_dedup(tmp_path, keep_rule="first", workers=1, progress=False)
    a = _attrs(tmp_path, "web")
    assert a["dedup__keep"] == [True, False, False]


def test_repeated_paragraph_spans(tmp_path):
    rng = random.Random(8)
    boiler = "Subscribe to our newsletter for more posts!"
    d0 = _text(rng, 40) + "\n" + boiler + "\n" + _text(rng, 30)
    d1 = _text(rng, 40) + "\n\nSUBSCRIBE to our newsletter, for more posts\n" + _text(rng, 30)
    d2 = boiler
    write_documents(tmp_path, "web", 0, [("d0", d0), ("d1", d1), ("d2", d2)])
    stats = run_dedup(tmp_path, paragraphs=True, workers=1, progress=False)
    a = _attrs(tmp_path, "web")
    spans = a["dedup__paragraph_spans"]
    assert spans[0] == []  # the first occurrence stays
    assert len(spans[1]) == 1 and len(spans[2]) == 1
    cleaned = remove_spans(d1, spans[1])
    assert "newsletter" not in cleaned.lower() and cleaned.count("\n") == 2
    assert remove_spans(d2, spans[2]) == ""
    assert stats["paragraphs"]["flagged"] == 2


def test_cli_dedup_and_errors(tmp_path):
    rng = random.Random(9)
    t = _text(rng)
    write_documents(tmp_path, "web", 0, [("a", t), ("b", t), ("c", _text(rng))])
    runner = CliRunner()
    res = runner.invoke(main, ["dedup", str(tmp_path), "--quiet", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "removed 1" in res.output and "bands" in res.output
    res = runner.invoke(main, ["dedup", str(tmp_path), "--quiet"])
    assert res.exit_code == 0 and "up to date" in res.output
    for bad in (
        ["--bands", "4"],
        ["--sources", "nope"],
        ["--threshold", "1.5"],
        ["--keep-rule", "random"],
    ):
        res = runner.invoke(main, ["dedup", str(tmp_path), "--quiet", *bad])
        assert res.exit_code == 2, (bad, res.output)
        assert res.output.startswith("error:") and "Traceback" not in res.output
    res = runner.invoke(main, ["dedup", str(tmp_path / "missing"), "--quiet"])
    assert res.exit_code == 2
    assert runner.invoke(main, ["dedup", "--help"]).exit_code == 0


def test_exact_field_joins_documents_with_the_same_url(tmp_path):
    import orjson

    from mixer.dedup import run_dedup
    from mixer.ingest import ingest

    raw = tmp_path / "web" / "a.jsonl"
    raw.parent.mkdir()
    docs = [
        {
            "id": "a",
            "text": "first crawl of the page about rivers and lakes",
            "metadata": {"url": "https://x.org/p"},
        },
        {
            "id": "b",
            "text": "a later crawl, completely rewritten by the site",
            "metadata": {"url": "https://x.org/p"},
        },
        {
            "id": "c",
            "text": "another page entirely, with its own words",
            "metadata": {"url": "https://x.org/q"},
        },
        {"id": "d", "text": "a page with no url at all in its metadata"},
        {"id": "e", "text": "a second page with no url in its metadata"},
    ]
    raw.write_bytes(b"\n".join(orjson.dumps(d) for d in docs) + b"\n")
    wd = tmp_path / "wd"
    ingest([str(raw)], wd, progress=False)
    run_dedup(wd, exact_field="url", minhash=False, progress=False)
    t = pq.read_table(wd / "attributes" / "dedup" / "web").to_pylist()
    keep = {r["id"]: r["dedup__keep"] for r in t}
    cluster = {r["id"]: r["dedup__minhash_cluster"] for r in t}
    assert cluster["a"] == cluster["b"] and sum([keep["a"], keep["b"]]) == 1
    assert keep["c"] and keep["d"] and keep["e"] and cluster["d"] != cluster["e"]
