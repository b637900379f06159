"""Proxy models of an ablation: their train configs, and loss per domain on token streams.

`tiny` and `small` are trained from scratch (seeded init: every mix starts from the same
weights for a given seed); a checkpoint PATH is annealed from, as OLMo 2 chose its
mid-training mix: the checkpoint's architecture, its peak learning rate decayed linearly to
zero, no warmup.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mixer.errors import MixerError
from mixer.train.config import MODEL_KEYS, make_config

# name -> (train keys, default training tokens per run)
PROXIES = {
    "tiny": ({"preset": "tiny"}, 131_072),  # d_model 64, 2 layers, seq 64, batch 8: 2 CPU cores
    "small": ({"preset": "demo"}, 1_048_576),  # d_model 128, 2 layers, seq 128, batch 16
}
CURVE_POINTS = 6  # held-out evaluations during a run (plus step 0)


def proxy_config(proxy: str, tokens: int | None, overrides: dict | None = None) -> dict:
    """The train config of every run of the ablation (the seed is set per run)."""
    overrides = dict(overrides or {})
    if proxy in PROXIES:
        base, default_tokens = dict(PROXIES[proxy][0]), PROXIES[proxy][1]
        anneal = False
    else:
        path = Path(proxy)
        if not path.is_file():
            raise MixerError(
                f"--proxy {proxy!r}: not {' or '.join(PROXIES)} and no checkpoint file there"
            )
        from mixer.train import checkpoint as ckpt_io
        from mixer.train import require_torch

        require_torch()
        state = ckpt_io.load(path)
        model_cfg, run_cfg = state.get("model_config") or {}, state.get("config") or {}
        base = {k: model_cfg[k] for k in MODEL_KEYS if k in model_cfg}
        for key in ("batch_size", "lr", "init_std", "z_loss", "moe_lb_loss", "moe_z_loss"):
            if key in run_cfg:
                base[key] = run_cfg[key]
        # OLMo 2's anneal: from the checkpoint's weights, lr straight down to zero.
        base |= {"init_from": str(path.resolve()), "schedule": "anneal", "warmup_steps": 0}
        default_tokens = 1_048_576
        anneal = True
    cfg = make_config({**base, **overrides, "steps": 10**9}, where="--proxy")  # shape only
    per_step = cfg.batch_size * cfg.seq_len
    want = int(tokens or default_tokens)
    if want < per_step:
        raise MixerError(
            f"--tokens {want:,}: less than one step of the proxy ({cfg.batch_size} x {cfg.seq_len} tokens)"
        )
    steps = math.ceil(want / per_step)
    warmup = min(cfg.warmup_steps, max(0, steps // 10)) if not anneal else 0
    settings = {
        **base,
        "steps": steps,
        "warmup_steps": overrides.pop("warmup_steps", warmup),
        "val_fraction": 0.0,  # the held-out domains are the evaluation
        "checkpoint_interval": steps,
        "keep_checkpoints": 1,
        "log_interval": max(1, steps // 50),
        "eval_interval": max(1, math.ceil(steps / CURVE_POINTS)),
        **overrides,
    }
    make_config(settings, where="--proxy")  # every key checked before any work
    return settings


def stream_nll(model, stream: np.ndarray, seq_len: int, batch: int, device) -> float:
    """Summed cross-entropy (nats) of tokens 1.. of `stream`, each predicted from the tokens
    before it in its window (consecutive windows of seq_len predictions)."""
    import torch
    import torch.nn.functional as F

    from mixer.train.loop import autocast_for

    n = len(stream) - 1
    full = n // seq_len
    total = 0.0
    windows = np.arange(full)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    chunks = [stream[windows[b : b + batch]] for b in range(0, full, batch)]
    if n - full * seq_len:
        chunks.append(stream[full * seq_len :][None, :])
    for chunk in chunks:
        x = torch.from_numpy(chunk.astype(np.int64)).to(device)
        with autocast_for(device):
            logits = model(x[:, :-1])
        ce = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum"
        )
        total += float(ce)
    return total
