"""plan and mix over a hand-made workdir: funnel counts, targets, selection, manifest, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from mixer.cli import main
from mixer.errors import MixerError
from mixer.io import read_json, write_parquet_atomic
from mixer.mix import TARGET_TOLERANCE, plan, run_mix, select_copies
from mixer.recipe import load_recipe
from mixer.schema import (
    attributes_dir,
    documents_dir,
    list_parts,
    mix_dir,
    mix_manifest_path,
    part_name,
)

RECIPE = """\
name: t
workdir: {workdir}
seed: 3
budget: {budget}
sources:
  web:
    inputs: ["{data}"]
    taggers: [quality, tokens]
    filters:
      - quality__score >= 0.3
      - dedup__keep
  math:
    inputs: ["{data}"]
    max_repetition: 3
dedup: {{sources: [web]}}
groups:
  web: {{share: 0.6, sources: {{web: {{weight: 1}}}}}}
  domain: {{share: 0.4, sources: {{math: {{weight: 1}}}}}}
"""


def load(path, overrides=None):
    return load_recipe(path, overrides, check_inputs=False)  # inputs: only the workdir here


def build_source(workdir: Path, source: str, ids, tokens, quality, keep, part_sizes) -> None:
    """Documents + tokens/quality/dedup attribute parts with the same row order."""
    start = 0
    for index, size in enumerate(part_sizes):
        sl = slice(start, start + size)
        start += size
        pid = pa.array(ids[sl], pa.string())
        name = part_name(index)
        texts = [f"text of {i}" for i in ids[sl]]
        write_parquet_atomic(
            documents_dir(workdir, source) / name,
            pa.table({"id": pid, "text": texts, "source": [source] * size}),
        )
        write_parquet_atomic(
            attributes_dir(workdir, "tokens", source) / name,
            pa.table({"id": pid, "tokens__count": pa.array(tokens[sl], pa.int32())}),
        )
        write_parquet_atomic(
            attributes_dir(workdir, "quality", source) / name,
            pa.table({"id": pid, "quality__score": pa.array(quality[sl])}),
        )
        write_parquet_atomic(
            attributes_dir(workdir, "dedup", source) / name,
            pa.table({"id": pid, "dedup__keep": pa.array(keep[sl])}),
        )


def corpus(n: int, seed: int):
    rng = np.random.default_rng(seed)
    ids = [f"d{seed}-{i:06d}" for i in range(n)]
    return ids, rng.integers(20, 200, n), rng.random(n), rng.random(n) > 0.1


@pytest.fixture
def setup(tmp_path):
    workdir = tmp_path / "work"
    web = corpus(6000, 1)
    math = corpus(800, 2)
    build_source(workdir, "web", *web, part_sizes=[2500, 2500, 1000])
    build_source(workdir, "math", *math, part_sizes=[500, 300])
    recipe_path = tmp_path / "r.yaml"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "shard.jsonl").write_text("{}\n")
    recipe_path.write_text(RECIPE.format(workdir=workdir, budget="300K", data=tmp_path / "data"))
    return recipe_path, workdir, web, math


def test_plan_funnel_and_targets(setup):
    path, workdir, web, math = setup
    r = load(path)
    p = plan(r)
    ids, tokens, quality, keep = web
    n = tokens + 1
    step1 = quality >= 0.3
    step2 = step1 & keep
    sw = p.sources["web"]
    assert sw.status == "data"
    assert (sw.docs, sw.tokens) == (6000, int(n.sum()))
    assert sw.funnel[0] == {
        "filter": "quality__score >= 0.3",
        "docs": int(step1.sum()),
        "tokens": int(n[step1].sum()),
    }
    assert sw.funnel[1]["docs"] == int(step2.sum()) and sw.eligible_tokens == int(n[step2].sum())
    assert sw.target_tokens == 180_000 and p.sources["math"].target_tokens == 120_000
    assert sw.share == pytest.approx(0.6)
    math_tokens = int((math[1] + 1).sum())
    assert p.sources["math"].repetition == pytest.approx(120_000 / math_tokens)
    assert not p.errors and not p.missing_inputs
    assert not (workdir / "mixes").exists()  # planning writes nothing


def test_mix_hits_targets_and_writes_manifest(setup):
    path, workdir, web, math = setup
    m = run_mix(load(path), progress=False)
    out = mix_dir(workdir, "t")
    table = pq.read_table(list_parts(out))
    assert set(table.column_names) >= {"id", "text", "source", "repeat"}
    tok = {
        i: int(t) + 1 for i, t in zip(web[0] + math[0], list(web[1]) + list(math[1]), strict=True)
    }
    for source, target in (("web", 180_000), ("math", 120_000)):
        s = m["sources"][source]
        rows = table.filter(pa.compute.equal(table["source"], source))
        achieved = sum(tok[i] for i in rows["id"].to_pylist())
        assert achieved == s["selected_tokens"]
        assert abs(achieved - target) <= TARGET_TOLERANCE * target
        assert s["target_tokens"] == target and s["cause"] is None
        assert len(s["funnel"]) == len(load(path).sources[source].filters)
    # math is upsampled: every document floor(f) or floor(f) + 1 times, repeat indexes 0..k-1
    factor = 120_000 / int((math[1] + 1).sum())
    assert 1 < factor < 2
    counts = pa.compute.value_counts(
        table.filter(pa.compute.equal(table["source"], "math"))["id"]
    ).to_pylist()
    assert {c["counts"] for c in counts} == {1, 2}
    assert len(counts) == 800
    assert max(table["repeat"].to_pylist()) == 1
    # web is downsampled: only documents passing both filters, each at most once
    ids, _, quality, keep = web
    allowed = {i for i, q, k in zip(ids, quality, keep, strict=True) if q >= 0.3 and k}
    web_ids = table.filter(pa.compute.equal(table["source"], "web"))["id"].to_pylist()
    assert set(web_ids) <= allowed and len(web_ids) == len(set(web_ids))
    on_disk = read_json(mix_manifest_path(workdir, "t"))
    assert on_disk["total_selected_tokens"] == m["total_selected_tokens"]
    assert [p["path"] for p in on_disk["parts"]] == [p.name for p in list_parts(out)]


def test_mix_rerun_skips_and_is_byte_identical(setup):
    path, workdir, *_ = setup
    r = load(path)
    first = run_mix(r, progress=False)
    assert first["skipped"] is False
    out = mix_dir(workdir, "t")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert run_mix(r, progress=False)["skipped"] is True
    for p in out.iterdir():
        p.unlink()
    assert run_mix(r, progress=False)["skipped"] is False
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # a different seed selects differently
    other = load(path, overrides={"seed": 4})
    run_mix(other, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} != before


def test_selection_is_stable_under_reordering(tmp_path, setup):
    path, workdir, web, math = setup
    run_mix(load(path), progress=False)
    first = pq.read_table(list_parts(mix_dir(workdir, "t")), columns=["id", "repeat"])
    # the same documents, shuffled into a different number of parts
    perm = np.random.default_rng(9).permutation(len(web[0]))
    shuffled = ([web[0][i] for i in perm], web[1][perm], web[2][perm], web[3][perm])
    other = tmp_path / "other"
    build_source(other, "web", *shuffled, part_sizes=[1000] * 6)
    build_source(other, "math", *math, part_sizes=[800])
    run_mix(load(path, overrides={"workdir": str(other)}), progress=False)
    second = pq.read_table(list_parts(mix_dir(other, "t")), columns=["id", "repeat"])
    assert sorted(zip(*first.to_pydict().values(), strict=True)) == sorted(
        zip(*second.to_pydict().values(), strict=True)
    )


def test_select_copies_whole_repeats_and_cap():
    h = np.arange(10, dtype=np.uint64)[::-1].copy()
    n = np.full(10, 10)
    assert select_copies(h, n, 0, 1).sum() == 0
    c = select_copies(h, n, 250, 3)  # 2 whole copies + 5 documents with the lowest hashes
    assert (c * n).sum() == 250 and set(c[5:]) == {3} and set(c[:5]) == {2}
    assert (select_copies(h, n, 1000, 2.5) * n).sum() == 250  # never above max_repetition
    assert (select_copies(h, n, 1000, 1) * n).sum() == 100


def test_filter_reading_a_file_is_refused(setup, tmp_path):
    path, *_ = setup
    text = path.read_text().replace(
        "- dedup__keep",
        "- dedup__keep AND id NOT IN (SELECT column0 FROM read_csv('/etc/hostname'))",
    )
    path.write_text(text)
    with pytest.raises(
        MixerError,
        match=r"r.yaml:11: sources.web.filters\[1\]: filter .* failed on source web: .*disabled",
    ):
        plan(load(path))


def test_unknown_attribute_is_named(setup):
    path, *_ = setup
    path.write_text(path.read_text().replace("quality__score >= 0.3", "quality__scor >= 0.3"))
    with pytest.raises(
        MixerError, match=r"source web: unknown attribute 'quality__scor' in filter .*filters\[0\]"
    ):
        plan(load(path))


def test_filter_must_be_boolean(setup):
    path, *_ = setup
    path.write_text(path.read_text().replace("quality__score >= 0.3", "quality__score * 2"))
    with pytest.raises(
        MixerError,
        match=r"filters\[0\]: filter 'quality__score \* 2' (failed on source web|is not a boolean)",
    ):
        plan(load(path))


def test_unreachable_target_says_by_how_much(setup):
    path, *_ = setup
    path.write_text(path.read_text().replace("max_repetition: 3", "max_repetition: 1"))
    r = load(path)
    p = plan(r)
    assert len(p.errors) == 1 and "groups.domain.sources.math" in p.errors[0]
    assert "short by" in p.errors[0] and "max_repetition 1" in p.errors[0]
    with pytest.raises(MixerError, match="short by"):
        run_mix(r, progress=False)
    res = CliRunner().invoke(main, ["plan", str(path), "-q"])
    assert res.exit_code == 2 and "short by" in res.output and "source web" in res.output


def test_fixed_targets_larger_than_group_share(setup):
    path, *_ = setup
    path.write_text(path.read_text().replace("math: {weight: 1}", "math: {tokens: 200K}"))
    p = plan(load(path))
    assert any("groups.domain: fixed targets" in e and "over by" in e for e in p.errors)


def test_remove_spans(setup):
    path, workdir, web, _ = setup
    # flag the first 5 characters of every web document of part 0
    for index, size in ((0, 2500), (1, 2500), (2, 1000)):
        t = pq.read_table(attributes_dir(workdir, "dedup", "web") / part_name(index))
        spans = [[{"start": 0, "end": 5}]] * size if index == 0 else [[]] * size
        t = t.append_column(
            "dedup__paragraph_spans",
            pa.array(spans, pa.list_(pa.struct([("start", pa.int64()), ("end", pa.int64())]))),
        )
        write_parquet_atomic(attributes_dir(workdir, "dedup", "web") / part_name(index), t)
    path.write_text(path.read_text() + "mix: {remove_spans: dedup__paragraph_spans}\n")
    m = run_mix(load(path), progress=False)
    table = pq.read_table(list_parts(mix_dir(workdir, "t")))
    mask = pa.compute.and_(
        pa.compute.equal(table["doc_part"], 0), pa.compute.equal(table["source"], "web")
    )
    rows = table.filter(mask).to_pylist()
    assert rows and all(r["text"] == f"text of {r['id']}"[5:] for r in rows)
    assert m["sources"]["web"]["chars_removed"] == 5 * len(rows)


def test_mix_refuses_sources_not_tagged(setup):
    path, workdir, *_ = setup
    for p in list_parts(attributes_dir(workdir, "quality", "web")):
        p.unlink()
    p = plan(load(path))
    assert (
        p.sources["web"].status == "missing" and "no attributes under" in p.sources["web"].notes[0]
    )
    with pytest.raises(MixerError, match="cannot mix before every source is ingested and tagged"):
        run_mix(load(path), progress=False)


def test_cli_plan_lists_missing_inputs_and_plans_from_expected(tmp_path):
    text = RECIPE.format(workdir=tmp_path / "empty", budget="1M", data=tmp_path / "nowhere")
    text = text.replace("    max_repetition: 3", "    max_repetition: 3\n    expected_tokens: 500K")
    path = tmp_path / "r.yaml"
    path.write_text(text)
    res = CliRunner().invoke(main, ["plan", str(path), "-q"])
    assert res.exit_code == 0, res.output
    assert "missing inputs (2)" in res.output and "no such file or folder" in res.output
    assert "[expected]" in res.output and "[missing]" in res.output
    assert "400,000" in res.output  # math: 0.4 x 1M from its expected 500K tokens
    res = CliRunner().invoke(main, ["plan", str(path), "--json"])
    assert res.exit_code == 0 and '"target_tokens": 400000' in res.output
    res = CliRunner().invoke(main, ["mix", str(path), "-q"])
    assert res.exit_code == 2 and "cannot mix" in res.output


def test_cli_mix(setup):
    path, workdir, *_ = setup
    res = CliRunner().invoke(main, ["mix", str(path), "-q", "--set", "budget=200K"])
    assert res.exit_code == 0, res.output
    assert "web: " in res.output and "written" in res.output
    assert read_json(mix_manifest_path(workdir, "t"))["budget"] == 200_000


def test_seeded_hash_depends_on_id_and_seed_only():
    from mixer.hashing import seeded_hash

    ids = pa.array(["a", "bb", "", "ccc", "a", "é"])
    h = seeded_hash(ids, 1)
    assert h[0] == h[4] and len(set(h.tolist())) == 5
    assert seeded_hash(pa.array(["ccc", "a"]), 1).tolist() == [h[3], h[0]]
    assert seeded_hash(ids.slice(3), 1).tolist() == h[3:].tolist()  # sliced arrays too
    assert seeded_hash(pa.chunked_array([ids[:2], ids[2:]]), 1).tolist() == h.tolist()
    assert seeded_hash(ids, 2)[0] != h[0]
    many = seeded_hash(pa.array([f"doc-{i}" for i in range(20000)]), 0)
    assert len(np.unique(many)) == 20000
    assert abs((many >> np.uint64(63)).mean() - 0.5) < 0.02  # top bit balanced


def test_mix_bytes_do_not_depend_on_workers_and_foreign_files_stay(setup, tmp_path):
    from mixer.executor import LocalExecutor
    from mixer.schema import mix_manifest_path

    path, workdir, *_ = setup
    r = load(path, overrides={"mix.max_rows_per_part": 150})
    run_mix(r, progress=False, executor=LocalExecutor(1))
    out = mix_dir(workdir, "t")
    one = {p.name: p.read_bytes() for p in out.iterdir()}
    manifest = mix_manifest_path(workdir, "t").read_bytes()
    assert len(one) > 6 and all(n.endswith(".parquet") for n in one)  # nothing else in there
    assert b"fingerprint" not in manifest and b"mtime" not in manifest
    # the same selection on 2 workers, from scratch: the same bytes, manifest included
    for p in out.iterdir():
        p.unlink()
    mix_manifest_path(workdir, "t").unlink()
    import shutil

    shutil.rmtree(workdir / "state")
    ex = LocalExecutor(2)
    try:
        assert run_mix(r, progress=False, executor=ex)["skipped"] is False
    finally:
        ex.close()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == one
    assert mix_manifest_path(workdir, "t").read_bytes() == manifest
    # a smaller selection deletes the parts mixer wrote, never a file it did not write
    (out / "part-99999.parquet").write_bytes(b"not ours")
    (workdir / "mixes" / "notes.txt").write_text("mine")
    m = run_mix(load(path, overrides={"budget": "50K"}), progress=False)
    names = {p.name for p in out.iterdir()}
    assert names == {p["path"] for p in m["parts"]} | {"part-99999.parquet"}
    assert len(names) < len(one) + 1
    assert (workdir / "mixes" / "notes.txt").read_text() == "mine"
