"""Throughput of the bundled trainer, as ratios against references measured on the same machine.

    .venv/bin/python -m bench.train_speed [--preset demo] [--steps 20] [--threads N] [--json OUT]

On one synthetic tokens folder (the speed of a step does not depend on the text), same model
size, batch and sequence length:
  1. an end-to-end `mixer.train.train` run (checkpoints, logging, the MFU on CUDA), timed;
  2. mixer's step (memmap batch, OLMo 2 block, z-loss, AdamW, clipping) against a plain
     reference step: torch's built-in nn.TransformerEncoderLayer (pre-norm, GELU MLP of the
     same parameter count, causal mask, no data loading), run alternately step by step so a
     change in machine load hits both alike; medians;
  3. the matmul ceiling: GFLOP/s of one big float32 matmul of the output layer's shape.
Reported: mixer / reference tokens/s, and mixer's achieved model FLOP/s as a fraction of the
matmul ceiling (a CPU stand-in for MFU). On CUDA the trainer also reports true MFU (bf16 peak).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mixer.train import train
from mixer.train.config import make_config
from mixer.train.data import InstanceLoader, TokenStream, read_token_info, write_token_dir
from mixer.train.loop import autocast_for, build_optimizer
from mixer.train.model import Transformer, loss_terms


def reference_step(cfg, device: torch.device):
    """A plain nn.TransformerEncoder LM of the same size: returns a function doing one step."""
    d, v, t = cfg.d_model, cfg.vocab_size, cfg.seq_len
    # GELU MLP with 1.5x the SwiGLU hidden size has the same parameter count (2 vs 3 matrices).
    layer = nn.TransformerEncoderLayer(
        d,
        cfg.n_heads,
        int(cfg.ffn_hidden * 1.5),
        dropout=0.0,
        batch_first=True,
        norm_first=True,
        bias=False,
    )
    body = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
    model = nn.ModuleDict(
        {"emb": nn.Embedding(v, d), "body": body, "head": nn.Linear(d, v, bias=False)}
    ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    mask = nn.Transformer.generate_square_subsequent_mask(t, device=device)
    x = torch.randint(0, v, (cfg.batch_size, t + 1), device=device)

    def step():
        h = model["body"](model["emb"](x[:, :-1]), mask=mask, is_causal=True)
        loss = nn.functional.cross_entropy(
            model["head"](h).float().view(-1, v), x[:, 1:].reshape(-1)
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def mixer_step(cfg, loader, device: torch.device):
    """One step of mixer's loop body (batch from the memmap loader, OLMo 2 model, z-loss)."""
    model = Transformer.from_config(cfg.model_dict()).to(device)
    model.init_weights(cfg.init_std, torch.Generator().manual_seed(0))
    opt = build_optimizer(model, cfg, device)

    def step():
        x = torch.from_numpy(loader.next_batch(cfg.batch_size)).to(device)
        with autocast_for(device):
            logits = model(x[:, :-1])
        ce, z = loss_terms(logits, x[:, 1:])
        (ce + cfg.z_loss * z).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        float(ce.detach())

    return step


def interleaved_times(steps: int, fns: dict, device) -> dict:
    """Median seconds per step of each function, run in turn so load changes hit all alike."""
    times = {name: [] for name in fns}
    for i in range(steps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 2:  # warm-up
                times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(ts)) for name, ts in times.items()}


def matmul_gflops(cfg, device: torch.device, repeat: int = 5) -> float:
    a = torch.randn(cfg.batch_size * cfg.seq_len, cfg.d_model, device=device)
    b = torch.randn(cfg.d_model, cfg.vocab_size, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / best / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {
        "preset": args.preset,
        "vocab_size": args.vocab,
        "steps": args.steps,
        "warmup_steps": 0,
        "log_interval": max(2, args.steps // 4),
        "eval_interval": 10**9,
        "checkpoint_interval": 10**9,
        "val_fraction": 0.0,
        "threads": args.threads,
    }
    cfg = make_config(overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n_tokens = max(cfg.batch_size * (cfg.seq_len + 1) * (args.steps + 2), 200_000)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_token_dir(
            Path(tmp) / "tok", [rng.integers(0, args.vocab, n_tokens)], args.vocab
        )
        t0 = time.perf_counter()
        train(data, Path(tmp) / "run", overrides, progress=False)
        end_to_end_s = time.perf_counter() - t0
        rows = [
            json.loads(line)
            for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()
        ]
        loader = InstanceLoader(
            TokenStream(read_token_info(data)),
            cfg.seq_len,
            np.arange(n_tokens // cfg.seq_len - 1),
            0,
        )
        median = interleaved_times(
            args.steps,
            {"mixer": mixer_step(cfg, loader, device), "reference": reference_step(cfg, device)},
            device,
        )
    mfu = [r["mfu"] for r in rows if "mfu" in r][1:]
    batch_tokens = cfg.batch_size * cfg.seq_len
    mixer_tps = batch_tokens / median["mixer"]
    ref_tps = batch_tokens / median["reference"]
    model = Transformer.from_config(cfg.model_dict())
    flops_tok = model.flops_per_token()
    ceiling = matmul_gflops(cfg, device)
    achieved = flops_tok * mixer_tps / 1e9
    result = {
        "preset": args.preset,
        "params": sum(p.numel() for p in model.parameters()),
        "batch_tokens": batch_tokens,
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
        "train_run_seconds": round(end_to_end_s, 1),
        "train_run_tokens": args.steps * batch_tokens,
        "mixer_tokens_per_s": round(mixer_tps, 1),
        "reference_tokens_per_s": round(ref_tps, 1),
        "ratio_mixer_vs_reference": round(mixer_tps / ref_tps, 3),
        "mixer_model_gflops": round(achieved, 2),
        "matmul_ceiling_gflops": round(ceiling, 2),
        "fraction_of_matmul_ceiling": round(achieved / ceiling, 3),
        "mfu_cuda": round(float(np.mean(mfu)), 4) if mfu else None,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
