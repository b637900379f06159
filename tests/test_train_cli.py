"""The train / eval / soup commands: JSON output, one-line errors, and mixer without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mixer.cli import main
from mixer.train.data import patterned_tokens, write_token_dir

TINY_SETS = [
    "d_model=32", "n_layers=1", "n_heads=2", "seq_len=16", "batch_size=4", "steps=6",
    "warmup_steps=2", "eval_interval=3", "log_interval=3", "checkpoint_interval=3", "threads=1",
]  # fmt: skip


def _sets():
    out = []
    for s in TINY_SETS:
        out += ["--set", s]
    return out


def _json_tail(output: str) -> dict:
    return json.loads(output[output.index("{\n") :])


def test_train_eval_soup_commands(tmp_path):
    pytest.importorskip("torch")
    tokens = write_token_dir(tmp_path / "tok", [patterned_tokens(4000, 256, seed=2)], 256)
    runner = CliRunner()
    runs = []
    for seed in (1, 2):
        run = tmp_path / f"run{seed}"
        res = runner.invoke(
            main,
            [
                "train",
                "--data",
                str(tokens),
                "--out",
                str(run),
                "--quiet",
                *_sets(),
                "--set",
                f"seed={seed}",
            ],
        )
        assert res.exit_code == 0, res.output
        assert _json_tail(res.output)["status"] == "done"
        runs.append(run)
    res = runner.invoke(main, ["eval", "--ckpt", str(runs[0]), "--data", str(tokens)])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.output)
    assert ev["val_loss"] > 0 and ev["perplexity"] > 1
    res = runner.invoke(
        main, ["soup", str(runs[0]), str(runs[1]), "--out", str(tmp_path / "soup.pt")]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["ingredients"] == [str(r / "model.pt") for r in runs]


def test_user_errors_are_one_line_exit_2(tmp_path):
    runner = CliRunner()
    tokens = write_token_dir(tmp_path / "tok", [patterned_tokens(500, 64)], 64)
    res = runner.invoke(
        main, ["train", "--data", str(tokens), "--out", str(tmp_path / "r"), "--set", "stpes=3"]
    )
    assert res.exit_code == 2 and "unknown train key 'stpes'" in res.output
    bad_yaml = tmp_path / "train.yaml"
    bad_yaml.write_text("steps: [1,\n")
    res = runner.invoke(
        main,
        ["train", "--data", str(tokens), "--out", str(tmp_path / "r"), "--config", str(bad_yaml)],
    )
    assert res.exit_code == 2 and "train.yaml" in res.output
    res = runner.invoke(main, ["eval", "--ckpt", str(tmp_path / "nope.pt"), "--data", str(tokens)])
    assert res.exit_code == 2 and "nope.pt" in res.output
    for bad in ("lr=nan", "lr=inf", "seed=18446744073709551616", "beta1=-0.5"):
        res = runner.invoke(
            main, ["train", "--data", str(tokens), "--out", str(tmp_path / "r"), "--set", bad]
        )
        key = bad.split("=")[0]
        assert res.exit_code == 2 and key in res.output, (bad, res.output)
        assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    nan_yaml = tmp_path / "nan.yaml"
    nan_yaml.write_text("lr: .nan\n")
    res = runner.invoke(
        main,
        ["train", "--data", str(tokens), "--out", str(tmp_path / "r"), "--config", str(nan_yaml)],
    )
    assert res.exit_code == 2 and "lr must be a finite number" in res.output


def test_mixer_works_without_torch(tmp_path):
    """With torch unimportable, other commands load and `train` names the missing extra."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from click.testing import CliRunner\n"
        "from mixer.cli import main\n"
        "r = CliRunner().invoke(main, ['train', '--data', sys.argv[1], '--out', sys.argv[2]])\n"
        "print(r.exit_code, r.output)\n"
    )
    tokens = write_token_dir(tmp_path / "tok", [patterned_tokens(500, 64)], 64)
    out = subprocess.run(
        [sys.executable, "-c", code, str(tokens), str(tmp_path / "r")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out.startswith("2 ") and "mixer[train]" in out
