"""The decontamination n-gram index: normalised word n-grams of evaluation sets, hashed.

Normalisation (the same for evaluation texts and for documents):
  1. lowercase (Unicode, Arrow's utf8_lower);
  2. delete every punctuation and symbol character (Unicode categories P* and S*), so
     "Don't!" -> "dont" and "x+y=3" -> "xy3";
  3. split on whitespace (runs of Unicode whitespace fold into one separator); words that
     were only punctuation disappear.
A word of bytes b_0..b_{m-1} hashes to H(b_0+1, ..., b_{m-1}+1) and an n-gram of words
w_0..w_{k-1} to H(w_0, ..., w_{k-1}), where H(x_0..x_{k-1}) = splitmix64(k * K +
sum_j x_j * P^(k-1-j) mod 2^64): a polynomial hash with odd P, computed for a whole batch at
once from prefix sums (so a string or an n-gram of any length costs a few vector operations).

The index is one file, written atomically:
  bytes 0..8    magic b"MIXDCN01"
  bytes 8..16   little-endian uint64: length L of the JSON manifest (padded to 8 bytes)
  16..16+L      the manifest (ngram, min_words, fields, eval files and their sha256, counts)
  16+L..        the sorted, unique n-gram hashes, little-endian uint64 (8 bytes per n-gram)
It is memory-mapped by the tagger, so worker processes share one copy in the page cache; each
worker adds a bitmap prefilter of about 2 bytes per n-gram (see DeconIndex).
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from mixer.errors import MixerError
from mixer.hashing import mix64
from mixer.io import StreamError, atomic_path, file_sha256, is_shard, iter_lines
from mixer.stage import Stage, Task, tree_fingerprint

MAGIC = b"MIXDCN01"
FORMAT_VERSION = 1
DEFAULT_NGRAM = 13
DEFAULT_MIN_WORDS = 3
# Fields read from an evaluation record when none are named: "text" when the record has it,
# else every one of the others that it has (question, answer and the choices).
DEFAULT_FIELDS = ("text",)
FALLBACK_FIELDS = ("question", "answer", "choices")
PUNCT_AND_SYMBOLS = r"[\p{P}\p{S}]+"
NORMALIZATION = "lowercase; delete Unicode P*/S* characters; split on whitespace"

# Odd multiplier of the polynomial n-gram hash and the salt that separates n-gram lengths.
_P = np.uint64(0x9E3779B97F4A7C15)
_LEN_SALT = np.uint64(0xD6E8FEB86659FD93)
BATCH_TEXTS = 4096


# ---------------------------------------------------------------------------- hashing


def _as_array(texts) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    elif not isinstance(texts, pa.Array):
        texts = pa.array(list(texts), type=pa.string())
    if pa.types.is_large_string(texts.type):
        texts = texts.cast(pa.string())
    return texts


def normalize_words(words: pa.Array) -> pa.Array:
    """Lowercased words with punctuation and symbols deleted ("" when nothing is left)."""
    return pc.replace_substring_regex(pc.utf8_lower(words), PUNCT_AND_SYMBOLS, "")


def hash_strings(strings: pa.Array) -> np.ndarray:
    """64-bit hash of each string's UTF-8 bytes, for a whole array at once: the polynomial of
    its bytes (as for n-grams of words), salted with its length, through splitmix64."""
    n = len(strings)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    if strings.null_count:
        strings = strings.fill_null("")
    if pa.types.is_large_string(strings.type):
        strings = strings.cast(pa.string())
    bufs = strings.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32, count=n + 1, offset=strings.offset * 4).astype(
        np.int64
    )
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]].astype(np.uint64) + np.uint64(1)
    starts = offsets[:-1] - offsets[0]
    lengths = np.diff(offsets)
    hasher = GramHasher(data)
    out = np.zeros(n, dtype=np.uint64)
    nonempty = lengths > 0
    out[nonempty] = hasher.grams(starts[nonempty], lengths[nonempty])
    return out


def word_hashes(texts) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every normalised word of all texts, word offsets per text: len(texts)+1)."""
    hashes, offsets, _, _ = words_with_pieces(texts)
    return hashes, offsets


def words_with_pieces(texts) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Word hashes and offsets as `word_hashes`, plus for each word the index of the
    whitespace-separated piece of its text it came from, and the pieces per text (so that
    matches can be mapped back to character offsets without normalising again).

    Texts are split on whitespace first; each distinct raw word is then normalised and hashed
    once (a batch has ~10x fewer distinct words than words, so that is where the work goes).
    """
    lists = pc.utf8_split_whitespace(_as_array(texts))
    flat = pc.list_flatten(lists)
    owner = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    n_texts = len(lists)
    if len(flat) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return (
            np.zeros(0, dtype=np.uint64),
            np.zeros(n_texts + 1, dtype=np.int64),
            empty,
            np.zeros(n_texts, np.int64),
        )
    encoded = pc.dictionary_encode(flat)
    raw_nonempty_unique = pc.greater(pc.binary_length(encoded.dictionary), 0).to_numpy(
        zero_copy_only=False
    )
    normal = normalize_words(encoded.dictionary)
    # Splitting yields "" at leading/trailing whitespace, and a word of pure punctuation
    # normalises to "": both are dropped.
    nonempty_unique = pc.greater(pc.binary_length(normal), 0).to_numpy(zero_copy_only=False)
    unique_hashes = hash_strings(normal)
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    keep = nonempty_unique[indices]
    offsets = np.zeros(n_texts + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner[keep], minlength=n_texts), out=offsets[1:])
    # piece index = rank of the raw word among its text's non-empty raw words
    is_piece = raw_nonempty_unique[indices]
    pieces_per_text = np.bincount(owner[is_piece], minlength=n_texts)
    first_piece = np.concatenate([[0], np.cumsum(pieces_per_text)[:-1]])
    rank = np.cumsum(is_piece) - 1
    piece_index = rank[keep] - first_piece[owner[keep]]
    return unique_hashes[indices[keep]], offsets, piece_index, pieces_per_text


_P_INV = np.uint64(pow(int(_P), -1, 1 << 64))
_POWERS: list[np.ndarray] = [np.ones(1, np.uint64), np.ones(1, np.uint64)]


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(P^0..P^n, Q^0..Q^n) with Q = P^-1 mod 2^64, cached and grown by doubling."""
    if len(_POWERS[0]) <= n:
        size = max(n + 1, 2 * len(_POWERS[0]), 1 << 16)
        with np.errstate(over="ignore"):
            p = np.cumprod(np.full(size, _P, dtype=np.uint64))
            q = np.cumprod(np.full(size, _P_INV, dtype=np.uint64))
        _POWERS[0] = np.concatenate([np.ones(1, np.uint64), p[:-1]])
        _POWERS[1] = np.concatenate([np.ones(1, np.uint64), q[:-1]])
    return _POWERS[0], _POWERS[1]


class GramHasher:
    """Hashes of every k-gram of a flat array of word hashes, for any k, in O(words) each.

    With H[i] = sum_{j<i} w_j * Q^j (Q = P^-1 mod 2^64), the polynomial hash of the k words
    starting at i is P^(i+k-1) * (H[i+k] - H[i]); numpy's uint64 arithmetic wraps mod 2^64.
    """

    def __init__(self, words: np.ndarray):
        n = len(words)
        self.pow_p, inv = _powers(n)
        with np.errstate(over="ignore"):
            self.prefix = np.zeros(n + 1, dtype=np.uint64)
            np.cumsum(words * inv[:n], out=self.prefix[1:])

    def grams(self, starts: np.ndarray, k: int | np.ndarray) -> np.ndarray:
        """Hashes of the k items from each start (k: one length, or one per start)."""
        with np.errstate(over="ignore"):
            poly = self.pow_p[starts + (k - 1)] * (self.prefix[starts + k] - self.prefix[starts])
            return mix64(poly + np.asarray(k).astype(np.uint64) * _LEN_SALT)


def gram_starts(offsets: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat start position of every k-gram inside one text, index of its text)."""
    lengths = np.diff(offsets)
    counts = np.maximum(lengths - k + 1, 0)
    total = int(counts.sum())
    text_index = np.repeat(np.arange(len(lengths)), counts)
    first = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=first[1:])
    starts = np.arange(total, dtype=np.int64) - first[text_index] + offsets[:-1][text_index]
    return starts, text_index


def eval_text_grams(texts, ngram: int, min_words: int) -> tuple[np.ndarray, dict]:
    """N-gram hashes of evaluation texts; a text shorter than `ngram` words (but at least
    `min_words`) is one gram of its own length."""
    words, offsets = word_hashes(texts)
    hasher = GramHasher(words)
    lengths = np.diff(offsets)
    starts, _ = gram_starts(offsets, ngram)
    parts = [hasher.grams(starts, ngram)]
    short = (lengths < ngram) & (lengths >= min_words)
    short_lengths = sorted({int(k) for k in lengths[short]})
    for k in short_lengths:
        sel = short & (lengths == k)
        parts.append(hasher.grams(offsets[:-1][sel], k))
    # The first `min_words` words of each short text: the tagger looks for short texts only
    # where one of these heads occurs.
    heads = hasher.grams(offsets[:-1][short], min_words)
    stats = {
        "texts": len(lengths),
        "short_texts": int(short.sum()),
        "skipped_short": int(((lengths < min_words) & (lengths > 0)).sum()),
        "empty_texts": int((lengths == 0).sum()),
        "short_lengths": short_lengths,
        "heads": heads,
    }
    return np.concatenate(parts), stats


# ---------------------------------------------------------------------------- eval records


def _strings(value) -> Iterator[str]:
    """The text inside a field value: strings, numbers, lists of them, {'text': [...]}."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, (int, float)):
        yield str(value)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        inner = value.get("text", value.get("choices"))
        yield from _strings(inner if inner is not None else list(value.values()))


def record_text(record: dict, fields: tuple[str, ...] | None) -> str:
    """The text of one evaluation record: the named fields joined, in order."""
    if fields is None:
        fields = DEFAULT_FIELDS if "text" in record else FALLBACK_FIELDS
    return "\n".join(s for f in fields for s in _strings(record.get(f)))


def expand_eval_paths(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and is_shard(q))
        elif p.exists():
            found = [p]
        else:
            found = sorted(Path(q) for q in glob.glob(str(p)) if Path(q).is_file())
        if not found:
            raise MixerError(f"evaluation set not found (or no .jsonl files inside): {p}")
        out.extend(found)
    return out


def iter_eval_texts(path: Path, fields: tuple[str, ...] | None) -> Iterator[str]:
    """The text of each record of an evaluation file; a bad line or stream is a MixerError
    (an evaluation set must be read whole, or the index would silently miss questions)."""
    lines = iter_lines(path)
    while True:
        try:
            line_no, line = next(lines)
        except StopIteration:
            return
        except StreamError as e:
            raise MixerError(
                f"{path}: corrupt or truncated compressed stream ({e.args[0]})"
            ) from None
        except OSError as e:
            raise MixerError(f"{path}: cannot read ({e})") from None
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise MixerError(f"{path}:{line_no}: not a JSON object ({e})") from None
        if not isinstance(record, dict):
            raise MixerError(f"{path}:{line_no}: not a JSON object")
        yield record_text(record, fields)


# ---------------------------------------------------------------------------- build / load


def build_index(
    eval_paths: Iterable[str | Path],
    out: str | Path,
    ngram: int = DEFAULT_NGRAM,
    fields: Iterable[str] | str | None = None,
    min_words: int = DEFAULT_MIN_WORDS,
) -> dict:
    """Build the n-gram index of evaluation JSONL files at `out`; returns its manifest."""
    if ngram < 1:
        raise MixerError(f"--ngram must be at least 1 (got {ngram})")
    if min_words < 1:
        raise MixerError(f"--min-words must be at least 1 (got {min_words})")
    if isinstance(fields, str):
        fields = [f.strip() for f in fields.split(",") if f.strip()]
    fields_t = tuple(fields) if fields else None
    paths = expand_eval_paths(eval_paths)

    chunks: list[np.ndarray] = []
    head_chunks: list[np.ndarray] = []
    totals = {"records": 0, "short_texts": 0, "skipped_short": 0, "empty_texts": 0}
    short_lengths: set[int] = set()
    files = []
    for path in paths:
        records, empty_before = 0, totals["empty_texts"]
        batch: list[str] = []

        def flush(batch=batch):
            grams, stats = eval_text_grams(batch, ngram, min_words)
            chunks.append(np.unique(grams))
            head_chunks.append(np.unique(stats["heads"]))
            for key in ("short_texts", "skipped_short", "empty_texts"):
                totals[key] += stats[key]
            short_lengths.update(stats["short_lengths"])
            batch.clear()

        for text in iter_eval_texts(path, fields_t):
            batch.append(text)
            records += 1
            if len(batch) >= BATCH_TEXTS:
                flush()
        if batch:
            flush()
        if fields_t and records and totals["empty_texts"] - empty_before == records:
            raise MixerError(f"{path}: no record has any of the fields {', '.join(fields_t)}")
        totals["records"] += records
        files.append({"path": str(path), "sha256": file_sha256(path), "records": records})

    hashes = np.unique(np.concatenate(chunks)) if chunks else np.zeros(0, np.uint64)
    heads = np.unique(np.concatenate(head_chunks)) if head_chunks else np.zeros(0, np.uint64)
    manifest = {
        "format": "mixer-decon-index",
        "version": FORMAT_VERSION,
        "ngram": ngram,
        "min_words": min_words,
        "fields": list(fields_t) if fields_t else None,
        "normalization": NORMALIZATION,
        "hash": "polynomial mod 2^64 over word bytes, then over word hashes; length salt; splitmix64",
        "eval_files": files,
        "short_lengths": sorted(short_lengths),
        "ngrams": int(len(hashes)),
        "short_heads": int(len(heads)),
        "bytes_per_ngram": 8,
        **totals,
    }
    _write_index(out, manifest, hashes, heads)
    return manifest


def _write_index(out: str | Path, manifest: dict, hashes: np.ndarray, heads: np.ndarray) -> None:
    header = orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS)
    header += b" " * (-len(header) % 8)
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        f.write(MAGIC)
        f.write(np.uint64(len(header)).astype("<u8").tobytes())
        f.write(header)
        f.write(hashes.astype("<u8").tobytes())
        f.write(heads.astype("<u8").tobytes())


class HashSet:
    """Membership in a sorted uint64 array, with a bitmap over the hashes' top bits (16-32
    bits per hash, at least 1 MB) as a prefilter: most queries miss the bitmap, so only a few
    reach the binary search. Exact in effect: a set bit is always confirmed by the search."""

    def __init__(self, hashes: np.ndarray):
        self.hashes = hashes
        count = len(hashes)
        self.shift = np.uint64(64 - max(23, int(np.ceil(np.log2(max(count, 1) * 16)))))
        self.bitmap = np.zeros((1 << (64 - int(self.shift))) // 8, dtype=np.uint8)
        for lo in range(0, count, 1 << 22):  # in chunks: bounded memory for big indexes
            top = np.asarray(hashes[lo : lo + (1 << 22)]) >> self.shift
            np.bitwise_or.at(
                self.bitmap, top >> np.uint64(3), (1 << (top & np.uint64(7))).astype(np.uint8)
            )

    def __len__(self) -> int:
        return len(self.hashes)

    def contains(self, grams: np.ndarray) -> np.ndarray:
        if len(self.hashes) == 0 or len(grams) == 0:
            return np.zeros(len(grams), dtype=bool)
        top = grams >> self.shift
        maybe = (self.bitmap[top >> np.uint64(3)] >> (top & np.uint64(7)).astype(np.uint8)) & 1
        found = maybe.astype(bool)
        candidates = np.flatnonzero(found)
        if len(candidates):
            pos = np.searchsorted(self.hashes, grams[candidates])
            pos[pos == len(self.hashes)] = 0
            found[candidates] = np.asarray(self.hashes[pos]) == grams[candidates]
        return found


class DeconIndex:
    """A loaded index: the manifest, the memory-mapped n-gram hashes, and the heads of the
    short evaluation texts (their first `min_words` words)."""

    def __init__(self, path: str | Path):
        path = Path(path)
        try:
            with open(path, "rb") as f:
                head = f.read(16)
                if len(head) < 16 or head[:8] != MAGIC:
                    raise MixerError(
                        f"{path}: not a decon index (build one with `mixer decon-index`)"
                    )
                size = int(np.frombuffer(head[8:], dtype="<u8")[0])
                self.manifest = orjson.loads(f.read(size))
        except FileNotFoundError:
            raise MixerError(f"decon index not found: {path}") from None
        except orjson.JSONDecodeError:
            raise MixerError(f"{path}: corrupt decon index manifest") from None
        count, n_heads = self.manifest["ngrams"], self.manifest.get("short_heads", 0)
        expected = 16 + size + 8 * (count + n_heads)
        if path.stat().st_size != expected:
            raise MixerError(
                f"{path}: truncated decon index ({path.stat().st_size} bytes, want {expected})"
            )

        def mapped(offset: int, n: int) -> np.ndarray:
            if not n:
                return np.zeros(0, dtype=np.uint64)
            return np.memmap(path, dtype="<u8", mode="r", offset=offset, shape=(n,))

        self.hashes = mapped(16 + size, count)
        self.ngram = int(self.manifest["ngram"])
        self.head_words = int(self.manifest["min_words"])
        self.short_lengths = list(self.manifest.get("short_lengths", []))
        self.lengths = sorted({self.ngram, *self.short_lengths})
        self._set = HashSet(self.hashes)
        self.heads = HashSet(mapped(16 + size + 8 * count, n_heads))

    def contains(self, grams: np.ndarray) -> np.ndarray:
        """Membership of each n-gram hash in the index."""
        return self._set.contains(grams)


def load_index(path: str | Path) -> DeconIndex:
    return DeconIndex(path)


# ------------------------------------------------------------------ the stage


class DeconIndexStage(Stage):
    """The n-gram index of the evaluation sets, for the `decon` tagger (one task)."""

    name = group = "decon-index"

    def __init__(self, workdir, eval_sets: list[str], out: Path, settings: dict):
        super().__init__(workdir, {"eval_sets": list(eval_sets), **settings})
        self.out = Path(out)

    def _files(self) -> list[str]:
        from mixer.inputs import resolve_inputs

        return resolve_inputs(self.config["eval_sets"])

    def input_fingerprint(self):
        return tree_fingerprint(*self._files())

    def outputs(self):
        return [self.out]

    def tasks(self):
        return [
            Task(
                "build",
                args=self._files(),
                fingerprint=self.input_fingerprint(),
                outputs=(str(self.out),),
            )
        ]

    def run_task(self, task):
        settings = {k: v for k, v in self.config.items() if k != "eval_sets"}
        m = build_index(task.args, str(self.out), **settings)
        return {k: v for k, v in m.items() if isinstance(v, int) and not isinstance(v, bool)} | {
            "eval_files": len(m["eval_files"])
        }

    def finish(self, results):
        return results[0]


def run_decon_index(
    eval_sets: list[str],
    out: str | Path,
    settings: dict | None = None,
    workdir: str | Path | None = None,
    executor=None,
    echo=None,
) -> tuple[dict, bool]:
    """`mixer decon-index`: run DeconIndexStage on `executor` (default: one local process)
    under the lock of `workdir` (default: the folder of `out`), whose state/ records the build,
    so an unchanged rebuild is skipped. Returns (the stage's counts, skipped)."""
    from mixer.stage import run_command_stages

    out = Path(out)
    wd = Path(workdir) if workdir is not None else out.parent
    stage = DeconIndexStage(wd, list(eval_sets), out, dict(settings or {}))
    stage._files()  # a missing evaluation set: one line, before the lock creates anything
    (result,), skipped = run_command_stages([stage], wd, executor, echo=echo)
    return result, skipped
