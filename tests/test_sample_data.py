"""The sample corpus generator: deterministic, complete, and its ground truth is true."""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from pathlib import Path

import orjson
import pytest

from mixer.io import StreamError, iter_lines
from mixer.sample_data import DOMAIN_SOURCES, REASON_FAMILY, generate, jaccard

SCALE = 0.05


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sample")
    return out, generate(out, seed=0, scale=SCALE)


def _read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def _classify(line: bytes, is_last_without_newline: bool) -> str | None:
    """An independent reading of one raw line: None if good, else the reason."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "truncated_line" if is_last_without_newline else "invalid_json"
    if not isinstance(rec, dict):
        return "not_an_object"
    if rec.get("text") is None:
        return "missing_text"
    if not isinstance(rec["text"], str):
        return "text_not_string"
    if not isinstance(rec.get("id"), str) or not rec["id"]:
        return "missing_id"
    return None


def _good_docs(out: Path) -> dict[str, dict]:
    docs = {}
    for shard in sorted(out.glob("*/*.jsonl.zst")):
        if shard.parent.name == "malformed":
            continue
        for _, line in iter_lines(shard):
            if _classify(line, False) is None:
                rec = orjson.loads(line)
                docs[rec["id"]] = rec
    return docs


def test_same_seed_gives_identical_bytes(sample, tmp_path):
    out, _ = sample
    generate(tmp_path / "again", seed=0, scale=SCALE)
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    second = {
        p.relative_to(tmp_path / "again"): p.read_bytes()
        for p in (tmp_path / "again").rglob("*")
        if p.is_file()
    }
    assert first.keys() == second.keys()
    assert all(first[k] == second[k] for k in first)
    generate(tmp_path / "other", seed=1, scale=SCALE)
    assert (tmp_path / "other" / "web" / "web-0000.jsonl.zst").read_bytes() != first[
        Path("web/web-0000.jsonl.zst")
    ]


def test_every_folder_and_file_is_present(sample):
    out, summary = sample
    for folder in ("web", *DOMAIN_SOURCES):
        assert list((out / folder).glob(f"{folder}-*.jsonl.zst")), folder
    assert len(list((out / "web").glob("*.jsonl.zst"))) >= 2
    for rel in (
        "eval/arc_like.jsonl",
        "eval/gsm_like.jsonl",
        "malformed/mixed.jsonl",
        "malformed/truncated.jsonl.gz",
        "malformed/truncated.jsonl.zst",
        "ground_truth/labels.jsonl",
        "ground_truth/duplicates.jsonl",
        "ground_truth/contamination.jsonl",
        "ground_truth/malformed.json",
        "ground_truth/shared_paragraphs.json",
    ):
        assert (out / rel).is_file(), rel
    assert all((out / f).is_file() for f in summary["files"])


def test_documents_follow_the_dolma_format(sample):
    out, summary = sample
    docs = _good_docs(out)
    assert len(docs) == summary["total_docs"]
    for rec in docs.values():
        assert set(rec) <= {"id", "text", "source", "added", "created", "metadata"}
        assert rec["source"] in ("web", *DOMAIN_SOURCES)
    assert any(rec["created"] is None for rec in docs.values())
    assert any("url" in (rec.get("metadata") or {}) for rec in docs.values())


def test_labels_cover_exactly_the_documents(sample):
    out, _ = sample
    docs = _good_docs(out)
    labels = _read_jsonl(out / "ground_truth" / "labels.jsonl")
    assert {lab["id"] for lab in labels} == set(docs)
    for lab in labels:
        assert lab["source"] == docs[lab["id"]]["source"]
        assert lab["domain"] in ("web", *DOMAIN_SOURCES)
        assert isinstance(lab["expected_web_quality"], bool)
    kinds = Counter(lab["kind"] for lab in labels if lab["source"] == "web")
    for kind in ("good_prose", "spam", "boilerplate", "short", "repeated_lines", "bullets"):
        assert kinds[kind] > 0, kind
    langs = {lab["lang"] for lab in labels if lab["kind"] == "non_english"}
    assert {"fr", "de", "es"} <= langs


def test_duplicate_ground_truth(sample):
    out, _ = sample
    docs = _good_docs(out)
    rows = _read_jsonl(out / "ground_truth" / "duplicates.jsonl")
    clusters: dict[str, dict[str, list[str]]] = {}
    for row in rows:
        assert row["id"] in docs
        clusters.setdefault(row["cluster"], {}).setdefault(row["kind"], []).append(row["id"])
    assert clusters
    near = []
    for members in clusters.values():
        (original,) = members["original"]
        for copy in members.get("exact", []):
            assert docs[copy]["text"] == docs[original]["text"]
        for copy in members.get("near", []):
            assert docs[copy]["text"] != docs[original]["text"]
            near.append(jaccard(docs[copy]["text"], docs[original]["text"]))
    assert near and min(near) >= 0.8
    # unrelated good pages stay far apart
    good = [d["text"] for i, d in docs.items() if d["source"] == "web"]
    rng = random.Random(0)
    pairs = [jaccard(*rng.sample(good, 2)) for _ in range(100)]
    assert sum(pairs) / len(pairs) < 0.1


def test_contamination_ground_truth(sample):
    out, _ = sample
    docs = _good_docs(out)
    questions = {
        row["id"]: row["question"]
        for name in ("arc_like", "gsm_like")
        for row in _read_jsonl(out / "eval" / f"{name}.jsonl")
    }
    rows = _read_jsonl(out / "ground_truth" / "contamination.jsonl")
    assert rows
    norm = lambda s: " ".join(re.sub(r"[^\w\s]", "", s.lower()).split())  # noqa: E731
    for row in rows:
        text, question = docs[row["id"]]["text"], questions[row["eval_id"]]
        if row["kind"] == "verbatim":
            assert question in text
        else:
            assert question not in text and norm(question) in norm(text)


def test_malformed_counts_match_a_line_by_line_count(sample):
    out, _ = sample
    expected = orjson.loads((out / "ground_truth" / "malformed.json").read_bytes())
    assert {"malformed/mixed.jsonl", "malformed/truncated.jsonl.gz"} <= set(expected)
    for rel, want in expected.items():
        path = out / rel
        raw_plain = path.read_bytes() if rel.endswith(".jsonl") else None
        reasons: Counter = Counter()
        lines = good = 0
        try:
            for line_no, line in iter_lines(path):
                last_open = raw_plain is not None and not raw_plain.endswith(b"\n")
                is_last = last_open and line_no == raw_plain.count(b"\n") + 1
                reason = _classify(line, is_last)
                lines += 1
                if reason:
                    reasons[reason] += 1
                else:
                    good += 1
        except StreamError:
            lines += 1
            reasons["corrupt_stream"] += 1
        assert lines == want["lines_total"], rel
        assert good == want["good_lines"], rel
        assert dict(reasons) == want["bad_lines_detail"], rel
        families: Counter = Counter()
        for reason, n in reasons.items():
            families[REASON_FAMILY[reason]] += n
        assert dict(families) == want["bad_lines"], rel
    planted = sum(
        sum(c["bad_lines"].values()) for f, c in expected.items() if not f.startswith("malformed/")
    )
    assert 0 < planted <= 10


def test_good_web_prose_looks_like_good_prose(sample):
    out, _ = sample
    docs = _good_docs(out)
    labels = _read_jsonl(out / "ground_truth" / "labels.jsonl")
    stop = {"the", "be", "to", "of", "and", "that", "have", "with"}
    for lab in labels:
        text = docs[lab["id"]]["text"]
        words = text.split()
        if lab["kind"] == "good_prose":
            assert len(words) >= 50
            assert len(stop & {w.lower() for w in words}) >= 2
            paragraphs = [p for p in text.split("\n\n") if len(p) > 40]
            assert all(p.rstrip()[-1] in ".!?" for p in paragraphs)
        elif lab["kind"] in ("short",):
            assert len(words) < 50


def test_eval_questions_share_no_13_gram(sample):
    out, _ = sample
    seen: dict[tuple, str] = {}
    for name in ("arc_like", "gsm_like"):
        for row in _read_jsonl(out / "eval" / f"{name}.jsonl"):
            assert {"id", "question", "answer"} <= set(row)
            words = re.sub(r"[^\w\s]", "", row["question"].lower()).split()
            assert len(words) >= 13
            for i in range(len(words) - 12):
                gram = tuple(words[i : i + 13])
                assert seen.setdefault(gram, row["id"]) == row["id"]


def test_module_command_line(tmp_path):
    import subprocess
    import sys

    # a shard left by an earlier, larger run is removed; a file that is not ours is kept
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "web-0009.jsonl.zst").write_bytes(b"stale")
    (tmp_path / "web" / "notes.txt").write_text("mine")
    # another process with another string-hash seed must still write the same bytes
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run(
        [sys.executable, "-m", "mixer.sample_data", "--out", str(tmp_path), "--scale", "0.02"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert "documents" in done.stdout
    assert (tmp_path / "summary.json").is_file()
    assert not (tmp_path / "web" / "web-0009.jsonl.zst").exists()
    assert (tmp_path / "web" / "notes.txt").exists()
    generate(tmp_path / "in_process", seed=0, scale=0.02)
    for rel in ("web/web-0000.jsonl.zst", "ground_truth/labels.jsonl", "eval/gsm_like.jsonl"):
        assert (tmp_path / rel).read_bytes() == (tmp_path / "in_process" / rel).read_bytes()
    bad = subprocess.run(
        [sys.executable, "-m", "mixer.sample_data", "--out", str(tmp_path), "--scale", "0"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
