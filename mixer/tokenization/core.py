"""The tokenize stage: a mix's documents -> shuffled, packed token arrays in the layout OLMo reads.

    MIX_DIR/part-*.parquet  (id, text, source; a document repeated k times appears k times)
      -> OUT/part-NNNNN.npy            raw little-endian uint16/uint32, no .npy header
         OUT/part-NNNNN.index.parquet  id, source, start, end (token offsets inside that part)
         OUT/tokens.json               dtype, vocab size, eos/bos, tokenizer sha256, totals, seed

Two passes keep memory bounded by configuration, not by mix size:

1. encode: worker processes read the mix in its stored order (one task per row group, or a
   slice of one), encode batches with HF `tokenizers` (one Rust thread per worker), append
   EOS (and BOS when asked) and write each task's tokens, document offsets and (id, source)
   to a temporary folder.
2. pack: a numpy permutation of the global document numbers (the only per-document array in
   memory, 8 bytes a document) gives the order; documents are copied from the memory-mapped
   temporary files in that order, in chunks of bounded size, into parts of at most
   `max_tokens_per_part` tokens (a document never spans two parts).

The output depends only on the mix, the tokenizer, the settings and the seed: not on the
number of workers or the task split.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing as mp
import os
import shutil
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from mixer.errors import MixerError
from mixer.io import (
    TMP_PREFIX,
    atomic_path,
    config_hash,
    file_sha256,
    parquet_writer_atomic,
    read_json,
    write_json_atomic,
)
from mixer.schema import list_parts, part_name
from mixer.tokenization.metadata import CSV_SUFFIX, MetadataWriter, source_dirname
from mixer.tokenization.tokenizer import (
    DEFAULT_EOS,
    DTYPES,
    load_tokenizer,
    resolve_dtype,
    resolve_special,
    vocab_size_of,
)

FORMAT = "mixer-tokens/1"
DEFAULT_MAX_TOKENS_PER_PART = 50_000_000
DEFAULT_BATCH_SIZE = 256  # documents per encode_batch call
TASKS_PER_WORKER = 4  # split row groups until every worker has a few tasks to balance
PACK_CHUNK_DOCS = 16_384  # documents looked up at once while packing
PACK_CHUNK_TOKENS = 8_000_000  # tokens copied at once while packing (bounds pack memory)
INDEX_ROW_GROUP = 65_536  # rows per row group of part-NNNNN.index.parquet
OPEN_TASK_FILES = 128  # memory maps kept open while packing
INPUT_COLUMNS = ("id", "text", "source")
OPTIONAL_COLUMNS = ("src_file", "src_line")  # provenance for part-NNNNN.csv.gz (empty when absent)
INDEX_SCHEMA = pa.schema(
    [("id", pa.string()), ("source", pa.string()), ("start", pa.int64()), ("end", pa.int64())]
)
META_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("src_file", pa.string()),
        ("src_line", pa.int64()),
    ]
)


@dataclass(frozen=True)
class EncodeSettings:
    tokenizer_path: str
    dtype: str  # "uint16" | "uint32"
    eos_id: int
    bos_id: int | None
    batch_size: int


# ---------------------------------------------------------------------------- encode pass


@dataclass(frozen=True)
class EncodeTask:
    index: int
    part: str
    row_group: int
    start: int  # rows [start, stop) of the row group
    stop: int
    first_doc: int  # global document number of the first row
    text_bytes: int = 0  # estimated size of the task's text, for scheduling


def plan_tasks(parts: list[Path], workers: int) -> list[EncodeTask]:
    """One task per row group; row groups are split when there are too few to keep workers busy."""
    groups = []  # (part, row group, rows, text bytes)
    for part in parts:
        try:
            meta = pq.ParquetFile(part).metadata
        except Exception as e:
            raise MixerError(f"{part}: not a readable Parquet file ({e})") from e
        missing = [c for c in INPUT_COLUMNS if c not in meta.schema.names]
        if missing:
            raise MixerError(f"{part}: missing column(s) {', '.join(missing)}")
        text = meta.schema.names.index("text")
        groups += [
            (part, g, rg.num_rows, rg.column(text).total_uncompressed_size)
            for g, rg in ((g, meta.row_group(g)) for g in range(meta.num_row_groups))
        ]
    want = workers * TASKS_PER_WORKER
    split = max(1, -(-want // max(1, len(groups))))
    tasks, first = [], 0
    for part, g, rows, size in groups:
        pieces = min(split, rows) if workers > 1 else 1
        bounds = np.linspace(0, rows, pieces + 1).round().astype(int)
        for a, b in itertools.pairwise(bounds.tolist()):
            if b > a:
                est = size * (b - a) // max(1, rows)
                tasks.append(EncodeTask(len(tasks), str(part), g, a, b, first + a, est))
        first += rows
    return tasks


_worker: dict = {}


def _init_worker(settings: EncodeSettings, tok=None) -> None:
    # One Rust thread per worker process: parallelism comes from the processes.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker["tok"] = tok if tok is not None else load_tokenizer(settings.tokenizer_path)
    _worker["settings"] = settings


def _task_paths(tmp: Path, index: int) -> tuple[Path, Path, Path]:
    stem = tmp / f"task-{index:07d}"
    return stem.with_suffix(".tokens"), stem.with_suffix(".offsets.npy"), stem.with_suffix(".arrow")


def encode_texts(tok, texts: list[str], eos_id: int, bos_id: int | None, dtype) -> tuple:
    """(flat tokens with BOS/EOS around every document, per-document lengths)."""
    id_lists = [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]
    if bos_id is None:
        for ids in id_lists:
            ids.append(eos_id)
    else:
        id_lists = [[bos_id, *ids, eos_id] for ids in id_lists]
    lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
    flat = np.fromiter(
        itertools.chain.from_iterable(id_lists), dtype=dtype, count=int(lengths.sum())
    )
    return flat, lengths


def _meta_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """id, source and provenance (src_file, src_line; nulls when the mix lacks them)."""
    names = batch.schema.names
    n = batch.num_rows
    return pa.record_batch(
        [
            batch.column("id").cast(pa.string()),
            batch.column("source").cast(pa.string()),
            batch.column("src_file").cast(pa.string())
            if "src_file" in names
            else pa.nulls(n, pa.string()),
            batch.column("src_line").cast(pa.int64())
            if "src_line" in names
            else pa.nulls(n, pa.int64()),
        ],
        schema=META_SCHEMA,
    )


def _task_batches(task: EncodeTask, batch_size: int):
    """Record batches of the task's rows, streamed from its row group (bounded memory)."""
    pf = pq.ParquetFile(task.part)
    names = pf.schema_arrow.names
    columns = [*INPUT_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in names)]
    row = 0
    for batch in pf.iter_batches(
        batch_size=batch_size, row_groups=[task.row_group], columns=columns
    ):
        a, b = max(task.start - row, 0), min(task.stop - row, batch.num_rows)
        row += batch.num_rows
        if b > a:
            yield row - batch.num_rows + a, batch.slice(a, b - a)
        if row >= task.stop:
            break


def _encode_task(task: EncodeTask, tmp: str) -> dict:
    """Encode one task's rows; write tokens, offsets and (id, source) under `tmp`."""
    tok, st = _worker["tok"], _worker["settings"]
    dtype = DTYPES[st.dtype]
    tokens_path, offsets_path, meta_path = _task_paths(Path(tmp), task.index)
    lengths_all = []
    with (
        open(tokens_path, "wb") as out,
        pa.OSFile(str(meta_path), "wb") as meta_file,
        ipc.new_file(meta_file, META_SCHEMA) as meta,
    ):
        for first_row, batch in _task_batches(task, st.batch_size):
            for col in INPUT_COLUMNS:
                column = batch.column(col)
                if column.null_count:
                    pos = first_row + column.is_null().to_pylist().index(True)
                    raise MixerError(
                        f"{task.part}: row group {task.row_group}, row {pos}: {col} is null"
                    )
            flat, lengths = encode_texts(
                tok, batch.column("text").to_pylist(), st.eos_id, st.bos_id, dtype
            )
            out.write(flat.tobytes())
            lengths_all.append(lengths)
            meta.write_batch(_meta_batch(batch))
    lengths = np.concatenate(lengths_all) if lengths_all else np.zeros(0, np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    np.save(offsets_path, offsets)
    return {"index": task.index, "documents": len(lengths), "tokens": int(offsets[-1])}


def _run_encode(
    tasks: list[EncodeTask],
    settings: EncodeSettings,
    tmp: Path,
    workers: int,
    progress: bool,
    tok=None,
) -> None:
    from tqdm import tqdm

    docs = sum(t.stop - t.start for t in tasks)
    bar = tqdm(total=docs, desc="tokenize: encode", unit="doc", disable=not progress)
    try:
        if workers == 1:
            saved = os.environ.get("TOKENIZERS_PARALLELISM")
            try:
                _init_worker(settings, tok)
                for t in tasks:
                    bar.update(_encode_task(t, str(tmp))["documents"])
            finally:
                _worker.clear()
                if saved is None:
                    os.environ.pop("TOKENIZERS_PARALLELISM", None)
                else:
                    os.environ["TOKENIZERS_PARALLELISM"] = saved
        else:
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(
                workers, mp_context=ctx, initializer=_init_worker, initargs=(settings,)
            ) as ex:
                # Largest first, so no worker is left with a big task at the end.
                ordered = sorted(tasks, key=lambda t: (-t.text_bytes, t.index))
                futures = [ex.submit(_encode_task, t, str(tmp)) for t in ordered]
                try:
                    for fut in as_completed(futures):
                        bar.update(fut.result()["documents"])
                except BaseException:
                    for fut in futures:  # stop at the first error, not after every task
                        fut.cancel()
                    raise
    finally:
        bar.close()


# ---------------------------------------------------------------------------- pack pass


class _TaskFiles:
    """Memory-mapped outputs of the encode tasks, a bounded number open at a time."""

    def __init__(self, tmp: Path, dtype: np.dtype):
        self.tmp, self.dtype = tmp, dtype
        self.open: OrderedDict[int, tuple] = OrderedDict()

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray, pa.Table]:
        if index in self.open:
            self.open.move_to_end(index)
            return self.open[index]
        tokens_path, offsets_path, meta_path = _task_paths(self.tmp, index)
        size = tokens_path.stat().st_size
        tokens = (
            np.memmap(tokens_path, dtype=self.dtype, mode="r") if size else np.zeros(0, self.dtype)
        )
        offsets = np.load(offsets_path, mmap_mode="r")
        meta = ipc.open_file(pa.memory_map(str(meta_path))).read_all()
        self.open[index] = (tokens, offsets, meta)
        if len(self.open) > OPEN_TASK_FILES:
            self.open.popitem(last=False)
        return self.open[index]


class _PartWriter:
    """Writes part-NNNNN.npy, its index and its csv.gz metadata atomically; tracks sizes and
    the sha256 of the tokens. `subdir` ("" or a source's folder) prefixes the recorded names."""

    def __init__(self, out: Path, index: int, dtype: np.dtype, subdir: str = ""):
        prefix = f"{subdir}/" if subdir else ""
        self.name = prefix + part_name(index, ".npy")
        self.index_name = prefix + part_name(index, ".index.parquet")
        self.metadata_name = prefix + part_name(index, CSV_SUFFIX)
        self.dtype = dtype
        self.tokens = self.documents = 0
        self.sha = hashlib.sha256()
        self._npy_ctx = atomic_path(out / self.name)
        self._npy = open(self._npy_ctx.__enter__(), "wb")
        self._idx_ctx = parquet_writer_atomic(out / self.index_name, INDEX_SCHEMA)
        self._idx = self._idx_ctx.__enter__()
        self._csv_ctx = atomic_path(out / self.metadata_name)
        self._csv_raw = open(self._csv_ctx.__enter__(), "wb")
        self._csv = MetadataWriter(self._csv_raw)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def write(self, tokens: np.ndarray, meta: pa.Table, lengths: np.ndarray) -> None:
        data = tokens.astype(self.dtype, copy=False).tobytes()
        self._npy.write(data)
        self.sha.update(data)
        ends = self.tokens + np.cumsum(lengths)
        starts = ends - lengths
        self._csv.write(
            starts.tolist(),
            ends.tolist(),
            meta.column("id").to_pylist(),
            [s or "" for s in meta.column("src_file").to_pylist()],
            meta.column("src_line").to_pylist(),
        )
        self._pending.append(
            pa.table(
                {
                    "id": meta.column("id"),
                    "source": meta.column("source"),
                    "start": pa.array(starts, pa.int64()),
                    "end": pa.array(ends, pa.int64()),
                },
                schema=INDEX_SCHEMA,
            )
        )
        self._pending_rows += len(lengths)
        self.tokens += int(lengths.sum())
        self.documents += len(lengths)
        if self._pending_rows >= INDEX_ROW_GROUP:
            self._flush_index(final=False)

    def _flush_index(self, final: bool) -> None:
        """Write full row groups of the index (the rest too when final): fixed row-group
        boundaries keep the index bytes independent of the packing chunk size."""
        table = pa.concat_tables(self._pending) if self._pending else INDEX_SCHEMA.empty_table()
        full = table.num_rows if final else table.num_rows // INDEX_ROW_GROUP * INDEX_ROW_GROUP
        for a in range(0, full, INDEX_ROW_GROUP):
            self._idx.write_table(table.slice(a, min(INDEX_ROW_GROUP, full - a)).combine_chunks())
        rest = table.slice(full)
        self._pending, self._pending_rows = [rest], rest.num_rows

    def close(self) -> dict:
        self._flush_index(final=True)
        self._npy.close()
        self._npy_ctx.__exit__(None, None, None)
        self._idx_ctx.__exit__(None, None, None)
        self._csv.close()
        self._csv_raw.close()
        self._csv_ctx.__exit__(None, None, None)
        return {
            "file": self.name,
            "index": self.index_name,
            "metadata": self.metadata_name,
            "tokens": self.tokens,
            "documents": self.documents,
            "sha256": self.sha.hexdigest(),
        }

    def abort(self, exc: BaseException) -> None:
        self._npy.close()
        self._csv_raw.close()
        for ctx in (self._npy_ctx, self._idx_ctx, self._csv_ctx):
            try:
                ctx.__exit__(type(exc), exc, None)
            except BaseException:  # the context re-raises exc after cleaning up
                pass


def _by_task(task_of: np.ndarray) -> list[np.ndarray]:
    """Positions of a chunk's documents grouped by task (each task's files opened once)."""
    order = np.argsort(task_of, kind="stable")
    return [g for g in np.split(order, np.flatnonzero(np.diff(task_of[order])) + 1) if len(g)]


def _lookup(files: _TaskFiles, task_of: np.ndarray, rows: np.ndarray, groups) -> tuple:
    """Token start (inside its task file) and length of each document."""
    starts = np.empty(len(rows), dtype=np.int64)
    lengths = np.empty(len(rows), dtype=np.int64)
    for group in groups:
        offsets = files.get(int(task_of[group[0]]))[1]
        r = rows[group]
        starts[group] = offsets[r]
        lengths[group] = offsets[r + 1] - starts[group]
    return starts, lengths


def _gather(files: _TaskFiles, task_of, rows, starts, lengths, groups) -> tuple:
    """Tokens and (id, source) of the documents (task, row), in the order given."""
    dest = np.zeros(len(rows), dtype=np.int64)
    np.cumsum(lengths[:-1], out=dest[1:])
    out = np.empty(int(lengths.sum()), dtype=files.dtype)
    metas = []
    for group in groups:
        tokens, _, meta = files.get(int(task_of[group[0]]))
        for d, s, n in zip(
            dest[group].tolist(), starts[group].tolist(), lengths[group].tolist(), strict=True
        ):
            out[d : d + n] = tokens[s : s + n]
        metas.append(meta.take(pa.array(rows[group])))
    order = np.concatenate(groups) if groups else np.zeros(0, np.int64)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    meta = pa.concat_tables(metas).take(pa.array(inverse)) if metas else META_SCHEMA.empty_table()
    return out, meta


def _pack(
    out: Path,
    tmp: Path,
    tasks: list[EncodeTask],
    order: np.ndarray,
    dtype: np.dtype,
    max_tokens_per_part: int,
    progress: bool,
    subdir: str = "",
) -> list[dict]:
    from tqdm import tqdm

    first_docs = np.array([t.first_doc for t in tasks], dtype=np.int64)
    files = _TaskFiles(tmp, dtype)
    parts: list[dict] = []
    writer: _PartWriter | None = None
    bar = tqdm(total=len(order), desc="tokenize: pack", unit="doc", disable=not progress)
    try:
        pos = 0
        while pos < len(order):
            docs = order[pos : pos + PACK_CHUNK_DOCS]
            task_of = np.searchsorted(first_docs, docs, side="right") - 1
            rows = docs - first_docs[task_of]
            # Bound the chunk by tokens too: look up lengths first, keep a prefix.
            starts, lengths = _lookup(files, task_of, rows, _by_task(task_of))
            keep = max(1, int(np.searchsorted(np.cumsum(lengths), PACK_CHUNK_TOKENS, "right")))
            task_of, rows, starts, lengths = (x[:keep] for x in (task_of, rows, starts, lengths))
            tokens, meta = _gather(files, task_of, rows, starts, lengths, _by_task(task_of))
            done = 0
            while done < keep:
                if writer is None:
                    writer = _PartWriter(out, len(parts), dtype, subdir)
                room = max_tokens_per_part - writer.tokens
                fits = int(np.searchsorted(np.cumsum(lengths[done:]), room, "right"))
                if fits == 0 and writer.tokens == 0:
                    fits = 1  # a document longer than a part gets a part of its own
                if fits == 0:
                    parts.append(writer.close())
                    writer = None
                    continue
                a = int(lengths[:done].sum())
                b = a + int(lengths[done : done + fits].sum())
                writer.write(tokens[a:b], meta.slice(done, fits), lengths[done : done + fits])
                done += fits
            pos += keep
            bar.update(keep)
        if writer is not None:
            parts.append(writer.close())
            writer = None
    except BaseException as e:
        if writer is not None:
            writer.abort(e)
        raise
    finally:
        bar.close()
    return parts


# ---------------------------------------------------------------------------- the stage


def _input_parts(mix_dir: Path) -> list[Path]:
    if not mix_dir.is_dir():
        raise MixerError(f"mix directory not found: {mix_dir}")
    parts = list_parts(mix_dir)
    if not parts:
        raise MixerError(f"no part-*.parquet in {mix_dir}: run `mixer mix` first")
    return parts


def _source_totals(tasks: list[EncodeTask], tmp: Path) -> tuple[dict, dict]:
    """Tokens and documents per source, summed over the encode tasks."""
    tokens: dict[str, int] = {}
    docs: dict[str, int] = {}
    for t in tasks:
        _, offsets_path, meta_path = _task_paths(tmp, t.index)
        table = pa.table(
            {
                "source": ipc.open_file(pa.memory_map(str(meta_path))).read_all().column("source"),
                "n": np.diff(np.load(offsets_path)),
            }
        )
        for row in table.group_by("source").aggregate([("n", "sum"), ("n", "count")]).to_pylist():
            tokens[row["source"]] = tokens.get(row["source"], 0) + row["n_sum"]
            docs[row["source"]] = docs.get(row["source"], 0) + row["n_count"]
    return dict(sorted(tokens.items())), dict(sorted(docs.items()))


def _source_codes(tasks: list[EncodeTask], tmp: Path) -> tuple[list[str], np.ndarray]:
    """Sorted distinct sources and, per global document number, the position of its source."""
    columns = [
        ipc.open_file(pa.memory_map(str(_task_paths(tmp, t.index)[2]))).read_all().column("source")
        for t in tasks
    ]
    sources = sorted(set().union(*(set(pc.unique(c).to_pylist()) for c in columns)))
    lookup = pa.array(sources, pa.string())
    codes = [pc.index_in(c, value_set=lookup).to_numpy(zero_copy_only=False) for c in columns]
    return sources, np.concatenate(codes).astype(np.int32) if codes else np.zeros(0, np.int32)


def _part_files(part: dict) -> list[str]:
    return [part[k] for k in ("file", "index", "metadata") if part.get(k)]


def _outputs_intact(out: Path, info: dict) -> bool:
    itemsize = np.dtype(info.get("dtype", "uint8")).itemsize
    for part in info.get("parts", []):
        if not all((out / f).is_file() for f in _part_files(part)):
            return False
        if (out / part["file"]).stat().st_size != part["tokens"] * itemsize:
            return False
    return True


def _remove_stale(out: Path, previous: dict | None, keep: set[str]) -> None:
    """Remove the part files a previous tokens.json of ours named and this run did not write
    (files mixer did not record are never touched)."""
    for part in (previous or {}).get("parts", []):
        for name in _part_files(part):
            if name not in keep and ".." not in Path(name).parts:
                (out / name).unlink(missing_ok=True)
                parent = (out / name).parent
                if parent != out and parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()


def tokenize_mix(
    mix_dir: str | Path,
    tokenizer_path: str | Path,
    out_dir: str | Path,
    dtype: str = "auto",
    seed: int = 0,
    workers: int | None = None,
    max_tokens_per_part: int = DEFAULT_MAX_TOKENS_PER_PART,
    eos: str | None = None,
    eos_id: int | None = None,
    bos: str | None = None,
    bos_id: int | None = None,
    progress: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    shuffle: bool = True,
    per_source: bool = False,
) -> dict:
    """Tokenize a mix into shuffled, packed token arrays; returns the tokens.json content.

    Skips the work when OUT/tokens.json was made from the same mix parts (by content hash),
    the same tokenizer file and the same settings, and its parts are intact.
    """
    mix_dir, out = Path(mix_dir).resolve(), Path(out_dir)
    tokenizer_path = Path(tokenizer_path).resolve()
    if int(max_tokens_per_part) < 1:
        raise MixerError(f"max_tokens_per_part must be positive, got {max_tokens_per_part}")
    if int(batch_size) < 1:
        raise MixerError(f"batch_size must be positive, got {batch_size}")
    tok = load_tokenizer(tokenizer_path)
    vocab_size = vocab_size_of(tok)
    np_dtype = resolve_dtype(dtype, vocab_size)  # before any work
    eos_id, eos, eos_how = resolve_special(tok, vocab_size, eos, eos_id, "eos", DEFAULT_EOS)
    bos_id, bos, bos_how = resolve_special(tok, vocab_size, bos, bos_id, "bos", None)
    parts = _input_parts(mix_dir)
    workers = max(1, int(workers or os.cpu_count() or 1))
    tasks = plan_tasks(parts, workers)  # also checks every part's columns
    workers = min(workers, max(1, len(tasks)))
    n_docs = sum(t.stop - t.start for t in tasks)
    dtype_name = "uint16" if np_dtype == DTYPES["uint16"] else "uint32"
    tokenizer_sha = file_sha256(tokenizer_path)

    settings = {
        "format": FORMAT,
        "mix": [[p.name, p.stat().st_size, file_sha256(p)] for p in parts],
        "tokenizer_sha256": tokenizer_sha,
        "dtype": dtype_name,
        "eos_id": eos_id,
        "bos_id": bos_id,
        "seed": int(seed),
        "shuffle": bool(shuffle),
        "max_tokens_per_part": int(max_tokens_per_part),
        "per_source": bool(per_source),
    }
    fingerprint = config_hash(settings)
    try:
        previous = read_json(out / "tokens.json")
    except ValueError:  # a corrupt tokens.json: redo everything, remove nothing it names
        previous = None
    if not isinstance(previous, dict) or not isinstance(previous.get("parts"), list):
        previous = None
    if previous and previous.get("fingerprint") == fingerprint and _outputs_intact(out, previous):
        return previous

    out.mkdir(parents=True, exist_ok=True)
    (out / "tokens.json").unlink(missing_ok=True)  # parts are about to change: invalid until done
    tmp = out / f"{TMP_PREFIX}encode"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        encode = EncodeSettings(str(tokenizer_path), dtype_name, eos_id, bos_id, int(batch_size))
        _run_encode(tasks, encode, tmp, workers, progress, tok)
        order = (
            np.random.default_rng(int(seed)).permutation(n_docs)
            if shuffle
            else np.arange(n_docs, dtype=np.int64)
        )
        source_dirs: dict[str, str] = {}
        if per_source:
            sources, codes = _source_codes(tasks, tmp)
            written = []
            for code, source in enumerate(sources):
                source_dirs[source] = sub = source_dirname(source)
                mine = order[codes[order] == code]
                for part in _pack(
                    out, tmp, tasks, mine, np_dtype, int(max_tokens_per_part), progress, sub
                ):
                    written.append({**part, "source": source})
        else:
            written = _pack(out, tmp, tasks, order, np_dtype, int(max_tokens_per_part), progress)
        tokens_per_source, docs_per_source = _source_totals(tasks, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _remove_stale(out, previous, {f for p in written for f in _part_files(p)})

    info = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "dtype": dtype_name,
        "byte_order": "little",
        "header": None,
        "vocab_size": vocab_size,
        "eos_id": eos_id,
        "eos_token": eos,
        "eos_choice": eos_how,
        "bos_id": bos_id,
        "bos_token": bos,
        "bos_choice": bos_how,
        "special_tokens_in_text": "encoded as text",
        "tokenizer": {"path": str(tokenizer_path), "sha256": tokenizer_sha},
        "mix_dir": str(mix_dir),
        "seed": int(seed),
        "shuffle": bool(shuffle),
        "max_tokens_per_part": int(max_tokens_per_part),
        "layout": "per_source" if per_source else "mixed",
        "source_dirs": source_dirs,
        "metadata_format": "csv.gz: start,end,id,src,loc (no header)",
        "documents": n_docs,
        "total_tokens": sum(p["tokens"] for p in written),
        "tokens_per_source": tokens_per_source,
        "documents_per_source": docs_per_source,
        "parts": written,
    }
    write_json_atomic(out / "tokens.json", info)
    return info
