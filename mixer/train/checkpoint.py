"""Checkpoint files: what they hold, where a run keeps them, and loading them safely.

A training checkpoint (RUN/checkpoints/step-NNNNNN.pt) holds the model, the optimizer, the RNG
states, the step and the data position: everything an exact resume needs. A model file
(RUN/model.pt, or a soup) holds the weights and the model config only. Both load with
`weights_only=True` (no arbitrary pickles), and `eval`/`soup` take either, or a run folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from mixer.errors import MixerError
from mixer.io import atomic_path

CHECKPOINT_DIR = "checkpoints"
MODEL_FILE = "model.pt"
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


def step_path(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"step-{step:06d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    d = run_dir / CHECKPOINT_DIR
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _STEP_FILE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def save(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def prune(run_dir: Path, keep: int) -> None:
    for _, p in list_checkpoints(run_dir)[:-keep]:
        p.unlink(missing_ok=True)


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (its model.pt, else its latest step checkpoint)."""
    p = Path(path)
    if p.is_dir():
        if (p / MODEL_FILE).is_file():
            return p / MODEL_FILE
        ckpts = list_checkpoints(p)
        if ckpts:
            return ckpts[-1][1]
        raise MixerError(f"{p}: no {MODEL_FILE} or checkpoints/step-*.pt in this folder")
    if not p.is_file():
        raise MixerError(f"{p}: checkpoint not found")
    return p


def load(path: str | Path, map_location="cpu") -> dict:
    p = resolve(path)
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise MixerError(f"{p}: not a readable mixer checkpoint ({type(e).__name__})") from None
    if not isinstance(obj, dict) or "model" not in obj or "model_config" not in obj:
        raise MixerError(f"{p}: not a mixer checkpoint (no 'model' / 'model_config')")
    obj["_path"] = str(p)
    return obj
