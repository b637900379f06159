"""Language identification: `lang__label` (ISO 639-1 code, e.g. "en") and `lang__score`.

With `model` set (e.g. fastText's lid.176.bin or lid.176.ftz) the fastText model decides
("__label__en" -> "en"). Without a model the default is py3langid: langid.py's naive Bayes
model over byte n-grams (97 languages), shipped inside the wheel, so it works offline. Texts
are cut to their first `max_chars` characters (language is clear long before that; it bounds
the cost of huge documents). A text with no letters gets label "und" and score 0.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pyarrow as pa

from mixer.errors import MixerError
from mixer.taggers import text_stats as ts
from mixer.taggers.base import Tagger

_LETTER = re.compile(r"[^\W\d_]")
UNDETERMINED = "und"
# Below this many texts still running, a vectorised step moves too few bytes to pay for itself.
LOCKSTEP_MIN_TEXTS = 24


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
            self._batch = BatchLangid(self._langid)

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
        elif todo:
            got_labels, got_scores = self._batch.classify([texts[i] for i in todo])
            for i, label, score in zip(todo, got_labels, got_scores, strict=True):
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


class BatchLangid:
    """py3langid's classifier (norm_probs=True) run over a whole batch at once.

    langid walks a byte automaton over each text and scores the visited features with naive
    Bayes. Here every text of a batch walks the automaton in lock-step: the texts are sorted by
    length and laid out as columns of a byte matrix, so each step is one vectorised gather over
    the texts still running. The features are counted per text with one sort, and scored with
    one sparse product. Same labels as `LanguageIdentifier.classify` and the same scores up to
    float32 rounding of the sums (tests/test_taggers_models.py compares them).
    """

    def __init__(self, identifier):
        self.nextmove = np.frombuffer(identifier.tk_nextmove, dtype=np.uint32).astype(np.int64)
        self.rowbase = np.asarray(identifier.tk_row, dtype=np.int64) << 8
        self.nextmove_list = identifier.tk_nextmove
        self.rowbase_list = identifier._rowbase
        self.output = np.asarray(identifier.tk_output, dtype=np.int64)
        self.ptc = identifier.nb_ptc
        self.pc = identifier.nb_pc.astype(np.float32)
        self.classes = np.array(identifier.nb_classes, dtype=object)
        self.alias_pairs = list(identifier._alias_pairs)

    @staticmethod
    def encode(text: str) -> bytes:
        if text.isupper():
            text = text.lower()
        return unicodedata.normalize("NFC", text).encode("utf8", errors="surrogatepass")

    def _walk(self, data: list[bytes], lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(text index, automaton state) of every byte of every text (texts sorted longest
        first). Lock-step and vectorised while many texts run; the last few long ones finish
        in a plain loop, where one numpy step would cost more than the bytes it moves."""
        n = len(data)
        longest = int(lengths[0]) if n else 0
        steps = np.arange(longest)
        active = np.searchsorted(-lengths, -steps, side="left")  # texts longer than t
        stop = int(np.searchsorted(-active, -LOCKSTEP_MIN_TEXTS, side="right"))
        stop = min(stop, longest)  # lock-step for t < stop
        offs = np.zeros(stop + 1, dtype=np.int64)
        np.cumsum(active[:stop], out=offs[1:])
        # byte t of text j goes to offs[t] + j (the step-major, ragged layout)
        head = np.minimum(lengths, stop)
        all_bytes = np.frombuffer(
            b"".join(d[:h] for d, h in zip(data, head.tolist(), strict=True)), np.uint8
        )
        text_of = np.repeat(np.arange(n, dtype=np.int64), head)
        starts = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(head, out=starts[1:])
        t_of = np.arange(len(all_bytes), dtype=np.int64) - starts[text_of]
        dest = offs[t_of] + text_of
        grid = np.empty(len(all_bytes), dtype=np.int64)
        grid[dest] = all_bytes
        states = np.empty(len(all_bytes), dtype=np.int64)
        state = np.zeros(n, dtype=np.int64)
        nextmove, rowbase = self.nextmove, self.rowbase
        for t in range(stop):
            a, b = offs[t], offs[t + 1]
            k = b - a
            cur = nextmove[rowbase[state[:k]] + grid[a:b]]
            state[:k] = cur
            states[a:b] = cur
        rows = [np.arange(offs[-1], dtype=np.int64) - np.repeat(offs[:-1], active[:stop])]
        got = [states]
        nm, rb = self.nextmove_list, self.rowbase_list
        for j in range(int(active[stop]) if stop < longest else 0):
            st = int(state[j])
            tail = []
            append = tail.append
            for byte in data[j][stop:]:
                st = nm[rb[st] + byte]
                append(st)
            got.append(np.asarray(tail, dtype=np.int64))
            rows.append(np.full(len(tail), j, dtype=np.int64))
        return np.concatenate(rows), np.concatenate(got)

    def scores(self, texts: list[str]) -> np.ndarray:
        """Class probabilities, one row per text (texts x classes, float32)."""
        from scipy import sparse

        data = [self.encode(t) for t in texts]
        n = len(data)
        lengths = np.fromiter(map(len, data), dtype=np.int64, count=n)
        order = np.argsort(-lengths, kind="stable")
        sorted_len = lengths[order]
        rows, states = self._walk([data[i] for i in order.tolist()], sorted_len)
        feats = self.output[states]
        keep = feats >= 0
        rows, feats = rows[keep], feats[keep]
        # counts per (text, feature): CSR construction sums the repeats (no sort of all bytes)
        used = np.bincount(feats, minlength=len(self.ptc)) > 0
        column = np.cumsum(used) - 1
        x = sparse.csr_matrix(
            (np.ones(len(feats), dtype=np.float32), (rows, column[feats])),
            shape=(n, int(used.sum())),
        )
        x.sum_duplicates()
        x.data = np.log1p(x.data)
        raw = np.asarray(x @ self.ptc[used].astype(np.float32), dtype=np.float32) + self.pc
        has = np.diff(x.indptr) > 0
        raw[~has] = 0.0  # no features: a uniform distribution, as langid
        scale = 1.0 / np.sqrt(np.maximum(sorted_len, 1).astype(np.float64))
        raw *= scale.astype(np.float32)[:, None]
        raw = np.exp(raw - raw.max(axis=1, keepdims=True))
        raw /= raw.sum(axis=1, keepdims=True)
        for i, j in self.alias_pairs:
            raw[:, i] += raw[:, j]
            raw[:, j] = 0.0
        out = np.empty_like(raw)
        out[order] = raw
        return out

    def classify(self, texts: list[str]) -> tuple[list[str], list[float]]:
        if not texts:
            return [], []
        probs = self.scores(texts)
        best = probs.argmax(axis=1)
        return self.classes[best].tolist(), probs[np.arange(len(texts)), best].tolist()
