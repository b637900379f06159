"""Model soups: the parameter average of checkpoints of one architecture.

OLMo 2's final checkpoints average several mid-training (annealing) runs that saw the same mix
in different orders (3 x 50B tokens for the 7B model). Averaging only makes sense for models of
the same shape that started from a shared checkpoint, so mismatched keys, shapes or model
configs are refused, naming the first difference.

(This module is soups.py, not soup.py: a submodule named `soup` would replace the function
mixer.train.soup as an attribute of the package once imported.)
"""

from __future__ import annotations

from pathlib import Path

import torch

from mixer.errors import MixerError
from mixer.train import checkpoint as ckpt_io
from mixer.train.config import MODEL_KEYS

SOUP_FORMAT = "mixer-model/1"


def average_state_dicts(states: list[dict], names: list[str]) -> dict:
    """Elementwise mean of state dicts (accumulated in float64, returned in each tensor's dtype)."""
    first, first_name = states[0], names[0]
    for state, name in zip(states[1:], names[1:], strict=True):
        missing = sorted(set(first) - set(state))
        extra = sorted(set(state) - set(first))
        if missing or extra:
            key = (missing or extra)[0]
            where = first_name if extra else name
            raise MixerError(
                f"{name}: parameter {key!r} is not in {where} (soups need identical architectures)"
            )
        for key, tensor in first.items():
            if state[key].shape != tensor.shape:
                raise MixerError(
                    f"{name}: parameter {key!r} has shape {tuple(state[key].shape)}, "
                    f"{first_name} has {tuple(tensor.shape)}"
                )
    out = {}
    for key, tensor in first.items():
        if not tensor.is_floating_point():
            out[key] = tensor.clone()
            continue
        acc = torch.zeros(tensor.shape, dtype=torch.float64)
        for state in states:
            acc += state[key].to(torch.float64)
        out[key] = (acc / len(states)).to(tensor.dtype)
    return out


def soup(ckpts: list[str | Path], out: str | Path) -> dict:
    """Average the weights of `ckpts` (files or run folders) into the model file `out`."""
    if len(ckpts) < 2:
        raise MixerError("soup: give at least two checkpoints to average")
    loaded = [ckpt_io.load(c) for c in ckpts]
    names = [s["_path"] for s in loaded]
    base_cfg = loaded[0]["model_config"]
    for state, name in zip(loaded[1:], names[1:], strict=True):
        for key in MODEL_KEYS:
            if state["model_config"].get(key) != base_cfg.get(key):
                raise MixerError(
                    f"{name}: model key {key!r} is {state['model_config'].get(key)!r}, "
                    f"{names[0]} has {base_cfg.get(key)!r}"
                )
    averaged = average_state_dicts([s["model"] for s in loaded], names)
    datas = [s.get("data") for s in loaded]
    out_path = Path(out)
    if out_path.is_dir():
        out_path = out_path / ckpt_io.MODEL_FILE
    ckpt_io.save(
        {
            "format": SOUP_FORMAT,
            "model": averaged,
            "model_config": base_cfg,
            "config": loaded[0].get("config"),
            "data": datas[0] if all(d == datas[0] for d in datas) else None,
            "val_data": loaded[0].get("val_data") if all(d == datas[0] for d in datas) else None,
            "soup_of": names,
            "step": max(int(s.get("step", 0)) for s in loaded),
        },
        out_path,
    )
    return {
        "out": str(out_path),
        "ingredients": names,
        "params": sum(t.numel() for t in averaged.values()),
    }
