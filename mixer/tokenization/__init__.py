"""Tokenization: a mix's documents -> shuffled, packed token arrays in the layout OLMo reads.

Public entry points (this package replaced the old `mixer.tokenize` module, whose name
shadowed the standard library's `tokenize`):

- `tokenize_mix(mix_dir, tokenizer_path, out_dir, **options)`: run the tokenize stage.
- `load_tokenizer`, `vocab_size_of`, `resolve_dtype`, `DTYPES`: tokenizer settings.
- `train_tokenizer`, `verify_tokens`: imported on first use (workers need neither).
"""

from __future__ import annotations

from mixer.tokenization.stages import tokenize_mix, tokenize_stages
from mixer.tokenization.tokenizer import (
    DEFAULT_EOS,
    DTYPES,
    load_tokenizer,
    resolve_dtype,
    resolve_special,
    vocab_size_of,
)

__all__ = [
    "DEFAULT_EOS",
    "DTYPES",
    "load_tokenizer",
    "resolve_dtype",
    "resolve_special",
    "tokenize_mix",
    "tokenize_stages",
    "train_tokenizer",
    "verify_tokens",
    "vocab_size_of",
]


def __getattr__(name: str):
    if name == "train_tokenizer":
        from mixer.train_tokenizer import train_tokenizer

        return train_tokenizer
    if name == "verify_tokens":
        from mixer.verify_tokens import verify_tokens

        return verify_tokens
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
