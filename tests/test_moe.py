"""The mixture-of-experts option of the bundled trainer (OLMoE style), on tiny CPU models."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from mixer.errors import MixerError  # noqa: E402
from mixer.train import train  # noqa: E402
from mixer.train.config import make_config  # noqa: E402
from mixer.train.data import patterned_tokens, write_token_dir  # noqa: E402
from mixer.train.model import MoE, SwiGLU, Transformer  # noqa: E402

D, E, K = 32, 8, 2


def _moe(seed: int = 0) -> MoE:
    torch.manual_seed(seed)
    return MoE(D, 48, E, K)


def test_dropless_routing_matches_a_per_token_reference():
    """Every token goes through exactly its top-k experts, weighted by router probability."""
    moe = _moe()
    x = torch.randn(3, 17, D)
    out = moe(x)
    flat = x.reshape(-1, D)
    probs = moe.router(flat).float().softmax(-1)
    weights, experts = probs.topk(K, dim=-1)
    want = torch.zeros_like(flat)
    for t in range(flat.shape[0]):
        for j in range(K):
            e = int(experts[t, j])
            h = torch.nn.functional.silu(flat[t] @ moe.w_gate[e]) * (flat[t] @ moe.w_up[e])
            want[t] += weights[t, j] * (h @ moe.w_down[e])
    assert torch.allclose(out.reshape(-1, D), want, atol=1e-5)
    assert float(moe.load.sum()) == pytest.approx(1.0)  # every slot was processed: dropless


def test_moe_runs_under_bf16_autocast():
    """The CUDA path trains under bf16 autocast; the same code runs under CPU autocast here."""
    moe = _moe()
    x = torch.randn(2, 9, D, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = moe(x)
    assert out.dtype == x.dtype and out.shape == x.shape
    (out.float().pow(2).mean() + moe.lb_loss + moe.z_loss).backward()
    assert moe.w_gate.grad is not None and moe.router.weight.grad is not None


def _balance_after(lb_weight: float, steps: int = 300) -> torch.Tensor:
    """Start from a router that sends every token to expert 0 (the inputs share a component
    that expert 0's router row points along); train only the router; return the final load."""
    moe = _moe(1)
    with torch.no_grad():
        moe.router.weight.normal_(0.0, 0.02)
        moe.router.weight[0] += 0.3
    opt = torch.optim.Adam(moe.router.parameters(), lr=0.003)
    gen = torch.Generator().manual_seed(2)
    for _ in range(steps):
        moe(torch.randn(256, D, generator=gen) + 1.0)
        loss = lb_weight * moe.lb_loss + 0.001 * moe.z_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    moe(torch.randn(4096, D, generator=gen) + 1.0)
    return moe.load


def test_load_balancing_loss_balances_routing_on_random_data():
    skewed = _balance_after(lb_weight=0.0)
    balanced = _balance_after(lb_weight=1.0)
    # without the loss, expert 0 keeps one of the two slots of every token
    assert float(skewed.max()) >= 0.45 and float(skewed.min()) < 0.01
    # with it, every expert gets a fair share of the routed slots (uniform is 1/8 = 0.125)
    assert float(balanced.max()) < 1.6 / E and float(balanced.min()) > 0.5 / E


def test_random_router_is_balanced_and_lb_loss_near_one():
    moe = _moe(3)
    moe(torch.randn(8192, D, generator=torch.Generator().manual_seed(4)))
    assert float(moe.load.max()) < 1.5 / E and float(moe.load.min()) > 0.5 / E
    assert 0.95 < float(moe.lb_loss.detach()) < 1.2  # E * sum f_i P_i is 1.0 at perfect balance


def test_equal_active_parameters_with_the_dense_model():
    dense_cfg = make_config({"d_model": 64, "n_heads": 4, "vocab_size": 256})
    moe_cfg = make_config({"d_model": 64, "n_heads": 4, "vocab_size": 256, "moe": {"experts": 8}})
    dense = Transformer.from_config(dense_cfg.model_dict())
    moe = Transformer.from_config(moe_cfg.model_dict())
    assert isinstance(dense.blocks[0].mlp, SwiGLU) and isinstance(moe.blocks[0].mlp, MoE)
    router = sum(b.mlp.router.weight.numel() for b in moe.blocks)
    assert moe.matmul_params() - router == dense.matmul_params()
    assert (
        sum(p.numel() for p in moe.parameters())
        > 3 * sum(p.numel() for p in dense.parameters()) // 2
    )


def test_moe_keys_from_the_command_line():
    from mixer.train.config import parse_sets

    cfg = make_config(parse_sets(["moe.experts=8", "moe.top_k=1", "moe.lb_loss=0.02"]))
    assert (cfg.moe_experts, cfg.moe_top_k, cfg.moe_lb_loss) == (8, 1, 0.02)
    assert cfg.model_dict()["moe_hidden"] == cfg.ffn_hidden  # top-1: the dense width
    assert "moe_experts" not in make_config({}).model_dict()  # dense checkpoints unchanged


def test_moe_config_errors_are_named():
    with pytest.raises(MixerError, match="moe_top_k"):
        make_config({"moe": {"experts": 2, "top_k": 3}})
    with pytest.raises(MixerError, match="moe.capacity"):
        make_config({"moe": {"experts": 2, "capacity": 1.25}})
    with pytest.raises(MixerError, match="moe_lb_loss must be a finite"):
        make_config({"moe": {"experts": 2, "lb_loss": "nan"}})


def test_training_an_moe_lowers_the_loss_and_logs_balance(tmp_path):
    vocab = 256
    data = write_token_dir(tmp_path / "tok", [patterned_tokens(20_000, vocab, seed=5)], vocab)
    cfg = {
        "d_model": 32,
        "n_layers": 2,
        "n_heads": 4,
        "seq_len": 32,
        "batch_size": 8,
        "steps": 30,
        "warmup_steps": 3,
        "lr": 1e-2,
        "eval_interval": 30,
        "log_interval": 5,
        "checkpoint_interval": 30,
        "val_max_instances": 16,
        "threads": 1,
        "moe": {"experts": 4, "top_k": 2},
    }
    s = train(data, tmp_path / "run", config=cfg, progress=False)
    assert s["val_loss"] < s["initial_val_loss"] - 1.0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lb = [r["moe_lb_loss"] for r in rows if "moe_lb_loss" in r]
    assert lb and all(0.9 < v / 2 < 1.5 for v in lb)  # two layers, each near 1.0 (balanced)
