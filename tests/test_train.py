"""The bundled trainer: learning, exact resume, soups, eval, config errors (tiny CPU models)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mixer.errors import MixerError
from mixer.train.config import make_config, parse_sets
from mixer.train.data import (
    InstanceLoader,
    TokenStream,
    patterned_tokens,
    read_token_info,
    split_instances,
    write_token_dir,
)

VOCAB = 512
TINY = {
    "d_model": 64,
    "n_layers": 2,
    "n_heads": 4,
    "seq_len": 32,
    "batch_size": 8,
    "steps": 40,
    "warmup_steps": 5,
    "lr": 1e-2,
    "eval_interval": 20,
    "log_interval": 5,
    "checkpoint_interval": 10,
    "val_max_instances": 32,
    "threads": 1,
}


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
    toks = patterned_tokens(40_000, VOCAB, seed=1)
    d = tmp_path_factory.mktemp("tokens")
    # Three uneven parts, so instances straddle part boundaries.
    return write_token_dir(d, [toks[:13_001], toks[13_001:13_050], toks[13_050:]], VOCAB)


# ---------------------------------------------------------------------------- data (no torch)


def test_windows_cross_parts_and_match_the_concatenated_stream(tokens_dir):
    info = read_token_info(tokens_dir)
    assert info.total_tokens == 40_000 and info.vocab_size == VOCAB
    stream = TokenStream(info)
    whole = np.concatenate([np.fromfile(p, dtype="<u2") for p in info.parts]).astype(np.int64)
    for start in (0, 12_990, 13_000, 13_040, 39_000):
        assert np.array_equal(stream.read(start, 70), whole[start : start + 70])


def test_order_is_seeded_and_split_ignores_the_seed(tokens_dir):
    stream = TokenStream(read_token_info(tokens_dir))
    train_ids, val_ids = split_instances(1000, 0.1, split_seed=0, val_max=50)
    assert len(val_ids) == 50 and not set(train_ids) & set(val_ids)
    a = InstanceLoader(stream, 32, train_ids, seed=3).next_ids(2000)
    b = InstanceLoader(stream, 32, train_ids, seed=3).next_ids(2000)
    c = InstanceLoader(stream, 32, train_ids, seed=4).next_ids(2000)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert sorted(a[: len(train_ids)]) == sorted(train_ids)  # an epoch visits each once
    resumed = InstanceLoader(stream, 32, train_ids, seed=3)
    resumed.position = 1234
    assert np.array_equal(resumed.next_ids(766), a[1234:])


def test_bad_token_dirs_are_named(tmp_path):
    with pytest.raises(MixerError, match="tokens.json"):
        read_token_info(tmp_path)  # no tokens.json
    d = write_token_dir(tmp_path / "u", [np.arange(10)], 50)
    (d / "part-00000.npy").write_bytes(b"\x00\x01\x02")
    with pytest.raises(MixerError, match="not a multiple"):
        read_token_info(d)
    (d / "tokens.json").write_text(json.dumps({"dtype": "int8", "vocab_size": 50}))
    with pytest.raises(MixerError, match="dtype"):
        read_token_info(d)


def test_config_errors_name_the_key():
    with pytest.raises(MixerError, match="'d_modle'"):
        make_config({"d_modle": 3})
    with pytest.raises(MixerError, match="divisible"):
        make_config({"d_model": 65, "n_heads": 4})
    with pytest.raises(MixerError, match="'steps' wants int"):
        make_config({"steps": "many"})
    cfg = make_config(parse_sets(["lr=3e-3", "schedule=anneal", "tie_embeddings=true"]))
    assert cfg.lr == 3e-3 and cfg.schedule == "anneal" and cfg.tie_embeddings


@pytest.mark.parametrize(
    "sets, message",
    [
        (["lr=nan"], "lr must be a finite number (got nan)"),
        (["lr=.inf"], "lr must be a finite number (got inf)"),
        (["lr=-1"], "lr must be > 0"),
        (["z_loss=nan"], "z_loss must be a finite number"),
        (["min_lr_ratio=nan"], "min_lr_ratio must be a finite number"),
        (["val_fraction=.nan"], "val_fraction must be a finite number"),
        (["beta2=1.5"], "beta2 must be in [0.0, 0.999999]"),
        (["adam_eps=0"], "adam_eps must be > 0"),
        (["weight_decay=-0.1"], "weight_decay must be >= 0.0"),
        (["seed=18446744073709551616"], "seed must be in [0, 9223372036854775807]"),
        (["seed=-1"], "seed must be in [0,"),
        (["steps=inf"], "'steps' wants int"),
        (["steps=1e400"], "'steps' wants int"),
    ],
)
def test_non_finite_and_out_of_range_values_are_named(sets, message):
    with pytest.raises(MixerError) as e:
        make_config(parse_sets(sets))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_schedules():
    from mixer.train.loop import lr_at

    pytest.importorskip("torch")
    cfg = make_config({"steps": 100, "warmup_steps": 10, "lr": 1.0, "min_lr_ratio": 0.1})
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0) and lr_at(100, cfg) == pytest.approx(0.1)
    anneal = make_config({"steps": 100, "warmup_steps": 0, "lr": 1.0, "schedule": "anneal"})
    assert lr_at(0, anneal) == 1.0 and lr_at(50, anneal) == pytest.approx(0.5)
    assert lr_at(100, anneal) == 0.0


# ---------------------------------------------------------------------------- training (torch)


@pytest.fixture(scope="module")
def trained(tokens_dir, tmp_path_factory):
    pytest.importorskip("torch")
    from mixer.train import train

    out = tmp_path_factory.mktemp("run")
    return train(tokens_dir, out, TINY, progress=False), out


def test_tiny_model_learns_below_uniform_loss(trained):
    summary, out = trained
    uniform = math.log(VOCAB)
    assert summary["initial_val_loss"] == pytest.approx(uniform, abs=0.3)
    assert summary["val_loss"] < uniform - 1.5, summary
    assert summary["last_train_loss"] < summary["first_train_loss"] - 1.5
    assert (out / "model.pt").is_file() and (out / "summary.json").is_file()
    assert (out / "loss.svg").is_file() or (out / "loss.png").is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 5, 10, 15, 20, 25, 30, 35, 40]
    assert len(list((out / "checkpoints").glob("step-*.pt"))) == 2  # keep_checkpoints


def _loss_curve(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("loss"), r.get("val_loss"), r.get("grad_norm")) for r in rows]


def test_kill_and_resume_gives_the_same_loss_curve(tokens_dir, trained, tmp_path):
    import torch

    from mixer.train import train
    from mixer.train.checkpoint import load

    _, full_out = trained
    out = tmp_path / "resumed"
    stopped = train(tokens_dir, out, TINY, progress=False, stop_after=17)
    assert stopped["status"] == "stopped" and stopped["step"] == 17
    again = train(tokens_dir, out, TINY, progress=False)
    assert again["resumed_from_step"] == 17
    assert _loss_curve(out) == _loss_curve(full_out)
    a, b = load(out / "model.pt")["model"], load(full_out / "model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (out / "model.pt").read_bytes() == (full_out / "model.pt").read_bytes()


def test_rerun_with_other_config_is_refused(tokens_dir, trained):
    from mixer.train import train

    _, out = trained
    with pytest.raises(MixerError, match="'lr'"):
        train(tokens_dir, out, TINY | {"lr": 5e-3}, progress=False)


def test_soup_is_the_average_and_mismatch_is_refused(tokens_dir, trained, tmp_path):
    import torch

    from mixer.train import evaluate, soup, train
    from mixer.train.checkpoint import load

    _, out_a = trained
    out_b = tmp_path / "b"
    train(tokens_dir, out_b, TINY | {"seed": 7, "steps": 10}, progress=False)
    result = soup([out_a, out_b / "model.pt"], tmp_path / "soup.pt")
    a, b = load(out_a)["model"], load(out_b)["model"]
    s = load(result["out"])["model"]
    for k in a:
        assert torch.allclose(s[k], (a[k] + b[k]) / 2, atol=1e-7), k
    ev = evaluate(tmp_path / "soup.pt", tokens_dir)
    assert ev["split"] == "val" and math.isfinite(ev["val_loss"])

    out_c = tmp_path / "c"
    train(tokens_dir, out_c, TINY | {"d_model": 32, "steps": 2, "warmup_steps": 0}, progress=False)
    with pytest.raises(MixerError, match="d_model"):
        soup([out_a, out_c], tmp_path / "bad.pt")
    with pytest.raises(MixerError, match="shape"):
        from mixer.train.soups import average_state_dicts

        average_state_dicts([a, load(out_c)["model"]], ["a", "c"])


def test_eval_reports_loss_and_perplexity(tokens_dir, trained, tmp_path):
    from mixer.train import evaluate

    summary, out = trained
    ev = evaluate(out, tokens_dir)
    assert ev["split"] == "val"
    assert ev["val_loss"] == pytest.approx(summary["val_loss"], rel=1e-5)
    assert ev["perplexity"] == pytest.approx(math.exp(ev["val_loss"]))
    other = write_token_dir(tmp_path / "other", [patterned_tokens(5000, VOCAB, seed=1)], VOCAB)
    ev_all = evaluate(out, other, max_instances=20)
    assert ev_all["split"] == "all" and ev_all["instances"] == 20
    big = write_token_dir(tmp_path / "big", [np.arange(100)], VOCAB * 2)
    with pytest.raises(MixerError, match="vocab_size"):
        evaluate(out, big)


def test_anneal_from_a_checkpoint_with_separate_validation_data(tokens_dir, trained, tmp_path):
    from mixer.train import evaluate, train

    _, base = trained
    val_dir = write_token_dir(tmp_path / "val", [patterned_tokens(3000, VOCAB, seed=1)], VOCAB)
    anneal = TINY | {
        "schedule": "anneal",
        "warmup_steps": 0,
        "steps": 6,
        "init_from": str(base / "model.pt"),
    }
    out = tmp_path / "anneal"
    summary = train(tokens_dir, out, anneal, progress=False, val_data=val_dir)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # Starts from the trained weights (not from scratch) and the lr falls linearly to zero.
    assert summary["initial_val_loss"] < math.log(VOCAB) - 1.5
    lrs = [r["lr"] for r in rows if "lr" in r]
    assert lrs[0] == pytest.approx(TINY["lr"]) and lrs[-1] == pytest.approx(TINY["lr"] / 6)
    assert evaluate(out, tokens_dir)["split"] == "all"  # every instance of --data was trained on
    with pytest.raises(MixerError, match="--split all"):
        evaluate(out, tokens_dir, split="val")
