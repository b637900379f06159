"""Exact token counts under the run's tokenizer: `tokens__count`.

The count is len(encode(text)) without special tokens (the mixer adds one EOS per document
itself). Special-token strings inside a document ("<|endoftext|>") are encoded as plain text,
as the tokenize stage does, so the budget counts what will really be written.
"""

from __future__ import annotations

import pyarrow as pa

from mixer.errors import MixerError
from mixer.taggers import text_stats as ts
from mixer.taggers.base import Tagger


class TokensTagger(Tagger):
    name = "tokens"
    version = 1
    defaults = {"tokenizer": None}
    file_settings = ("tokenizer",)

    def __init__(self, **settings):
        super().__init__(**settings)
        if not self.settings["tokenizer"]:
            raise MixerError(
                "tokens.tokenizer is required: --set tokens.tokenizer=PATH/tokenizer.json"
            )

    def setup(self) -> None:
        from tokenizers import Tokenizer

        path = self.settings["tokenizer"]
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises plain Exceptions for missing/bad files
            raise MixerError(f"tokens.tokenizer: cannot load {path}: {e}") from None
        tok.encode_special_tokens = True
        tok.no_truncation()
        tok.no_padding()
        self._tok = tok

    def count(self, texts: list[str]) -> list[int]:
        if not hasattr(self, "_tok"):
            self.setup()
        encodings = self._tok.encode_batch_fast(texts, add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def tag(self, docs: pa.Table) -> pa.Table:
        counts = self.count(ts.texts_of(docs))
        return pa.table({"tokens__count": pa.array(counts, type=pa.int64())})
