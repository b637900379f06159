"""Token arrays by memmap, cut into fixed-length instances, in a deterministic order.

A tokens folder (mixer tokenize output) holds part-NNNNN.npy files: raw little-endian token
ids with no header, the dtype named in tokens.json. The parts are read as one stream; instance
i is the window [i * seq_len, i * seq_len + seq_len + 1) of that stream (inputs are its first
seq_len tokens, labels its last seq_len), so a window may span two parts. OLMo's loaders do not:
OLMo-core's NumpyFSLDataset cuts each file into its own windows and drops a file's remainder
(docs/olmo-core.md).

Which instances are held out depends only on `split_seed`, so runs with different data-order
seeds (the runs a soup averages) share one validation set. The training order is a fresh
permutation per epoch drawn from (seed, epoch): a position in it is just a counter, which is
what a checkpoint stores to resume exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixer.errors import MixerError
from mixer.io import read_json
from mixer.schema import part_index

DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


@dataclass
class TokenInfo:
    directory: Path
    dtype: np.dtype
    vocab_size: int
    eos_id: int | None
    parts: list[Path]
    part_sizes: np.ndarray  # tokens per part

    @property
    def total_tokens(self) -> int:
        return int(self.part_sizes.sum())


def read_token_info(directory: str | Path) -> TokenInfo:
    """Read and check tokens.json and the part files it goes with."""
    d = Path(directory)
    meta_path = d / "tokens.json"
    if not d.is_dir():
        raise MixerError(f"{d}: tokens folder not found")
    try:
        meta = read_json(meta_path)
    except Exception:
        raise MixerError(f"{meta_path}: not valid JSON") from None
    if meta is None:
        raise MixerError(f"{meta_path}: missing (is {d} a `mixer tokenize` output?)")
    if not isinstance(meta, dict):
        raise MixerError(f"{meta_path}: expected a JSON object")
    dtype_name = meta.get("dtype")
    if dtype_name not in DTYPES:
        raise MixerError(f"{meta_path}: key 'dtype' must be uint16 or uint32 (got {dtype_name!r})")
    vocab = meta.get("vocab_size")
    if not isinstance(vocab, int) or vocab < 1:
        raise MixerError(
            f"{meta_path}: key 'vocab_size' must be a positive integer (got {vocab!r})"
        )
    dtype = DTYPES[dtype_name]
    listed = meta.get("parts")
    if isinstance(listed, list) and listed:
        # tokens.json names its parts (and their sizes): trust it over whatever else is there.
        parts, expected = [], []
        for entry in listed:
            name = entry.get("file") if isinstance(entry, dict) else entry
            # per-source layouts name parts "<source dir>/part-NNNNN.npy": no "..", no absolute path
            if (
                not isinstance(name, str)
                or name.startswith(("/", "."))
                or any(seg in ("", ".", "..") for seg in name.split("/"))
            ):
                raise MixerError(f"{meta_path}: bad entry in 'parts': {entry!r}")
            parts.append(d / name)
            expected.append(entry.get("tokens") if isinstance(entry, dict) else None)
    else:
        parts = sorted(
            (p for p in d.glob("part-*.npy") if not p.name.startswith(".")), key=part_index
        )
        expected = [None] * len(parts)
    if not parts:
        raise MixerError(f"{d}: no part-NNNNN.npy token files")
    sizes = []
    for p, want in zip(parts, expected, strict=True):
        if not p.is_file():
            raise MixerError(f"{p}: listed in tokens.json but missing")
        nbytes = p.stat().st_size
        if nbytes % dtype.itemsize:
            raise MixerError(
                f"{p}: size {nbytes} is not a multiple of {dtype_name}'s {dtype.itemsize} bytes"
            )
        if isinstance(want, int) and nbytes // dtype.itemsize != want:
            raise MixerError(
                f"{p}: holds {nbytes // dtype.itemsize} tokens, tokens.json says {want}"
            )
        sizes.append(nbytes // dtype.itemsize)
    eos = meta.get("eos_id")
    return TokenInfo(
        d, dtype, vocab, eos if isinstance(eos, int) else None, parts, np.array(sizes, np.int64)
    )


class TokenStream:
    """All parts of a tokens folder as one read-only stream of token ids."""

    def __init__(self, info: TokenInfo):
        self.info = info
        self._maps = [
            np.memmap(p, dtype=info.dtype, mode="r") if n else np.zeros(0, info.dtype)
            for p, n in zip(info.parts, info.part_sizes, strict=True)
        ]
        self._starts = np.concatenate([[0], np.cumsum(info.part_sizes)])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) as int64, crossing part boundaries as needed."""
        out = np.empty(length, np.int64)
        filled = 0
        part = int(np.searchsorted(self._starts, start, side="right")) - 1
        pos = start - int(self._starts[part])
        while filled < length:
            chunk = self._maps[part][pos : pos + length - filled]
            out[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
            part += 1
            pos = 0
        return out


def count_instances(total_tokens: int, seq_len: int) -> int:
    return max(0, (total_tokens - 1) // seq_len)


def split_instances(
    n: int, val_fraction: float, split_seed: int, val_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, val ids): a seeded random `val_fraction` of instances is held out (capped)."""
    n_val = min(int(round(n * val_fraction)), val_max) if val_fraction > 0 else 0
    if val_fraction > 0 and n_val == 0 and n > 1:
        n_val = 1
    perm = np.random.default_rng([split_seed, 0x5917]).permutation(n)
    val = np.sort(perm[:n_val])
    train = np.sort(perm[n_val:])
    return train, val


def sample_instances(n: int, cap: int, split_seed: int) -> np.ndarray:
    """Up to `cap` instance ids out of n, a seeded sample (all of them when n <= cap)."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng([split_seed, 0xE7A1]).permutation(n)[:cap])


class InstanceLoader:
    """Batches of (inputs, labels) over chosen instances, in seeded per-epoch order.

    `position` counts instances handed out so far (across epochs); it is all a checkpoint needs
    to resume the order exactly.
    """

    def __init__(self, stream: TokenStream, seq_len: int, instance_ids: np.ndarray, seed: int):
        if len(instance_ids) == 0:
            raise MixerError(
                f"{stream.info.directory}: too few tokens ({len(stream):,}) for one training "
                f"instance of seq_len {seq_len} + 1"
            )
        self.stream = stream
        self.seq_len = seq_len
        self.ids = instance_ids
        self.seed = seed
        self.position = 0
        self._epoch = -1
        self._order = None

    def _order_for(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self.ids))
            self._epoch = epoch
        return self._order

    def next_ids(self, count: int) -> np.ndarray:
        out = np.empty(count, np.int64)
        n = len(self.ids)
        for k in range(count):
            epoch, offset = divmod(self.position + k, n)
            out[k] = self.ids[self._order_for(epoch)[offset]]
        self.position += count
        return out

    def next_batch(self, count: int) -> np.ndarray:
        """A (count, seq_len + 1) int64 array of windows."""
        return read_windows(self.stream, self.seq_len, self.next_ids(count))

    @property
    def epoch(self) -> float:
        return self.position / len(self.ids)


def read_windows(stream: TokenStream, seq_len: int, ids: np.ndarray) -> np.ndarray:
    batch = np.empty((len(ids), seq_len + 1), np.int64)
    for row, i in enumerate(ids):
        batch[row] = stream.read(int(i) * seq_len, seq_len + 1)
    return batch


def check_token_range(batch: np.ndarray, vocab_size: int, where: Path) -> None:
    top = int(batch.max(initial=0))
    if top >= vocab_size:
        raise MixerError(
            f"{where}: token id {top} is outside the model's vocabulary of {vocab_size}"
        )


def write_token_dir(
    directory: str | Path,
    parts: list[np.ndarray],
    vocab_size: int,
    dtype: str = "uint16",
    eos_id: int | None = None,
) -> Path:
    """Write a tokens folder in `mixer tokenize`'s format (for tests, examples and benchmarks)."""
    from mixer.io import write_bytes_atomic, write_json_atomic
    from mixer.schema import part_name

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for i, arr in enumerate(parts):
        write_bytes_atomic(
            d / part_name(i, ".npy"), np.asarray(arr).astype(DTYPES[dtype]).tobytes()
        )
    total = int(sum(len(a) for a in parts))
    write_json_atomic(
        d / "tokens.json",
        {
            "dtype": dtype,
            "vocab_size": vocab_size,
            "eos_id": eos_id if eos_id is not None else vocab_size - 1,
            "bos_id": None,
            "total_tokens": total,
            "parts": [
                {"file": part_name(i, ".npy"), "tokens": int(len(a))} for i, a in enumerate(parts)
            ],
        },
    )
    return d


def patterned_tokens(
    n_tokens: int, vocab_size: int, seed: int = 0, active: int = 128
) -> np.ndarray:
    """A learnable token stream: documents drawn from a small first-order Markov chain.

    Only `active` ids occur (plus the EOS, the last id) and each one's successor is one of four
    favourites, so a model gets far below the uniform loss ln(vocab_size) within a few dozen
    steps: first by learning which ids occur, then the successor table.
    """
    rng = np.random.default_rng(seed)
    eos = vocab_size - 1
    states = rng.permutation(vocab_size - 1)[: min(active, vocab_size - 1)]
    n_fav = 4
    favourites = states[rng.integers(0, len(states), size=(vocab_size, n_fav))]
    choice = rng.integers(0, n_fav, size=n_tokens)
    doc_break = rng.random(n_tokens) < 1 / 200
    starts = states[rng.integers(0, len(states), size=n_tokens)]
    out = np.empty(n_tokens, np.int64)
    tok = int(starts[0])
    for i in range(n_tokens):
        if doc_break[i]:
            tok = eos
        elif tok == eos:
            tok = int(starts[i])
        else:
            tok = int(favourites[tok, choice[i]])
        out[i] = tok
    return out
