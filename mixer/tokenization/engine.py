"""Tokenization engines: a `tiktoken` Encoding built from a tokenizer.json, or HF `tokenizers`.

HF `tokenizers` is the reference. For byte-level BPE tokenizers (GPT-2/GPT-NeoX style, and the
cl100k style of OLMo 2's dolma2) the same ids come several times faster from `tiktoken`'s BPE
core, built here from the tokenizer.json itself:

- vocabulary: every byte-level token string is mapped back to its bytes (GPT-2's byte <-> char
  table);
- ranks: tiktoken merges the adjacent pair whose concatenation has the lowest rank, HF the pair
  listed first in `merges`. So the rank of a merged token is its merge's position (single bytes
  rank below every merge); when the vocabulary ids already follow that order the ids are the
  ranks, otherwise tiktoken's ranks are mapped to ids by a lookup table;
- the pre-tokenizer's regex (the `Split` pattern, or GPT-2's pattern for a `ByteLevel`
  pre-tokenizer with `use_regex`);
- added tokens: special ones (`special: true`, e.g. "<|endoftext|>") are encoded as plain text,
  as mixer always does (`encode_special_tokens = True`); the others (dolma2's
  "|||PHONE_NUMBER|||", GPT-NeoX's runs of 2-24 spaces) are split out first, leftmost-longest,
  exactly like HF's added vocabulary, and the text between them is encoded piece by piece;
- the normalizer: none, or NFC (GPT-NeoX), applied before the added tokens are matched.

`engine_spec(tokenizer.json)` says whether that construction is exact for a file (any other
model, normalizer, pre-tokenizer or added-token option falls back to HF `tokenizers`), and
`load_engine` returns an object with one method, `encode(texts) -> list of uint32 arrays`.
Every run also compares the engine with HF `tokenizers` on a sample of its documents
(`check_sample`), so a difference stops the run with the document's id instead of writing
different ids.
"""

from __future__ import annotations

import re
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from mixer.errors import MixerError
from mixer.tokenization.tokenizer import read_tokenizer_json

ENGINES = ("auto", "tiktoken", "hf")
# GPT-2's pre-tokenizer regex (what HF's ByteLevel pre-tokenizer applies when use_regex is on)
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
NEVER_IN_UTF8 = {0xC0, 0xC1, *range(0xF5, 0x100)}
HF_BATCH = 256  # documents per encode_batch call of the HF engine


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: printable char -> the byte it stands for."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return {c: b for b, c in chars.items()}


@dataclass(frozen=True)
class EngineSpec:
    """What a tiktoken Encoding needs, read from a tokenizer.json (or why it cannot be built)."""

    eligible: bool
    reason: str  # why not, when not eligible
    pattern: str = ""
    nfc: bool = False
    added: tuple = ()  # (content, id) of non-special added tokens, matched leftmost-longest


def engine_spec(data: dict) -> EngineSpec:
    """Whether the tiktoken construction reproduces HF `tokenizers` for this tokenizer.json."""

    def no(reason: str) -> EngineSpec:
        return EngineSpec(False, reason)

    model = data.get("model") or {}
    if model.get("type") != "BPE":
        return no(f"model {model.get('type')!r} is not BPE")
    if model.get("byte_fallback") or model.get("dropout") or model.get("ignore_merges"):
        return no("BPE with byte_fallback, dropout or ignore_merges")
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        return no("BPE with a subword prefix or suffix")
    norm = data.get("normalizer")
    if norm is None:
        nfc = False
    elif norm.get("type") == "NFC":
        nfc = True
    else:
        return no(f"normalizer {norm.get('type')!r}")
    pre = data.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if len(steps) == 1 and steps[0].get("type") == "ByteLevel":
        if not steps[0].get("use_regex", True):
            return no("ByteLevel pre-tokenizer without a regex")
        pattern = GPT2_PATTERN
        level = steps[0]
    elif (
        len(steps) == 2
        and steps[0].get("type") == "Split"
        and steps[1].get("type") == "ByteLevel"
        and not steps[1].get("use_regex", True)
    ):
        split = steps[0]
        if not (split.get("invert") and split.get("behavior") == "Removed"):
            return no("Split pre-tokenizer other than invert=true, behavior=Removed")
        pattern = (split.get("pattern") or {}).get("Regex")
        if not pattern:
            return no("Split pre-tokenizer without a regex")
        level = steps[1]
    else:
        return no("pre-tokenizer is not byte-level BPE (ByteLevel, or Split + ByteLevel)")
    if level.get("add_prefix_space"):
        return no("ByteLevel with add_prefix_space")
    added = []
    for tok in data.get("added_tokens", []):
        if tok.get("special"):
            continue  # encoded as plain text
        if tok.get("lstrip") or tok.get("rstrip") or tok.get("single_word"):
            return no(f"added token {tok['content']!r} with lstrip/rstrip/single_word")
        if nfc and not tok.get("normalized") and not tok["content"].isascii():
            return no(f"non-normalized added token {tok['content']!r} under a normalizer")
        added.append((tok["content"], int(tok["id"])))
    return EngineSpec(True, "", pattern, nfc, tuple(added))


def _ranks(model: dict) -> tuple[dict[bytes, int], np.ndarray | None]:
    """tiktoken's mergeable ranks and, when they are not the ids themselves, rank -> id."""
    dec = byte_decoder()
    vocab: dict[str, int] = model["vocab"]
    vocab = dict(vocab)
    spare = max(vocab.values(), default=-1) + 1
    for c in sorted(dec, key=dec.get):
        if c not in vocab:
            if dec[c] not in NEVER_IN_UTF8:
                raise MixerError(f"byte-level vocabulary lacks the token of byte {dec[c]}")
            vocab[c] = spare  # a byte valid UTF-8 never holds: an id that is never emitted
            spare += 1
    order: list[str] = sorted(dec, key=dec.get)  # single bytes first, in byte order
    merges = model["merges"]
    if merges and isinstance(merges[0], str):
        merged_tokens = [m.replace(" ", "", 1) for m in merges]  # "a b" -> "ab"
    else:
        merged_tokens = ["".join(m) for m in merges]
    missing = [t for t in merged_tokens if t not in vocab]
    if missing:
        raise MixerError(f"merge result {missing[0]!r} is not in the vocabulary")
    singles = set(order)
    order += dict.fromkeys(t for t in merged_tokens if t not in singles)  # first merge wins
    ids = np.array([vocab[t] for t in order], dtype=np.int64)
    table = str.maketrans({c: chr(b) for c, b in dec.items()})  # char -> the byte as latin-1

    def to_bytes(token: str) -> bytes:
        return token.translate(table).encode("latin-1")

    merged_ids = ids[256:]
    if len(set(ids.tolist())) == len(ids) and np.all(np.diff(merged_ids) > 0):
        # the ids already rank the merges: tiktoken returns the ids themselves
        return {to_bytes(t): int(i) for t, i in zip(order, ids.tolist(), strict=True)}, None
    return {to_bytes(t): r for r, t in enumerate(order)}, ids.astype(np.uint32)


def added_regex(tokens: list[str]) -> re.Pattern:
    """A regex that finds added tokens leftmost-longest, as HF's added vocabulary does.

    A regex alternation takes the first alternative that matches, so literals go longest
    first; a family of runs of one character (GPT-NeoX's 2..24 spaces) becomes `c{a,b}`
    (greedy, so also longest) when no other token starts with that character."""
    by_char: dict[str, list[int]] = {}
    for t in tokens:
        if len(set(t)) == 1:
            by_char.setdefault(t[0], []).append(len(t))
    runs, rest = [], list(tokens)
    for c, lengths in by_char.items():
        lo, hi = min(lengths), max(lengths)
        others = [t for t in tokens if t[0] == c and len(set(t)) > 1]
        if len(lengths) > 2 and sorted(lengths) == list(range(lo, hi + 1)) and not others:
            runs.append(f"{re.escape(c)}{{{lo},{hi}}}")
            rest = [t for t in rest if not (len(set(t)) == 1 and t[0] == c)]
    literals = [re.escape(t) for t in sorted(rest, key=lambda t: (-len(t), t))]
    return re.compile("|".join([*literals, *runs]))


class TiktokenEngine:
    """Encodes like HF `tokenizers` (encode_special_tokens=True, no special tokens added)."""

    name = "tiktoken"

    def __init__(self, path: str | Path, data: dict | None = None, tables: dict | None = None):
        import tiktoken

        if tables is None:
            tables = engine_tables(path, data)
        spec = EngineSpec(True, "", *tables["spec"])
        blob, offsets = tables["blob"].tobytes(), tables["offsets"].tolist()
        ranks = {
            blob[a:b]: r
            for a, b, r in zip(offsets[:-1], offsets[1:], tables["ranks"].tolist(), strict=True)
        }
        self._id_of = tables["id_of"] if len(tables["id_of"]) else None
        enc = tiktoken.Encoding(
            name=f"mixer:{Path(path).name}",
            pat_str=spec.pattern,
            mergeable_ranks=ranks,
            special_tokens={},
        )
        self._encode = enc._core_bpe.encode_to_tiktoken_buffer
        self._empty: frozenset = frozenset()
        self._nfc = spec.nfc
        # Added tokens become 4-byte values spliced between the encoded pieces: their ids, or
        # (when tiktoken's ranks are mapped to ids) ranks past the last one that map to them.
        self._added_bytes: dict[str, bytes] = {}
        for content, token_id in spec.added:
            value = token_id
            if self._id_of is not None:
                value = len(self._id_of)
                self._id_of = np.append(self._id_of, np.uint32(token_id))
            self._added_bytes[content] = np.uint32(value).tobytes()
        self._added = added_regex([t for t, _ in spec.added]) if spec.added else None

    def _one(self, text: str) -> np.ndarray:
        if self._nfc and not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        encode, added = self._encode, self._added
        if added is None or added.search(text) is None:
            raw = encode(text, self._empty)
        else:
            pieces, pos = [], 0
            for m in added.finditer(text):
                if m.start() > pos:
                    pieces.append(encode(text[pos : m.start()], self._empty))
                pieces.append(self._added_bytes[m.group()])
                pos = m.end()
            if pos < len(text):
                pieces.append(encode(text[pos:], self._empty))
            raw = b"".join(pieces)
        ids = np.frombuffer(raw, dtype=np.uint32)
        return ids if self._id_of is None else self._id_of[ids]

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        return [self._one(t) for t in texts]


class HFEngine:
    """HF `tokenizers` (the reference), literal special-token strings encoded as text."""

    name = "hf"

    def __init__(self, path: str | Path):
        from mixer.tokenization.tokenizer import load_tokenizer

        self._tok = load_tokenizer(path)

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        out = []
        for a in range(0, len(texts), HF_BATCH):
            enc = self._tok.encode_batch_fast(texts[a : a + HF_BATCH], add_special_tokens=False)
            out += [np.array(e.ids, dtype=np.uint32) for e in enc]
        return out


def choose_engine(
    path: str | Path, engine: str = "auto", data: dict | None = None
) -> tuple[str, str]:
    """(engine name, why) for a tokenizer file: tiktoken when it is exact, else hf."""
    if engine not in ENGINES:
        raise MixerError(f"engine {engine!r}: use {', '.join(ENGINES)}")
    if engine == "hf":
        return "hf", "asked for"
    spec = engine_spec(data if data is not None else read_tokenizer_json(path))
    if spec.eligible:
        try:
            import tiktoken  # noqa: F401
        except ImportError:
            if engine == "tiktoken":
                raise MixerError("engine tiktoken: pip install tiktoken") from None
            return "hf", "tiktoken is not installed"
        return "tiktoken", "byte-level BPE tokenizer"
    if engine == "tiktoken":
        raise MixerError(f"{path}: engine tiktoken cannot reproduce this tokenizer ({spec.reason})")
    return "hf", spec.reason


_ENGINES: OrderedDict = OrderedDict()


def engine_tables(path: str | Path, data: dict | None = None) -> dict:
    """What a TiktokenEngine is built from, as flat arrays (saved once per run by the driver,
    so that every worker skips parsing the JSON and mapping 100k tokens back to bytes)."""
    data = data if data is not None else read_tokenizer_json(path)
    spec = engine_spec(data)
    if not spec.eligible:
        raise MixerError(f"{path}: the tiktoken engine cannot reproduce it ({spec.reason})")
    ranks, id_of = _ranks(data["model"])
    tokens = list(ranks)
    offsets = np.zeros(len(tokens) + 1, np.int64)
    np.cumsum([len(t) for t in tokens], out=offsets[1:])
    return {
        "spec": (spec.pattern, spec.nfc, tuple((t, int(i)) for t, i in spec.added)),
        "blob": np.frombuffer(b"".join(tokens), np.uint8),
        "offsets": offsets,
        "ranks": np.array(list(ranks.values()), np.int64),
        "id_of": id_of if id_of is not None else np.zeros(0, np.uint32),
    }


def save_engine_tables(path: str | Path, cache: str | Path) -> None:
    """Write engine_tables(path) to `cache` (.npz, no pickles), atomically."""
    import orjson

    from mixer.io import atomic_path

    tables = engine_tables(path)
    spec = np.frombuffer(orjson.dumps(tables.pop("spec")), np.uint8)
    with atomic_path(cache) as tmp, open(tmp, "wb") as f:
        np.savez(f, spec=spec, **tables)


def _load_tables(cache: Path) -> dict:
    import orjson

    with np.load(cache, allow_pickle=False) as z:
        tables = {k: z[k] for k in z.files}
    pattern, nfc, added = orjson.loads(tables.pop("spec").tobytes())
    tables["spec"] = (pattern, nfc, tuple((t, i) for t, i in added))
    return tables


def load_engine(path: str | Path, engine: str = "auto", cache: str | Path | None = None):
    """An engine for a tokenizer file (the last two built are kept per process). `cache`: a
    file written by save_engine_tables for this very tokenizer file, used when present."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, engine)
    if key not in _ENGINES:
        name, _ = choose_engine(path, engine)
        if name == "tiktoken":
            tables = _load_tables(Path(cache)) if cache and Path(cache).is_file() else None
            _ENGINES[key] = TiktokenEngine(path, tables=tables)
        else:
            _ENGINES[key] = HFEngine(path)
        while len(_ENGINES) > 2:
            _ENGINES.popitem(last=False)
    return _ENGINES[key]


def check_sample(engine: str, path: str | Path, texts: list[str], ids: list, doc_ids: list) -> None:
    """Compare the ids an engine (by name) gave with HF `tokenizers` on the given documents; a
    difference stops the run naming the first document that differs."""
    if engine == "hf" or not texts:
        return
    reference = HFEngine(path).encode(texts)
    for got, want, doc_id in zip(ids, reference, doc_ids, strict=True):
        if not np.array_equal(got, want):
            at = (
                int(np.argmax(got[: len(want)] != want[: len(got)]))
                if len(got) and len(want)
                else 0
            )
            raise MixerError(
                f"document {doc_id}: the {engine} engine's ids differ from HF tokenizers' "
                f"(first difference at token {at} of {len(want)}); rerun with engine: hf "
                "(--engine hf) and report the document"
            )
