"""The training loop: AdamW, warmup + cosine/linear/anneal schedules, checkpoints, exact resume.

Run folder (RUN/):
    run.json           the config and the data it trains on (a rerun must match to resume)
    checkpoints/       step-NNNNNN.pt: model, optimizer, RNG states, step, data position
    metrics.jsonl      one line per logged step (loss, lr, grad norm, tokens/s, MFU on CUDA)
                       and per evaluation (val_loss, val_ppl)
    loss.png|loss.svg  the loss curve
    model.pt           the final weights (what `mixer eval` and `mixer soup` read)
    summary.json       first/last train loss, validation loss and perplexity, throughput

Rerunning on a RUN folder resumes from its latest checkpoint and reproduces the uninterrupted
run's loss curve exactly (same device and thread count): the data order is a pure function of
(seed, position) and the checkpoint restores every other piece of state.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from pathlib import Path

import numpy as np
import orjson
import torch

from mixer.errors import MixerError
from mixer.io import read_json, write_bytes_atomic, write_json_atomic
from mixer.train import checkpoint as ckpt_io
from mixer.train.config import MODEL_KEYS, TrainConfig, make_config
from mixer.train.data import (
    InstanceLoader,
    TokenStream,
    check_token_range,
    count_instances,
    read_token_info,
    read_windows,
    sample_instances,
    split_instances,
)
from mixer.train.model import Transformer, count_params, loss_terms, uniform_loss
from mixer.train.plot import write_loss_plot

CHECKPOINT_FORMAT = "mixer-train-checkpoint/1"
MODEL_FORMAT = "mixer-model/1"

# Dense bf16 peak FLOP/s by GPU name, for MFU (set `peak_flops` for anything else).
PEAK_BF16_FLOPS = {
    "H200": 989.4e12,
    "H100": 989.4e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "L4": 121e12,
}


# ---------------------------------------------------------------------------- schedule


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for 0-based optimizer step `step`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if cfg.schedule == "anneal":  # OLMo 2 mid-training: straight line down to zero
        return cfg.lr * (1.0 - progress)
    floor = cfg.lr * cfg.min_lr_ratio
    if cfg.schedule == "linear":
        return cfg.lr - (cfg.lr - floor) * progress
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------- setup helpers


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise MixerError("train config: device 'cuda' asked for, but torch sees no CUDA device")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def autocast_for(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def peak_flops(cfg: TrainConfig, device: torch.device) -> float | None:
    if cfg.peak_flops > 0:
        return cfg.peak_flops
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in name:
            return flops
    return None


def build_optimizer(
    model: Transformer, cfg: TrainConfig, device: torch.device
) -> torch.optim.AdamW:
    """AdamW; weight decay on the matrices of the blocks and the output head only."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.startswith("embed.") or p.ndim < 2 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.adam_eps,
        fused=device.type == "cuda",
    )


def check_model_config(want: dict, have: dict, where: str) -> None:
    for key in MODEL_KEYS:
        if want.get(key) != have.get(key):
            raise MixerError(
                f"{where}: model key {key!r} is {have.get(key)!r}, this run needs {want.get(key)!r}"
            )


def _run_identity(cfg: TrainConfig, info, val_info) -> dict:
    return {
        "config": cfg.to_dict(),
        "data": {"dir": str(info.directory.resolve()), "tokens": info.total_tokens},
        "val_data": (
            {"dir": str(val_info.directory.resolve()), "tokens": val_info.total_tokens}
            if val_info
            else None
        ),
    }


def _identity_diff(old: dict, new: dict) -> str:
    for section in ("data", "val_data"):
        if old.get(section) != new.get(section):
            return f"{section} was {old.get(section)}, now {new.get(section)}"
    oc, nc = old.get("config", {}), new.get("config", {})
    for key in sorted(set(oc) | set(nc)):
        if oc.get(key) != nc.get(key):
            return f"config key {key!r} was {oc.get(key)!r}, now {nc.get(key)!r}"
    return ""


# ---------------------------------------------------------------------------- evaluation


@torch.no_grad()
def mean_loss(
    model, stream: TokenStream, seq_len: int, ids: np.ndarray, batch_size: int, device
) -> float:
    """Mean cross-entropy (nats/token) over the given instances."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(ids), batch_size):
        batch = read_windows(stream, seq_len, ids[start : start + batch_size])
        check_token_range(batch, model.vocab_size, stream.info.directory)
        x = torch.from_numpy(batch).to(device)
        with autocast_for(device):
            logits = model(x[:, :-1])
        ce, _ = loss_terms(logits, x[:, 1:])
        n = x.shape[0] * seq_len
        total += float(ce) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


# ---------------------------------------------------------------------------- train


class _Metrics:
    """metrics.jsonl, appended line by line (a log, not an input of another stage)."""

    def __init__(self, path: Path, keep_until_step: int):
        self.path = path
        self.rows: list[dict] = []
        if path.exists():
            # On resume, drop what was logged after the checkpoint: those steps run again.
            for line in path.read_bytes().splitlines():
                with contextlib.suppress(orjson.JSONDecodeError):
                    row = orjson.loads(line)
                    if row.get("step", 0) <= keep_until_step:
                        self.rows.append(row)
            write_bytes_atomic(path, b"".join(orjson.dumps(r) + b"\n" for r in self.rows))
        self._fh = open(path, "ab")

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self._fh.write(orjson.dumps(row) + b"\n")
        self._fh.flush()

    def close(self):
        self._fh.close()


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, flush=True)


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    config: dict | None = None,
    progress: bool = True,
    val_data: str | Path | None = None,
    restart: bool = False,
    stop_after: int | None = None,
    evaluator=None,
) -> dict:
    """Train the bundled model on a tokens folder; returns the run summary.

    `config`: train keys (see mixer.train.config.TrainConfig, plus `preset`). A RUN folder that
    holds checkpoints of the same run is resumed; one of a different run is refused unless
    `restart`. `stop_after` ends the run after that many steps, as a kill would (after the
    checkpoint of that step); a later call resumes. `evaluator(model, device, step)`, when given, is
    called at step 0, every `eval_interval` steps and at the end (model in eval mode, no grad);
    the dict it returns goes into that step's metrics row (`mixer ablate` measures held-out
    loss per domain this way).
    """
    cfg = make_config(config)
    info = read_token_info(data_dir)
    val_info = read_token_info(val_data) if val_data else None
    if cfg.vocab_size == 0:
        cfg.vocab_size = max(info.vocab_size, val_info.vocab_size if val_info else 0)
    for i in (info, val_info):
        if i and i.vocab_size > cfg.vocab_size:
            raise MixerError(
                f"{i.directory}/tokens.json: vocab_size {i.vocab_size} exceeds the model's {cfg.vocab_size}"
            )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)

    out = Path(out_dir)
    identity = _run_identity(cfg, info, val_info)
    old = read_json(out / "run.json")
    if old is not None and not restart and ckpt_io.list_checkpoints(out):
        diff = _identity_diff(old, identity)
        if diff:
            raise MixerError(
                f"{out}: holds a different run ({diff}); use another --out or --restart"
            )
    if restart:
        for name in ("checkpoints",):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (
            "metrics.jsonl",
            "model.pt",
            "summary.json",
            "loss.png",
            "loss.svg",
            "run.json",
        ):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "run.json", identity)

    # Data: instances of seq_len + 1 tokens, a held-out split or a separate folder.
    stream = TokenStream(info)
    n_inst = count_instances(info.total_tokens, cfg.seq_len)
    if val_info:
        train_ids = np.arange(n_inst)
        val_stream = TokenStream(val_info)
        val_ids = sample_instances(
            count_instances(val_info.total_tokens, cfg.seq_len),
            cfg.val_max_instances,
            cfg.split_seed,
        )
    else:
        train_ids, val_ids = split_instances(
            n_inst, cfg.val_fraction, cfg.split_seed, cfg.val_max_instances
        )
        val_stream = stream
    loader = InstanceLoader(stream, cfg.seq_len, train_ids, cfg.seed)

    # Model and optimizer: seeded init on CPU (same weights whatever the device).
    torch.manual_seed(cfg.seed)
    model = Transformer.from_config(cfg.model_dict())
    model.init_weights(cfg.init_std, torch.Generator().manual_seed(cfg.seed))
    if cfg.init_from:
        start = ckpt_io.load(cfg.init_from)
        check_model_config(cfg.model_dict(), start["model_config"], start["_path"])
        model.load_state_dict(start["model"])
    model.to(device)
    optimizer = build_optimizer(model, cfg, device)
    step, tokens_seen, elapsed = 0, 0, 0.0

    resumed_from = None
    ckpts = ckpt_io.list_checkpoints(out)
    if ckpts:
        state = ckpt_io.load(ckpts[-1][1])
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, tokens_seen, elapsed = state["step"], state["tokens_seen"], state["elapsed_s"]
        loader.position = state["data_position"]
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        resumed_from = step
    metrics = _Metrics(out / "metrics.jsonl", keep_until_step=step)

    fwd_model = torch.compile(model) if cfg.compile else model
    n_params = count_params(model)
    flops_tok = model.flops_per_token()
    peak = peak_flops(cfg, device)
    micro = cfg.batch_size // cfg.grad_accum
    tokens_per_step = cfg.batch_size * cfg.seq_len
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    _say(
        progress,
        f"train: {n_params / 1e6:.2f}M params ({cfg.n_layers} layers, d_model {cfg.d_model}, vocab {cfg.vocab_size}), "
        f"{len(train_ids):,} train / {len(val_ids):,} val instances of {cfg.seq_len} tokens, "
        f"{cfg.steps} steps x {tokens_per_step:,} tokens on {device.type}"
        + (f"; resuming at step {step}" if resumed_from else "")
        + f"; uniform loss ln(V) = {uniform_loss(cfg.vocab_size):.3f}",
    )

    def evaluate_now() -> None:
        row: dict = {"step": step}
        if val_ids.size:
            loss = mean_loss(model, val_stream, cfg.seq_len, val_ids, micro, device)
            row |= {"val_loss": loss, "val_ppl": math.exp(min(loss, 50))}
            _say(
                progress, f"step {step:>6}  val loss {loss:.4f}  ppl {math.exp(min(loss, 50)):.1f}"
            )
        if evaluator is not None:
            was_training = model.training
            model.eval()
            with torch.no_grad():
                row |= evaluator(model, device, step)
            model.train(was_training)
        metrics.add(row)

    def save_checkpoint() -> None:
        rng = {"torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        ckpt_io.save(
            {
                "format": CHECKPOINT_FORMAT,
                "model": model.state_dict(),
                "model_config": cfg.model_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "tokens_seen": tokens_seen,
                "elapsed_s": elapsed,
                "data_position": loader.position,
                "rng": rng,
                "config": cfg.to_dict(),
                "data": identity["data"],
                "val_data": identity["val_data"],
            },
            ckpt_io.step_path(out, step),
        )
        ckpt_io.prune(out, cfg.keep_checkpoints)

    evaluating = bool(val_ids.size) or evaluator is not None
    if step == 0 and evaluating and not any(r.get("step") == 0 for r in metrics.rows):
        evaluate_now()

    model.train()
    window_start, window_tokens = time.perf_counter(), 0
    stop_at = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    try:
        while step < stop_at:
            t0 = time.perf_counter()
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = loader.next_batch(cfg.batch_size)
            check_token_range(batch, cfg.vocab_size, info.directory)
            batch_t = torch.from_numpy(batch)
            if device.type == "cuda":
                batch_t = batch_t.pin_memory().to(device, non_blocking=True)
            ce_parts, z_parts, moe_parts = [], [], []
            for m in range(cfg.grad_accum):
                x = batch_t[m * micro : (m + 1) * micro]
                with autocast_for(device):
                    logits = fwd_model(x[:, :-1])
                ce, z = loss_terms(logits, x[:, 1:])
                loss = ce + cfg.z_loss * z
                moe = model.moe_losses()
                if moe is not None:  # OLMoE: load balancing + router z-loss, per layer, summed
                    loss = loss + cfg.moe_lb_loss * moe[0] + cfg.moe_z_loss * moe[1]
                    moe_parts.append(torch.stack([moe[0].detach(), moe[1].detach()]))
                (loss / cfg.grad_accum).backward()
                ce_parts.append(ce.detach())
                z_parts.append(z.detach())
            if cfg.grad_clip > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            else:
                grad_norm = torch.linalg.vector_norm(
                    torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None])
                )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            ce_sum = float(torch.stack(ce_parts).mean())
            z_sum = float(torch.stack(z_parts).mean())
            if not math.isfinite(ce_sum):
                raise MixerError(
                    f"{out}: loss became {ce_sum} at step {step + 1}; lower lr (now {cfg.lr})"
                )
            step += 1
            tokens_seen += tokens_per_step
            window_tokens += tokens_per_step
            elapsed += time.perf_counter() - t0

            if step % cfg.log_interval == 0 or step == cfg.steps or step == 1:
                now = time.perf_counter()
                tok_s = window_tokens / max(now - window_start, 1e-9)
                row = {
                    "step": step,
                    "loss": ce_sum,
                    "z_loss": z_sum,
                    "lr": lr,
                    "grad_norm": float(grad_norm),
                    "tokens": tokens_seen,
                    "epoch": round(loader.epoch, 4),
                    "tokens_per_s": round(tok_s, 1),
                }
                if moe_parts:
                    lb, rz = torch.stack(moe_parts).mean(dim=0).tolist()
                    row |= {"moe_lb_loss": lb, "moe_router_z": rz}
                if peak:
                    row["mfu"] = round(flops_tok * tok_s / peak, 4)
                metrics.add(row)
                mfu = f"  mfu {row['mfu']:.1%}" if peak else ""
                _say(
                    progress,
                    f"step {step:>6}/{cfg.steps}  loss {ce_sum:.4f}  lr {lr:.2e}  "
                    f"gnorm {float(grad_norm):.2f}  {tok_s:,.0f} tok/s{mfu}",
                )
                logged = True
            else:
                logged = False
            if evaluating and (step % cfg.eval_interval == 0 or step == cfg.steps):
                evaluate_now()
            if step % cfg.checkpoint_interval == 0 or step == cfg.steps or step == stop_at:
                save_checkpoint()
                write_loss_plot(metrics.rows, out, title=f"{out.name}: loss")
            if logged:  # the next window's tokens/s excludes evaluation and checkpoint time
                window_start, window_tokens = time.perf_counter(), 0
    finally:
        metrics.close()

    if step < cfg.steps:  # stopped early on request: the checkpoint is the state to resume
        return {"status": "stopped", "step": step, "steps": cfg.steps, "run_dir": str(out)}

    ckpt_io.save(
        {
            "format": MODEL_FORMAT,
            "model": model.state_dict(),
            "model_config": cfg.model_dict(),
            "config": cfg.to_dict(),
            "step": step,
            "data": identity["data"],
            "val_data": identity["val_data"],
        },
        out / ckpt_io.MODEL_FILE,
    )
    train_rows = [r for r in metrics.rows if "loss" in r]
    val_rows = [r for r in metrics.rows if "val_loss" in r]
    plot = write_loss_plot(metrics.rows, out, title=f"{out.name}: loss")
    summary = {
        "status": "done",
        "run_dir": str(out),
        "steps": step,
        "tokens_seen": tokens_seen,
        "params": n_params,
        "device": device.type,
        "first_train_loss": train_rows[0]["loss"] if train_rows else None,
        "last_train_loss": train_rows[-1]["loss"] if train_rows else None,
        "first_loss": train_rows[0]["loss"] if train_rows else None,  # short names for the pipeline
        "last_loss": train_rows[-1]["loss"] if train_rows else None,
        "initial_val_loss": val_rows[0]["val_loss"] if val_rows else None,
        "val_loss": val_rows[-1]["val_loss"] if val_rows else None,
        "val_ppl": val_rows[-1]["val_ppl"] if val_rows else None,
        "uniform_loss": uniform_loss(cfg.vocab_size),
        "train_seconds": round(elapsed, 2),
        "tokens_per_s": round(tokens_seen / elapsed, 1) if elapsed else None,
        "resumed_from_step": resumed_from,
        "model": str(out / ckpt_io.MODEL_FILE),
        "plot": str(plot) if plot else None,
    }
    write_json_atomic(out / "summary.json", summary)
    _say(
        progress,
        f"done: train loss {summary['first_train_loss']:.3f} -> {summary['last_train_loss']:.3f}"
        + (
            f", val loss {summary['initial_val_loss']:.3f} -> {summary['val_loss']:.3f}"
            if val_rows
            else ""
        )
        + f" (uniform {summary['uniform_loss']:.3f}); {out}",
    )
    return summary


# ---------------------------------------------------------------------------- eval


def evaluate(
    ckpt: str | Path,
    data_dir: str | Path,
    split: str = "auto",
    max_instances: int | None = None,
    batch_size: int = 16,
    device: str = "auto",
) -> dict:
    """Validation loss and perplexity of a checkpoint on a tokens folder.

    split: "all" (every instance, or a seeded sample of `max_instances`), "val" (the held-out
    split the checkpoint's run used on this folder), "auto" ("val" when the folder is the one
    the checkpoint trained on, else "all").
    """
    state = ckpt_io.load(ckpt)
    model_cfg = state["model_config"]
    run_cfg = state.get("config") or {}
    info = read_token_info(data_dir)
    if info.vocab_size > model_cfg["vocab_size"]:
        raise MixerError(
            f"{info.directory}/tokens.json: vocab_size {info.vocab_size} exceeds the model's {model_cfg['vocab_size']}"
        )
    if split not in ("auto", "all", "val"):
        raise MixerError(f"--split {split!r}: use auto, all or val")
    trained_on = (state.get("data") or {}).get("dir")
    held_out_here = (
        trained_on == str(info.directory.resolve())
        and not state.get("val_data")  # a run with --val-data trained on every instance
        and bool(run_cfg.get("val_fraction"))
    )
    if split == "auto":
        split = "val" if held_out_here else "all"
    if split == "val" and not held_out_here:
        raise MixerError(
            f"--split val: {ckpt} did not hold out part of {info.directory}; use --split all"
        )
    seq_len = model_cfg["seq_len"]
    n = count_instances(info.total_tokens, seq_len)
    split_seed = int(run_cfg.get("split_seed", 0))
    if split == "val":
        _, ids = split_instances(
            n,
            float(run_cfg.get("val_fraction", 0.05)),
            split_seed,
            int(run_cfg.get("val_max_instances", 256)),
        )
        if max_instances:
            ids = ids[:max_instances]
    else:
        ids = sample_instances(n, max_instances or n, split_seed)
    if len(ids) == 0:
        raise MixerError(
            f"{info.directory}: too few tokens ({info.total_tokens:,}) for one instance of {seq_len} + 1"
        )
    dev = pick_device(device)
    model = Transformer.from_config(model_cfg)
    model.load_state_dict(state["model"])
    model.to(dev)
    loss = mean_loss(model, TokenStream(info), seq_len, ids, batch_size, dev)
    return {
        "ckpt": state["_path"],
        "data": str(info.directory),
        "split": split,
        "instances": int(len(ids)),
        "tokens": int(len(ids) * seq_len),
        "val_loss": loss,
        "perplexity": math.exp(min(loss, 50)),
        "uniform_loss": uniform_loss(model_cfg["vocab_size"]),
    }
