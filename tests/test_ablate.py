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
