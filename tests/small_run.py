"""A small finished run of recipes/sample.yaml (per-source token arrays), shared by the tests of
the OLMo-core export, the table readers and the report. Not a test module itself."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from mixer.cli import main
from mixer.sample_data import generate

ROOT = Path(__file__).resolve().parents[1]


def small_run(tmp: Path, per_source: bool = True, workdir_name: str = "wd") -> Path:
    """Generate a small sample corpus and run the sample recipe on it up to the report
    (no training); returns the workdir."""
    data = tmp / "sample_data"
    generate(data, seed=3, scale=0.08)
    recipe = yaml.safe_load((ROOT / "recipes" / "sample.yaml").read_text())
    wd = tmp / workdir_name
    recipe["variables"]["data_root"] = str(data)
    recipe["workdir"] = str(wd)
    recipe["taggers"]["quality"]["model"] = str(tmp / "models" / "quality.bin")
    recipe["budget"] = "60K"
    recipe["tokenizer"]["train"]["vocab_size"] = 2048
    recipe["tokenize"] = {"per_source": per_source, "max_tokens_per_part": 8000}
    recipe.pop("train", None)
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = CliRunner().invoke(main, ["run", str(path), "--quiet", "--workers", "2"])
    assert result.exit_code == 0, result.output
    return wd
