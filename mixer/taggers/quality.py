"""fastText quality classifier: `quality__score`, the probability of the configured label.

Any supervised fastText model works: one trained by `mixer train-fasttext`, or a user's model
such as DCLM's (label "__label__hq"). Settings: model (path, required), label (default
"__label__hq"; "hq" means the same).
"""

from __future__ import annotations

import pyarrow as pa

from mixer import fasttext_model
from mixer.errors import MixerError
from mixer.taggers import text_stats as ts
from mixer.taggers.base import Tagger


class QualityTagger(Tagger):
    name = "quality"
    version = 1
    defaults = {"model": None, "label": "__label__hq"}
    file_settings = ("model",)

    def __init__(self, **settings):
        super().__init__(**settings)
        if not self.settings["model"]:
            raise MixerError(
                "quality.model is required: --set quality.model=PATH (train one with `mixer train-fasttext`)"
            )

    def setup(self) -> None:
        self._model = fasttext_model.load(self.settings["model"])
        # fail early, with the model's labels, when the label is wrong
        fasttext_model.label_probability(self._model, [], self.settings["label"])

    def tag(self, docs: pa.Table) -> pa.Table:
        if not hasattr(self, "_model"):
            self.setup()
        scores = fasttext_model.label_probability(
            self._model, ts.texts_of(docs), self.settings["label"]
        )
        return pa.table({"quality__score": pa.array(scores.astype("float64"), type=pa.float64())})
