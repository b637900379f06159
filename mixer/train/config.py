"""Training configuration: one flat dataclass, presets, and validation of user-given keys.

No torch here, so `mixer` can validate a recipe's `train:` section without the `train` extra.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from mixer.errors import MixerError

SCHEDULES = ("cosine", "linear", "anneal", "constant")
DEVICES = ("auto", "cpu", "cuda")

# Keys that decide the shape of the network: a checkpoint is only loadable (or soupable) into a
# model with the same values.
MODEL_KEYS = (
    "vocab_size",
    "d_model",
    "n_layers",
    "n_heads",
    "mlp_hidden",
    "seq_len",
    "tie_embeddings",
    "rope_theta",
    "norm_eps",
    "moe_experts",  # only in a mixture-of-experts model's dict (dense checkpoints lack them)
    "moe_top_k",
    "moe_hidden",
)
MOE_KEYS = ("moe_experts", "moe_top_k", "moe_hidden")
MAX_SEED = 2**63 - 1  # torch and numpy both take it


@dataclass
class TrainConfig:
    # --- model (OLMo 2 style decoder) ---
    vocab_size: int = 0  # 0: take tokens.json's vocab_size
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    mlp_hidden: int = 0  # 0: 8/3 * d_model rounded up to a multiple of 64 (SwiGLU)
    seq_len: int = 128
    tie_embeddings: bool = False  # OLMo 2 unties input and output embeddings
    rope_theta: float = 500_000.0  # OLMo 2's RoPE base
    norm_eps: float = 1e-6
    init_std: float = 0.02
    z_loss: float = 1e-5  # weight of the z-loss (log Z)^2 term, as in OLMo 2
    # --- mixture of experts (OLMoE); `moe: {experts: 8, top_k: 2, ...}` sets these ---
    moe_experts: int = 0  # 0: a dense SwiGLU MLP in every block
    moe_top_k: int = 2  # experts per token (dropless: no capacity limit, no token dropped)
    moe_hidden: int = 0  # expert hidden size; 0: the dense hidden / top_k (equal active params)
    moe_lb_loss: float = 0.01  # weight of the load-balancing loss (OLMoE: 0.01)
    moe_z_loss: float = 0.001  # weight of the router z-loss (OLMoE: 0.001)
    # --- optimisation ---
    steps: int = 100
    batch_size: int = 16  # instances per optimizer step
    grad_accum: int = 1  # micro-batches per step (batch_size must divide evenly)
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine/linear decay floor, as a fraction of lr
    warmup_steps: int = 10
    schedule: str = "cosine"  # cosine | linear | anneal (linear to zero) | constant
    weight_decay: float = 0.1  # on matrices only (not norms, not embeddings)
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    # --- data ---
    seed: int = 0  # data order and initialisation
    split_seed: int = 0  # which instances are held out (shared by runs with other seeds)
    val_fraction: float = 0.05
    val_max_instances: int = 256
    # --- bookkeeping ---
    eval_interval: int = 25
    log_interval: int = 10
    checkpoint_interval: int = 50
    keep_checkpoints: int = 2
    init_from: str = ""  # a checkpoint whose weights start this run (mid-training / anneal)
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 1  # CPU threads for torch: fixed, so CPU runs give the same bits on any machine; 0: torch default
    compile: bool = False  # torch.compile the model (CUDA)
    peak_flops: float = 0.0  # for MFU; 0: known GPUs only

    @property
    def ffn_hidden(self) -> int:
        if self.mlp_hidden:
            return self.mlp_hidden
        return int(math.ceil(self.d_model * 8 / 3 / 64) * 64)

    @property
    def expert_hidden(self) -> int:
        if self.moe_hidden:
            return self.moe_hidden
        return max(1, self.ffn_hidden // max(self.moe_top_k, 1))

    def model_dict(self) -> dict:
        out = {k: getattr(self, k) for k in MODEL_KEYS if k not in MOE_KEYS}
        out["mlp_hidden"] = self.ffn_hidden
        if self.moe_experts:
            out |= {
                "moe_experts": self.moe_experts,
                "moe_top_k": self.moe_top_k,
                "moe_hidden": self.expert_hidden,
            }
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Named sizes (the number is the non-embedding parameters). "demo" is the default: a few million parameters that learn visibly on 2 CPU
# cores in well under two minutes. The larger ones are for a GPU.
_GPU_RUN = {"steps": 2000, "eval_interval": 250, "checkpoint_interval": 500, "log_interval": 20}
PRESETS: dict[str, dict] = {
    "demo": {},
    "tiny": {"d_model": 64, "n_layers": 2, "n_heads": 4, "seq_len": 64, "batch_size": 8},
    "20m": _GPU_RUN
    | {
        "d_model": 512,
        "n_layers": 6,
        "n_heads": 8,
        "seq_len": 512,
        "batch_size": 32,
        "lr": 1e-3,
    },
    "100m": _GPU_RUN
    | {
        "d_model": 768,
        "n_layers": 12,
        "n_heads": 12,
        "seq_len": 1024,
        "batch_size": 32,
        "lr": 6e-4,
        "warmup_steps": 200,
    },
    "150m": _GPU_RUN
    | {
        "d_model": 896,
        "n_layers": 14,
        "n_heads": 14,
        "seq_len": 1024,
        "batch_size": 32,
        "lr": 6e-4,
        "warmup_steps": 200,
    },
}

_FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}


def _coerce(key: str, value, where: str):
    kind = _FIELD_TYPES[key]
    try:
        if kind == "bool":
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("true", "yes", "1", "on"):
                    return True
                if low in ("false", "no", "0", "off"):
                    return False
                raise ValueError(value)
            if isinstance(value, (bool, int)):
                return bool(value)
            raise ValueError(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)  # also "3e-3", which YAML 1.1 reads as a string
        if value is None:
            return ""
        return str(value)
    except (TypeError, ValueError, OverflowError):
        raise MixerError(f"{where}: train key {key!r} wants {kind}, got {value!r}") from None


def make_config(overrides: dict | None = None, where: str = "train config") -> TrainConfig:
    """A validated TrainConfig from a preset (key `preset`) plus overrides; names bad keys."""
    values = dict(overrides or {})
    preset = values.pop("preset", "demo") or "demo"
    for key in [k for k in values if isinstance(k, str) and k.startswith("moe.")]:
        moe = values.get("moe")  # --set moe.experts=8 joins the moe mapping
        values["moe"] = {**(moe if isinstance(moe, dict) else {}), key[4:]: values.pop(key)}
    if "moe" in values:  # moe: {experts: 8, top_k: 2, hidden: 0, lb_loss: 0.01, z_loss: 0.001}
        moe = values.pop("moe")
        if moe in (None, False, 0):
            moe = {"experts": 0}
        if not isinstance(moe, dict):
            raise MixerError(
                f"{where}: train key 'moe' wants a mapping such as {{experts: 8, top_k: 2}}, got {moe!r}"
            )
        for key, value in moe.items():
            if f"moe_{key}" not in _FIELD_TYPES:
                raise MixerError(
                    f"{where}: unknown key 'moe.{key}' (known: experts, top_k, hidden, lb_loss, z_loss)"
                )
            values[f"moe_{key}"] = value
    if preset not in PRESETS:
        raise MixerError(f"{where}: unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    merged = dict(PRESETS[preset])
    for key, value in values.items():
        if key not in _FIELD_TYPES:
            known = ", ".join(sorted(_FIELD_TYPES))
            raise MixerError(f"{where}: unknown train key {key!r} (known: preset, {known})")
        merged[key] = value
    cfg = TrainConfig(**{k: _coerce(k, v, where) for k, v in merged.items()})
    validate(cfg, where)
    return cfg


def validate(cfg: TrainConfig, where: str = "train config") -> None:
    def bad(msg):
        raise MixerError(f"{where}: {msg}")

    for f in fields(cfg):  # nan and inf are never a setting: name the key before any work
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            bad(f"{f.name} must be a finite number (got {value})")
    for key, lo, hi in (  # (key, lowest allowed, highest allowed) for the plain ranges
        ("beta1", 0.0, 0.999999),
        ("beta2", 0.0, 0.999999),
        ("weight_decay", 0.0, None),
        ("grad_clip", 0.0, None),
        ("z_loss", 0.0, None),
        ("peak_flops", 0.0, None),
        ("moe_lb_loss", 0.0, None),
        ("moe_z_loss", 0.0, None),
        ("seed", 0, MAX_SEED),
        ("split_seed", 0, MAX_SEED),
        ("warmup_steps", 0, None),
        ("moe_experts", 0, None),
        ("moe_hidden", 0, None),
    ):
        value = getattr(cfg, key)
        if value < lo or (hi is not None and value > hi):
            span = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
            bad(f"{key} must be {span} (got {value})")
    for key in ("init_std", "adam_eps", "rope_theta", "norm_eps"):
        if getattr(cfg, key) <= 0:
            bad(f"{key} must be > 0 (got {getattr(cfg, key)})")
    if cfg.moe_experts:
        if not 1 <= cfg.moe_top_k <= cfg.moe_experts:
            bad(f"moe_top_k must be in [1, moe_experts={cfg.moe_experts}] (got {cfg.moe_top_k})")

    for key in ("d_model", "n_layers", "n_heads", "seq_len", "steps", "batch_size", "grad_accum"):
        if getattr(cfg, key) < 1:
            bad(f"{key} must be >= 1 (got {getattr(cfg, key)})")
    if cfg.d_model % cfg.n_heads:
        bad(f"d_model ({cfg.d_model}) must be divisible by n_heads ({cfg.n_heads})")
    if (cfg.d_model // cfg.n_heads) % 2:
        bad(f"head size d_model/n_heads ({cfg.d_model // cfg.n_heads}) must be even for RoPE")
    if cfg.batch_size % cfg.grad_accum:
        bad(f"batch_size ({cfg.batch_size}) must be divisible by grad_accum ({cfg.grad_accum})")
    if cfg.schedule not in SCHEDULES:
        bad(f"schedule {cfg.schedule!r} is not one of {', '.join(SCHEDULES)}")
    if cfg.device not in DEVICES:
        bad(f"device {cfg.device!r} is not one of {', '.join(DEVICES)}")
    if not 0.0 <= cfg.val_fraction < 1.0:
        bad(f"val_fraction must be in [0, 1) (got {cfg.val_fraction})")
    if cfg.lr <= 0:
        bad(f"lr must be > 0 (got {cfg.lr})")
    if not 0.0 <= cfg.min_lr_ratio <= 1.0:
        bad(f"min_lr_ratio must be in [0, 1] (got {cfg.min_lr_ratio})")
    if cfg.warmup_steps < 0 or cfg.warmup_steps > cfg.steps:
        bad(f"warmup_steps must be in [0, steps] (got {cfg.warmup_steps})")
    for key in ("eval_interval", "log_interval", "checkpoint_interval", "keep_checkpoints"):
        if getattr(cfg, key) < 1:
            bad(f"{key} must be >= 1 (got {getattr(cfg, key)})")
    if cfg.threads < 0:
        bad(f"threads must be >= 0 (got {cfg.threads})")
    if cfg.vocab_size < 0:
        bad(f"vocab_size must be >= 0 (got {cfg.vocab_size})")


def load_config_file(path: str | Path) -> dict:
    """Read a train YAML: either flat keys or a recipe-like {train: {config: {...}}}."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise MixerError(f"{p}: train config file not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise MixerError(f"{p}{line}: not valid YAML") from None
    if data is None:
        return {}
    if isinstance(data, dict) and isinstance(data.get("train"), dict):
        data = data["train"]
        data = data.get("config", data) if isinstance(data.get("config"), dict) else data
    if not isinstance(data, dict):
        raise MixerError(f"{p}: a train config must be a mapping of key: value")
    return data


def parse_sets(items: tuple[str, ...] | list[str]) -> dict:
    """--set key=value pairs -> dict (values read as YAML scalars)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise MixerError(f"--set {item!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out
