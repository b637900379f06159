"""Language identification: `lang__label` (ISO 639-1 code, e.g. "en") and `lang__score`.

With `model` set (e.g. fastText's lid.176.bin or lid.176.ftz) the fastText model decides
("__label__en" -> "en"). Without a model the default is py3langid: langid.py's naive Bayes
model over byte n-grams (97 languages), shipped inside the wheel, so it works offline. Texts
are cut to their first `max_chars` characters (language is clear long before that; it bounds
the cost of huge documents). A text with no letters gets label "und" and score 0.
"""

from __future__ import annotations

import re

import pyarrow as pa

from mixer.errors import MixerError
from mixer.taggers import text_stats as ts
from mixer.taggers.base import Tagger

_LETTER = re.compile(r"[^\W\d_]")
UNDETERMINED = "und"


class LangTagger(Tagger):
    name = "lang"
    version = 1
    defaults = {"model": None, "max_chars": 10_000}
    file_settings = ("model",)

    def setup(self) -> None:
        if self.settings["model"]:
            from mixer import fasttext_model

            self._ft = fasttext_model.load(self.settings["model"])
            self._langid = None
        else:
            try:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier
            except ImportError:
                raise MixerError(
                    "lang: no model given and py3langid is not installed (pip install py3langid, "
                    "or --set lang.model=lid.176.bin)"
                ) from None
            self._ft = None
            self._langid = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def identify(self, texts: list[str]) -> tuple[list[str], list[float]]:
        if not hasattr(self, "_ft"):
            self.setup()
        cut = int(self.settings["max_chars"] or 0)
        texts = [t[:cut] if cut > 0 else t for t in texts]
        labels = [UNDETERMINED] * len(texts)
        scores = [0.0] * len(texts)
        todo = [i for i, t in enumerate(texts) if _LETTER.search(t)]
        if self._ft is not None:
            from mixer import fasttext_model

            got_labels, got_probs = fasttext_model.predict(self._ft, [texts[i] for i in todo], k=1)
            for i, ls, ps in zip(todo, got_labels, got_probs, strict=True):
                if ls:
                    labels[i] = ls[0].removeprefix(fasttext_model.LABEL_PREFIX)
                    scores[i] = float(ps[0])
        else:
            for i in todo:
                label, score = self._langid.classify(texts[i])
                labels[i], scores[i] = label, float(score)
        return labels, scores

    def tag(self, docs: pa.Table) -> pa.Table:
        labels, scores = self.identify(ts.texts_of(docs))
        return pa.table(
            {
                "lang__label": pa.array(labels, type=pa.string()),
                "lang__score": pa.array(scores, type=pa.float64()),
            }
        )
