"""The bundled minimal trainer (needs the `train` extra: torch).

`train`, `evaluate` and `soup` import torch only when called, so `import mixer.train` (and the
rest of mixer) works without it. Config handling and the token-array reader need only numpy.
"""

from __future__ import annotations

from pathlib import Path

from mixer.errors import MixerError


def require_torch():
    try:
        import torch
    except ImportError:
        raise MixerError(
            "the trainer needs torch: pip install 'mixer[train]' (a CPU build: torch==2.13.0)"
        ) from None
    return torch


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    config: dict | None = None,
    progress: bool = True,
    **kwargs,
) -> dict:
    """Train on a tokens folder into RUN folder `out_dir`; returns the summary (see loop.train)."""
    torch = require_torch()
    from mixer.train.loop import train as _train

    threads = torch.get_num_threads()  # the run may set its own; give the caller theirs back
    try:
        return _train(data_dir, out_dir, config=config, progress=progress, **kwargs)
    finally:
        torch.set_num_threads(threads)


def evaluate(ckpt: str | Path, data_dir: str | Path, **kwargs) -> dict:
    """Validation loss and perplexity of a checkpoint on a tokens folder (see loop.evaluate)."""
    require_torch()
    from mixer.train.loop import evaluate as _evaluate

    return _evaluate(ckpt, data_dir, **kwargs)


def soup(ckpts: list, out: str | Path) -> dict:
    """Average checkpoints' parameters into one model file (see soups.soup)."""
    require_torch()
    from mixer.train.soups import soup as _soup

    return _soup(ckpts, out)


__all__ = ["train", "evaluate", "soup", "require_torch"]
