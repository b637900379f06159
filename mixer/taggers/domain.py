"""The `domain` tagger: which kind of data a document is (web, math, code, academic, ...).

Modes:
  rules     the rule signals of domain_signals.py, weighed into one evidence score per label;
            the label with the most evidence wins, `web` when nothing stands out
  model     a fastText domain classifier (setting `model`), trained with `mixer train-fasttext`
  combined  the average of the rules' label distribution and the model's probabilities

Columns: domain__label, domain__score (the winner's share of the evidence, or probability),
and every rule signal as domain__<signal> (see domain_signals.py). Labels outside the
configured `labels` are mapped to `other` (when `other` is a label) or dropped from the vote.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from mixer.errors import MixerError
from mixer.taggers.base import Tagger
from mixer.taggers.domain_signals import batch_signals

DEFAULT_LABELS = [
    "web",
    "math",
    "code",
    "academic",
    "qa_forum",
    "instruction",
    "encyclopedic",
    "other",
]
MODES = ("rules", "model", "combined")
# Evidence of plain web prose: a label needs more than this to win.
WEB_BASELINE = 0.5


def _saturate(x: np.ndarray, half: float) -> np.ndarray:
    """0 at 0, 0.5 at `half`, approaching 1: counts of markers stop mattering after a few."""
    return x / (x + half)


def rule_evidence(s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Evidence for each label from the signals (higher = more likely), one value per doc."""
    words = s["words"].astype(np.float64)
    # Marker rates per 100 words, counting short documents as 100 words: one marker in a
    # one-line text is not strong evidence.
    per_100w = np.maximum(words, 100.0) / 100.0
    code = (
        2.0 * s["code_density"]
        + 8.0 * s["code_punct_density"]
        + 1.5 * np.minimum(s["code_keyword_density"], 0.5)
    )
    code = code * np.where(s["code_lang"] != "", 1.3, 1.0)
    math = 6.0 * s["latex_density"] + 1.5 * s["math_symbol_density"] + 8.0 * s["math_word_density"]
    math = math - 0.8 * s["code_density"]  # code has '=' and '+' too
    academic = 1.6 * _saturate(s["citation_markers"] / per_100w, 1.0)
    qa = 1.6 * _saturate(s["qa_markers"] / per_100w, 1.5)
    instruction = 1.6 * _saturate(s["instruction_markers"] / per_100w, 1.0)
    encyclopedic = 1.2 * _saturate(s["encyclopedic_markers"] / per_100w, 1.0)
    web = np.full(len(words), WEB_BASELINE)
    other = np.where(words == 0, 10.0, 0.0)  # nothing to judge: an empty document
    return {
        "web": web,
        "math": np.maximum(math, 0.0),
        "code": code,
        "academic": academic,
        "qa_forum": qa,
        "instruction": instruction,
        "encyclopedic": encyclopedic,
        "other": other,
    }


def _distribution(evidence: dict[str, np.ndarray], labels: list[str], n: int) -> np.ndarray:
    """Evidence of the configured labels as rows that sum to 1 (docs x labels)."""
    fallback = "other" if "other" in labels else ("web" if "web" in labels else labels[0])
    cols = np.zeros((n, len(labels)))
    for name, values in evidence.items():
        target = name if name in labels else fallback
        cols[:, labels.index(target)] += values
    # A soft-max keeps strong evidence decisive while small differences stay uncertain.
    scaled = np.exp(4.0 * (cols - cols.max(axis=1, keepdims=True)))
    return scaled / scaled.sum(axis=1, keepdims=True)


class DomainTagger(Tagger):
    name: ClassVar[str] = "domain"
    version = 1
    defaults: ClassVar[dict[str, Any]] = {"model": None, "labels": DEFAULT_LABELS, "mode": None}
    file_settings: ClassVar[tuple[str, ...]] = ("model",)

    def __init__(self, **settings: Any):
        super().__init__(**settings)
        labels = self.settings["labels"]
        if isinstance(labels, str):
            labels = [x.strip() for x in labels.split(",") if x.strip()]
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(x, str) for x in labels)
        ):
            raise MixerError(f"domain.labels must be a non-empty list of names (got {labels!r})")
        if len(set(labels)) != len(labels):
            raise MixerError(f"domain.labels has a duplicate name: {labels}")
        self.labels = list(labels)
        self.settings["labels"] = self.labels
        mode = self.settings["mode"] or ("combined" if self.settings["model"] else "rules")
        if mode not in MODES:
            raise MixerError(f"domain.mode must be one of {', '.join(MODES)} (got {mode!r})")
        if mode != "rules" and not self.settings["model"]:
            raise MixerError(
                f"domain.mode={mode} needs domain.model (a fastText domain classifier)"
            )
        self.mode = mode
        self.settings["mode"] = mode
        self.model = None

    def setup(self) -> None:
        if self.mode != "rules" and self.model is None:
            from mixer import fasttext_model

            self.model = fasttext_model.load(self.settings["model"])

    def _model_distribution(self, texts: list[str]) -> np.ndarray:
        from mixer import fasttext_model

        if self.model is None:
            self.setup()
        fallback = "other" if "other" in self.labels else None
        out = np.zeros((len(texts), len(self.labels)))
        names, probs = fasttext_model.predict(self.model, texts, k=-1)
        for i, (ls, ps) in enumerate(zip(names, probs, strict=True)):
            for lab, p in zip(ls, ps, strict=True):
                lab = lab.removeprefix(fasttext_model.LABEL_PREFIX)
                target = lab if lab in self.labels else fallback
                if target is not None:
                    out[i, self.labels.index(target)] += p
        total = out.sum(axis=1, keepdims=True)
        return np.divide(out, total, out=np.full_like(out, 1.0 / len(self.labels)), where=total > 0)

    def tag(self, docs: pa.Table) -> pa.Table:
        texts = docs.column("text")
        signals = batch_signals(texts)
        n = docs.num_rows
        if self.mode == "rules":
            dist = _distribution(rule_evidence(signals), self.labels, n)
        else:
            plain = [t or "" for t in texts.to_pylist()]
            dist = self._model_distribution(plain)
            if self.mode == "combined":
                dist = 0.5 * dist + 0.5 * _distribution(rule_evidence(signals), self.labels, n)
        best = dist.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
        columns: dict[str, pa.Array] = {
            "domain__label": pa.array(
                np.array(self.labels, dtype=object)[best].tolist(), pa.string()
            ),
            "domain__score": pa.array(dist[np.arange(n), best] if n else [], pa.float64()),
        }
        for key, values in signals.items():
            arrow_type = pa.string() if key == "code_lang" else None
            columns[f"domain__{key}"] = pa.array(
                values.tolist() if arrow_type else values, arrow_type
            )
        return pa.table(columns)
