"""The `domain` tagger: which kind of data a document is (web, math, code, reference, ...).

Modes:
  rules     the rule signals of domain_signals.py, weighed into one evidence score per label;
            the label with the most evidence wins. Reference text (manuals, API docs,
            dictionaries), QA items and math each need their own evidence; plain prose with
            none of it is `web`.
  model     a fastText domain classifier (setting `model`), trained with `mixer train-fasttext`
            (e.g. `--label-column source`: the labels are the sources themselves)
  combined  when the model's labels are among the tagger's labels: the average of the rules'
            label distribution and the model's probabilities. When the model has labels of
            its own (e.g. source names): the model's label where its probability is at least
            `min_model_score`, the rules' label otherwise (domain__rule_label says which).

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
    "reference",
    "other",
]
MODES = ("rules", "model", "combined")
# combined mode: the model's share of the average (the rules' share is the rest)
MODEL_WEIGHT = 0.6
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
    # prose addressed to a reader (you/we/I) around code listings: a tutorial page, not code
    code = code * (1.0 - np.minimum(10.0 * s["narrative_density"], 0.5))
    math = 6.0 * s["latex_density"] + 1.5 * s["math_symbol_density"] + 8.0 * s["math_word_density"]
    # mathematical vocabulary and notation per 100 words: evidence of math text in prose form
    # (manuals, API docs of math functions) even when most of it is words
    math = math + 1.2 * _saturate(100.0 * s["math_word_density"], 1.0)
    math = math + 1.0 * _saturate(100.0 * s["latex_density"], 1.0)
    math = math - 0.8 * s["code_density"]  # code has '=' and '+' too
    academic = 1.6 * _saturate(s["citation_markers"] / per_100w, 1.0)
    qa = 1.6 * _saturate(s["qa_markers"] / per_100w, 1.5)
    instruction = 1.6 * _saturate(s["instruction_markers"] / per_100w, 1.0)
    # imperative line starts are also how manuals describe options: halve them there
    instruction = instruction * np.where(s["reference_markers"] > 0, 0.5, 1.0)
    encyclopedic = 1.2 * _saturate(s["encyclopedic_markers"] / per_100w, 1.0)
    # a question-and-answer item opens with its question
    qa = (
        qa + 1.0 * s["first_line_question"] + 0.3 * _saturate(s["question_markers"] / per_100w, 1.0)
    )
    reference = 1.4 * _saturate(s["reference_markers"] / per_100w, 0.8)
    web = WEB_BASELINE + 2.0 * np.minimum(s["narrative_density"], 0.2)
    other = np.where(words == 0, 10.0, 0.0)  # nothing to judge: an empty document
    return {
        "web": web,
        "math": np.maximum(math, 0.0),
        "code": code,
        "academic": academic,
        "qa_forum": qa,
        "instruction": instruction,
        "encyclopedic": encyclopedic,
        "reference": reference,
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
    defaults: ClassVar[dict[str, Any]] = {
        "model": None,
        "labels": DEFAULT_LABELS,
        "mode": None,
        "min_model_score": 0.5,
    }
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

    def _model_labels(self) -> list[str]:
        if self.model is None:
            self.setup()
        from mixer import fasttext_model

        return [x.removeprefix(fasttext_model.LABEL_PREFIX) for x in self.model.get_labels()]

    def _own_label_probs(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        """The model's labels and its probabilities of them (docs x labels)."""
        from mixer import fasttext_model

        labels = self._model_labels()
        index = {lab: i for i, lab in enumerate(labels)}
        out = np.zeros((len(texts), len(labels)))
        names, probs = fasttext_model.predict(self.model, texts, k=-1)
        for i, (ls, ps) in enumerate(zip(names, probs, strict=True)):
            for lab, p in zip(ls, ps, strict=True):
                out[i, index[lab.removeprefix(fasttext_model.LABEL_PREFIX)]] = p
        return labels, out

    def tag(self, docs: pa.Table) -> pa.Table:
        texts = docs.column("text")
        signals = batch_signals(texts)
        n = docs.num_rows
        labels = np.array(self.labels, dtype=object)
        extra: dict[str, pa.Array] = {}
        if self.mode == "rules":
            dist = _distribution(rule_evidence(signals), self.labels, n)
        elif set(self._model_labels()) <= set(self.labels):
            plain = [t or "" for t in texts.to_pylist()]
            dist = self._model_distribution(plain)
            if self.mode == "combined":
                w = MODEL_WEIGHT
                dist = w * dist + (1 - w) * _distribution(rule_evidence(signals), self.labels, n)
        else:
            # a model with labels of its own (e.g. sources): its label, or the rules' where the
            # model is unsure (combined)
            plain = [t or "" for t in texts.to_pylist()]
            model_labels, probs = self._own_label_probs(plain)
            dist = probs
            labels = np.array(model_labels, dtype=object)
            if self.mode == "combined":
                rules = _distribution(rule_evidence(signals), self.labels, n)
                rule_best = rules.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
                model_best = probs.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
                model_score = probs[np.arange(n), model_best] if n else np.zeros(0)
                use_model = model_score >= float(self.settings["min_model_score"])
                rule_label = np.array(self.labels, dtype=object)[rule_best]
                final = np.where(use_model, labels[model_best] if n else [], rule_label)
                score = np.where(use_model, model_score, rules[np.arange(n), rule_best])
                extra["domain__rule_label"] = pa.array(rule_label.tolist(), pa.string())
                return self._table(final.tolist(), score, signals, extra)
        best = dist.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
        return self._table(
            labels[best].tolist(), dist[np.arange(n), best] if n else np.zeros(0), signals, extra
        )

    def _table(self, label: list, score, signals: dict, extra: dict) -> pa.Table:
        columns: dict[str, pa.Array] = {
            "domain__label": pa.array(label, pa.string()),
            "domain__score": pa.array(np.asarray(score, dtype=np.float64), pa.float64()),
            **extra,
        }
        for key, values in signals.items():
            arrow_type = pa.string() if key == "code_lang" else None
            columns[f"domain__{key}"] = pa.array(
                values.tolist() if arrow_type else values, arrow_type
            )
        return pa.table(columns)
