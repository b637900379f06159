"""Dedup as stages: no chains (a removed document is verified similar to the kept one), no
MinHash neighbours without shingles, the same bytes for any worker count, partition count,
task size and executor, resume after a failed task, and only dedup's own files removed."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mixer.dedup import dedup_stages, run_dedup
from mixer.dedup import resolve as dresolve
from mixer.dedup import stages as dstages
from mixer.dedup.minhash import shingles_py
from mixer.dedup.normalize import normalized_words_py
from mixer.dedup.stage import execute_dedup
from mixer.errors import MixerError
from mixer.schema import attributes_dir, part_name
from tests.test_dedup_stage import VOCAB, _edit, _text, write_documents


def _jaccard(a: str, b: str) -> float:
    sa = set(shingles_py(normalized_words_py(a), 5))
    sb = set(shingles_py(normalized_words_py(b), 5))
    return len(sa & sb) / len(sa | sb)


def _table(workdir: Path, source: str = "web") -> dict:
    out: dict = {}
    for p in sorted(attributes_dir(workdir, "dedup", source).glob("part-*.parquet")):
        t = pq.read_table(p).to_pydict()
        for k, v in t.items():
            out.setdefault(k, []).extend(v)
    return out


def _digest(workdir: Path) -> dict[str, str]:
    root = attributes_dir(workdir, "dedup")
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet"))
    }


def _chain(rng: random.Random, n: int = 300) -> list[str]:
    """A, B, C with J(A,B) and J(B,C) about 0.7 and J(A,C) about 0.5: a chain at threshold 0.6."""
    a = _text(rng, n)
    b = _edit(rng, a, 0.04)
    c = _edit(rng, b, 0.04)
    return [a, b, c]


def test_no_chains_every_removal_is_verified_against_its_kept_document(tmp_path):
    rng = random.Random(11)
    docs, texts = [], {}
    for i in range(12):
        a, b, c = _chain(rng)
        assert _jaccard(a, b) >= 0.6 and _jaccard(b, c) >= 0.6 and _jaccard(a, c) < 0.6
        for name, t in (("a", a), ("b", b), ("c", c)):
            docs.append((f"{name}{i}", t))
            texts[f"{name}{i}"] = t
    docs += [(f"x{i}", _text(rng)) for i in range(30)]
    write_documents(tmp_path, "web", 0, docs)
    stats = run_dedup(
        tmp_path, threshold=0.6, verify=True, keep_rule="first", workers=1, progress=False
    )
    t = _table(tmp_path)
    keep = dict(zip(t["id"], t["dedup__keep"], strict=True))
    dup_of = dict(zip(t["id"], t["dedup__duplicate_of"], strict=True))
    for i in range(12):
        # A is first: kept; B removed for A; C is similar only to B (removed), so C stays
        assert keep[f"a{i}"] and not keep[f"b{i}"] and keep[f"c{i}"], i
        assert dup_of[f"b{i}"] == f"a{i}"
    for doc, k in keep.items():
        if not k:
            assert _jaccard(texts[doc], texts[dup_of[doc]]) >= 0.6
    assert stats["largest_cluster"] == 2
    assert stats["verification_rejected"] > 0  # A~C pairs that LSH proposed, J below 0.6
    assert stats["removed"] == 12
    # clusters: one kept member each, every member's cluster is its kept document's ordinal
    cluster = dict(zip(t["id"], t["dedup__minhash_cluster"], strict=True))
    for doc, k in keep.items():
        if not k:
            assert cluster[doc] == cluster[dup_of[doc]]


def test_documents_without_shingles_are_never_minhash_neighbours(tmp_path):
    junk = ["$$$ ***", "### !!!", "-- -- --", "...", "|||", "@@ ++ @@", "~~~~"]
    docs = [(f"j{i}", s) for i, s in enumerate(junk)] + [("j_same", junk[0]), ("e1", "")]
    docs += [("e2", ""), ("w", "words here")]
    write_documents(tmp_path, "web", 0, docs)
    stats = run_dedup(tmp_path, workers=1, progress=False)
    t = _table(tmp_path)
    keep = dict(zip(t["id"], t["dedup__keep"], strict=True))
    # only identical raw texts join: j0 = j_same, e1 = e2
    assert [d for d, k in keep.items() if not k] == ["j_same", "e2"]
    assert stats["removed"] == 2
    # MinHash alone: documents without shingles are never neighbours, not even identical ones
    stats = run_dedup(tmp_path, exact=False, minhash=True, workers=1, progress=False)
    assert stats["removed"] == 0


def _mixed_corpus(root: Path) -> None:
    rng = random.Random(12)
    for source in ("web", "wiki"):
        for part in range(4):
            docs = []
            for i in range(60):
                t = _text(rng, rng.randint(20, 150))
                docs.append((f"{source}{part}-{i}", t))
                if i % 4 == 0:
                    docs.append((f"{source}{part}-{i}n", _edit(rng, t, rng.choice([0.01, 0.05]))))
                if i % 9 == 0:
                    docs.append((f"{source}{part}-{i}x", t.upper()))
            docs.append((f"{source}{part}-junk", "%%% &&&"))
            write_documents(root, source, part, docs)
    # a document shared across sources
    write_documents(root, "wiki", 9, [("shared", "".join(VOCAB[:5]) + " " + _text(rng, 80))])


SETTINGS = dict(verify=True, paragraphs=True, threshold=0.7, progress=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict, dict]:
    wd = tmp_path_factory.mktemp("ref")
    _mixed_corpus(wd)
    stats = run_dedup(wd, workers=1, **SETTINGS)
    return wd, _digest(wd), stats


def test_same_bytes_for_workers_partitions_and_task_sizes(tmp_path, reference, monkeypatch):
    _, ref, stats = reference
    assert stats["partitions"] == 1 and stats["removed"] > 50
    assert stats["resolve_partitions"] == 1 and stats["components_rounds"] == 1
    from mixer.executor import LocalExecutor

    runs = {
        "two_workers": dict(executor=LocalExecutor(2), task_bytes=4000),
        "pool": dict(executor=LocalExecutor(2), task_bytes=4000, memory_limit="300KB"),
        "partitions": dict(workers=1, memory_limit="200KB", task_bytes=4000),
        # resolution over many node partitions: components in rounds of tasks (the driver
        # sizes R, so the patched row size reaches the pool's workers through graph.json)
        "resolve_partitions": dict(workers=1, memory_limit="200KB", row_bytes=20_000),
        "resolve_pool": dict(executor=LocalExecutor(2), memory_limit="300KB", row_bytes=60_000),
    }
    for name, kw in runs.items():
        kw = dict(kw)
        monkeypatch.setattr(dresolve, "ROW_BYTES", kw.pop("row_bytes", dresolve.ROW_BYTES))
        wd = tmp_path / name
        _mixed_corpus(wd)
        if "executor" in kw:
            settings = {
                k: v for k, v in {**SETTINGS, **kw}.items() if k not in ("executor", "progress")
            }
            st = execute_dedup(wd, settings, executor=kw["executor"], progress=False)
        else:
            st = run_dedup(wd, **SETTINGS, **kw)
        if name == "partitions":
            assert st["partitions"] > 1 and st["tasks"] > 4
        if name.startswith("resolve"):
            assert st["resolve_partitions"] > 5 and st["components_rounds"] >= 2, st
        assert _digest(wd) == ref, name
        assert st["removed"] == stats["removed"]
        same = ("clusters_by_size", "largest_clusters", "verified_edges", "per_source")
        assert {k: st[k] for k in same} == {k: stats[k] for k in same}, name
    runs["pool"]["executor"].close()
    runs["resolve_pool"]["executor"].close()


@pytest.mark.parametrize(
    "stage",
    ["dedup.signatures", "dedup.verify", "dedup.components", "dedup.clusters", "dedup.write"],
)
def test_failed_task_then_rerun_gives_identical_output(tmp_path, reference, monkeypatch, stage):
    _, ref, _ = reference
    _mixed_corpus(tmp_path)
    cls = next(type(s) for s in dedup_stages(tmp_path, {}) if s.name == stage)
    monkeypatch.setattr(dresolve, "ROW_BYTES", 20_000)  # resolution over ~10 partitions
    original = cls.run_task
    calls = []

    def failing(self, task):
        if stage == "dedup.components" and self.round < 2:
            return original(self, task)  # fail in the second round, at its first task
        calls.append(task.key)
        if len(calls) == 2 or (len(calls) == 1 and stage != "dedup.signatures"):
            raise RuntimeError("killed")
        return original(self, task)

    monkeypatch.setattr(cls, "run_task", failing)
    kw = dict(workers=1, memory_limit="200KB", task_bytes=4000)
    with pytest.raises(RuntimeError, match="killed"):
        run_dedup(tmp_path, **SETTINGS, **kw)
    monkeypatch.setattr(cls, "run_task", original)
    run_dedup(tmp_path, **SETTINGS, **kw)
    assert _digest(tmp_path) == ref


def test_only_dedups_own_files_are_removed(tmp_path):
    rng = random.Random(13)
    t = _text(rng)
    write_documents(tmp_path, "web", 0, [("a", t), ("b", t)])
    write_documents(tmp_path, "wiki", 0, [("c", _text(rng))])
    foreign = attributes_dir(tmp_path, "dedup", "mine") / "notes.parquet"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"not ours")
    stray = attributes_dir(tmp_path, "dedup", "web") / part_name(7)
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"not ours either")
    run_dedup(tmp_path, workers=1, progress=False)
    run_dedup(tmp_path, sources=["web"], workers=1, progress=False)
    assert not attributes_dir(tmp_path, "dedup", "wiki").exists()  # ours, from the first run
    assert foreign.read_bytes() == b"not ours" and stray.read_bytes() == b"not ours either"


RESOLVE = [
    "dedup.graph",
    "dedup.components",  # chains dedup.components.r002, ... while edges change
    "dedup.labels",
    "dedup.resolve",
    "dedup.clusters",
    "dedup.write",
]


def test_stage_factory_shape_and_errors(tmp_path):
    stages = dedup_stages(tmp_path, {"threshold": 0.6, "verify": True})
    assert [s.name for s in stages] == [
        "dedup.signatures",
        "dedup.exact",
        "dedup.candidates",
        "dedup.verify",
        *RESOLVE,
    ]
    assert {s.group for s in stages} == {"dedup"}
    assert [s.name for s in dedup_stages(tmp_path, {"minhash": False, "exact": True})] == [
        "dedup.signatures",
        "dedup.exact",
        *RESOLVE,
    ]
    for bad in ({"threshold": 1.5}, {"threshold": "abc"}, {"bands": 3}, {"nope": 1},
                {"memory_limit": "lots"}, {"keep_rule": "random"}):  # fmt: skip
        with pytest.raises(MixerError):
            dedup_stages(tmp_path, bad)


def test_signature_estimate_error_is_stated():
    floor = dstages.signature_floor(0.8, 112)
    assert 0.68 < floor < 0.7  # three standard errors of a 112-permutation estimate at J=0.8


def test_ray_executor_gives_the_same_bytes(tmp_path, reference):
    ray = pytest.importorskip("ray")
    from mixer.executor import RayExecutor

    _, ref, _ = reference
    _mixed_corpus(tmp_path)
    try:
        settings = {k: v for k, v in SETTINGS.items() if k != "progress"}
        execute_dedup(tmp_path, settings, executor=RayExecutor(workers=2), progress=False)
    finally:
        ray.shutdown()
    assert _digest(tmp_path) == ref


def test_jaccard_pairs_matches_python_sets():
    import numpy as np

    rng = random.Random(14)
    sets = [[rng.randrange(50) for _ in range(rng.randrange(0, 40))] for _ in range(200)]
    values = np.array([x for s in sets for x in s], dtype=np.uint32)
    offsets = np.r_[0, np.cumsum([len(s) for s in sets])]
    ia = np.array([rng.randrange(200) for _ in range(1000)])
    ib = np.array([rng.randrange(200) for _ in range(1000)])
    expected = []
    for a, b in zip(ia, ib, strict=True):
        union = set(sets[a]) | set(sets[b])
        expected.append(len(set(sets[a]) & set(sets[b])) / len(union) if union else 0.0)
    for cells in (1 << 23, 50):  # one chunk, many chunks
        assert np.allclose(dstages.jaccard_pairs(values, offsets, ia, ib, cells), expected)


def test_batches_cross_part_boundaries(tmp_path):
    parts, n = [], 0
    for i, size in enumerate([3, 0, 10, 5]):
        path = write_documents(
            tmp_path, "web", i, [(f"d{n + j}", f"text {n + j}") for j in range(size)]
        )
        parts.append({"path": str(path)})
        n += size
    batches = list(dstages._batches(parts, ["text"], 7))
    assert [b.num_rows for b in batches] == [7, 7, 4]
    texts = [t for b in batches for t in b.column(0).to_pylist()]
    assert texts == [f"text {i}" for i in range(18)]


def test_hex16_matches_printf():
    import numpy as np

    keys = np.array([0, 1, -1, 2**62 + 12345, -(2**40)], dtype=np.int64)
    assert dstages.hex16(keys).to_pylist() == [f"{int(k) & (2**64 - 1):016x}" for k in keys]
    assert dstages.hex16(np.zeros(0, np.int64)).to_pylist() == []


def test_removed_attributes_are_written_again(tmp_path, reference):
    import shutil

    _, ref, _ = reference
    _mixed_corpus(tmp_path)
    run_dedup(tmp_path, workers=1, **SETTINGS)
    shutil.rmtree(attributes_dir(tmp_path, "dedup"))
    stats = run_dedup(tmp_path, workers=1, **SETTINGS)
    assert not stats["cached"] and _digest(tmp_path) == ref


def test_stages_pickle_without_the_plan(tmp_path, reference):
    import pickle

    wd, _, _ = reference
    stages = dedup_stages(wd, {k: v for k, v in SETTINGS.items() if k != "progress"})
    write = stages[-1]
    write.setup(None)
    assert len(write.plan["parts"]) == 9
    copy = pickle.loads(pickle.dumps(write))
    assert copy._plan is None and copy.plan == write.plan  # read back from state/dedup/plan.json


def test_row_ranges_cover_parts_and_end_at_row_groups():
    from mixer.dedup.stages import _row_ranges

    # (rows, bytes) of the row groups of a 103-byte part, 25 bytes a task: small row groups
    # are merged whole, the large one (80 of the bytes) is cut into 4 equal row ranges
    groups = [(1000, 10), (1000, 10), (50, 1), (50, 1), (4000, 80), (0, 0), (7, 1)]
    segs = _row_ranges(3, 103, groups, limit=25)
    assert [(s["lo"], s["hi"]) for s in segs] == [
        (0, 2100), (2100, 3100), (3100, 4100), (4100, 5100), (5100, 6100), (6100, 6107)
    ]  # fmt: skip
    assert {s["part"] for s in segs} == {3}
    assert all(s["bytes"] <= 25 for s in segs)
