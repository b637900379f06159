"""fastText classifiers: train, load, predict (numpy-2 safe) and the text normalisation they share.

Stable API (the quality, lang and domain taggers and `mixer train-fasttext` use it):

    train(texts, labels, out_path, **hyper) -> dict     write a supervised model atomically
    load(path) -> model                                 a fasttext model (MixerError if unreadable)
    predict(model, texts, k=-1) -> (labels, probs)      labels: list[list[str]], probs: list[np.ndarray]
    normalise_for_fasttext(text) -> str                 one line, whitespace collapsed

Training is deterministic: fastText's SGD is lock-free across threads, so only `thread=1`
gives the same model for the same data and seed; that is the default here.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from mixer.errors import MixerError
from mixer.io import atomic_path

# DCLM-like supervised settings (DCLM's fastText quality classifier: bigrams, 2M buckets).
DEFAULT_HYPER: dict = {
    "lr": 0.1,
    "dim": 100,
    "epoch": 5,
    "wordNgrams": 2,
    "minCount": 1,
    "minn": 0,
    "maxn": 0,
    "bucket": 2_000_000,
    "loss": "softmax",
    "thread": 1,  # >1 trains faster but is not reproducible (hogwild updates)
    "seed": 0,
}

LABEL_PREFIX = "__label__"
# A float model smaller than this is written as it is, even when quantisation is asked for.
QUANTIZE_MIN_BYTES = 8_000_000

# fastText splits words on these; any of them (and other control characters) would also break
# its one-line-per-example format, so they all become spaces.
_BREAKS = re.compile(r"[\s\x00-\x1f\x7f\u2028\u2029]+")
_SURROGATES = re.compile("[\ud800-\udfff]")
_LABEL_OK = re.compile(r"^[^\s]+$")


def normalise_for_fasttext(text: str | None, lower: bool = False) -> str:
    """One line of text for fastText: newlines, tabs and control characters become single spaces,
    the ends are stripped, and unencodable code points (lone surrogates) become U+FFFD."""
    if not text:
        return ""
    out = _BREAKS.sub(" ", text).strip()
    try:
        out.encode("utf-8")
    except UnicodeEncodeError:
        out = _SURROGATES.sub("\ufffd", out)
    return out.lower() if lower else out


def _label(name: str) -> str:
    name = str(name)
    if name.startswith(LABEL_PREFIX):
        name = name[len(LABEL_PREFIX) :]
    if not name or not _LABEL_OK.match(name):
        raise MixerError(f"invalid fastText label {name!r}: use a non-empty name without spaces")
    return LABEL_PREFIX + name


def _quiet_fasttext():
    import fasttext

    # fasttext prints a warning to stderr on every load_model; silence it.
    fasttext.FastText.eprint = lambda *a, **k: None
    return fasttext


def train(
    texts: Iterable[str],
    labels: Iterable[str | Sequence[str]],
    out_path: str | Path,
    **hyper,
) -> dict:
    """Train a supervised classifier on (text, label) pairs and write it to `out_path` atomically.

    `labels` are names like "hq" or "__label__hq" (or a list of names per text for multi-label
    data). `hyper` overrides DEFAULT_HYPER (any fastText train_supervised argument).
    Returns {"examples", "labels": {label: count}, "hyper"}.
    """
    return train_pairs(zip(texts, labels, strict=True), out_path, **hyper)


# Recipe-style names of fastText's training arguments.
_HYPER_ALIASES = {
    "word_ngrams": "wordNgrams",
    "min_count": "minCount",
    "min_count_label": "minCountLabel",
    "lr_update_rate": "lrUpdateRate",
}
_HYPER_KEYS = {
    "lr", "dim", "ws", "epoch", "minCount", "minCountLabel", "minn", "maxn", "neg", "wordNgrams",
    "loss", "bucket", "thread", "lrUpdateRate", "t", "label", "verbose", "pretrainedVectors", "seed",
}  # fmt: skip


def normalise_hyper(hyper: dict) -> dict:
    """fastText training arguments from either fastText's names or snake_case ones."""
    out = {}
    for key, value in hyper.items():
        name = _HYPER_ALIASES.get(key, key)
        if name not in _HYPER_KEYS:
            raise MixerError(
                f"unknown fastText setting {key!r} (known: {', '.join(sorted(_HYPER_KEYS))})"
            )
        out[name] = value
    return out


def train_pairs(
    pairs: Iterable[tuple[str, str | Sequence[str]]],
    out_path: str | Path,
    quantize: dict | None = None,
    **hyper,
) -> dict:
    """`train` over one iterable of (text, label) pairs (streams: nothing is held in memory).

    `quantize` (e.g. {"cutoff": 100_000}) compresses the trained model with fastText's product
    quantisation, keeping the `cutoff` rows of largest norm (0: all), as `fasttext quantize`
    does for .ftz files: a model of a few MB that loads and predicts like the full one."""
    fasttext = _quiet_fasttext()
    params = {**DEFAULT_HYPER, **normalise_hyper(hyper)}
    params.setdefault("verbose", 0)
    counts: dict[str, int] = {}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, train_file = tempfile.mkstemp(
        prefix=".tmp-fasttext-train.", suffix=".txt", dir=out_path.parent
    )
    try:
        n = 0
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for text, label in pairs:
                names = [label] if isinstance(label, str) else list(label)
                tags = [_label(x) for x in names]
                for t in tags:
                    counts[t] = counts.get(t, 0) + 1
                f.write(" ".join(tags) + " " + normalise_for_fasttext(text) + "\n")
                n += 1
        if n == 0:
            raise MixerError("no training examples: the selections matched no documents")
        if len(counts) < 2:
            raise MixerError(
                f"need at least two labels to train a classifier, got {sorted(counts)}"
            )
        model = fasttext.train_supervised(input=train_file, **params)
        rows = len(model.get_words()) + int(params.get("bucket", 0))
        # quantise only a model worth it (fastText also refuses one under 256 rows)
        quantized = quantize is not None and rows * int(params["dim"]) * 4 > QUANTIZE_MIN_BYTES
        if quantized:
            model.quantize(
                input=train_file, qnorm=True, retrain=False, cutoff=int(quantize.get("cutoff", 0))
            )
        with atomic_path(out_path) as tmp:
            model.save_model(str(tmp))
    finally:
        os.unlink(train_file)
    return {
        "examples": n,
        "labels": dict(sorted(counts.items())),
        "hyper": params,
        "quantized": quantized,
    }


def load(path: str | Path):
    """Load a fastText model (.bin or quantised .ftz)."""
    fasttext = _quiet_fasttext()
    p = Path(path)
    if not p.is_file():
        raise MixerError(f"fastText model not found: {p}")
    try:
        return fasttext.load_model(str(p))
    except ValueError as e:
        raise MixerError(f"cannot read fastText model {p}: {e}") from None


def predict(model, texts: Sequence[str], k: int = -1, threshold: float = 0.0):
    """Labels and probabilities for each text, best first (k=-1: every label).

    Calls the binding's per-line `predict` directly: fasttext-wheel 0.9.2's `model.predict`
    fails under numpy 2 ("Unable to avoid copy"), and its batch `multilinePredict` returns the
    top probability for every label of a line. Texts are normalised to one line first.
    Returns (labels: list[list[str]], probs: list[np.ndarray of float32]).
    """
    f = model.f
    all_labels: list[list[str]] = []
    all_probs: list[np.ndarray] = []
    for text in texts:
        pairs = f.predict(normalise_for_fasttext(text) + "\n", k, threshold, "replace")
        all_labels.append([lab for _, lab in pairs])
        all_probs.append(np.array([p for p, _ in pairs], dtype=np.float32))
    return all_labels, all_probs


def label_probability(model, texts: Sequence[str], label: str) -> np.ndarray:
    """Probability of `label` for each text (0 where the model never predicts it)."""
    target = _label(label)
    known = set(model.get_labels())
    if target not in known:
        raise MixerError(
            f"label {target!r} is not one of the model's labels: {', '.join(sorted(known))}"
        )
    labels, probs = predict(model, texts, k=-1)
    out = np.zeros(len(texts), dtype=np.float32)
    for i, (ls, ps) in enumerate(zip(labels, probs, strict=True)):
        for lab, p in zip(ls, ps, strict=True):
            if lab == target:
                out[i] = p
                break
    return out
