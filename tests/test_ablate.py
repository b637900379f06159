"""`mixer ablate`: the held-out split, the mix hook, and an end-to-end ablation of two variants of
the sample recipe on a tiny corpus with a tiny proxy (deterministic, reusable)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from mixer.ablate import stats
from mixer.ablate.heldout import heldout_mask
from mixer.cli import main
from mixer.errors import MixerError
from mixer.recipe import load_recipe
from mixer.sample_data import generate

ROOT = Path(__file__).resolve().parents[1]


def small_recipe(tmp: Path, data_root: Path, workdir: Path, web_share: float, name: str) -> Path:
    """recipes/sample.yaml cut down to what an ablation needs to be quick: token counts only
    (no classifiers, dedup or decontamination), a small tokenizer and budget."""
    r = yaml.safe_load((ROOT / "recipes" / "sample.yaml").read_text())
    r["variables"]["data_root"] = str(data_root)
    r["workdir"] = str(workdir)
    r["budget"] = "40K"
    for src in r["sources"].values():
        src["taggers"] = ["tokens"]
        src.pop("filters", None)
        src["max_repetition"] = 8
    for key in ("taggers", "train_fasttext", "dedup", "decon", "train"):
        r.pop(key, None)
    r["tokenizer"]["train"]["vocab_size"] = 512
    r["groups"]["web"]["share"] = web_share
    r["groups"]["domain"]["share"] = round(1 - web_share, 6)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    return path


# ------------------------------------------------------------------------ the held-out split


def test_heldout_mask_is_a_pure_function_of_id_seed_fraction():
    ids = [f"doc-{i}" for i in range(20_000)]
    m = heldout_mask(ids, 0, 0.05)
    assert 0.045 < m.mean() < 0.055
    assert np.array_equal(m, heldout_mask(ids, 0, 0.05))  # deterministic
    perm = np.random.default_rng(0).permutation(len(ids))
    assert np.array_equal(heldout_mask([ids[i] for i in perm], 0, 0.05), m[perm])  # order-free
    assert not np.array_equal(heldout_mask(ids, 1, 0.05), m)  # the seed matters
    bigger = heldout_mask(ids, 0, 0.1)
    assert (bigger | m).sum() == bigger.sum()  # a larger fraction holds out a superset
    assert not heldout_mask(ids, 0, 0.0).any()
    chunked = pa.chunked_array([pa.array(ids[:7000]), pa.array(ids[7000:])])
    assert np.array_equal(heldout_mask(chunked, 0, 0.05), m)


def test_heldout_keys_are_validated(tmp_path):
    generate(tmp_path / "data", seed=3, scale=0.02)
    path = small_recipe(tmp_path, tmp_path / "data", tmp_path / "wd", 0.5, "r")
    r = load_recipe(path, {"mix.heldout_fraction": 0.05, "mix.heldout_seed": 7})
    assert r.mix["heldout_fraction"] == 0.05 and r.mix["heldout_seed"] == 7
    for value in (0.7, "abc", -0.1):
        with pytest.raises(MixerError, match="heldout_fraction"):
            load_recipe(path, {"mix.heldout_fraction": value})
    with pytest.raises(MixerError, match="heldout_seed"):
        load_recipe(path, {"mix.heldout_seed": 2**64})


def test_paired_statistics():
    d = stats.paired_difference([1.0, 1.1, 1.2], [0.5, 0.62, 0.7])
    assert d["mean"] == pytest.approx(0.4933, abs=1e-3) and d["significant"]
    assert stats.summarize([2.0])["ci95"] is None
    w = stats.winners({"a": {"x": [1.0, 1.1]}, "b": {"x": [1.5, 1.4]}}, ["x"])
    assert w["x"]["winner"] == "a" and w["x"]["margin"] == pytest.approx(0.4)


# ------------------------------------------------------------------------ end to end


ARGS = [
    "--tokens", "12K", "--seeds", "2", "--eval-tokens", "1500", "--heldout-fraction", "0.1",
    "--set", "d_model=32", "--set", "n_heads=2", "--set", "lr=1e-2", "--workers", "1", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ablate")
    generate(tmp / "data", seed=3, scale=0.08)
    wd = tmp / "wd"
    recipes = [
        small_recipe(tmp, tmp / "data", wd, 0.5, "web50"),
        small_recipe(tmp, tmp / "data", wd, 0.8, "web80"),
    ]
    evalset = tmp / "data" / "eval" / "arc_like.jsonl"
    args = ["ablate", *map(str, recipes), "--eval", str(evalset), *ARGS]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = wd / "ablate" / "web50-vs-web80"
    return {"wd": wd, "out": out, "args": args, "output": res.output, "recipes": recipes}


def test_results_hold_every_domain_with_seed_intervals(ablation):
    res = json.loads((ablation["out"] / "results.json").read_text())
    assert list(res["mixes"]) == ["web50", "web80"]
    names = [d["name"] for d in res["domains"]]
    assert names[:7] == [
        "web",
        "math",
        "code",
        "academic",
        "qa_forum",
        "instruction",
        "encyclopedic",
    ]
    assert names[7] == "eval:arc_like"
    assert res["tokens_per_run"] >= 12_000 and res["seeds"] == [0, 1]
    for mix in ("web50", "web80"):
        for dom in [*names, "overall"]:
            bpb = res["results"][mix][dom]["bpb"]
            assert len(bpb["per_seed"]) == 2 and bpb["ci95"] is not None
            assert 0 < bpb["mean"] < 12
    # the mixes really differ in what they train on...
    shares = {m: res["mixes"][m]["shares"]["web"] for m in res["mixes"]}
    assert shares["web50"] == pytest.approx(0.5, abs=0.02)
    assert shares["web80"] == pytest.approx(0.8, abs=0.02)
    # ...and the more-web mix gains on web relative to math (its share there fell from ~12% to ~5%)
    diff = res["differences"]["web80 - web50"]
    assert diff["web"]["mean"] < diff["math"]["mean"]
    assert set(res["winners"]) == {*names, "overall"}
    html = (ablation["out"] / "report.html").read_text()
    assert "<svg" in html and "Which mix wins" in html and "eval:arc_like" in html
    assert "web80" in ablation["output"] and "results:" in ablation["output"]


def test_heldout_documents_are_in_no_mix(ablation):
    wd = ablation["wd"]
    for mix in ("web50-ablate", "web80-ablate"):  # the recipes' own mix names stay untouched
        manifest = json.loads((wd / "mixes" / f"{mix}.manifest.json").read_text())
        mixed = set()
        for part in (wd / "mixes" / mix).glob("part-*.parquet"):
            mixed |= set(pq.read_table(part, columns=["id"]).column("id").to_pylist())
        for source in manifest["sources"]:
            ids = pa.concat_tables(
                pq.read_table(p, columns=["id"])
                for p in sorted((wd / "documents" / source).glob("part-*.parquet"))
            ).column("id")
            held = heldout_mask(ids, 0, 0.1)
            assert held.any()
            assert not mixed & set(np.asarray(ids.to_pylist(), dtype=object)[held])
            # held-out documents count nowhere in the plan
            assert manifest["sources"][source]["docs_available"] == len(ids) - held.sum()
    assert not (wd / "mixes" / "web50").exists() and not (wd / "tokens" / "web50").exists()


def test_rerun_skips_and_force_gives_identical_results(ablation):
    out = ablation["out"]
    before = (out / "results.json").read_bytes()
    res = CliRunner().invoke(main, [*ablation["args"][:-1]], catch_exceptions=False)
    assert res.exit_code == 0 and "up to date, skipped" in res.output
    res = CliRunner().invoke(main, [*ablation["args"], "--force"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert (out / "results.json").read_bytes() == before


def test_bad_ablation_input_is_one_line(ablation, tmp_path):
    runner = CliRunner()
    recipes = list(map(str, ablation["recipes"]))
    for extra, msg in (
        (["--set", "lr=nan"], "lr must be a finite number"),
        (["--proxy", str(tmp_path / "nope.pt")], "nope.pt"),
        (["--heldout-fraction", "0.9"], "--heldout-fraction"),
        (["--tokens", "10"], "less than one step"),
        (["--seeds", "0"], "--seeds"),
    ):
        res = runner.invoke(main, ["ablate", *recipes, "--quiet", *extra])
        assert res.exit_code == 2, (extra, res.output)
        assert msg in res.output and len(res.output.strip().splitlines()) == 1


def test_a_checkpoint_proxy_is_annealed(tmp_path):
    from mixer.ablate.proxy import proxy_config
    from mixer.train import train
    from mixer.train.data import patterned_tokens, write_token_dir

    data = write_token_dir(tmp_path / "tok", [patterned_tokens(3000, 128)], 128)
    cfg = {"d_model": 32, "n_heads": 2, "seq_len": 16, "batch_size": 4, "steps": 2,
           "warmup_steps": 0, "lr": 5e-3, "val_fraction": 0, "moe": {"experts": 4}}  # fmt: skip
    train(data, tmp_path / "run", config=cfg, progress=False)
    settings = proxy_config(str(tmp_path / "run" / "model.pt"), 640)
    assert settings["schedule"] == "anneal" and settings["warmup_steps"] == 0
    assert settings["init_from"].endswith("model.pt") and settings["lr"] == 5e-3
    assert settings["d_model"] == 32 and settings["moe_experts"] == 4
    assert settings["steps"] == 10  # 640 tokens / (4 x 16)
