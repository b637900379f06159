"""Exact token counts under the run's tokenizer: `tokens__count`.

The count is len(encode(text)) without special tokens (the mixer adds one EOS per document
itself). Special-token strings inside a document ("<|endoftext|>") are encoded as plain text,
as the tokenize stage does, so the budget counts what will really be written.

The tagger uses the tokenize stage's engine (mixer/tokenization/engine.py): for byte-level BPE
tokenizers a tiktoken Encoding built from the tokenizer.json, several times faster than HF
`tokenizers` with the same ids, checked against HF `tokenizers` on 1 document in
`check_every` (a difference stops the run naming the document). `engine: hf` forces the
reference.
"""

from __future__ import annotations

import pyarrow as pa

from mixer.errors import MixerError
from mixer.taggers import text_stats as ts
from mixer.taggers.base import Tagger


class TokensTagger(Tagger):
    name = "tokens"
    version = 1
    defaults = {"tokenizer": None, "engine": "auto", "check_every": 100}
    file_settings = ("tokenizer",)

    def __init__(self, **settings):
        super().__init__(**settings)
        if not self.settings["tokenizer"]:
            raise MixerError(
                "tokens.tokenizer is required: --set tokens.tokenizer=PATH/tokenizer.json"
            )
        from mixer.tokenization.engine import ENGINES

        if self.settings["engine"] not in ENGINES:
            raise MixerError(
                f"tokens.engine: {self.settings['engine']!r} (use {', '.join(ENGINES)})"
            )
        every = self.settings["check_every"]
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise MixerError(f"tokens.check_every: an integer >= 0, got {every!r}")

    def fingerprint(self) -> dict:
        # The engine changes the speed, never the counts (checked): not part of the cache key.
        fp = super().fingerprint()
        fp["settings"] = {k: v for k, v in fp["settings"].items() if k == "tokenizer"}
        return fp

    def setup(self) -> None:
        from pathlib import Path

        from mixer.tokenization.engine import load_engine

        path = self.settings["tokenizer"]
        if not Path(path).is_file():
            raise MixerError(f"tokens.tokenizer: cannot load {path}: file not found")
        try:
            self._engine = load_engine(path, self.settings["engine"])
        except MixerError as e:
            raise MixerError(f"tokens.tokenizer: cannot load {path}: {e}") from None
        self._seen = 0  # documents counted by this process (the check sample's clock)

    def count(self, texts: list[str], ids: list[str] | None = None) -> list[int]:
        from mixer.tokenization.engine import check_sample

        if not hasattr(self, "_engine"):
            self.setup()
        encoded = self._engine.encode(texts)
        every = self.settings["check_every"]
        if every and self._engine.name != "hf":
            start = self._seen
            sample = [i for i in range(len(texts)) if (start + i) % every == 0]
            check_sample(
                self._engine.name,
                self.settings["tokenizer"],
                [texts[i] for i in sample],
                [encoded[i] for i in sample],
                [ids[i] if ids else f"#{start + i}" for i in sample],
            )
        self._seen += len(texts)
        return [len(e) for e in encoded]

    def tag(self, docs: pa.Table) -> pa.Table:
        ids = docs.column("id").to_pylist() if "id" in docs.column_names else None
        counts = self.count(ts.texts_of(docs), ids)
        return pa.table({"tokens__count": pa.array(counts, type=pa.int64())})
