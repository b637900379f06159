"""Evaluation sets of an ablation: held-out documents per source, plus any JSONL sets given.

Each domain becomes one token stream: an EOS (the context every document starts from in
training), then each document's tokens with its EOS (BOS first when the tokenizer has one), so
a model predicts every token of every document, its EOS included. The UTF-8 bytes of the same
documents give bits per byte, which compares models whatever their tokenizer.

Held-out documents are taken in the order of their held-out hash, until `max_tokens` per
domain (a document longer than that alone is skipped), so the set is a pure function of the
documents, the held-out settings and the tokenizer.

OUT/eval/eval.json lists the domains; OUT/eval/domain-NNN.npy holds each stream (int32).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mixer.ablate.heldout import heldout_hash, heldout_mask
from mixer.errors import MixerError
from mixer.io import write_bytes_atomic, write_json_atomic
from mixer.schema import documents_dir, list_parts

BATCH = 256


@dataclass
class Encoder:
    """A tokenizers JSON file with the EOS/BOS ids the mixes were tokenized with."""

    path: Path
    eos_id: int
    bos_id: int | None

    def __post_init__(self):
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(str(self.path))
        except Exception as e:
            raise MixerError(f"{self.path}: not a tokenizers JSON file ({e})") from None
        self._tok.encode_special_tokens = True  # as `mixer tokenize`: special strings are text

    def encode(self, texts: list[str]) -> list[list[int]]:
        ids = [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]
        if self.bos_id is None:
            return [[*x, self.eos_id] for x in ids]
        return [[self.bos_id, *x, self.eos_id] for x in ids]


def _take(encoder: Encoder, texts, max_tokens: int) -> tuple[list[int], int, int]:
    """(token stream, documents, bytes) of texts taken in order until max_tokens."""
    stream, docs, nbytes = [encoder.eos_id], 0, 0
    batch: list[str] = []

    def flush() -> bool:
        nonlocal docs, nbytes
        for text, ids in zip(batch, encoder.encode(batch), strict=True):
            if len(ids) > max_tokens:
                continue
            stream.extend(ids)
            docs += 1
            nbytes += len(text.encode("utf-8"))
            if len(stream) - 1 >= max_tokens:
                return True
        batch.clear()
        return False

    for text in texts:
        batch.append(text)
        if len(batch) == BATCH and flush():
            break
    else:
        flush()
    return stream, docs, nbytes


def heldout_texts(workdir: Path, source: str, seed: int, fraction: float) -> list[str]:
    """The held-out documents of one source, in held-out hash order (then id)."""
    keys, texts = [], []
    for part in list_parts(documents_dir(workdir, source)):
        table = pq.read_table(part, columns=["id", "text"])
        mask = heldout_mask(table.column("id"), seed, fraction)
        if not mask.any():
            continue
        picked = table.filter(pa.array(mask))
        ids = picked.column("id").to_pylist()
        keys += zip(heldout_hash(picked.column("id"), seed).tolist(), map(str, ids), strict=True)
        texts += [t or "" for t in picked.column("text").to_pylist()]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return [texts[i] for i in order]


def build_eval_sets(
    out: Path,
    sources: dict[str, Path],
    evalsets: list[Path],
    encoder: Encoder,
    heldout_seed: int,
    heldout_fraction: float,
    max_tokens: int,
    fields: tuple[str, ...] | None = None,
) -> dict:
    """Write OUT/eval/; returns the content of eval.json. `sources`: name -> its workdir."""
    from mixer.decon_index import iter_eval_texts

    folder = out / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    domains = []

    def add(name: str, kind: str, origin: str, texts) -> None:
        stream, docs, nbytes = _take(encoder, texts, max_tokens)
        if docs == 0:
            raise MixerError(
                f"{origin}: no document for the evaluation of domain {name!r}"
                + (
                    f" (held-out fraction {heldout_fraction:g} of this source is empty: raise --heldout-fraction)"
                    if kind == "heldout"
                    else ""
                )
            )
        arr = np.asarray(stream, dtype=np.int32)
        file = f"domain-{len(domains):03d}.npy"
        write_bytes_atomic(folder / file, _npy_bytes(arr))
        domains.append(
            {
                "name": name,
                "kind": kind,
                "origin": origin,
                "file": file,
                "documents": docs,
                "tokens": int(len(arr) - 1),  # predicted tokens (the leading EOS is context)
                "bytes": nbytes,
                "sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
            }
        )

    for source, workdir in sources.items():
        texts = heldout_texts(workdir, source, heldout_seed, heldout_fraction)
        add(source, "heldout", str(documents_dir(workdir, source)), texts)
    seen = set(sources)
    for path in evalsets:
        name = f"eval:{path.name.split('.')[0]}"
        while name in seen:
            name += "'"
        seen.add(name)
        add(name, "evalset", str(path), iter_eval_texts(path, fields))
    info = {
        "heldout": {"fraction": heldout_fraction, "seed": heldout_seed},
        "max_tokens_per_domain": max_tokens,
        "tokenizer_sha256": hashlib.sha256(encoder.path.read_bytes()).hexdigest(),
        "eos_id": encoder.eos_id,
        "bos_id": encoder.bos_id,
        "domains": domains,
    }
    write_json_atomic(folder / "eval.json", info)
    return info


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def load_domain(out: Path, entry: dict) -> np.ndarray:
    return np.load(out / "eval" / entry["file"], allow_pickle=False)
