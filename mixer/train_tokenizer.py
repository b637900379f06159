"""Train a byte-level BPE tokenizer (HF `tokenizers`) from a mix or a workdir's documents.

The offline default of the pipeline: nothing is downloaded; the sample recipe tokenizes with a
vocabulary learned from its own documents. The default size (8,192) fits uint16 token arrays.
Special tokens take the first ids in the order given ("<|endoftext|>" = 0, "<|pad|>" = 1 by
default, as in OLMo's GPT-NeoX file).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from mixer.errors import MixerError
from mixer.io import TMP_PREFIX, atomic_path, file_sha256

DEFAULT_VOCAB_SIZE = 8192
DEFAULT_SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>")
BYTE_ALPHABET = 256


def find_parquet_inputs(inputs: list[str | Path]) -> list[Path]:
    """Parquet files named directly, or every part-*.parquet under the folders named.

    A workdir is read through its documents/ folder.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            root = p / "documents" if (p / "documents").is_dir() else p
            files += sorted(
                f
                for f in root.rglob("part-*.parquet")
                if not f.name.endswith(".index.parquet") and not f.name.startswith(TMP_PREFIX)
            )
        else:
            raise MixerError(f"tokenizer training input not found: {p}")
    if not files:
        raise MixerError(f"no part-*.parquet under {', '.join(map(str, inputs))}")
    for f in files:
        if "text" not in pq.ParquetFile(f).schema_arrow.names:
            raise MixerError(f"{f}: no 'text' column")
    return files


def _sample_rows(
    files: list[Path], max_docs: int | None, max_bytes: int | None, seed: int
) -> tuple[list[int], np.ndarray | None]:
    """Row counts per file and the sorted global row numbers to read (None: all rows)."""
    counts, text_bytes = [], 0
    for f in files:
        meta = pq.ParquetFile(f).metadata
        counts.append(meta.num_rows)
        col = meta.schema.names.index("text")
        text_bytes += sum(
            meta.row_group(g).column(col).total_uncompressed_size
            for g in range(meta.num_row_groups)
        )
    total = sum(counts)
    want = total
    if max_docs is not None:
        want = min(want, int(max_docs))
    if max_bytes is not None and text_bytes > 0:
        want = min(want, math.ceil(total * int(max_bytes) / text_bytes))
    if want >= total:
        return counts, None
    chosen = np.random.default_rng(seed).choice(total, size=want, replace=False)
    return counts, np.sort(chosen)


def iter_training_texts(
    files: list[Path], max_docs: int | None = None, max_bytes: int | None = None, seed: int = 0
) -> Iterator[str]:
    """Texts of a seeded sample of rows, in storage order; stops once max_bytes are given."""
    counts, chosen = _sample_rows(files, max_docs, max_bytes, seed)
    given, first = 0, 0
    for f, n in zip(files, counts, strict=True):
        if chosen is not None:
            lo, hi = np.searchsorted(chosen, [first, first + n])
            local = chosen[lo:hi] - first
            if not len(local):
                first += n
                continue
        row = 0
        for batch in pq.ParquetFile(f).iter_batches(batch_size=4096, columns=["text"]):
            texts = batch.column(0).to_pylist()
            if chosen is not None:
                sel = local[(local >= row) & (local < row + len(texts))] - row
                texts = [texts[i] for i in sel.tolist()]
            row += batch.num_rows
            for t in texts:
                if t is None:
                    continue
                yield t
                given += len(t.encode("utf-8"))
                if max_bytes is not None and given >= max_bytes:
                    return
        first += n


def train_tokenizer(
    inputs: list[str | Path],
    out_path: str | Path,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    max_docs: int | None = None,
    seed: int = 0,
    min_frequency: int = 2,
    max_bytes: int | None = None,
    special_tokens: list[str] | tuple[str, ...] | str = DEFAULT_SPECIAL_TOKENS,
    progress: bool = False,
) -> dict:
    """Train a byte-level BPE tokenizer on the documents of `inputs`; write tokenizer.json.

    Deterministic for the same documents, settings and seed (training runs on one thread).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if isinstance(special_tokens, str):
        special_tokens = [s.strip() for s in special_tokens.split(",") if s.strip()]
    special_tokens = list(dict.fromkeys(special_tokens))
    vocab_size = int(vocab_size)
    if vocab_size < BYTE_ALPHABET + len(special_tokens):
        raise MixerError(
            f"vocab_size {vocab_size} is below the {BYTE_ALPHABET} byte tokens plus "
            f"{len(special_tokens)} special tokens"
        )
    if max_docs is not None and int(max_docs) < 1:
        raise MixerError(f"max_docs must be positive, got {max_docs}")
    files = find_parquet_inputs(list(inputs))

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=int(min_frequency),
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    docs = 0

    def texts():
        nonlocal docs
        for t in iter_training_texts(files, max_docs, max_bytes, seed):
            docs += 1
            yield t

    # One thread: merge ties are then broken the same way on every run.
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        tok.train_from_iterator(texts(), trainer=trainer)
    finally:
        if saved is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved
    if docs == 0:
        raise MixerError(f"no documents to train a tokenizer on in {', '.join(map(str, inputs))}")
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        tok.save(str(tmp), pretty=False)
    return {
        "path": str(out_path),
        "sha256": file_sha256(out_path),
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "special_tokens": {s: tok.token_to_id(s) for s in special_tokens},
        "documents": docs,
        "files": len(files),
        "seed": seed,
    }


def run_train_tokenizer(
    inputs: list[str | Path],
    out_path: str | Path,
    settings: dict | None = None,
    workdir: str | Path | None = None,
    executor=None,
    echo=None,
) -> tuple[dict, bool]:
    """`mixer train-tokenizer`: run the `tokenizer` stage of `mixer run` (TokenizerStage) on
    `inputs` with `settings` (train_tokenizer's keywords) on `executor` (default: one local
    process), under the lock of `workdir` (default: the folder of `out_path`), whose state/
    records the run, so an unchanged retraining is skipped. Returns (its summary, skipped)."""
    from mixer.pipeline import TokenizerStage
    from mixer.stage import run_command_stages

    out_path = Path(out_path)
    wd = Path(workdir) if workdir is not None else out_path.parent
    stage = TokenizerStage(wd, out_path, dict(settings or {}), inputs=[str(i) for i in inputs])
    find_parquet_inputs(stage.inputs)  # a bad input: one line, before the lock creates anything
    (result,), skipped = run_command_stages([stage], wd, executor, echo=echo)
    return result, skipped
