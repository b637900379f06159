"""Loading a tokenizers JSON file and the settings read from it (vocabulary size, dtype, EOS/BOS)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from mixer.errors import MixerError

DEFAULT_EOS = "<|endoftext|>"
DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


_LOADED: OrderedDict = OrderedDict()  # (path, size, mtime) -> Tokenizer; loading takes ~1 s


def load_tokenizer(path: str | Path):
    """A HF tokenizer that encodes literal special-token strings in text as plain text.

    The last two loaded are kept, keyed by path, size and mtime (a changed file is reloaded).
    """
    from tokenizers import Tokenizer

    path = Path(path).resolve()
    if not path.is_file():
        raise MixerError(f"tokenizer not found: {path}")
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _LOADED:
        return _LOADED[key]
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises plain Exceptions on a malformed file
        raise MixerError(f"{path}: not a tokenizers JSON file ({str(e).splitlines()[0]})") from e
    # "<|endoftext|>" typed inside a document must not become the separator token.
    tok.encode_special_tokens = True
    _LOADED[key] = tok
    while len(_LOADED) > 2:
        _LOADED.popitem(last=False)
    return tok


def vocab_size_of(tok) -> int:
    """Ids run from 0 to vocab_size - 1 (added tokens included, wherever they were placed)."""
    added = tok.get_added_tokens_decoder()
    return max(tok.get_vocab_size(with_added_tokens=True), max(added, default=-1) + 1)


def resolve_dtype(dtype: str, vocab_size: int) -> np.dtype:
    """auto: uint16 when every id fits in 16 bits, else uint32; never a silent wrap-around."""
    if dtype == "auto":
        return DTYPES["uint16"] if vocab_size <= 1 << 16 else DTYPES["uint32"]
    if dtype not in DTYPES:
        raise MixerError(f"dtype {dtype!r}: use auto, uint16 or uint32")
    if np.iinfo(DTYPES[dtype]).max < vocab_size - 1:
        raise MixerError(
            f"dtype {dtype} cannot hold ids up to {vocab_size - 1} (vocabulary of {vocab_size:,}): "
            "use --dtype uint32 or auto"
        )
    return DTYPES[dtype]


def resolve_special(
    tok, vocab_size: int, token: str | None, token_id: int | None, what: str, default: str | None
) -> tuple[int | None, str | None, str]:
    """(id, token string, how it was chosen) for EOS or BOS, read from the tokenizer by name."""
    flag = f"--{what}"
    if token_id is not None:
        token_id = int(token_id)
        if not 0 <= token_id < vocab_size:
            raise MixerError(
                f"{flag}-id {token_id} is outside the vocabulary (0..{vocab_size - 1})"
            )
        name = tok.id_to_token(token_id)
        if token is not None and tok.token_to_id(token) != token_id:
            raise MixerError(f"{flag} {token!r} and {flag}-id {token_id} name different tokens")
        return token_id, name, f"id {token_id} given explicitly"
    if token is not None:
        found = tok.token_to_id(token)
        if found is None:
            raise MixerError(f"{flag} {token!r} is not a token of the tokenizer: give {flag}-id N")
        return found, token, f"token {token!r} looked up in the tokenizer"
    if default is None:
        return None, None, "none"
    found = tok.token_to_id(default)
    if found is None:
        raise MixerError(
            f"the tokenizer has no {default!r} token: give {flag} TOKEN or {flag}-id N"
        )
    return found, default, f"default {default!r} looked up in the tokenizer"


class VocabInfo:
    """What the driver needs from a tokenizer.json (ids of named tokens, the vocabulary size),
    read from the JSON itself: no HF tokenizer is built on the driver for a fast engine.
    Answers like `tokenizers.Tokenizer` for resolve_special and vocab_size_of."""

    def __init__(self, data: dict):
        vocab = (data.get("model") or {}).get("vocab")
        if not isinstance(vocab, dict):
            raise ValueError("model.vocab is not a token -> id mapping")
        self._vocab = vocab
        self._added = {t["content"]: int(t["id"]) for t in data.get("added_tokens") or []}
        self._names: dict[int, str] | None = None

    def token_to_id(self, token: str) -> int | None:
        found = self._added.get(token)
        return found if found is not None else self._vocab.get(token)

    def id_to_token(self, token_id: int) -> str | None:
        if self._names is None:
            self._names = {i: t for t, i in self._vocab.items()}
            self._names.update({i: t for t, i in self._added.items()})
        return self._names.get(int(token_id))

    def get_added_tokens_decoder(self) -> dict[int, str]:
        return {i: t for t, i in self._added.items()}

    def get_vocab_size(self, with_added_tokens: bool = True) -> int:
        ids = set(self._vocab.values())
        if with_added_tokens:
            ids |= set(self._added.values())
        return len(ids)


def read_tokenizer_json(path: str | Path) -> dict:
    """The parsed tokenizer.json (a MixerError naming the file when it is not one)."""
    import orjson

    path = Path(path)
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise MixerError(f"tokenizer not found: {path}") from None
    except (OSError, ValueError) as e:
        raise MixerError(f"{path}: not a tokenizers JSON file ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise MixerError(f"{path}: not a tokenizers JSON file (no model)")
    return data
